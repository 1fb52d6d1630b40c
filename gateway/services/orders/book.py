"""Active orders: the in-memory book every request reads, kept behind the durable journal.

Each change is decided inside the writer's transaction (so two requests for the same number
cannot both create it), written with its journal event, and only after COMMIT applied to the
book and published on the bus.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid as uuidlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from gateway.core.errors import Code, NotFound, Unavailable
from gateway.core.events import Bus, OrderEvent, OrderEventType
from gateway.core.models import (
    DUMMY_TRACKER_PREFIX,
    ClearReason,
    HistoryQuery,
    Order,
    OrderState,
    same_order_type,
)
from gateway.core.ports import Clock, Pager
from gateway.services.orders.unit import Change, OrderUnit, StartOutcome, cleared
from gateway.store import orders as repo
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)
TxHook = Callable[[sqlite3.Connection, OrderEvent], None]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StartResult:
    outcome: StartOutcome
    order: Order


@dataclass(frozen=True, slots=True)
class OrderRef:
    """An order named by its printed number or by its uuid (exactly one is set)."""

    name: str | None = None
    uuid: str | None = None


class NoRadio:
    """The pager used when no radio is configured: only stand-in trackers can be paged."""

    def available(self) -> bool:
        return False

    async def page(self, address: str, duration_s: int) -> None:
        raise Unavailable(Code.PAGING_UNAVAILABLE)

    async def stop(self, address: str) -> None:
        return None


class OrderService:
    def __init__(
        self, writer: Writer, reader: Reader, bus: Bus, clock: Clock, pager: Pager
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._bus = bus
        self._clock = clock
        self._pager = pager
        self._by_name: dict[str, Order] = {}
        self._by_uuid: dict[str, Order] = {}
        self._by_tracker: dict[str, Order] = {}
        self._tx_hooks: list[TxHook] = []

    async def load(self) -> None:
        """Rebuild the book from SQLite (the source of truth) at start."""

        def read(conn: sqlite3.Connection) -> tuple[list[Order], int]:
            return repo.all_active(conn), repo.last_seq(conn)

        orders, seq = await self._reader.run(read)
        for o in orders:
            self._remember(o)
        self._bus.last_seq = seq
        log.info("loaded %d active orders, journal at seq %d", len(orders), seq)

    # -- reads (memory) ---------------------------------------------------------------

    def active(self) -> list[Order]:
        return list(self._by_uuid.values())

    def find(self, ref: OrderRef) -> Order:
        order = self._by_name.get(ref.name) if ref.name else self._by_uuid.get(ref.uuid or "")
        if order is None:
            raise NotFound(Code.ORDER_NOT_FOUND)
        return order

    def lookup(self, ref: str) -> Order | None:
        """An active order by uuid or printed number, or None."""
        return self._by_uuid.get(ref) or self._by_name.get(ref)

    # -- writes -----------------------------------------------------------------------

    async def start_or_locate(
        self, name: str, order_type: str, location: str | None, dummy_tracker: bool = False
    ) -> StartResult:
        def job(conn: sqlite3.Connection) -> Change:
            now = self._clock.now()
            existing = repo.active_by_name(conn, name)
            if existing is None:
                located = bool(location)
                order = Order(
                    uuid=str(uuidlib.uuid4()),
                    name=name,
                    order_type=order_type,
                    location=location or "",
                    state=OrderState.LOCATED if located else OrderState.STARTED,
                    created=now,
                    state_changed=now,
                    tracker=DUMMY_TRACKER_PREFIX + name if dummy_tracker else None,
                    located_at=now if located else None,
                    number=repo.next_number(conn),
                    source="pos",
                )
                repo.save(conn, order)
                event = self._journal(conn, OrderEventType.NEW_ORDER, now, order)
                return Change(order, event, StartOutcome.CREATED)
            changes: dict[str, object] = {}
            if not same_order_type(existing.order_type, order_type):
                changes["order_type"] = order_type
            if location and (
                existing.location != location or existing.state is not OrderState.LOCATED
            ):
                changes["location"] = location
                if existing.state is not OrderState.LOCATED:
                    changes["state"] = OrderState.LOCATED
                    changes["state_changed"] = now
                if existing.located_at is None:
                    changes["located_at"] = now
            if dummy_tracker and existing.tracker is None:
                changes["tracker"] = DUMMY_TRACKER_PREFIX + name
            if not changes:
                same = (
                    StartOutcome.ALREADY_LOCATED
                    if existing.state is OrderState.LOCATED
                    else StartOutcome.ALREADY_STARTED
                )
                return Change(existing, None, same)
            order = existing.evolve(**changes)
            repo.save(conn, order)
            event = self._journal(conn, OrderEventType.ORDER_MODIFIED, now, order)
            return Change(order, event, StartOutcome.MODIFIED)

        change = await self._writer.run(job, self._apply)
        assert change.outcome is not None
        return StartResult(change.outcome, change.order)

    async def clear(self, ref: OrderRef, reason: ClearReason) -> Order:
        def job(conn: sqlite3.Connection) -> Change:
            return self._clear_one(conn, self._locked(conn, target), reason)

        target = self.find(ref).uuid
        return (await self._writer.run(job, self._apply)).order

    async def clear_all(self, reason: ClearReason) -> list[Order]:
        def job(conn: sqlite3.Connection) -> list[Change]:
            return [self._clear_one(conn, o, reason) for o in repo.all_active(conn)]

        changes = await self._writer.run(job, self._apply_all)
        return [c.order for c in changes]

    async def page(self, ref: OrderRef, tracking: bool) -> Order:
        def job(conn: sqlite3.Connection) -> Change:
            existing = self._locked(conn, target)
            if existing.tracker is None:
                raise Unavailable(Code.PAGING_IMPOSSIBLE)
            if not self._pageable(existing.tracker):
                raise Unavailable(Code.PAGING_UNAVAILABLE)
            now = self._clock.now()
            order = existing.evolve(paged=True, tracking=tracking)
            repo.save(conn, order)
            return Change(order, self._journal(conn, OrderEventType.ORDER_PAGED, now, order))

        target = self.find(ref).uuid
        # The tracker service sees ORDER_PAGED on the bus and drives the radio.
        change = await self._writer.run(job, self._apply)
        return change.order

    async def cancel_paging(self, ref: OrderRef) -> Order | None:
        """Stop paging; None when the order has no tracker to stop."""

        def job(conn: sqlite3.Connection) -> Change | None:
            existing = self._locked(conn, target)
            if existing.tracker is None:
                return None
            if not existing.paged and not existing.tracking:
                return Change(existing, None)
            return self._modified(
                conn, existing.evolve(paged=False, tracking=False), self._clock.now()
            )

        target = self.find(ref).uuid
        change = await self._writer.run(job, self._apply_optional)
        return None if change is None else change.order

    # -- driven by the radio -------------------------------------------------------------

    def bound_to(self, address: str) -> Order | None:
        return self._by_tracker.get(address)

    async def start_with_tracker(self, name: str, order_type: str, address: str) -> StartResult:
        """A tracker was put on a starter: start its order, or bind it to the one the POS
        already posted (whichever came first; the POS's order type is kept)."""

        def job(conn: sqlite3.Connection) -> Change:
            now = self._clock.now()
            stale = repo.active_by_tracker(conn, address)
            existing = repo.active_by_name(conn, name)
            changes: list[Change] = []
            if stale is not None and (existing is None or stale.uuid != existing.uuid):
                # The same puck still bound to an order nobody cleared: it is back in service.
                changes.append(self._clear_one(conn, stale, ClearReason.AUTOMATIC))
            if existing is None:
                order = Order(
                    uuid=str(uuidlib.uuid4()),
                    name=name,
                    order_type=order_type,
                    location="",
                    state=OrderState.STARTED,
                    created=now,
                    state_changed=now,
                    tracker=address,
                    number=repo.next_number(conn),
                    source="tracker",
                )
                repo.save(conn, order)
                event = self._journal(conn, OrderEventType.NEW_ORDER, now, order)
                return Change(order, event, StartOutcome.CREATED, tuple(changes))
            if existing.tracker == address:
                return Change(existing, None, StartOutcome.ALREADY_STARTED, tuple(changes))
            order = existing.evolve(tracker=address)
            repo.save(conn, order)
            event = self._journal(conn, OrderEventType.ORDER_MODIFIED, now, order)
            return Change(order, event, StartOutcome.MODIFIED, tuple(changes))

        change = await self._writer.run(job, self._apply)
        assert change.outcome is not None
        return StartResult(change.outcome, change.order)

    async def locate_by_tracker(self, address: str, location: str) -> Order | None:
        def job(conn: sqlite3.Connection) -> Change | None:
            existing = repo.active_by_tracker(conn, address)
            if existing is None or (
                existing.location == location and existing.state is OrderState.LOCATED
            ):
                return None
            now = self._clock.now()
            order = existing.evolve(
                location=location,
                state=OrderState.LOCATED,
                state_changed=now
                if existing.state is not OrderState.LOCATED
                else existing.state_changed,
                located_at=existing.located_at or now,
            )
            return self._modified(conn, order, now)

        change = await self._writer.run(job, self._apply_optional)
        return None if change is None else change.order

    async def clear_by_tracker(self, address: str, reason: ClearReason) -> Order | None:
        def job(conn: sqlite3.Connection) -> Change | None:
            existing = repo.active_by_tracker(conn, address)
            return None if existing is None else self._clear_one(conn, existing, reason)

        change = await self._writer.run(job, self._apply_optional)
        return None if change is None else change.order

    async def picked_up(self, address: str) -> Order | None:
        """The guest picked up a paged tracker: paging is over."""

        def job(conn: sqlite3.Connection) -> Change | None:
            existing = repo.active_by_tracker(conn, address)
            if existing is None or not (existing.paged or existing.tracking):
                return None
            return self._modified(
                conn, existing.evolve(paged=False, tracking=False), self._clock.now()
            )

        change = await self._writer.run(job, self._apply_optional)
        return None if change is None else change.order

    async def clear_older_than(self, cutoff: float, reason: ClearReason) -> list[Order]:
        def job(conn: sqlite3.Connection) -> list[Change]:
            return [
                self._clear_one(conn, o, reason) for o in repo.active_created_before(conn, cutoff)
            ]

        return [c.order for c in await self._writer.run(job, self._apply_all)]

    # -- history ---------------------------------------------------------------------

    async def history(self, query: HistoryQuery) -> tuple[int, list[Order]]:
        return await self._reader.run(lambda conn: repo.history(conn, query))

    async def created_between(self, start: float, end: float) -> list[Order]:
        return await self._reader.run(lambda conn: repo.created_between(conn, start, end))

    async def events_after(self, since: int, upto: int) -> list[OrderEvent] | None:
        """The journal's events in (since, upto], or None if some were pruned."""

        def read(conn: sqlite3.Connection) -> list[OrderEvent] | None:
            first = repo.first_seq(conn)
            if since + 1 < first:
                return None
            return repo.events_between(conn, since, upto)

        return await self._reader.run(read)

    # -- internals -------------------------------------------------------------------

    def _pageable(self, tracker: str) -> bool:
        return tracker.startswith(DUMMY_TRACKER_PREFIX) or self._pager.available()

    @staticmethod
    def _locked(conn: sqlite3.Connection, uuid: str) -> Order:
        existing = repo.active_by_uuid(conn, uuid)
        if existing is None:
            raise NotFound(Code.ORDER_NOT_FOUND)
        return existing

    def _clear_one(
        self,
        conn: sqlite3.Connection,
        existing: Order,
        reason: ClearReason,
        *,
        cancelled: bool = False,
    ) -> Change:
        now = self._clock.now()
        order = cleared(existing, reason, now, cancelled=cancelled)
        repo.save(conn, order)
        return Change(order, self._journal(conn, OrderEventType.ORDER_CLEARED, now, order))

    def _modified(self, conn: sqlite3.Connection, order: Order, now: float) -> Change:
        repo.save(conn, order)
        return Change(order, self._journal(conn, OrderEventType.ORDER_MODIFIED, now, order))

    async def transact(self, work: Callable[[OrderUnit], T]) -> T:
        """For the services beside the book (intake): `work` runs on the writer thread with a
        unit of work whose changes land like the book's own (journal, hooks, then the book and
        the bus after COMMIT). Returns what `work` returned."""

        def job(conn: sqlite3.Connection) -> tuple[list[Change], T]:
            unit = OrderUnit(conn, self._clock, self._journal)
            result = work(unit)
            return unit.changes, result

        _, result = await self._writer.run(job, lambda done: self._apply_all(done[0]))
        return result

    def add_tx_hook(self, hook: TxHook) -> None:
        """Run `hook(conn, event)` inside the transaction of every journaled change, so what
        it writes (a kitchen ticket, an outbound delivery) commits with the change or not at
        all. It runs on the writer thread: no awaiting, no loop state."""
        self._tx_hooks.append(hook)

    def _journal(
        self, conn: sqlite3.Connection, kind: OrderEventType, now: float, order: Order
    ) -> OrderEvent:
        event = repo.append_event(conn, kind, now, order)
        for hook in self._tx_hooks:
            # A failing hook must not cost the order: its writes alone are undone.
            conn.execute("SAVEPOINT order_hook")
            try:
                hook(conn, event)
            except Exception:
                conn.execute("ROLLBACK TO order_hook")
                log.exception("order hook %r failed on %s", hook, kind)
            conn.execute("RELEASE order_hook")
        return event

    def _remember(self, order: Order) -> None:
        previous = self._by_uuid.get(order.uuid)
        if previous is not None and previous.tracker and previous.tracker != order.tracker:
            self._by_tracker.pop(previous.tracker, None)
        self._by_name[order.name] = order
        self._by_uuid[order.uuid] = order
        if order.tracker:
            self._by_tracker[order.tracker] = order

    def _apply_all(self, changes: list[Change]) -> None:
        for change in changes:
            self._apply(change)

    def _apply_optional(self, change: Change | None) -> None:
        if change is not None:
            self._apply(change)

    def _apply(self, change: Change) -> None:
        for earlier in change.before:
            self._apply(earlier)
        order = change.order
        if order.active:
            self._remember(order)
        else:
            self._by_uuid.pop(order.uuid, None)
            if (current := self._by_name.get(order.name)) and current.uuid == order.uuid:
                del self._by_name[order.name]
            if (
                order.tracker
                and (bound := self._by_tracker.get(order.tracker))
                and bound.uuid == order.uuid
            ):
                del self._by_tracker[order.tracker]
        if change.event is not None:
            self._bus.publish(change.event)
