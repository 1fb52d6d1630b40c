"""A unit of work on the order book: one write transaction whose changes are journaled (with
the book's hooks) on the writer thread, and applied to the book and published on the bus only
after COMMIT. `OrderService` uses it for its own changes' shape (`Change`) and hands one to the
services beside it (intake) through `OrderService.transact`."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ITEM_FINAL, ClearReason, ItemStatus, Order, OrderState
from gateway.core.ports import Clock
from gateway.store import orders as repo

Journal = Callable[[sqlite3.Connection, OrderEventType, float, Order], OrderEvent]


class StartOutcome(Enum):
    """What a start (POS or tracker) did to the order of that number."""

    CREATED = "created"
    MODIFIED = "modified"
    ALREADY_STARTED = "already_started"
    ALREADY_LOCATED = "already_located"


@dataclass(frozen=True, slots=True)
class Change:
    order: Order
    event: OrderEvent | None
    outcome: StartOutcome | None = None
    before: tuple[Change, ...] = ()  # changes committed with this one, applied first


def cleared(existing: Order, reason: ClearReason, now: float, *, cancelled: bool = False) -> Order:
    """The order handed over (or cancelled): every dish not yet done goes with it."""
    done = ItemStatus.CANCELED if cancelled else ItemStatus.SHIPPED
    return existing.evolve(
        state=OrderState.CLEARED,
        state_changed=now,
        cleared_at=now,
        clear_reason=reason,
        paged=False,
        tracking=False,
        cancelled=cancelled,
        items=tuple(
            i
            if i.status in ITEM_FINAL
            else i.evolve(
                status=done, status_changed=now, cause="order-cancelled" if cancelled else i.cause
            )
            for i in existing.items
        ),
    )


class OrderUnit:
    """Writer thread only: `conn` is the open transaction; `changes` what the book applies
    after it commits, in order."""

    def __init__(self, conn: sqlite3.Connection, clock: Clock, journal: Journal) -> None:
        self.conn = conn
        self._clock = clock
        self._journal = journal
        self.changes: list[Change] = []

    def save(self, order: Order, kind: OrderEventType, now: float) -> Order:
        """Store the order and journal `kind` for it (the book's hooks run here)."""
        repo.save(self.conn, order)
        self.changes.append(Change(order, self._journal(self.conn, kind, now, order)))
        return order

    def unchanged(self, order: Order) -> Order:
        """The answer is this order as stored; nothing is journaled."""
        self.changes.append(Change(order, None))
        return order

    def clear(self, existing: Order, reason: ClearReason, *, cancelled: bool = False) -> Order:
        now = self._clock.now()
        return self.save(
            cleared(existing, reason, now, cancelled=cancelled), OrderEventType.ORDER_CLEARED, now
        )
