"""Print API (seed 003): order statuses, and thin webhooks on every status change.

The status is a function of the canonical order (ARCHITECTURE.md §3):

    started, nothing in production          -> Created
    located, or an item in production       -> Processing   (producing, produced, packed,
                                                             shipped, or in error: the kitchen
                                                             has it)
    cleared (served, handed over)           -> Shipped
    cleared because it was cancelled        -> Cancelled

It only moves forward (Created < Processing < Shipped | Cancelled), because an order's state
and its items only move forward.

**A webhook per status change, not per order change.** `order_hook` runs inside the transaction
of every journaled change and writes one outbox row (`orderId=<number>`, form-encoded) per
active `printapi` subscription when the change *moved the status*: a new order always does; a
located order located again, re-paged or with a second item in production does not. What was
last announced for each active order is remembered on the writer thread (the only thread that
runs the hook) together with the journal seq of the change that set it. A change that was rolled
back after the hook ran leaves a stale entry; the seq says so (the journal no longer holds that
seq for that order), and an entry we cannot trust, like none at all after a restart, is read
as "may have changed": the webhook is sent unless the order is still Created (which it then
always was). So a status change is never missed; at worst, after a restart or a rolled-back
change, one status is announced twice, which a thin webhook tolerates by design (the receiver
reads the current status with GET /v1/orders/{id}).

Subscriptions live in the shared `subscriptions` table (kind `printapi`). A receiver that
answers 410 disables its subscription and its other pending rows die with it; a subscription
with a `signingSecret` gets Standard Webhooks signatures on every attempt.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from typing import Any

from gateway.core.errors import Code, NotFound, ValidationFailed
from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ItemStatus, Order, OrderState
from gateway.core.netguard import require_url
from gateway.core.ports import Clock
from gateway.services.outbox import signing as webhook_signing
from gateway.services.outbox.http import GONE
from gateway.services.outbox.policy import HookEvent
from gateway.store import orders as orders_repo
from gateway.store import outbox
from gateway.store import subscriptions as subs_repo
from gateway.store.outbox import OutboxRow
from gateway.store.reader import Reader
from gateway.store.subscriptions import Subscription
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

KIND = "printapi"  # subscriptions.kind and outbox.kind
CONTENT_TYPE = "application/x-www-form-urlencoded"  # seed 003 (Print API)'s webhook call, exactly

__all__ = ["Subscription"]  # re-exported for the web layer


class PrintStatus(StrEnum):
    CREATED = "Created"
    PROCESSING = "Processing"
    SHIPPED = "Shipped"
    CANCELLED = "Cancelled"


IN_PRODUCTION = frozenset(
    {
        ItemStatus.PRODUCING,
        ItemStatus.PRODUCED,
        ItemStatus.PACKED,
        ItemStatus.SHIPPED,
        ItemStatus.ERROR,
    }
)


def print_status(order: Order) -> PrintStatus:
    if not order.active:
        return PrintStatus.CANCELLED if order.cancelled else PrintStatus.SHIPPED
    if order.state is OrderState.LOCATED or any(i.status in IN_PRODUCTION for i in order.items):
        return PrintStatus.PROCESSING
    return PrintStatus.CREATED


def webhook_body(order: Order) -> bytes:
    return b"orderId=%d" % order.number


class PrintApiService:
    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        *,
        allow: frozenset[str] = frozenset(),
        enqueued_with: Callable[[int], None] = lambda _seq: None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._allow = allow
        self._enqueued_with = enqueued_with  # the outbox wakes when that event is published
        # Writer thread only (the hooks): order uuid -> (journal seq, status last announced).
        self._announced: dict[str, tuple[int, PrintStatus]] = {}
        # Loop only: subscription URL -> HMAC key, for signing attempts.
        self._keys: dict[str, bytes] = {}

    async def load(self, active: Iterable[Order]) -> None:
        """At start, before any order change: what every active order was last announced as
        is its current status (seq 0: known committed, no journal check needed)."""
        for order in active:
            self._announced[order.uuid] = (0, print_status(order))
        secrets_ = await self._reader.run(subs_repo.signing_secrets)
        self._keys = {
            url: key
            for (kind, url), s in secrets_.items()
            if kind == KIND and (key := webhook_signing.secret_key(s)) is not None
        }

    # -- outbound (writer thread, inside the order change's transaction) --------------------

    def order_hook(self, conn: sqlite3.Connection, event: OrderEvent) -> None:
        order = event.order
        status = print_status(order)
        if not self._changed(conn, event, status):
            return
        targets = subs_repo.active_targets(conn, KIND)
        if not targets:
            return
        body = webhook_body(order)
        for sub_id, url in targets:
            outbox.enqueue(
                conn,
                outbox.Delivery(
                    f"printapi_{event.seq}_{sub_id}_{secrets.token_hex(4)}",
                    url,
                    KIND,
                    body,
                    CONTENT_TYPE,
                    ref=str(order.number),
                ),
                event.ts,
            )
        self._enqueued_with(event.seq)

    def _changed(self, conn: sqlite3.Connection, event: OrderEvent, status: PrintStatus) -> bool:
        uuid = event.order.uuid
        before = self._announced.get(uuid)
        if event.order.active:
            self._announced[uuid] = (event.seq, status)
        else:
            self._announced.pop(uuid, None)  # final: no later change of this order
        if event.type is OrderEventType.NEW_ORDER:
            return True
        if before is not None:
            seq, announced = before
            if seq == 0 or (seq < event.seq and subs_repo.journal_owner(conn, seq) == uuid):
                return announced != status
        # Not known (restart, a rolled-back change): it may have changed.
        return status is not PrintStatus.CREATED

    # -- the outbox's view (writer thread, in the outbox change's transaction) -----------------

    def delivery_hook(
        self,
        conn: sqlite3.Connection,
        row: OutboxRow,
        event: HookEvent,
        code: str | None,
        message: str | None,
    ) -> None:
        """A receiver that answered 410 is unsubscribed: its subscription is disabled and
        its other pending rows die with it (they would only get 410 again)."""
        if event != HookEvent.DEAD or code != GONE:
            return
        now = self._clock.now()
        if subs_repo.disable(conn, KIND, row.url, now, "HTTP 410 Gone"):
            killed = outbox.kill_pending(
                conn, row.endpoint, KIND, row.url, now, f"{GONE}: subscription disabled by HTTP 410"
            )
            log.warning(
                "Print API subscriber %s answered 410: subscription disabled, %d "
                "pending webhooks dropped",
                outbox.endpoint_of(row.url),
                killed,
            )

    def sign(self, row: OutboxRow, timestamp: int) -> Mapping[str, str]:
        """Standard Webhooks headers for a row whose subscription has a secret (loop)."""
        key = self._keys.get(row.url)
        if key is None:
            return {}
        return webhook_signing.headers(key, row.event_id, timestamp, row.body)

    # -- subscriptions ------------------------------------------------------------------------

    def check_url(self, url: Any) -> str:
        return require_url(url, self._allow)

    async def subscribe(self, url: Any, signing_secret: Any = None) -> tuple[Subscription, bool]:
        """Send status webhooks to `url` (signed when a `whsec_` secret is given). The same
        URL again replaces its secret and enables it again. Returns it and whether it is new."""
        url = self.check_url(url)
        key = None
        if signing_secret is not None:
            key = webhook_signing.secret_key(signing_secret)
            if key is None:
                raise ValidationFailed(
                    Code.BAD_SETTING_VALUE,
                    "signingSecret must be whsec_ followed by the base64 of 24 to 64 bytes.",
                )
        now = self._clock.now()

        def job(conn: sqlite3.Connection) -> tuple[Subscription, bool]:
            return subs_repo.upsert(conn, KIND, url, now, signing_secret=signing_secret)

        def remember(result: tuple[Subscription, bool]) -> None:
            if key is None:
                self._keys.pop(url, None)
            else:
                self._keys[url] = key

        sub, new = await self._writer.run(job, remember)
        log.info(
            "Print API subscription %d %s for %s%s",
            sub.id,
            "added" if new else "updated",
            outbox.endpoint_of(url),
            " (signed)" if key else "",
        )
        return sub, new

    async def unsubscribe(self, sub_id: int) -> int:
        """Remove a subscription; its pending webhooks die with it. Returns how many."""
        now = self._clock.now()

        def job(conn: sqlite3.Connection) -> tuple[str, int] | None:
            sub = subs_repo.get(conn, KIND, sub_id)
            if sub is None:
                return None
            subs_repo.delete(conn, KIND, sub_id)
            killed = outbox.kill_pending(
                conn,
                outbox.endpoint_of(sub.url),
                KIND,
                sub.url,
                now,
                "unsubscribed: the subscription was removed",
            )
            return sub.url, killed

        def forget(result: tuple[str, int] | None) -> None:
            if result is not None:
                self._keys.pop(result[0], None)

        result = await self._writer.run(job, forget)
        if result is None:
            raise NotFound(Code.UNKNOWN_HTTP_CLIENT, "Unknown subscription.")
        log.info(
            "Print API subscription %d removed (%d pending webhooks dropped)", sub_id, result[1]
        )
        return result[1]

    async def subscriptions(self) -> list[Subscription]:
        return await self._reader.run(lambda conn: subs_repo.list_kind(conn, KIND))

    # -- reads --------------------------------------------------------------------------------

    async def order(self, number: int) -> Order:
        """Any order, active or not, by its numeric id (`Order.number`)."""
        found = await self._reader.run(lambda conn: orders_repo.by_number(conn, number))
        if found is None:
            raise NotFound(Code.ORDER_NOT_FOUND, f"Order {number} not found.")
        return found
