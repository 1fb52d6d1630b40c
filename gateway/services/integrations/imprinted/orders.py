"""Reads for the Imprinted dialect (seed 001): an app's orders, by id, filtered, counted.

Writes go through `OrderIntake` (create, cancel) like every other dialect's; this module only
reads, on the read-only connections, and says which Imprinted `status` an order has.

Status (ARCHITECTURE.md §3, in the seed's vocabulary and in the seed's order, the furthest
that applies wins):

- `received`         the order is started and no item has moved yet
- `in progress`      the order is located at a table, or an item has moved (error included)
- `paid`             `payment.paid_at` is set (a payment state, ranked as the seed lists it)
- `printing`         an item is in production (`producing`: the kitchen's "printing")
- `quality control`  every item that is not cancelled is produced, packed or handed over
- `refunded`         `payment.refunded_at` is set (wins over everything)

`stock allocation` and `internal order query` are accepted as filters but no order has them.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from gateway.core.errors import Code, NotFound
from gateway.core.models import ItemStatus, Order
from gateway.store import imprinted_orders as repo
from gateway.store.imprinted_orders import Filters
from gateway.store.reader import Reader

STATUSES = (
    "received",
    "in progress",
    "paid",
    "stock allocation",
    "printing",
    "quality control",
    "refunded",
    "internal order query",
)
_DONE = frozenset({ItemStatus.PRODUCED, ItemStatus.PACKED, ItemStatus.SHIPPED})

__all__ = ["STATUSES", "Filters", "ImprintedOrders", "order_status", "paid_at"]


def _stamp(order: Order, key: str) -> str | None:
    payment: Any = order.extra.get("payment")
    value = payment.get(key) if isinstance(payment, dict) else None
    return value if isinstance(value, str) and value else None


def paid_at(order: Order) -> str | None:
    return _stamp(order, "paid_at")


def order_status(order: Order) -> str:
    """The rule of `gateway.store.imprinted_orders.STATUS_SQL`, in Python."""
    if _stamp(order, "refunded_at"):
        return "refunded"
    live = [i for i in order.items if i.status is not ItemStatus.CANCELED]
    if live and all(i.status in _DONE for i in live):
        return "quality control"
    if any(i.status is ItemStatus.PRODUCING for i in order.items):
        return "printing"
    if paid_at(order):
        return "paid"
    if order.located_at is not None or any(
        i.status not in (ItemStatus.REGISTERED, ItemStatus.CANCELED) for i in order.items
    ):
        return "in progress"
    return "received"


class ImprintedOrders:
    def __init__(self, reader: Reader) -> None:
        self._reader = reader

    async def list(self, filters: Filters, *, limit: int, offset: int) -> list[Order]:
        def read(conn: sqlite3.Connection) -> list[Order]:
            return repo.page(conn, filters, limit, offset)

        return await self._reader.run(read)

    async def count(self, filters: Filters) -> int:
        def read(conn: sqlite3.Connection) -> int:
            return repo.count(conn, filters)

        return await self._reader.run(read)

    async def get(self, source: str, number: int) -> Order:
        """One of the app's orders (active or not); another app's order is not found."""

        def read(conn: sqlite3.Connection) -> Order | None:
            return repo.one(conn, source, number)

        order = await self._reader.run(read)
        if order is None:
            raise NotFound(Code.ORDER_NOT_FOUND, f"Order {number} not found.")
        return order
