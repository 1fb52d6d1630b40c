"""The one connection that writes, on its own thread, with group commit.

Every write is a function of a `sqlite3.Connection`, run inside a transaction on the writer
thread. Jobs that queue up while a COMMIT (one fsync with synchronous=FULL) is in flight are
run together in the next transaction, each inside its own SAVEPOINT so one failing job does not
undo its neighbours. After COMMIT, each job's `on_commit` runs on the event loop in commit
order, then its awaiting caller is woken: callers are only acknowledged after the data is
durable, and in-memory state and events follow the journal's order.

A private thread instead of aiosqlite: aiosqlite hops threads once per statement, which costs
more loop time than the whole request; here a batch of fifty orders costs one hop.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from gateway.core.errors import Code, Unavailable
from gateway.store.migrations import apply_migrations

log = logging.getLogger(__name__)

T = TypeVar("T")
Job = Callable[[sqlite3.Connection], T]
MAX_BATCH = 512


@dataclass(slots=True)
class _Pending(Generic[T]):
    job: Job[T]
    on_commit: Callable[[T], object] | None
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class WriterStats:
    transactions: int = 0
    jobs: int = 0
    largest_batch: int = 0
    failed_commits: int = 0


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")
    # Only this connection checkpoints (SQLite < 3.51.3 WAL-reset race).
    conn.execute("PRAGMA wal_autocheckpoint=1000")
    return conn


class Writer:
    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.path = path
        self._synchronous = synchronous
        self._queue: queue.SimpleQueue[_Pending[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.stats = WriterStats()

    async def open(self) -> None:
        """PRAGMAs, migrations and quick_check, then start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await asyncio.to_thread(self._prepare)
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _prepare(self) -> sqlite3.Connection:
        conn = connect(self.path, synchronous=self._synchronous)
        (result,) = conn.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            conn.close()
            raise RuntimeError(f"database {self.path} failed quick_check: {result}")
        applied = apply_migrations(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        return conn

    async def run(self, job: Job[T], on_commit: Callable[[T], object] | None = None) -> T:
        if self._closed or self._loop is None:
            raise Unavailable(Code.API_UNAVAILABLE, "The gateway is stopping.")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Pending(job, on_commit, fut))
        return await fut

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._queue.put(None)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
        if self._conn is not None:
            conn = self._conn
            self._conn = None
            await asyncio.to_thread(_checkpoint_and_close, conn)

    # -- writer thread ------------------------------------------------------------------

    def _run(self) -> None:
        assert self._conn is not None
        conn = self._conn
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            batch = [first]
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                batch.append(item)
            self._execute(conn, batch)

    def _execute(self, conn: sqlite3.Connection, batch: list[_Pending[Any]]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            for p in batch:
                conn.execute("SAVEPOINT job")
                try:
                    p.result = p.job(conn)
                except BaseException as exc:  # the job's own error goes to its caller
                    p.error = exc
                    conn.execute("ROLLBACK TO job")
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            log.error("write transaction failed: %s", exc)
            self.stats.failed_commits += 1
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    log.exception("rollback failed")
            failure = Unavailable(Code.STORAGE_FAILED, "Storage failed; nothing was written.")
            for p in batch:
                p.error = failure
                p.on_commit = None
        self.stats.transactions += 1
        self.stats.jobs += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_settle, batch)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            pass


def _settle(batch: list[_Pending[Any]]) -> None:
    for p in batch:
        if p.error is None and p.on_commit is not None:
            try:
                p.on_commit(p.result)
            except Exception:
                log.exception("post-commit step failed")
        if p.future.done():
            continue
        if p.error is not None:
            p.future.set_exception(p.error)
        else:
            p.future.set_result(p.result)


def _checkpoint_and_close(conn: sqlite3.Connection) -> None:
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    except sqlite3.Error as exc:
        log.warning("checkpoint at close failed: %s", exc)
    conn.close()
