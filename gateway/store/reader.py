"""Read-only connections for queries that do not belong on the writer (history, journal replay).

They open the file with `mode=ro`, so a bug here cannot write; WAL lets them read while the
writer commits.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")


class Reader:
    def __init__(self, path: Path, size: int = 2) -> None:
        self.path = path
        self._size = size
        self._pool: asyncio.Queue[sqlite3.Connection] = asyncio.Queue()
        self._all: list[sqlite3.Connection] = []

    async def open(self) -> None:
        for _ in range(self._size):
            conn = await asyncio.to_thread(self._connect)
            self._all.append(conn)
            self._pool.put_nowait(conn)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"file:{self.path}?mode=ro", uri=True, check_same_thread=False, isolation_level=None
        )
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("PRAGMA query_only=ON")
        return conn

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = await self._pool.get()
        # The connection goes back when its thread is done with it, not when the caller is:
        # a cancelled caller must not let close() shut a connection a thread still uses.
        task = asyncio.ensure_future(asyncio.to_thread(_in_snapshot, conn, fn))

        def give_back(done: asyncio.Future[T]) -> None:
            self._pool.put_nowait(conn)
            if not done.cancelled():
                done.exception()  # retrieved: a cancelled caller's failure is not "never seen"

        task.add_done_callback(give_back)
        return await asyncio.shield(task)

    async def close(self) -> None:
        # Wait until every connection is back from its thread: a cancelled caller's thread may
        # still be using one, and closing it under that thread can crash the process.
        for _ in range(len(self._all)):
            await self._pool.get()
        for conn in self._all:
            conn.close()
        self._all.clear()


def _in_snapshot(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    # One read transaction, so a query with two statements (count + page) sees one state.
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")
