"""What every WebSocket feed shares: the upgrade with its Origin check, the three ways to
authenticate (within an absolute deadline), a per-client queue fed by the bus and bounded in
frames and bytes, and the pump that drains it.

A client that falls more than its queue behind, or whose socket does not take its frames
within the send timeout, is cut off: the 4008 close frame if the socket still takes data,
then the connection is dropped at once (never left to flush to a peer that does not read).
It resumes with `since` on the compatible feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import deque
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import WSMsgType, web

from gateway.core.errors import AuthFailed, Code, GatewayError, ValidationFailed
from gateway.core.events import Event
from web.common import bearer_secret
from web.envelope import error_body, error_reply
from web.services import SERVICES, Services, WsLimits
from web.ws.origin import origin_allowed

log = logging.getLogger(__name__)
CLOSE_TOO_SLOW = 4008
CLOSE_AUTH = 4001
CLIENTS = web.AppKey("ws_clients", set)
DRAIN_POLL = 0.05  # seconds between looks at a socket's unsent buffer while it drains


class Client:
    """The frames rendered for one client and not yet sent: at most `limits.queue_size` of
    them and `limits.queue_bytes` in all. Past either bound it stops buffering and is cut
    off, so memory stays bounded whatever the client does."""

    def __init__(self, limits: WsLimits, render: Callable[[Event], bytes | None]) -> None:
        self.pending: deque[bytes] = deque()
        self.pending_bytes = 0
        self.limit = limits.queue_size
        self.max_bytes = limits.queue_bytes
        self.render = render  # None: not for this feed (or before its snapshot)
        self.wakeup = asyncio.Event()
        self.overflowed = False

    def push(self, event: Event) -> None:
        if self.overflowed:
            return
        frame = self.render(event)
        if frame is None:
            return
        if len(self.pending) >= self.limit or self.pending_bytes + len(frame) > self.max_bytes:
            self.overflowed = True
        else:
            self.pending.append(frame)
            self.pending_bytes += len(frame)
        self.wakeup.set()

    def discard_pending(self) -> None:
        self.pending.clear()
        self.pending_bytes = 0

    def pop(self) -> bytes:
        frame = self.pending.popleft()
        self.pending_bytes -= len(frame)
        return frame


async def token_from(request: web.Request, ws: web.WebSocketResponse, deadline: float) -> str:
    header = request.headers.get("Authorization")
    if header:
        return bearer_secret(header)
    if "accesstoken" in request.query:
        return request.query["accesstoken"]
    # Browsers cannot set headers: the real client sends {"accesstoken": …} first. The
    # deadline is absolute: ws.receive(timeout=) restarts its wait after every ping or pong,
    # so a client pinging every few seconds would never be timed out.
    try:
        async with asyncio.timeout_at(deadline):
            msg = await ws.receive()
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


Session = Callable[[Services, "Socket", int | None], Awaitable[None]]


class Socket:
    """A feed's WebSocket and the transport under it (to watch its buffer and to drop it)."""

    def __init__(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        self.ws = ws
        self.transport = transport

    def buffered(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0


async def open_feed(request: web.Request, session: Session) -> web.StreamResponse:
    """Origin check, upgrade, authentication (three styles), then `session`."""
    ctx = request.app[SERVICES]
    if not origin_allowed(request, ctx.allowed_origins):
        return error_reply(Code.FORBIDDEN_ORIGIN)
    ws = web.WebSocketResponse(
        heartbeat=ctx.ws.heartbeat, max_msg_size=ctx.ws.max_frame_bytes, autoping=True
    )
    transport = request.transport
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None and ctx.ws.socket_buffer:
        # Loopback and LAN sockets auto-tune their send buffer to megabytes: a client that
        # stops reading would take minutes of events before a send blocked and the send
        # timeout could see it. A fixed buffer makes it show within seconds.
        with contextlib.suppress(OSError):  # a peer already gone: the upgrade fails anyway
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, ctx.ws.socket_buffer)
    await ws.prepare(request)
    deadline = asyncio.get_running_loop().time() + ctx.ws.auth_timeout
    # Registered before authentication too, so shutdown closes a socket still in its auth wait.
    clients: set[web.WebSocketResponse] = request.app[CLIENTS]
    clients.add(ws)
    try:
        try:
            since = parse_since(request)
            secret = await token_from(request, ws, deadline)
            ctx.tokens.authenticate(secret, request.remote)
        except GatewayError as exc:
            # Closed already (client left, frame too big, shutdown): nothing more to tell it.
            if not ws.closed:
                with contextlib.suppress(ConnectionResetError):
                    await send(ws, orjson.dumps(error_body(exc.code, exc.detail)))
                await close_socket(ws, CLOSE_AUTH if isinstance(exc, AuthFailed) else 1008, b"")
            return ws
        await session(ctx, Socket(ws, transport), since)
    finally:
        clients.discard(ws)
    return ws


async def pump(
    sock: Socket, client: Client, reader: asyncio.Task[None], send_timeout: float
) -> None:
    ws = sock.ws
    # The reader ending (client gone) wakes the pump like an event does: one Event to wait on,
    # no helper task per frame.
    reader.add_done_callback(lambda _: client.wakeup.set())
    while not ws.closed and not reader.done():
        if not client.pending and not client.overflowed:
            client.wakeup.clear()
            await client.wakeup.wait()
            continue
        if client.overflowed:
            await cut_off(sock, b"too slow: reconnect with since=<last seq>")
            return
        # Everything pending goes out under one deadline: a client that cannot drain (not
        # reading) is cut off instead of the gateway buffering for it.
        try:
            async with asyncio.timeout(send_timeout):
                while client.pending:
                    await send(ws, client.pop())
                    # aiohttp waits for the transport only every 64 KiB written, and a frame
                    # goes in whole: what sits unsent counts against the client's bytes too.
                    if sock.buffered() + client.pending_bytes > client.max_bytes:
                        client.overflowed = True
                        break
                # What the kernel has not taken is owed within the same deadline: otherwise a
                # client that stops reading while the gateway is quiet is never noticed, its
                # frames sitting in the buffer. A healthy socket takes them at once (no wait).
                # Polled: aiohttp has no public "drained" signal (its drain() is deprecated).
                while sock.buffered() and not client.overflowed:  # noqa: ASYNC110
                    await asyncio.sleep(DRAIN_POLL)
        except (TimeoutError, ConnectionResetError):
            await cut_off(sock, b"too slow: reconnect with since=<last seq>")
            return


async def cut_off(sock: Socket, message: bytes) -> None:
    """A slow client goes: the 4008 close frame if its socket still takes data, then the
    connection is dropped at once. A polite close would wait for the peer to read what is
    buffered, so a client that never reads held an ESTABLISHED connection for minutes."""
    log.info("websocket client too slow; cut off (it can resume with since)")
    transport = sock.transport
    if transport is None or transport.is_closing():
        return
    if sock.buffered() == 0:
        # Written straight to the kernel, behind the frames already there; the peer's reply
        # is not waited for long.
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(sock.ws.close(code=CLOSE_TOO_SLOW, message=message), 0.5)
    if transport.is_closing():
        return
    if sock.buffered():
        # Unsent data stays unsent: reset rather than leave the kernel retrying to a peer
        # that does not read.
        raw = transport.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


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
