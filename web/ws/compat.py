"""`/api/v2/websocket`: the table-tracker feed, gap-free and resumable.

After authentication the client gets either an `ACTIVE_ORDERS` snapshot or, with
`?since=<seq>`, exactly the journal events it missed; then one frame per change. Subscription
and snapshot happen in one synchronous step, and every frame carries `seq`, so a client that
is cut off (slow, network, restart) resumes with `since` and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from gateway.core.errors import AuthFailed, Code, GatewayError, ValidationFailed
from gateway.core.events import Event, OrderEvent, OrderEventType
from web.api.common import bearer_secret
from web.api.render import order_dict
from web.context import CTX, Context
from web.envelope import error_body, error_reply
from web.ws.origin import origin_allowed

log = logging.getLogger(__name__)
_dumps = orjson.dumps
CLOSE_TOO_SLOW = 4008
CLOSE_AUTH = 4001
REPLAY_PAGE = 1000


class FrameCache:
    """Serializes each event once, whatever the number of clients."""

    def __init__(self, ctx: Context, size: int = 4096) -> None:
        self._ctx = ctx
        self._frames: OrderedDict[tuple[int, str], bytes] = OrderedDict()
        self._size = size
        self._snapshot_key: tuple[int, int, str] | None = None
        self._snapshot_text = b""

    def frame(self, event: OrderEvent) -> bytes:
        ctx = self._ctx
        type_name = event.type.value
        if event.type is OrderEventType.NEW_ORDER:
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
CLIENTS = web.AppKey("ws_clients", set)


class _Client:
    def __init__(self, limit: int, orders_only: bool = True) -> None:
        self.pending: deque[Event] = deque()
        self.limit = limit
        self.wakeup = asyncio.Event()
        self.overflowed = False
        self.orders_only = orders_only

    def push(self, event: Event) -> None:
        # The compatible feed carries order changes only; tracker facts go to the native feed.
        if self.overflowed or (self.orders_only and not isinstance(event, OrderEvent)):
            return
        if len(self.pending) >= self.limit:
            self.overflowed = True  # stop buffering: memory stays bounded whatever the client does
        else:
            self.pending.append(event)
        self.wakeup.set()


async def _token_from(request: web.Request, ws: web.WebSocketResponse, ctx: Context) -> str:
    header = request.headers.get("Authorization")
    if header:
        return bearer_secret(header)
    if "accesstoken" in request.query:
        return request.query["accesstoken"]
    # Browsers cannot set headers: the real client sends {"accesstoken": …} first.
    try:
        msg = await ws.receive(timeout=ctx.ws.auth_timeout)
    except TimeoutError:
        raise AuthFailed(Code.AUTH_MALFORMED, "No access token received in time.") from None
    if msg.type is not WSMsgType.TEXT:
        raise AuthFailed(Code.AUTH_MALFORMED, "Expected an accesstoken frame.")
    try:
        data = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        raise AuthFailed(Code.AUTH_MALFORMED, "Expected an accesstoken frame.") from None
    token = data.get("accesstoken") if isinstance(data, dict) else None
    if not isinstance(token, str) or not token:
        raise AuthFailed(Code.AUTH_MALFORMED, "Expected an accesstoken frame.")
    return token


def _since(request: web.Request) -> int | None:
    raw = request.query.get("since")
    if raw is None:
        return None
    # isascii: str.isdigit() also accepts "²" (int() then raises) and other scripts' digits.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise ValidationFailed(Code.BAD_OFFSET, "Invalid since: must be a non-negative integer.")
    return int(raw)


Session = Callable[[Context, web.WebSocketResponse, int | None], Awaitable[None]]


async def open_feed(request: web.Request, session: Session) -> web.StreamResponse:
    """Origin check, upgrade, authentication (three styles), then `session`."""
    ctx = request.app[CTX]
    if not origin_allowed(request, ctx.allowed_origins):
        return error_reply(Code.FORBIDDEN_ORIGIN)
    ws = web.WebSocketResponse(
        heartbeat=ctx.ws.heartbeat, max_msg_size=ctx.ws.max_frame_bytes, autoping=True
    )
    await ws.prepare(request)
    # Registered before authentication too, so shutdown closes a socket still in its auth wait.
    clients: set[web.WebSocketResponse] = request.app[CLIENTS]
    clients.add(ws)
    try:
        try:
            since = _since(request)
            secret = await _token_from(request, ws, ctx)
            ctx.tokens.authenticate(secret, request.remote)
        except GatewayError as exc:
            # Closed already (client left, frame too big, shutdown): nothing more to tell it.
            if not ws.closed:
                with contextlib.suppress(ConnectionResetError):
                    await _send(ws, _dumps(error_body(exc.code, exc.detail)))
                await _close(ws, CLOSE_AUTH if isinstance(exc, AuthFailed) else 1008, b"")
            return ws
        await session(ctx, ws, since)
    finally:
        clients.discard(ws)
    return ws


async def websocket(request: web.Request) -> web.StreamResponse:
    frames = request.app[FRAMES]
    return await open_feed(request, lambda ctx, ws, since: _serve(ctx, frames, ws, since))


def _snapshot(ctx: Context, frames: FrameCache) -> tuple[bytes, int]:
    return frames.snapshot(), ctx.bus.last_seq


async def _serve(
    ctx: Context, frames: FrameCache, ws: web.WebSocketResponse, since: int | None
) -> None:
    client = _Client(ctx.ws.queue_size)
    # No await between these lines: the snapshot (or replay bound) and the subscription
    # describe the same instant, so nothing falls between them.
    unsubscribe = ctx.bus.subscribe(client.push)
    head = ctx.bus.last_seq
    first: list[bytes] = []
    cutoff = head
    if since is None or since > head:
        text, cutoff = _snapshot(ctx, frames)
        first.append(text)
    reader = asyncio.create_task(_drain_incoming(ws), name="ws-reader")
    try:
        for text in first:
            await asyncio.wait_for(_send(ws, text), ctx.ws.send_timeout)
        if since is not None and since <= head:
            # Replay in pages so a client far behind costs bounded memory.
            after = since
            while after < head:
                upto = min(head, after + REPLAY_PAGE)
                missed = await ctx.orders.events_after(after, upto)
                if missed is None:  # pruned from the journal: fall back to a fresh snapshot
                    text, cutoff = _snapshot(ctx, frames)
                    await asyncio.wait_for(_send(ws, text), ctx.ws.send_timeout)
                    break
                for event in missed:
                    await asyncio.wait_for(_send(ws, frames.frame(event)), ctx.ws.send_timeout)
                after = upto
        await _pump(ws, client, lambda e: _order_frame(frames, e, cutoff), reader,
                    ctx.ws.send_timeout)
    except (TimeoutError, ConnectionResetError):
        await _close(ws, CLOSE_TOO_SLOW, b"too slow: reconnect with since=<last seq>")
    finally:
        unsubscribe()
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


def _order_frame(frames: FrameCache, event: Event, cutoff: int) -> bytes | None:
    if not isinstance(event, OrderEvent) or event.seq <= cutoff:
        return None
    return frames.frame(event)


async def _pump(
    ws: web.WebSocketResponse,
    client: _Client,
    render: Callable[[Event], bytes | None],
    reader: asyncio.Task[None],
    send_timeout: float,
) -> None:
    # The reader ending (client gone) wakes the pump like an event does: one Event to wait on,
    # no helper task per frame.
    reader.add_done_callback(lambda _: client.wakeup.set())
    while not ws.closed and not reader.done():
        if not client.pending and not client.overflowed:
            client.wakeup.clear()
            await client.wakeup.wait()
            continue
        if client.overflowed:
            log.info("websocket client too slow; cut off (it can resume with since)")
            await _close(ws, CLOSE_TOO_SLOW, b"too slow: reconnect with since=<last seq>")
            return
        # Everything pending goes out under one deadline: a client that cannot drain (not
        # reading) is cut off instead of the gateway buffering for it.
        try:
            async with asyncio.timeout(send_timeout):
                while client.pending:
                    frame = render(client.pending.popleft())
                    if frame is not None:
                        await _send(ws, frame)
        except (TimeoutError, ConnectionResetError):
            await _close(ws, CLOSE_TOO_SLOW, b"too slow")
            return


async def _send(ws: web.WebSocketResponse, data: bytes) -> None:
    # Frames are serialized once as UTF-8 bytes and sent as they are to every client.
    await ws.send_frame(data, WSMsgType.TEXT)


async def _drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends so pings, pongs and close frames are handled."""
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            break


async def _close(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), timeout=2)
    except (TimeoutError, ConnectionResetError):
        pass


async def close_all(app: web.Application) -> None:
    """Shutdown: tell every client we are going away (1001) so it reconnects with `since`."""
    clients: set[web.WebSocketResponse] = app[CLIENTS]
    await asyncio.gather(
        *(_close(ws, 1001, b"gateway stopping") for ws in list(clients)), return_exceptions=True
    )


def frames_stats(app: web.Application) -> dict[str, Any]:
    return {"clients": len(app[CLIENTS])}
