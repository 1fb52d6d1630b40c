"""What start-up checks and writes in the data directory before serving, and the one-line
reasons it gives when it cannot start (issue 9 items 6 and 7)."""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sqlite3
import time
import uuid
from pathlib import Path

log = logging.getLogger(__name__)

GATEWAY_ID = "gateway-id"
# Below this, a storage error at start is reported as "the disk is full": SQLite needs a few
# pages for its -wal and -shm and the admin cookie a few bytes.
NEARLY_FULL_BYTES = 1024 * 1024


class StartRefused(Exception):
    """The gateway must not start; the message is one line saying what and what to do."""

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def had_data(data_dir: Path) -> bool:
    """A non-empty gateway-id is written only after the database was created and synced."""
    try:
        return bool((data_dir / GATEWAY_ID).read_text().strip())
    except OSError:
        return False


def check_database_present(db: Path, *, new_database: bool) -> None:
    """Refuse to start empty where this box had data: a vanished database must be restored,
    not silently replaced by an empty one (every order gone, every token 401)."""
    data_dir = db.parent
    try:
        size: int | None = db.stat().st_size
    except FileNotFoundError:
        size = None
    if size:  # present and not empty: SQLite's own checks take over
        return
    if not had_data(data_dir):
        return  # a first start
    what = "is missing" if size is None else "is empty (0 bytes)"
    if not new_database:
        raise StartRefused(
            f"the database {db} {what}, but {data_dir / GATEWAY_ID} says this box had data; "
            f"restore it from a backup (with its -wal), or start with --new-database "
            f"(TABLEGATE_NEW_DATABASE=1) to begin with an empty one"
        )
    log.warning(
        "the database %s %s; starting with a new empty one as asked (--new-database)", db, what
    )
    stamp = int(time.time())
    # Journal files without their database would be replayed onto the new, empty one.
    for suffix in ("-wal", "-shm"):
        stale = Path(f"{db}{suffix}")
        if stale.exists():
            os.replace(stale, stale.with_name(f"{stale.name}.orphan.{stamp}"))
    if size == 0:
        os.replace(db, db.with_name(f"{db.name}.empty.{stamp}"))


def gateway_id(data_dir: Path) -> str:
    path = data_dir / GATEWAY_ID
    if path.exists() and (gid := path.read_text().strip()):
        return gid
    # An empty file is what a power cut leaves of an unsynced write: make a new id, durably.
    gid = uuid.uuid4().hex[:12]
    write_durably(path, gid + "\n", 0o644)
    return gid


def write_durably(path: Path, text: str, mode: int) -> None:
    tmp = path.with_suffix(".tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        # A full disk must not leave a 0-byte temp file behind at every failed start.
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def storage_reason(data_dir: Path, exc: BaseException) -> str | None:
    """One line naming the full file system when `exc` is (or looks like) a full disk."""
    try:
        usage = shutil.disk_usage(data_dir)
    except OSError:
        return None
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
    full = full or (isinstance(exc, sqlite3.Error) and "full" in str(exc).lower())
    if not full and usage.free >= NEARLY_FULL_BYTES:
        return None
    return (
        f"the file system holding {data_dir} is full: {usage.free} bytes free of "
        f"{usage.total} ({exc}); free some space there and start again"
    )
