"""Trackers: the inventory, the pairing window, and what their readings mean for orders.

Readings arrive synchronously from the radio (hundreds a second); this service keeps per-tracker
state in memory and only touches the database (through OrderService) when a reading changes an
order: a stable table, a pick-up. Battery and last-seen are flushed in batches.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from gateway.core.errors import Code, NotFound, ValidationFailed
from gateway.core.events import Bus, TrackerEvent, TrackerEventType
from gateway.core.models import ClearReason, Tracker, TrackerReading
from gateway.core.ports import Clock
from gateway.services.orders.book import OrderService
from gateway.store import trackers as repo
from gateway.store.writer import Writer

log = logging.getLogger(__name__)
ADDRESS = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
DINE_IN, TO_GO = "ON_PREMISES", "TO_GO"


@dataclass(frozen=True, slots=True)
class RadioPolicy:
    # Adverts (repeats included: a beacon repeats a steady reading) that must agree on a table,
    # over at least debounce_seconds, before it counts.
    debounce_readings: int = 3
    debounce_seconds: float = 0.3  # ... spread over at least this long
    offline_after: float = 60.0
    battery_low: int = 20
    auto_clear_after: float | None = 4 * 3600.0


@dataclass(slots=True)
class _Live:
    """What the gateway knows about one tracker right now (memory only)."""

    candidate: int = 0
    candidate_since: float = 0.0
    candidate_count: int = 0
    table: int = 0  # the last table that became an order location
    last_seen: float = 0.0  # monotonic
    seen_at: float = 0.0  # wall clock, for the inventory (kept here: no allocation per advert)
    online: bool = True
    battery_low: bool = False


class TrackerService:
    def __init__(
        self,
        writer: Writer,
        bus: Bus,
        clock: Clock,
        orders: OrderService,
        policy: RadioPolicy | None = None,
    ) -> None:
        self._writer = writer
        self._bus = bus
        self._clock = clock
        self._orders = orders
        self.policy = policy or RadioPolicy()
        self._by_number: dict[int, Tracker] = {}
        self._by_address: dict[str, Tracker] = {}
        self._live: dict[str, _Live] = {}
        self._dirty: set[int] = set()
        self._pairing_until = 0.0  # monotonic; 0 = closed
        self._pads_pairing: set[str] = set()
        self.rejected: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[object]] = set()

    async def load(self) -> None:
        for t in await self._writer.run(repo.load):
            self._remember(t)

    # -- inventory ------------------------------------------------------------------------

    def list(self) -> list[Tracker]:
        return [self._view(self._by_number[n]) for n in sorted(self._by_number)]

    def get(self, number: int) -> Tracker:
        tracker = self._by_number.get(number)
        if tracker is None:
            raise NotFound(Code.TRACKER_NOT_FOUND)
        return self._view(tracker)

    def _view(self, tracker: Tracker) -> Tracker:
        live = self._live.get(tracker.address)
        if live is None or live.seen_at <= (tracker.last_seen or 0.0):
            return tracker
        return replace(tracker, last_seen=live.seen_at)

    def online(self, address: str) -> bool:
        live = self._live.get(address)
        return live is not None and live.online and live.last_seen > 0

    @staticmethod
    def check(number: object, address: object) -> tuple[int, str]:
        if not isinstance(number, int) or isinstance(number, bool) or not 1 <= number <= 65535:
            raise ValidationFailed(Code.BAD_TRACKER, "Tracker number must be 1 to 65535.")
        if not isinstance(address, str) or not ADDRESS.fullmatch(address.upper()):
            raise ValidationFailed(
                Code.BAD_TRACKER, "Tracker address must look like AA:BB:CC:DD:EE:FF."
            )
        return number, address.upper()

    async def pair(self, number: object, address: object) -> Tracker:
        number, address = self.check(number, address)
        tracker = Tracker(number, address, self._clock.now())

        def apply(_: None) -> None:
            for old in (self._by_number.get(number), self._by_address.get(address)):
                if old is not None:
                    self._forget_memory(old)
            self._remember(tracker)
            self._publish(TrackerEventType.TRACKER_PAIRED, tracker)

        await self._writer.run(lambda conn: repo.pair(conn, tracker), apply)
        log.info("paired tracker %d (%s)", number, address)
        return tracker

    async def rename(self, number: int, new_number: int) -> Tracker:
        old = self.get(number)
        self.check(new_number, old.address)
        renamed = replace(old, number=new_number)

        def apply(_: None) -> None:
            self._forget_memory(old)
            if (taken := self._by_number.get(new_number)) is not None:
                self._forget_memory(taken)
            self._remember(renamed)
            self._publish(TrackerEventType.TRACKER_RENAMED, renamed, f"was {number}")

        await self._writer.run(lambda conn: repo.pair(conn, renamed), apply)
        return renamed

    async def forget(self, number: int) -> Tracker:
        tracker = self.get(number)

        def apply(_: bool) -> None:
            self._forget_memory(tracker)
            self._publish(TrackerEventType.TRACKER_FORGOTTEN, tracker)

        await self._writer.run(lambda conn: repo.forget(conn, number), apply)
        return tracker

    async def clear_inventory(self) -> int:
        def apply(_: int) -> None:
            self._by_number.clear()
            self._by_address.clear()
            self._publish(TrackerEventType.TRACKER_INVENTORY_CLEARED, None)

        return await self._writer.run(repo.clear, apply)

    # -- pairing window -------------------------------------------------------------------

    def begin_pairing(self, seconds: float) -> None:
        """Open the window (0 = until end_pairing)."""
        self._pairing_until = float("inf") if seconds == 0 else self._clock.monotonic() + seconds
        self._publish(TrackerEventType.PAIRING_STARTED, None, f"{seconds:g} s")

    def end_pairing(self) -> None:
        self._pairing_until = 0.0
        self._publish(TrackerEventType.PAIRING_ENDED, None)

    def set_pad_pairing(self, pad: str, on: bool) -> None:
        (self._pads_pairing.add if on else self._pads_pairing.discard)(pad)

    @property
    def pairing_open(self) -> bool:
        return bool(self._pads_pairing) or self._clock.monotonic() < self._pairing_until

    # -- the radio's entry points -----------------------------------------------------------

    def on_reading(self, reading: TrackerReading) -> None:
        """Every advertisement, repeats included: a steady table is confirmed by its repeats."""
        tracker = self._by_address.get(reading.address)
        if tracker is None:
            self._reject("unknown tracker", reading.address)
            return
        now = self._clock.monotonic()
        live = self._live.setdefault(reading.address, _Live())
        live.last_seen = now
        if not live.online:
            live.online = True
            self._publish(TrackerEventType.TRACKER_ONLINE, tracker)
        self._battery(tracker, live, reading.battery)
        self._dirty.add(tracker.number)
        if reading.vibrating and (reading.button or reading.moving):
            bound = self._orders.bound_to(reading.address)
            if bound is not None and (bound.paged or bound.tracking):
                self._spawn(self._orders.picked_up(reading.address))
        if reading.on_charger or reading.table == 0:
            live.candidate, live.candidate_count = 0, 0
            return
        if reading.table != live.candidate:
            live.candidate, live.candidate_since, live.candidate_count = reading.table, now, 1
            return
        live.candidate_count += 1
        p = self.policy
        if (
            live.candidate != live.table
            and live.candidate_count >= p.debounce_readings
            and now - live.candidate_since >= p.debounce_seconds
        ):
            live.table = live.candidate
            if self._orders.bound_to(reading.address) is not None:
                self._spawn(self._orders.locate_by_tracker(reading.address, str(live.table)))

    def on_pad(self, pad: str, role: str, number: int, address: str) -> None:
        """A tracker was put on a pad (`role`: STARTER_DINE_IN, STARTER_TO_GO, CLEARER)."""
        address = address.upper()
        tracker = self._by_address.get(address)
        if tracker is None:
            if not self.pairing_open:
                self._reject("unknown tracker on a pad", address)
                return
            self._spawn(self._pair_then(number, address, role))
            return
        self._spawn(self._act(tracker, role))

    async def _pair_then(self, number: int, address: str, role: str) -> None:
        tracker = await self.pair(number, address)
        if role != "CLEARER":  # pairing on a starter only teaches the gateway the puck
            return
        await self._act(tracker, role)

    async def _act(self, tracker: Tracker, role: str) -> None:
        live = self._live.setdefault(tracker.address, _Live())
        live.table, live.candidate, live.candidate_count = 0, 0, 0  # a new story begins
        if role == "CLEARER":
            await self._orders.clear_by_tracker(tracker.address, ClearReason.TRACKER)
        elif role in ("STARTER_DINE_IN", "STARTER_TO_GO"):
            kind = TO_GO if role == "STARTER_TO_GO" else DINE_IN
            await self._orders.start_with_tracker(str(tracker.number), kind, tracker.address)
        else:
            self._reject("pad without a known role", role)

    # -- housekeeping ---------------------------------------------------------------------

    async def check_health(self) -> None:
        """Called every few seconds: offline trackers, over-age orders, battery flush."""
        now = self._clock.monotonic()
        for address, live in self._live.items():
            if live.online and live.last_seen and now - live.last_seen > self.policy.offline_after:
                live.online = False
                tracker = self._by_address.get(address)
                if tracker is not None:
                    log.info("tracker %d offline", tracker.number)
                    self._publish(TrackerEventType.TRACKER_OFFLINE, tracker)
        if self.policy.auto_clear_after is not None:
            cutoff = self._clock.now() - self.policy.auto_clear_after
            await self._orders.clear_older_than(cutoff, ClearReason.AUTOMATIC)
        await self.flush()

    async def flush(self) -> None:
        if not self._dirty:
            return
        numbers, self._dirty = self._dirty, set()
        views = [self._view(self._by_number[n]) for n in numbers if n in self._by_number]
        rows = [(t.battery, t.last_seen, t.number) for t in views]
        await self._writer.run(lambda conn: repo.touch(conn, rows))

    async def run_health_forever(self, every: float = 5.0) -> None:
        while True:
            await self._clock.sleep(every)
            try:
                await self.check_health()
            except Exception:
                log.exception("tracker health check failed")

    async def drain(self) -> None:
        """Wait for the order changes readings have started (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    # -- internals ------------------------------------------------------------------------

    def _battery(self, tracker: Tracker, live: _Live, battery: int | None) -> None:
        live.seen_at = self._clock.now()
        if battery is None:
            return
        if battery != tracker.battery:  # rare: a new Tracker only when the value changes
            tracker = replace(tracker, battery=battery)
            self._remember(tracker)
        if not live.battery_low and battery < self.policy.battery_low:
            live.battery_low = True
            self._publish(TrackerEventType.TRACKER_BATTERY_LOW, tracker, f"{battery} %")
        elif live.battery_low and battery >= self.policy.battery_low + 5:  # hysteresis
            live.battery_low = False

    def _reject(self, cause: str, detail: str) -> None:
        self.rejected[cause] += 1
        if self.rejected[cause] == 1:
            log.warning("%s: %s (further ones are counted, not logged)", cause, detail)
            self._publish(TrackerEventType.TRACKER_UNKNOWN, None, f"{cause}: {detail}")

    def _spawn(self, work: Awaitable[object]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[object]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("radio-driven order change failed: %s", exc)

    def _remember(self, tracker: Tracker) -> None:
        self._by_number[tracker.number] = tracker
        self._by_address[tracker.address] = tracker

    def _forget_memory(self, tracker: Tracker) -> None:
        self._by_number.pop(tracker.number, None)
        self._by_address.pop(tracker.address, None)

    def _publish(self, kind: TrackerEventType, tracker: Tracker | None, detail: str = "") -> None:
        self._bus.publish(TrackerEvent(kind, self._clock.now(), tracker, detail))


Spawner = Callable[[Awaitable[object]], None]
