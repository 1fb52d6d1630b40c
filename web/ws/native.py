"""`/api/ws`: Tablegate's own feed. Orders in their full canonical form (with tracker binding,
clear reason, time-to-sit, delivery time), the radio's TRACKER_* facts, and the gateway's own
GATEWAY_ALARM / GATEWAY_ALARM_CLEARED (e.g. `"alarm": "database-missing"`).

It always starts with a SNAPSHOT (orders and trackers), then one frame per event; order frames
carry the journal `seq`. Clients that need exact resumption of order changes use the compatible
feed's `since`; tracker facts describe the present and are not replayed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from aiohttp import web

from gateway.core.events import AlarmEvent, Event, OrderEvent
from web.render import history_dict, local_time, tracker_dict
from web.services import Services
from web.ws.session import Client, Socket, cut_off, drain_incoming, open_feed, pump, send


def _order_body(ctx: Services, event: OrderEvent) -> dict[str, Any]:
    order = history_dict(event.order, ctx.config.tz, event.ts)
    order["tracker"] = event.order.tracker
    return {"type": event.type.value, "seq": event.seq, "order": order}


def render(ctx: Services, event: Event) -> bytes:
    if isinstance(event, OrderEvent):
        return orjson.dumps(_order_body(ctx, event))
    if isinstance(event, AlarmEvent):
        return orjson.dumps(
            {
                "type": event.type.value,
                "ts": local_time(event.ts, ctx.config.tz),
                "alarm": event.alarm,
                "detail": event.detail,
            }
        )
    tracker = None
    if event.tracker is not None:
        tracker = tracker_dict(ctx, ctx.trackers, event.tracker)
    return orjson.dumps(
        {
            "type": event.type.value,
            "ts": local_time(event.ts, ctx.config.tz),
            "tracker": tracker,
            "detail": event.detail,
        }
    )


def snapshot(ctx: Services) -> bytes:
    now, tz = ctx.clock.now(), ctx.config.tz
    orders = []
    for o in ctx.orders.active():
        body = history_dict(o, tz, now)
        body["tracker"] = o.tracker
        orders.append(body)
    trackers = [tracker_dict(ctx, ctx.trackers, t) for t in ctx.trackers.list()]
    return orjson.dumps(
        {"type": "SNAPSHOT", "seq": ctx.bus.last_seq, "orders": orders, "trackers": trackers}
    )


class LastFrame:
    """The frame of the event being published: every client renders the same event in turn
    (the bus calls them one after another), so it is serialized once, not once per client."""

    def __init__(self, ctx: Services) -> None:
        self.ctx = ctx
        self.event: Event | None = None
        self.frame = b""

    def __call__(self, event: Event) -> bytes:
        if event is not self.event:
            self.frame = render(self.ctx, event)
            self.event = event
        return self.frame


LAST_FRAME = web.AppKey("native_ws_last_frame", LastFrame)


async def _serve(ctx: Services, last: LastFrame, sock: Socket, since: int | None) -> None:
    ws = sock.ws
    client = Client(ctx.ws, last)
    # Subscribe and snapshot in one synchronous step, as on the compatible feed.
    unsubscribe = ctx.bus.subscribe(client.push)
    first = snapshot(ctx)
    reader = asyncio.create_task(drain_incoming(ws), name="native-ws-reader")
    try:
        await asyncio.wait_for(send(ws, first), ctx.ws.send_timeout)
        await pump(sock, client, reader, ctx.ws.send_timeout)
    except (TimeoutError, ConnectionResetError):
        await cut_off(sock, b"too slow")
    finally:
        unsubscribe()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def websocket(request: web.Request) -> web.StreamResponse:
    last = request.app[LAST_FRAME]
    return await open_feed(request, lambda ctx, sock, since: _serve(ctx, last, sock, since))
