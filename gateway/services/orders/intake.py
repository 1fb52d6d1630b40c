"""Orders with items from integrations, and item progress from the kitchen.

The writes go through an OrderService unit of work (`OrderService.transact`), so an order
created here is in the same book, journal, feeds and hooks as a POS order: one model, five
dialects.
"""

from __future__ import annotations

import sqlite3
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from gateway.core.errors import Code, Conflict, NotFound, ValidationFailed
from gateway.core.events import OrderEventType
from gateway.core.models import (
    ITEM_FINAL,
    ClearReason,
    Item,
    ItemStatus,
    Order,
    OrderState,
)
from gateway.core.ports import Clock
from gateway.services.orders.book import OrderService
from gateway.services.orders.unit import OrderUnit
from gateway.store import orders as repo
from gateway.store.reader import Reader

MAX_ITEMS = 500


@dataclass(frozen=True, slots=True)
class NewItem:
    title: str
    quantity: int = 1
    product_code: str = ""
    price: int | None = None  # minor units
    notes: str = ""
    station: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Created:
    order: Order
    created: bool  # False: the same (source, external_id) was created before; nothing new


class OrderIntake:
    def __init__(self, orders: OrderService, reader: Reader, clock: Clock) -> None:
        self._orders = orders
        self._reader = reader
        self._clock = clock

    async def create(
        self,
        items: list[NewItem],
        *,
        source: str,
        order_type: str = "TO_GO",
        location: str = "",
        name: str | None = None,
        external_id: str = "",
        extra: dict[str, Any] | None = None,
    ) -> Created:
        """A new active order with its items. Idempotent per (source, external_id): an
        integrator retrying after a lost answer gets the first order back, not a second."""
        if not items or len(items) > MAX_ITEMS:
            raise ValidationFailed(Code.BAD_ORDER, f"An order needs 1 to {MAX_ITEMS} items.")

        def work(unit: OrderUnit) -> Created:
            conn = unit.conn
            if external_id and (same := repo.by_external_id(conn, source, external_id)):
                return Created(unit.unchanged(same), False)
            now = self._clock.now()
            number = repo.next_number(conn)
            wanted = name or str(number)
            if repo.active_by_name(conn, wanted) is not None:
                if name:
                    raise Conflict(Code.ORDER_NAME_TAKEN, f"Order number {name} is already active.")
                while repo.active_by_name(conn, str(number)) is not None:
                    number += 1  # a POS used this number as a name: skip it
                wanted = str(number)
            order = Order(
                uuid=str(uuidlib.uuid4()),
                name=wanted,
                order_type=order_type,
                location=location,
                state=OrderState.LOCATED if location else OrderState.STARTED,
                created=now,
                state_changed=now,
                located_at=now if location else None,
                number=number,
                source=source,
                external_id=external_id,
                extra=extra or {},
                items=tuple(
                    Item(
                        f"{number}-{pos}",
                        pos,
                        i.title,
                        i.quantity,
                        i.product_code,
                        i.price,
                        i.notes,
                        i.station,
                        ItemStatus.REGISTERED,
                        now,
                        extra=i.extra,
                    )
                    for pos, i in enumerate(items, 1)
                ),
            )
            return Created(unit.save(order, OrderEventType.NEW_ORDER, now), True)

        return await self._orders.transact(work)

    async def set_item_status(
        self,
        order_ref: str,
        item_ref: str,
        status: ItemStatus,
        *,
        cause: str = "",
        delay: int | None = None,
        message: str = "",
    ) -> Order:
        """Move one item; when every item is done the order is handed over (cleared)."""

        def work(unit: OrderUnit) -> Order:
            order = _lookup(unit.conn, order_ref)
            if order is None:
                raise NotFound(Code.ORDER_NOT_FOUND, f"Order {order_ref[:40]!r} not found.")
            index = _find_item(order, item_ref)
            item = order.items[index]
            repeated = item.status is status and (
                status is not ItemStatus.ERROR or (item.cause, item.delay) == (cause, delay)
            )
            if repeated:
                return unit.unchanged(order)  # a repeated signal changes nothing
            if not order.active:
                raise _closed(order)
            if not item.can_move_to(status):
                raise Conflict(
                    Code.ITEM_BAD_TRANSITION,
                    f"Item {item.id} is {item.status.value}; it cannot become {status.value}.",
                )
            now = self._clock.now()
            moved = item.evolve(
                status=status, status_changed=now, cause=cause, delay=delay, message=message
            )
            items = (*order.items[:index], moved, *order.items[index + 1 :])
            changed = unit.save(order.evolve(items=items), OrderEventType.ITEM_STATUS, now)
            if all(i.status in ITEM_FINAL for i in items):
                everything_cancelled = all(i.status is ItemStatus.CANCELED for i in items)
                return unit.clear(changed, ClearReason.AUTOMATIC, cancelled=everything_cancelled)
            return changed

        return await self._orders.transact(work)

    async def cancel(self, order_ref: str) -> Order:
        """Cancel an unpaid order (Imprinted DELETE): cleared, cancelled, items cancelled."""

        def work(unit: OrderUnit) -> Order:
            order = self._active(unit.conn, order_ref)
            if (order.extra.get("payment") or {}).get("paid_at"):
                raise Conflict(Code.ORDER_PAID, "A paid order cannot be deleted.")
            return unit.clear(order, ClearReason.MANAGER_OVERRIDE, cancelled=True)

        return await self._orders.transact(work)

    async def get(self, order_ref: str) -> Order:
        """Any order, active or not, by number or uuid."""
        if order_ref.isdigit():  # a number, not a name: names are the POS's
            number = int(order_ref)
            active = next((o for o in self._orders.active() if o.number == number), None)
        else:
            active = self._orders.lookup(order_ref)
        if active is not None:
            return active

        def read(conn: sqlite3.Connection) -> Order | None:
            return _lookup(conn, order_ref)

        found = await self._reader.run(read)
        if found is None:
            raise NotFound(Code.ORDER_NOT_FOUND, f"Order {order_ref[:40]!r} not found.")
        return found

    @staticmethod
    def _active(conn: sqlite3.Connection, order_ref: str) -> Order:
        order = _lookup(conn, order_ref)
        if order is None:
            raise NotFound(Code.ORDER_NOT_FOUND, f"Order {order_ref[:40]!r} not found.")
        if not order.active:
            raise _closed(order)
        return order


def _closed(order: Order) -> Conflict:
    return Conflict(
        Code.ORDER_CLOSED,
        f"Order {order.number} is already {'cancelled' if order.cancelled else 'handed over'}.",
    )


def _lookup(conn: sqlite3.Connection, ref: str) -> Order | None:
    if ref.isdigit() and len(ref) <= 18:
        return repo.by_number(conn, int(ref))
    return repo.by_uuid(conn, ref)


def _find_item(order: Order, ref: str) -> int:
    """By item id or position; else by product code, the first one not yet done."""
    for index, item in enumerate(order.items):
        if ref in (item.id, str(item.position)):
            return index
    for index, item in enumerate(order.items):
        if ref and ref == item.product_code and item.status not in ITEM_FINAL:
            return index
    raise NotFound(Code.ITEM_NOT_FOUND, f"Order {order.number} has no item {ref[:40]!r}.")
