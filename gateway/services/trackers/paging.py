"""Drives the radio for paged orders: an ORDER_PAGED on the bus starts vibrating the order's
tracker; with `tracking` the page is repeated when it runs out, until the order stops being
paged (cancelled, picked up, cleared)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from gateway.core.events import Bus, Event, OrderEvent, OrderEventType
from gateway.core.models import DUMMY_TRACKER_PREFIX
from gateway.core.ports import Clock, Pager, SystemClock

log = logging.getLogger(__name__)


class PagingDriver:
    def __init__(
        self,
        bus: Bus,
        pager: Pager,
        *,
        duration_s: int = 60,
        retry_after: float = 5.0,
        clock: Clock | None = None,
    ) -> None:
        self._pager = pager
        self._clock = clock or SystemClock()
        self._duration = duration_s
        self._retry_after = retry_after
        self._jobs: dict[str, asyncio.Task[None]] = {}
        self._stops: set[asyncio.Task[None]] = set()
        self._failing: set[str] = set()
        self.failures = 0
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, OrderEvent):
            return
        address = event.order.tracker
        if not address or address.startswith(DUMMY_TRACKER_PREFIX):
            return
        if event.type is OrderEventType.ORDER_PAGED:
            self._cancel(address)
            self._jobs[address] = asyncio.create_task(
                self._page(address, event.order.tracking), name=f"page-{address}"
            )
        elif address in self._jobs and not event.order.paged:
            self._cancel(address)
            stop = asyncio.create_task(self._stop(address), name=f"page-stop-{address}")
            self._stops.add(stop)
            stop.add_done_callback(self._stops.discard)

    async def _page(self, address: str, tracking: bool) -> None:
        while True:
            try:
                await self._pager.page(address, self._duration)
            except Exception as exc:  # radio trouble: keep trying while the order is paged
                self.failures += 1
                if address not in self._failing:  # once per episode, not every retry
                    self._failing.add(address)
                    log.warning("paging %s failed: %s (retrying while it is paged)", address, exc)
                await self._clock.sleep(self._retry_after)
                continue
            self._failing.discard(address)
            if not tracking:
                return
            await self._clock.sleep(self._duration)

    async def _stop(self, address: str) -> None:
        try:
            await self._pager.stop(address)
        except Exception as exc:
            log.warning("stopping the page of %s failed: %s", address, exc)

    def _cancel(self, address: str) -> None:
        job = self._jobs.pop(address, None)
        if job is not None:
            job.cancel()

    async def close(self) -> None:
        self._unsubscribe()
        jobs = list(self._jobs.values())
        self._jobs.clear()
        for job in jobs:
            job.cancel()
        for job in jobs:
            with contextlib.suppress(asyncio.CancelledError):
                await job

    @property
    def paging(self) -> set[str]:
        return {a for a, job in self._jobs.items() if not job.done()}
