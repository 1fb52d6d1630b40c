"""What every WebSocket feed shares: the upgrade with its Origin check, the three ways to
authenticate, a bounded per-client queue fed by the bus, and the pump that drains it.

A client that falls more than its queue behind, or whose socket does not take a frame within
the send timeout, is cut off (4008); it resumes with `since` on the compatible feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import WSMsgType, web

from gateway.core.errors import AuthFailed, Code, GatewayError, ValidationFailed
from gateway.core.events import Event, OrderEvent
from web.api.common import bearer_secret
from web.context import CTX, Context
from web.envelope import error_body, error_reply
from web.ws.origin import origin_allowed

log = logging.getLogger(__name__)
CLOSE_TOO_SLOW = 4008
CLOSE_AUTH = 4001
CLIENTS = web.AppKey("ws_clients", set)


class Client:
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


async def token_from(request: web.Request, ws: web.WebSocketResponse, ctx: Context) -> str:
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


def parse_since(request: web.Request) -> int | None:
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
            since = parse_since(request)
            secret = await token_from(request, ws, ctx)
            ctx.tokens.authenticate(secret, request.remote)
        except GatewayError as exc:
            # Closed already (client left, frame too big, shutdown): nothing more to tell it.
            if not ws.closed:
                with contextlib.suppress(ConnectionResetError):
                    await send(ws, orjson.dumps(error_body(exc.code, exc.detail)))
                await close_socket(ws, CLOSE_AUTH if isinstance(exc, AuthFailed) else 1008, b"")
            return ws
        await session(ctx, ws, since)
    finally:
        clients.discard(ws)
    return ws


async def pump(
    ws: web.WebSocketResponse,
    client: Client,
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
            await close_socket(ws, CLOSE_TOO_SLOW, b"too slow: reconnect with since=<last seq>")
            return
        # Everything pending goes out under one deadline: a client that cannot drain (not
        # reading) is cut off instead of the gateway buffering for it.
        try:
            async with asyncio.timeout(send_timeout):
                while client.pending:
                    frame = render(client.pending.popleft())
                    if frame is not None:
                        await send(ws, frame)
        except (TimeoutError, ConnectionResetError):
            await close_socket(ws, CLOSE_TOO_SLOW, b"too slow")
            return


async def send(ws: web.WebSocketResponse, data: bytes) -> None:
    # Frames are serialized once as UTF-8 bytes and sent as they are to every client.
    await ws.send_frame(data, WSMsgType.TEXT)


async def drain_incoming(ws: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends so pings, pongs and close frames are handled."""
    async for msg in ws:
        if msg.type is WSMsgType.ERROR:
            break


async def close_socket(ws: web.WebSocketResponse, code: int, message: bytes) -> None:
    try:
        await asyncio.wait_for(ws.close(code=code, message=message), timeout=2)
    except (TimeoutError, ConnectionResetError):
        pass


async def close_all(app: web.Application) -> None:
    """Shutdown: tell every client we are going away (1001) so it reconnects with `since`."""
    clients: set[web.WebSocketResponse] = app[CLIENTS]
    await asyncio.gather(
        *(close_socket(ws, 1001, b"gateway stopping") for ws in list(clients)),
        return_exceptions=True,
    )
