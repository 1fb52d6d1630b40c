"""WebSocket limits a client cannot talk its way around: the authentication deadline (pings do
not extend it) and the bounds on what waits for a client that does not read (frames, bytes,
the socket's buffer), with the connection dropped at once when it is cut off.

Real server on 127.0.0.1; the stalled client is a raw socket with a 4 KiB receive buffer
(tests.ws.test_ws.StalledClient) and the server keeps its own defaults (no test hook on its
socket). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any

import pytest
from aiohttp import WSMsgType

from gateway.app import Gateway
from tests.ws import test_ws
from tests.ws.test_ws import (
    WAIT,
    WS,
    Feed,
    GatewayFactory,
    StalledClient,
    assert_contiguous,
    eventually,
    recv_close,
    recv_json,
)
from web.ws import session
from web.ws.session import CLIENTS

custom = test_ws.custom  # the fixtures, shared
feeds = test_ws.feeds

CLOSE_AUTH = 4001
NATIVE = "/api/ws"


async def test_auth_deadline_is_absolute_whatever_the_client_pings(
    custom: GatewayFactory,
) -> None:
    """Before: each ping restarted the wait, so a client pinging every 0.2 s (or 4 s against
    the default 10 s) stayed unauthenticated for as long as it liked."""
    gw, client, _ = await custom(ws_auth_timeout=1)
    ws = await client.ws_connect(WS, autoping=True)
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def keep_pinging() -> None:
        for _ in range(50):  # 10 s at most
            await ws.ping()
            await asyncio.sleep(0.2)

    pinger = asyncio.create_task(keep_pinging())
    try:
        frame = await recv_json(ws, timeout=WAIT)
        assert frame == {
            "status": 400,
            "returnCode": -1,
            "message": "No access token received in time.",
        }
        await recv_close(ws, CLOSE_AUTH)
    finally:
        pinger.cancel()
        await asyncio.gather(pinger, return_exceptions=True)
    assert 0.9 <= loop.time() - t0 < 3  # ~1 s, the deadline from the upgrade
    await eventually(lambda: len(gw.app[CLIENTS]) == 0)


class Watch:
    """What the server holds for its feed clients: the largest queue (bytes) and unsent
    transport buffer seen, and the server-side sockets (to see them closed)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.max_pending = 0
        self.max_buffered = 0
        self.sockets: list[socket.socket] = []
        self.feeds: list[session.Socket] = []
        push, buffered, init = session.Client.push, session.Socket.buffered, session.Socket.__init__

        def watched_push(client: session.Client, event: Any) -> None:
            push(client, event)
            self.max_pending = max(self.max_pending, client.pending_bytes)

        def watched_buffered(sock: session.Socket) -> int:
            size = buffered(sock)
            self.max_buffered = max(self.max_buffered, size)
            return size

        def watched_init(sock: session.Socket, ws: Any, transport: Any) -> None:
            init(sock, ws, transport)
            self.feeds.append(sock)
            self.sockets.append(transport.get_extra_info("socket"))

        monkeypatch.setattr(session.Client, "push", watched_push)
        monkeypatch.setattr(session.Socket, "buffered", watched_buffered)
        monkeypatch.setattr(session.Socket, "__init__", watched_init)


async def _stall_and_cut_off(
    gw: Gateway,
    client: Any,
    auth: dict[str, str],
    feeds: list[Feed],
    path: str,
    max_events: int,
) -> tuple[StalledClient, Feed, int]:
    """A stalled client and a reading one; events until the stalled one is cut off."""
    clients = gw.app[CLIENTS]
    slow = await StalledClient.connect(client.host, client.port, path, auth)
    fast = await client.ws_connect(path, headers=auth)
    reader = Feed(fast)
    feeds.append(reader)
    await eventually(lambda: len(clients) == 2)
    produced = 0
    while len(clients) == 2:
        assert produced < max_events, f"not cut off after {produced} events"
        await gw.ctx.orders.start_or_locate(str(produced + 1), "TO_GO", None)
        produced += 1
        if produced % 4 == 0:  # the reading client paces the producer
            await reader.until_seq(produced)
    return slow, reader, produced


async def test_reader_that_never_reads_is_cut_off_by_its_byte_budget(
    custom: GatewayFactory, feeds: list[Feed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: with the frame count far away and the kernel buffer auto-tuned to megabytes,
    thousands of events were buffered for a client that never read, and none was cut off."""
    watch = Watch(monkeypatch)
    budget = 64 * 1024
    gw, client, auth = await custom(
        ws_queue_size=100_000, ws_queue_bytes=budget, ws_send_timeout=60, synchronous="NORMAL"
    )
    slow, reader, produced = await _stall_and_cut_off(gw, client, auth, feeds, WS, 3000)
    try:
        # Bounded whatever the client does: its queue and the socket's unsent buffer.
        assert 0 < watch.max_pending <= budget
        assert watch.max_buffered <= budget + 4096  # checked after each frame: one over
        # Dropped at once while the client still reads nothing: no socket left to flush.
        await eventually(lambda: all(s.fileno() == -1 for s in watch.sockets[:1]))
        await _resume_without_gap(gw, client, auth, slow, reader, produced)
    finally:
        slow.close()


async def test_reader_that_never_reads_is_cut_off_by_the_send_timeout(
    custom: GatewayFactory, feeds: list[Feed], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Queue bounds far away, and the gateway goes quiet once the client's socket backs up:
    the frames still unsent are owed within the send timeout, so it is cut off (before: the
    pump waited for the next event with frames sitting in the buffer, for ever)."""
    watch = Watch(monkeypatch)
    send_timeout = 0.5
    gw, client, auth = await custom(
        ws_queue_size=100_000,
        ws_queue_bytes=64 * 1024**2,
        ws_socket_buffer=4096,
        synchronous="NORMAL",
    )
    gw.ctx.ws.send_timeout = send_timeout
    clients = gw.app[CLIENTS]
    slow = await StalledClient.connect(client.host, client.port, WS, auth)
    try:
        await eventually(lambda: len(clients) == 1)
        loop = asyncio.get_running_loop()
        for n in range(1, 3001):
            await gw.ctx.orders.start_or_locate(str(n), "TO_GO", None)
            # Cut off already (its frames waited longer than the timeout), or its socket no
            # longer takes data: stop producing. The pump is then idle with frames sitting
            # unsent, and only the deadline can act.
            if not clients or watch.feeds[0].buffered() > 16 * 1024:  # a few bytes may drain
                break
        t0 = loop.time()
        await eventually(lambda: not clients, timeout=send_timeout + 3)
        assert loop.time() - t0 <= send_timeout + 3
        await eventually(lambda: all(s.fileno() == -1 for s in watch.sockets))
        # The client's side ends too once it reads: EOF or reset, not a connection held open.
        while (await slow.frame())[0] != -1:
            pass
    finally:
        slow.close()


async def test_native_feed_has_the_same_byte_budget(
    custom: GatewayFactory, feeds: list[Feed], monkeypatch: pytest.MonkeyPatch
) -> None:
    watch = Watch(monkeypatch)
    budget = 64 * 1024
    gw, client, auth = await custom(
        ws_queue_size=100_000, ws_queue_bytes=budget, ws_send_timeout=60, synchronous="NORMAL"
    )
    slow, _, _ = await _stall_and_cut_off(gw, client, auth, feeds, NATIVE, 3000)
    try:
        assert 0 < watch.max_pending <= budget and watch.max_buffered <= budget + 4096
        await eventually(lambda: watch.sockets[0].fileno() == -1)
    finally:
        slow.close()


async def _resume_without_gap(
    gw: Gateway,
    client: Any,
    auth: dict[str, str],
    slow: StalledClient,
    reader: Feed,
    produced: int,
) -> None:
    for n in range(1, 21):  # life goes on for the others
        await gw.ctx.orders.start_or_locate(str(n), "TO_GO", str(n))
    head = gw.ctx.bus.last_seq
    await reader.until_seq(head)
    assert reader.end is None, "the reading client was cut off"
    assert_contiguous(reader.frames[1:], 1, head)
    live = reader.by_seq()
    # The stalled client reads what reached it (a 4008 close if it fitted), then the end.
    got: list[dict[str, Any]] = []
    while (frame := await slow.frame())[0] == 1:
        got.append(json.loads(frame[1]))
    assert frame[0] in (8, -1)
    assert got and got[0]["type"] == "ACTIVE_ORDERS"
    last = got[-1]["seq"]
    assert_contiguous(got[1:], 1, last)
    assert produced > 0 and last < head
    # It resumes from its last seq: exactly the rest, then live frames.
    again = await client.ws_connect(WS, headers=auth, params={"since": str(last)})
    rest = [await recv_json(again) for _ in range(head - last)]
    assert_contiguous(rest, last + 1, head)
    assert rest == [live[s] for s in range(last + 1, head + 1)]
    await gw.ctx.orders.start_or_locate("100000", "TO_GO", None)
    msg = await asyncio.wait_for(again.receive(), WAIT)
    assert msg.type is WSMsgType.TEXT and json.loads(msg.data)["seq"] == head + 1
