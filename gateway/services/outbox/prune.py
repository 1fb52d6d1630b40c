"""Pruning the outbox: finished rows go after a while, in chunks that never hold the writer
for long (an order commit waits at most for one chunk)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from functools import partial

from gateway.store import outbox
from gateway.store.reader import Reader
from gateway.store.writer import Writer


async def prune_outbox(writer: Writer, reader: Reader, *, delivered_before: float,
                       dead_before: float, stop: Callable[[], bool] = lambda: False) -> int:
    """Delete delivered rows finished before `delivered_before` and dead ones finished
    before `dead_before`; returns how many. Pending rows are never touched."""
    # A row finishes after it is created: one created after both cutoffs cannot go, nor can
    # any after it (ids grow with `created`).
    latest = max(delivered_before, dead_before)

    def bounds(conn: sqlite3.Connection) -> tuple[int, int]:
        lo, hi = outbox.id_range(conn)
        young = outbox.first_id_created_since(conn, latest)
        return lo, hi + 1 if young is None else young

    lo, below = await reader.run(bounds)  # the scan for the bound runs on a reader
    after, deleted = lo - 1, 0
    while after < below - 1 and not stop():
        n, after = await writer.run(partial(
            outbox.prune, after_id=after, below_id=below,
            delivered_before=delivered_before, dead_before=dead_before))
        deleted += n
    return deleted
