"""`/api/v2/websocket`: the table-tracker feed, gap-free and resumable.

After authentication the client gets either an `ACTIVE_ORDERS` snapshot or, with
`?since=<seq>`, exactly the journal events it missed; then one frame per change. Subscription
and snapshot happen in one synchronous step, and every frame carries `seq`, so a client that
is cut off (slow, network, restart) resumes with `since` and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict

import orjson
from aiohttp import web

from gateway.core.events import Event, OrderEvent, OrderEventType
from web.render import order_dict
from web.services import Services
from web.ws.session import Client, Socket, cut_off, drain_incoming, open_feed, pump, send

_dumps = orjson.dumps
REPLAY_PAGE = 1000


class FrameCache:
    """Serializes each event once, whatever the number of clients."""

    def __init__(self, ctx: Services, size: int = 4096) -> None:
        self._ctx = ctx
        self._frames: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._size = size
        self._snapshot_key: tuple[int, int, str] | None = None
        self._snapshot_text = b""

    def frame(self, event: OrderEvent) -> bytes:
        ctx = self._ctx
        type_name = event.type.value
        if event.type is OrderEventType.ITEM_STATUS:
            # The table-tracker dialect has no items: to its clients the order was modified,
            # and every seq keeps its frame (no gap a client could take for a loss).
            type_name = OrderEventType.ORDER_MODIFIED.value
        elif event.type is OrderEventType.NEW_ORDER:
            type_name = ctx.config.get("newOrderEventType")
        key = (event.seq, type_name)
        text = self._frames.get(key)
        if text is None:
            body = order_dict(event.order, ctx.config.tz, event.ts)
            body["type"] = type_name
            body["seq"] = event.seq
            text = _dumps(body)
            self._frames[key] = text
            if len(self._frames) > self._size:
                self._frames.popitem(last=False)
        return text

    def snapshot(self) -> bytes:
        """The ACTIVE_ORDERS frame. Clients connecting in the same second at the same journal
        position share one rendering (a reconnect storm renders it once, not once per client):
        the book only changes with a published event, and elapsedTime only every second."""
        ctx = self._ctx
        now = ctx.clock.now()
        key = (ctx.bus.last_seq, int(now), ctx.config.tz.key)
        if self._snapshot_key != key:
            tz = ctx.config.tz
            items = [order_dict(o, tz, now) for o in ctx.orders.active()]
            body = {"type": "ACTIVE_ORDERS", "count": len(items), "items": items, "seq": key[0]}
            self._snapshot_text = _dumps(body)
            self._snapshot_key = key
        return self._snapshot_text


FRAMES = web.AppKey("ws_frame_cache", FrameCache)


async def websocket(request: web.Request) -> web.StreamResponse:
    frames = request.app[FRAMES]
    return await open_feed(request, lambda ctx, sock, since: _serve(ctx, frames, sock, since))


def _snapshot(ctx: Services, frames: FrameCache) -> tuple[bytes, int]:
    return frames.snapshot(), ctx.bus.last_seq


async def _serve(ctx: Services, frames: FrameCache, sock: Socket, since: int | None) -> None:
    ws = sock.ws
    # No await from here to the subscription: the snapshot (or replay bound) and the
    # subscription describe the same instant, so nothing falls between them.
    head = ctx.bus.last_seq
    first: list[bytes] = []
    cutoff = head
    if since is None or since > head:
        text, cutoff = _snapshot(ctx, frames)
        first.append(text)
    client = Client(ctx.ws, lambda e: _order_frame(frames, e, cutoff))
    unsubscribe = ctx.bus.subscribe(client.push)
    reader = asyncio.create_task(drain_incoming(ws), name="ws-reader")
    try:
        for text in first:
            await asyncio.wait_for(send(ws, text), ctx.ws.send_timeout)
        if since is not None and since <= head:
            # Replay in pages so a client far behind costs bounded memory.
            after = since
            while after < head:
                upto = min(head, after + REPLAY_PAGE)
                missed = await ctx.orders.events_after(after, upto)
                if missed is None:  # pruned from the journal: fall back to a fresh snapshot
                    text, cutoff = _snapshot(ctx, frames)
                    # Everything queued so far is in this snapshot (same synchronous step).
                    client.discard_pending()
                    await asyncio.wait_for(send(ws, text), ctx.ws.send_timeout)
                    break
                for event in missed:
                    await asyncio.wait_for(send(ws, frames.frame(event)), ctx.ws.send_timeout)
                after = upto
        await pump(sock, client, reader, ctx.ws.send_timeout)
    except (TimeoutError, ConnectionResetError):
        await cut_off(sock, b"too slow: reconnect with since=<last seq>")
    finally:
        unsubscribe()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _order_frame(frames: FrameCache, event: Event, cutoff: int) -> bytes | None:
    if not isinstance(event, OrderEvent) or event.seq <= cutoff:
        return None
    return frames.frame(event)
