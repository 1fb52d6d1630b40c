"""CloudSignal (seed 002): item production signals out to subscribers, and in from kitchens.

Out: `order_hook` runs inside the transaction of every journaled order change and writes one
outbox row per signal per active subscription, so a signal commits with its change or not at
all (ARCHITECTURE.md §4). Which signals an event means is read from the event's order alone:
`OrderRegistered` for a new order with items, and one item signal per item whose status changed
at the event's time (`status_changed == event.ts`): a cleared order's items that the clear
shipped or cancelled are signalled too. An item signal's event id names the fact (subscription,
item, status, time of the change), so the same fact seen by two events of one transaction (an
item moved and the order cleared at the same clock reading) is written once.

In: `apply` moves an item on behalf of a kitchen display through `OrderIntake`; a signal that
the item already reflects changes nothing (idempotent), so a retried signal is still a success.

Apikeys (inbound) are shown once and kept as SHA-256 digests; the apikey of a subscription
(outbound) is the receiver's secret and has to be kept as given to be sent.
"""

from __future__ import annotations

import hmac
import logging
import math
import secrets
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson

from gateway.core.errors import Code, Conflict, NotFound, ValidationFailed
from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import Item, ItemStatus, Order
from gateway.core.netguard import require_url
from gateway.core.ports import Clock
from gateway.services.access.tokens import TOKEN_NAME, digest
from gateway.services.orders.intake import OrderIntake
from gateway.services.outbox.http import GONE
from gateway.services.outbox.policy import HookEvent
from gateway.store import integration_keys as keys_repo
from gateway.store import orders as orders_repo
from gateway.store import outbox
from gateway.store import subscriptions as subs_repo
from gateway.store.integration_keys import IntegrationKey
from gateway.store.outbox import OutboxRow
from gateway.store.reader import Reader
from gateway.store.subscriptions import Subscription
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

KIND = "cloudsignal"  # subscriptions.kind, integration_keys.kind and outbox.kind
CONTENT_TYPE = "application/json"  # seed 002 (CloudSignal): "Set content-type to application/json"
APIKEY_MAX = 256

__all__ = ["IntegrationKey", "Subscription"]  # re-exported for the web layer


class SignalType(StrEnum):
    ORDER_REGISTERED = "OrderRegistered"
    ITEM_PRODUCE = "ItemProduce"
    ITEM_PRODUCED = "ItemProduced"
    ITEM_PACKED = "ItemPacked"
    ITEM_SHIPPED = "ItemShipped"
    ITEM_ERROR = "ItemError"
    ITEM_CANCELED = "ItemCanceled"


# ARCHITECTURE.md §3: the item statuses and the signals that announce them (both ways).
STATUS_OF: dict[SignalType, ItemStatus] = {
    SignalType.ITEM_PRODUCE: ItemStatus.PRODUCING,
    SignalType.ITEM_PRODUCED: ItemStatus.PRODUCED,
    SignalType.ITEM_PACKED: ItemStatus.PACKED,
    SignalType.ITEM_SHIPPED: ItemStatus.SHIPPED,
    SignalType.ITEM_ERROR: ItemStatus.ERROR,
    SignalType.ITEM_CANCELED: ItemStatus.CANCELED,
}
SIGNAL_OF: dict[ItemStatus, SignalType] = {s: t for t, s in STATUS_OF.items()}


def signal_time(ts: float) -> str:
    """Seed 002's timestamp: `2016-01-20 13:00:00 GMT`."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S GMT")


def tracking_of(order: Order) -> str:
    """What `tracking` carries in ItemShipped: where the dish went. The table the order was
    located at, else the tracker it is bound to (its number is the order's name), else the
    number the guest collects it with."""
    if order.location:
        return f"table:{order.location}"
    if order.tracker:
        return f"tracker:{order.name}"
    return f"pickup:{order.name}"


def order_id(order: Order) -> str:
    """Seed 002's "full order id": the gateway-wide order number."""
    return str(order.number) if order.number else order.uuid


@dataclass(frozen=True, slots=True)
class Signal:
    """One outbound signal, without the apikey (each subscription puts its own)."""

    type: SignalType
    fact: str  # what happened, stable: the base of the event id
    fields: tuple[tuple[str, str], ...]  # in the seed's order, `apikey` and `type` first

    def body(self, apikey: str) -> bytes:
        return orjson.dumps({"apikey": apikey, "type": self.type.value, **dict(self.fields)})


def item_signal(order: Order, item: Item) -> Signal | None:
    """The signal that announces `item`'s current status (None for `registered`)."""
    kind = SIGNAL_OF.get(item.status)
    if kind is None:
        return None
    fields: list[tuple[str, str]] = [("order", order_id(order)), ("item", item.id)]
    if kind is SignalType.ITEM_SHIPPED:
        fields.append(("tracking", tracking_of(order)))
    elif kind in (SignalType.ITEM_ERROR, SignalType.ITEM_CANCELED):
        if item.cause:
            fields.append(("cause", item.cause))
        if item.delay is not None:  # the domain counts minutes, the seed hours
            fields.append(("delay", str(math.ceil(item.delay / 60))))
        if kind is SignalType.ITEM_CANCELED and item.message:
            fields.append(("message", item.message))
    fields.append(("datetime", signal_time(item.status_changed)))
    return Signal(kind, f"{item.id}:{item.status.value}:{item.status_changed!r}", tuple(fields))


def signals_for(event: OrderEvent) -> Iterator[Signal]:
    """What `event` tells a CloudSignal subscriber, in item order."""
    order = event.order
    if not order.items:
        return  # an order without items means nothing to an item-level production system
    if event.type is OrderEventType.NEW_ORDER:
        yield Signal(
            SignalType.ORDER_REGISTERED,
            f"{order.uuid}:registered",
            (("order", order_id(order)), ("datetime", signal_time(event.ts))),
        )
    for item in order.items:
        if item.status_changed == event.ts and (signal := item_signal(order, item)):
            yield signal


@dataclass(frozen=True, slots=True)
class Inbound:
    """A signal from a kitchen display, parsed by the web dialect. `delay` in minutes."""

    type: SignalType
    order: str
    item: str = ""
    cause: str = ""
    delay: int | None = None
    message: str = ""


class CloudSignalService:
    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        intake: OrderIntake,
        *,
        allow: frozenset[str] = frozenset(),
        enqueued_with: Callable[[int], None] = lambda _seq: None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._intake = intake
        self._allow = allow
        self._keys: tuple[IntegrationKey, ...] = ()  # active, with their digests
        self._subs: tuple[Subscription, ...] = ()
        self._disabled: tuple[Subscription, ...] | None = None  # writer -> loop, see hooks
        self._enqueued_with = enqueued_with  # the outbox wakes when that event is published

    async def load(self) -> None:
        def read(conn: sqlite3.Connection) -> tuple[list[IntegrationKey], list[Subscription]]:
            return keys_repo.load(conn, KIND), subs_repo.list_kind(conn, KIND)

        keys, subs = await self._reader.run(read)
        self._keys = tuple(keys)
        self._subs = tuple(subs)

    # -- outbound ---------------------------------------------------------------------------

    def order_hook(self, conn: sqlite3.Connection, event: OrderEvent) -> None:
        """In the change's transaction (writer thread): one outbox row per signal per active
        subscription. FIFO per receiver is the outbox's; rows are written in event order."""
        subs = [s for s in self._subs if s.active]
        if not subs:
            return
        written = False
        for signal in signals_for(event):
            for sub in subs:
                event_id = f"cloudsignal:{sub.id}:{signal.fact}"
                if conn.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,)).fetchone():
                    continue  # the same fact, already written by an earlier event
                outbox.enqueue(
                    conn,
                    outbox.Delivery(
                        event_id,
                        sub.url,
                        KIND,
                        signal.body(sub.apikey or ""),
                        CONTENT_TYPE,
                        ref=event.order.uuid,
                    ),
                    event.ts,
                )
                written = True
        if written:
            self._enqueued_with(event.seq)

    def delivery_hook(
        self,
        conn: sqlite3.Connection,
        row: OutboxRow,
        event: HookEvent,
        code: str | None,
        message: str | None,
    ) -> None:
        """The outbox moved a CloudSignal row (writer thread, in its transaction): a receiver
        that answered 410 is unsubscribed with it."""
        if (
            event == HookEvent.DEAD
            and code == GONE
            and subs_repo.disable(conn, KIND, row.url, self._clock.now(), "HTTP 410 Gone")
        ):
            log.warning(
                "cloudsignal subscriber %s answered 410: subscription disabled",
                outbox.endpoint_of(row.url),
            )
            self._disabled = tuple(subs_repo.list_kind(conn, KIND))

    def after_delivery(self) -> None:
        """On the loop, after the outbox change committed: a disabled subscription is off."""
        if (subs := self._disabled) is not None:
            self._disabled = None
            self._subs = subs

    # -- subscriptions ----------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs)

    def check_url(self, url: Any) -> str:
        return require_url(url, self._allow)

    async def subscribe(self, url: Any, apikey: Any) -> tuple[Subscription, bool]:
        """Send signals to `url` with `apikey` in every body; the same URL again replaces its
        apikey (and enables it again). Returns the subscription and whether it is new."""
        url = self.check_url(url)
        if (
            not isinstance(apikey, str)
            or not 0 < len(apikey) <= APIKEY_MAX
            or not apikey.isprintable()
        ):
            raise ValidationFailed(
                Code.BAD_SETTING_VALUE, f"apikey must be 1 to {APIKEY_MAX} printable characters."
            )
        now = self._clock.now()

        def job(conn: sqlite3.Connection) -> tuple[Subscription, bool, list[Subscription]]:
            sub, new = subs_repo.upsert(conn, KIND, url, now, apikey=apikey)
            return sub, new, subs_repo.list_kind(conn, KIND)

        sub, new, _ = await self._writer.run(job, self._remember_subs)
        log.info(
            "cloudsignal subscription %d %s for %s",
            sub.id,
            "added" if new else "updated",
            outbox.endpoint_of(url),
        )
        return sub, new

    async def unsubscribe(self, sub_id: int) -> None:
        def job(conn: sqlite3.Connection) -> tuple[None, bool, list[Subscription]]:
            return None, subs_repo.delete(conn, KIND, sub_id), subs_repo.list_kind(conn, KIND)

        _, found, _ = await self._writer.run(job, self._remember_subs)
        if not found:
            raise NotFound(Code.UNKNOWN_HTTP_CLIENT, "Subscription not found.")

    def _remember_subs(self, result: tuple[object, bool, list[Subscription]]) -> None:
        self._subs = tuple(result[2])

    # -- apikeys ----------------------------------------------------------------------------

    def keys(self) -> list[IntegrationKey]:
        return list(self._keys)

    async def create_key(self, name: Any) -> tuple[IntegrationKey, str]:
        """A new apikey (32 hex characters, like the seed's), returned this once."""
        if not isinstance(name, str) or not TOKEN_NAME.fullmatch(name):
            raise ValidationFailed(
                Code.TOKEN_BAD_NAME, "Invalid key name: 1 to 64 letters, digits, spaces or _.@:+-"
            )
        apikey = secrets.token_hex(16)
        now = self._clock.now()
        key = await self._writer.run(
            lambda conn: keys_repo.insert(
                conn, KIND, name, secrets.token_hex(6), created=now, key_digest=digest(apikey)
            ),
            self._add_key,
        )
        log.info("cloudsignal key %d (%s) created", key.id, key.app_id)
        return key, apikey

    async def revoke_key(self, key_id: int) -> None:
        key = next((k for k in self._keys if k.id == key_id), None)
        if key is None:
            raise NotFound(Code.TOKEN_NOT_FOUND, "CloudSignal key not found.")
        now = self._clock.now()
        await self._writer.run(
            lambda conn: keys_repo.revoke(conn, KIND, key.app_id, now),
            lambda _: self._forget_key(key_id),
        )
        log.info("cloudsignal key %d (%s) revoked", key.id, key.app_id)

    def _add_key(self, key: IntegrationKey) -> None:
        self._keys = (*self._keys, key)

    def _forget_key(self, key_id: int) -> None:
        self._keys = tuple(k for k in self._keys if k.id != key_id)

    def authenticate(self, apikey: str) -> IntegrationKey | None:
        """The key `apikey` is, or None: its digest is compared with every active key's in
        constant time (a handful of keys; no early exit)."""
        d = digest(apikey)
        found = None
        for key in self._keys:
            if key.key_digest is not None and hmac.compare_digest(key.key_digest, d):
                found = key
        return found

    # -- inbound ----------------------------------------------------------------------------

    async def apply(self, signal: Inbound) -> bool:
        """Move the item as `signal` says; False when it already was (nothing changed).
        NotFound: no such order or item; Conflict: the item cannot move that way."""
        order = await self._order(signal.order)
        if signal.type is SignalType.ORDER_REGISTERED:
            return False  # acknowledged: the gateway registered the order when it took it
        status = STATUS_OF[signal.type]
        item = _item(order, signal.item)
        if _reflects(item, status, signal):
            return False
        try:
            await self._intake.set_item_status(
                order.uuid,
                item.id,
                status,
                cause=signal.cause,
                delay=signal.delay,
                message=signal.message,
            )
        except Conflict:
            # The same signal may have been applied meanwhile (a retry racing the original).
            if _reflects(_item(await self._order(order.uuid), item.id), status, signal):
                return False
            raise
        return True

    async def _order(self, ref: str) -> Order:
        found = await self._reader.run(lambda conn: _lookup(conn, ref))
        if found is None:
            raise NotFound(Code.ORDER_NOT_FOUND, f"Unknown order {ref[:40]!r}.")
        return found


def _lookup(conn: sqlite3.Connection, ref: str) -> Order | None:
    if ref.isascii() and ref.isdigit() and len(ref) <= 18:
        return orders_repo.by_number(conn, int(ref))
    return orders_repo.by_uuid(conn, ref)


def _item(order: Order, ref: str) -> Item:
    """By the full item id (or its position): a product code could name several items, and
    a repeated signal must find the same one."""
    for item in order.items:
        if ref in (item.id, str(item.position)):
            return item
    raise NotFound(Code.ITEM_NOT_FOUND, f"Order {order_id(order)} has no item {ref[:40]!r}.")


def _reflects(item: Item, status: ItemStatus, signal: Inbound) -> bool:
    """The item already shows what the signal says (a repeated error must repeat its
    cause and delay to count as the same; a cancelled item stays cancelled)."""
    if item.status is not status:
        return False
    if status is ItemStatus.ERROR:
        return item.cause == signal.cause and item.delay == signal.delay
    return True
