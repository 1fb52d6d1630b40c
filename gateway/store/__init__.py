"""SQLite: the one writer thread with group commit, read connections, migrations, one module of
rows per table, the database file's guard."""
