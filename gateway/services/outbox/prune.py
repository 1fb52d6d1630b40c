"""Pruning the outbox: finished rows go after a while, in chunks that never hold the writer
for long (an order commit waits at most for one chunk)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from functools import partial

from gateway.core.errors import Unavailable
from gateway.core.ports import Clock
from gateway.services.outbox.ledger import DeliveryStats
from gateway.store import outbox
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger("gateway.services.outbox.service")  # one logger for the outbox


async def prune_outbox(
    writer: Writer,
    reader: Reader,
    *,
    delivered_before: float,
    dead_before: float,
    stop: Callable[[], bool] = lambda: False,
) -> int:
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
        n, after = await writer.run(
            partial(
                outbox.prune,
                after_id=after,
                below_id=below,
                delivered_before=delivered_before,
                dead_before=dead_before,
            )
        )
        deleted += n
    return deleted


class Pruner:
    """Delivered rows go `keep_delivered` seconds after they finished, dead ones after
    `keep_dead`; `run` does it every so often until `stop()` says so."""

    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        stats: DeliveryStats,
        *,
        keep_delivered: float,
        keep_dead: float,
        stop: Callable[[], bool],
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._stats = stats
        self._keep = (keep_delivered, keep_dead)
        self._stop = stop

    async def prune(
        self, keep_delivered: float | None = None, keep_dead: float | None = None
    ) -> int:
        now = self._clock.now()
        deleted = await prune_outbox(
            self._writer,
            self._reader,
            delivered_before=now - (self._keep[0] if keep_delivered is None else keep_delivered),
            dead_before=now - (self._keep[1] if keep_dead is None else keep_dead),
            stop=self._stop,
        )
        self._stats.pruned += deleted
        if deleted:
            log.info("pruned %d finished deliveries", deleted)
        return deleted

    async def run(self, every: float) -> None:
        while not self._stop():
            try:
                await self.prune()
            except Unavailable:
                return  # the store is closing
            except Exception:
                log.exception("pruning the outbox failed")
            await self._clock.sleep(every)
