"""The table-tracker `register` webhook clients, delivered through the outbox.

A client registered with `POST /api/v2/register {http_client}` (or v1's `GET
/api/v1/register?http_client=`) receives a POST of the order object on every change of an active
order: exactly the frame a WebSocket client of `/api/v2/websocket` gets for that change (seed
004, TrackerTrack: "A Websocket notification will also be sent out with "type": "NEW_ORDER"",
and the same order with "type": "ORDER_MODIFIED"), i.e. the flat order object of the client's
API version (v1 clients get `stateStarted`, v2 `stateChanged`) plus `type` (`NEW_ORDER`, or as
the setting `newOrderEventType` says; `ORDER_MODIFIED`, also for an item's move, which this
dialect does not show; `ORDER_PAGED`; `ORDER_CLEARED`) and the journal `seq`. JSON, one row per
change per client, written in the change's transaction.

A client that answers 410 is unregistered, and its other pending rows die with it.
"""

from __future__ import annotations

import logging
import secrets
import sqlite3
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import Order
from gateway.services.access.config import ConfigService
from gateway.services.outbox.http import GONE
from gateway.services.outbox.policy import HookEvent
from gateway.store import config as config_repo
from gateway.store import outbox
from gateway.store.outbox import OutboxRow

log = logging.getLogger(__name__)

KIND = "trackertrack-webhook"
CONTENT_TYPE = "application/json"


def _local(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(int(ts // 1), tz).strftime("%Y-%m-%dT%H:%M:%S")


def order_frame(
    order: Order, tz: ZoneInfo, now: float, type_name: str, seq: int, *, v1: bool = False
) -> dict[str, Any]:
    """The order as `web.render.order_dict` renders it, plus `type` and `seq` (the feed's
    frame; a test keeps the two renderings equal)."""
    created = _local(order.created, tz)
    changed = created if order.state_changed == order.created else _local(order.state_changed, tz)
    return {
        "uuid": order.uuid,
        "created": created,
        "orderType": order.order_type,
        "locationName": order.location,
        "state": order.state.value,
        "stateStarted" if v1 else "stateChanged": changed,
        "name": order.name,
        "paged": order.paged,
        "elapsedTime": max(0, int((order.cleared_at or now) - order.created)),
        "type": type_name,
        "seq": seq,
    }


class TrackerTrackWebhooks:
    def __init__(
        self, config: ConfigService, *, enqueued_with: Callable[[int], None] = lambda _seq: None
    ) -> None:
        self._config = config
        self._enqueued_with = enqueued_with
        self._gone: list[str] = []  # writer thread -> loop (after the outbox's commit)

    def type_name(self, event: OrderEvent) -> str:
        if event.type is OrderEventType.NEW_ORDER:
            return str(self._config.get("newOrderEventType"))
        if event.type is OrderEventType.ITEM_STATUS:
            return OrderEventType.ORDER_MODIFIED.value
        return event.type.value

    def order_hook(self, conn: sqlite3.Connection, event: OrderEvent) -> None:
        """Writer thread, inside the change's transaction: one row per registered client."""
        clients = config_repo.load_clients(conn)
        if not clients:
            return
        type_name = self.type_name(event)
        tz = self._config.tz
        bodies: dict[bool, bytes] = {}
        for client in clients:
            v1 = client.api_version == "v1"
            body = bodies.get(v1)
            if body is None:
                body = bodies[v1] = orjson.dumps(
                    order_frame(event.order, tz, event.ts, type_name, event.seq, v1=v1)
                )
            outbox.enqueue(
                conn,
                outbox.Delivery(
                    f"tt_{event.seq}_{client.id}_{secrets.token_hex(4)}",
                    client.url,
                    KIND,
                    body,
                    CONTENT_TYPE,
                    ref=str(client.id),
                ),
                event.ts,
            )
        self._enqueued_with(event.seq)

    def delivery_hook(
        self,
        conn: sqlite3.Connection,
        row: OutboxRow,
        event: HookEvent,
        code: str | None,
        message: str | None,
    ) -> None:
        """Writer thread: a client that answered 410 is unregistered with its pending rows."""
        if event != HookEvent.DEAD or code != GONE:
            return
        if config_repo.remove_client(conn, row.url):
            killed = outbox.kill_pending(
                conn,
                row.endpoint,
                KIND,
                row.url,
                row.finished or 0.0,
                f"{GONE}: client unregistered by HTTP 410",
            )
            self._gone.append(row.url)
            log.warning(
                "webhook client %s answered 410: unregistered, %d pending webhooks dropped",
                outbox.endpoint_of(row.url),
                killed,
            )

    def after_delivery(self) -> None:
        """Loop, after the outbox's commit: the gateway's list of clients follows."""
        gone, self._gone[:] = list(self._gone), []
        for url in gone:
            self._config.forget_client(url)
