"""Watches that the database file is still the one the writer has open, and heals it if not.

`rm tablegate.db*` under a running gateway leaves SQLite writing into unlinked inodes: every
write still "succeeds" and is lost at the next start. The writer compares the file's
(st_dev, st_ino) before each transaction, this guard does it on a timer and before health
reports healthy; on a mismatch the writer refuses writes (503) and the guard copies the live
database (the open connection still reaches every committed row) back to its path with
SQLite's backup API, reopens writer and readers on the copy, and lets writes resume. A heal
that fails (directory gone, disk full) is retried with backoff; the writes stay refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from gateway.store.reader import Reader
from gateway.store.writer import Writer, connect, file_identity

log = logging.getLogger(__name__)

OnAlarm = Callable[[str | None], None]  # a problem raised, or None when cleared


class DatabaseGuard:
    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        *,
        interval: float = 5.0,
        backoff: tuple[float, float] = (0.5, 30.0),
        on_alarm: OnAlarm | None = None,
        on_restored: Callable[[], None] | None = None,
    ) -> None:
        self.writer = writer
        self.reader = reader
        self.interval = interval
        self.backoff = backoff
        self.on_alarm = on_alarm
        self.on_restored = on_restored  # e.g. rewrite files that vanished with the database
        self.heals = 0  # successful heals, for diagnostics and tests
        self._installed = False  # the copy is at the path; only the reopen is left to do
        self._watch: asyncio.Task[None] | None = None
        self._healing: asyncio.Task[None] | None = None
        writer.on_lost = self._lost

    def start(self) -> None:
        self._watch = asyncio.create_task(self.watch_forever(), name="db-file-watch")

    async def close(self) -> None:
        for task in (self._watch, self._healing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self.writer.lost is not None:
            # One last try: stopping without it loses every write since the file vanished.
            with contextlib.suppress(Exception):
                await self._heal_once()

    def check(self) -> bool:
        """True when the file is the writer's (health asks before it says healthy)."""
        return self.writer.check()

    @property
    def healing(self) -> bool:
        return self._healing is not None and not self._healing.done()

    async def watch_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await asyncio.to_thread(self.writer.check)

    def _lost(self, problem: str) -> None:
        if self.on_alarm is not None:
            self.on_alarm(problem)
        if not self.healing:
            self._healing = asyncio.create_task(self._heal_forever(), name="db-file-heal")

    async def _heal_forever(self) -> None:
        delay, cap = self.backoff
        while self.writer.lost is not None:
            try:
                await self._heal_once()
            except Exception as exc:
                log.warning("database restore failed (%s); retrying in %.1f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
                continue
        self.heals += 1
        log.warning(
            "database restored at %s from the open connection; writes resume", self.writer.path
        )
        if self.on_restored is not None:
            try:
                self.on_restored()
            except Exception as exc:
                log.warning("after the database restore: %s", exc)
        if self.on_alarm is not None:
            self.on_alarm(None)

    async def _heal_once(self) -> None:
        path = self.writer.path
        if not self._installed:
            tmp = path.with_name(path.name + ".restore.tmp")
            # 1. A complete, checked, synced copy beside the path, from the live connection.
            await self.writer.control(lambda w: _copy_live(w.connection, tmp))
            # 2. Into place; the readers keep the old inode until the new file is there.
            try:
                await self.writer.control(lambda w: _install(tmp, path))
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
            self._installed = True
        # 3. Reopen readers and writer on the file now at the path. Once the old connection
        # is closed the copy at the path is the only one, so a failure here retries from 3.
        await self.reader.close()
        try:
            await self.writer.control(_reopen)
        finally:
            await self.reader.open()
        self._installed = False
        self.writer.resume()


def _copy_live(conn: sqlite3.Connection, tmp: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        dest = sqlite3.connect(tmp, isolation_level=None)
        try:
            conn.backup(dest)
            (result,) = dest.execute("PRAGMA quick_check").fetchone()
            if result != "ok":
                raise RuntimeError(f"the copy failed quick_check: {result}")
            # One file, no journal beside it: it is renamed into place as it is.
            dest.execute("PRAGMA journal_mode=DELETE")
        finally:
            dest.close()
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _install(tmp: Path, path: Path) -> None:
    if path.exists():  # replaced under us: keep what someone put there, beside it
        aside = path.with_name(f"{path.name}.replaced.{int(time.time())}")
        os.replace(path, aside)
        log.warning("a foreign file at %s was moved to %s", path, aside)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def _reopen(writer: Writer) -> None:
    path = writer.path
    # Closed before the new one opens: closing a WAL connection unlinks `-wal`/`-shm` *by
    # name*, which must not hit the new connection's files. Whatever the old connection
    # leaves at those names belongs to the unlinked database and is stale next to the copy.
    with contextlib.suppress(sqlite3.Error):
        writer.connection.close()
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")
    conn = connect(path, synchronous=writer.synchronous)
    (result,) = conn.execute("PRAGMA quick_check").fetchone()
    if result != "ok":
        conn.close()
        raise RuntimeError(f"restored database failed quick_check: {result}")
    writer.swap_connection(conn)
    writer.identity = file_identity(path)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
