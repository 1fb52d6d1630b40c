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
import os
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
class _Control(Generic[T]):
    """Maintenance on the writer's connection outside any transaction (the heal)."""

    fn: Callable[[Writer], T]
    future: asyncio.Future[T]


@dataclass(slots=True)
class WriterStats:
    transactions: int = 0
    jobs: int = 0
    largest_batch: int = 0
    failed_commits: int = 0
    refused_lost: int = 0  # batches refused because the database file was gone or replaced


Identity = tuple[int, int]  # (st_dev, st_ino) of the database file
LOST_MESSAGE = (
    "The database file is missing or was replaced; the gateway is restoring it. "
    "Nothing was written."
)


def file_identity(path: Path) -> Identity:
    st = os.stat(path)
    return st.st_dev, st.st_ino


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
        self.synchronous = synchronous
        self._queue: queue.SimpleQueue[_Pending[Any] | _Control[Any] | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self.stats = WriterStats()
        self.identity: Identity | None = None
        # Why the file at `path` is no longer the one this connection writes (None = it is).
        # While set, every write is refused: an acknowledged write must reach the file the
        # next start opens, not an unlinked inode.
        self.lost: str | None = None
        self.on_lost: Callable[[str], None] | None = None  # called on the loop, once per loss
        self._lost_lock = threading.Lock()  # the writer thread and health may both notice

    async def open(self) -> None:
        """PRAGMAs, migrations and quick_check, then start the writer thread."""
        self._loop = asyncio.get_running_loop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._conn = await asyncio.to_thread(self._prepare)
        self._thread = threading.Thread(target=self._run, name="sqlite-writer", daemon=True)
        self._thread.start()

    def _prepare(self) -> sqlite3.Connection:
        conn = connect(self.path, synchronous=self.synchronous)
        (result,) = conn.execute("PRAGMA quick_check").fetchone()
        if result != "ok":
            conn.close()
            raise RuntimeError(f"database {self.path} failed quick_check: {result}")
        applied = apply_migrations(conn)
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        self.identity = file_identity(self.path)
        return conn

    # -- the file's identity (issue 9 item 6) ---------------------------------------------

    def file_problem(self) -> str | None:
        """Why the file at `path` is not the one this connection has open, or None."""
        try:
            now = file_identity(self.path)
        except FileNotFoundError:
            return f"{self.path} is missing"
        except OSError as exc:
            return f"{self.path} cannot be checked: {exc.strerror or exc}"
        if now != self.identity:
            return f"{self.path} was replaced by another file"
        return None

    def check(self) -> bool:
        """Compare the file's identity now (any thread); True when it is the one we write."""
        if self.lost is not None:
            return False
        if self.identity is None or self._closed:
            return True
        problem = self.file_problem()
        if problem is not None:
            self._mark_lost(problem)
        return problem is None

    def _mark_lost(self, problem: str) -> None:
        with self._lost_lock:
            if self.lost is not None:
                return
            self.lost = problem
        log.critical("database file lost: %s; refusing writes until it is restored", problem)
        if self._loop is not None and self.on_lost is not None:
            try:
                self._loop.call_soon_threadsafe(self.on_lost, problem)
            except RuntimeError:  # loop closed: the process is stopping
                pass

    def resume(self) -> None:
        """After a heal: the file at `path` is the connection's again; accept writes."""
        self.identity = file_identity(self.path)
        self.lost = None

    async def control(self, fn: Callable[[Writer], T]) -> T:
        """Run `fn(self)` on the writer thread between transactions (maintenance only)."""
        if self._closed or self._loop is None:
            raise Unavailable(Code.API_UNAVAILABLE, "The gateway is stopping.")
        fut: asyncio.Future[T] = self._loop.create_future()
        self._queue.put(_Control(fn, fut))
        return await fut

    @property
    def connection(self) -> sqlite3.Connection:
        """The live connection; only for `control` functions (they run on the writer thread)."""
        assert self._conn is not None
        return self._conn

    def swap_connection(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        """Install a new connection (from a `control` function); returns the old one."""
        old, self._conn = self._conn, conn
        assert old is not None
        return old

    async def run(self, job: Job[T], on_commit: Callable[[T], object] | None = None) -> T:
        if self._closed or self._loop is None:
            raise Unavailable(Code.API_UNAVAILABLE, "The gateway is stopping.")
        if self.lost is not None:
            raise Unavailable(Code.STORAGE_FAILED, LOST_MESSAGE)
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
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is None:
                break
            if isinstance(first, _Control):
                self._control(first)
                continue
            batch = [first]
            control: _Control[Any] | None = None
            while len(batch) < MAX_BATCH:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stopping = True
                    break
                if isinstance(item, _Control):
                    control = item  # after this batch, in queue order
                    break
                batch.append(item)
            assert self._conn is not None
            self._execute(self._conn, batch)
            if control is not None:
                self._control(control)

    def _control(self, item: _Control[Any]) -> None:
        try:
            result, error = item.fn(self), None
        except BaseException as exc:
            result, error = None, exc
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_settle_one, item.future, result, error)
        except RuntimeError:
            pass

    def _execute(self, conn: sqlite3.Connection, batch: list[_Pending[Any]]) -> None:
        # One stat per transaction (microseconds next to the COMMIT's fsync): a batch that
        # would land in an unlinked file is refused before it is written. A deletion between
        # this check and COMMIT lands in the old inode, which the heal copies back.
        if self.lost is not None or not self.check():
            self.stats.refused_lost += 1
            self._refuse(batch, Unavailable(Code.STORAGE_FAILED, LOST_MESSAGE))
            return
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
        self._hand_back(batch)

    def _refuse(self, batch: list[_Pending[Any]], failure: BaseException) -> None:
        for p in batch:
            p.error = failure
            p.on_commit = None
        self._hand_back(batch)

    def _hand_back(self, batch: list[_Pending[Any]]) -> None:
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(_settle, batch)
        except RuntimeError:  # loop already closed: nobody is waiting any more
            pass


def _settle_one(fut: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if fut.done():
        return
    if error is not None:
        fut.set_exception(error)
    else:
        fut.set_result(result)


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
