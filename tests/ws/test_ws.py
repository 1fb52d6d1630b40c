"""`/api/v2/websocket` against a real aiohttp server on 127.0.0.1 (ARCHITECTURE.md §6, gates
L2/L3/S4/S6).

Every wait is bounded by `asyncio.wait_for`; nothing sleeps to synchronise. A test that expects
"no further frame" proves it by producing one more event and checking that the very next frame
is that event (exact `seq`), never by waiting for silence.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientSession, ClientWebSocketResponse, WSMsgType, web
from aiohttp.test_utils import TestClient

from gateway.app import Gateway, build
from tests.conftest import make_settings
from web.ws.session import CLIENTS

WS = "/api/v2/websocket"
AO = "/api/v2/activeorders"
WAIT = 5.0  # upper bound for any single frame, close or HTTP call
ORDER_KEYS = {
    "uuid",
    "created",
    "orderType",
    "locationName",
    "state",
    "stateChanged",
    "name",
    "paged",
    "elapsedTime",
}
AUTH_STYLES = ["header", "query", "frame"]
INVALID_TOKEN = {"status": 401, "returnCode": -2, "message": "Invalid access token."}
BAD_FRAME = {"status": 400, "returnCode": -1, "message": "Expected an accesstoken frame."}
BAD_SINCE = {
    "status": 400,
    "returnCode": -24,
    "message": "Invalid since: must be a non-negative integer.",
}
CLOSE_AUTH = 4001
CLOSE_POLICY = 1008
CLOSE_TOO_SLOW = 4008
CONSTRAINED = "X-Test-Constrained-Link"

Client = TestClient  # type: ignore[type-arg]
WsConn = ClientWebSocketResponse


# -- helpers ---------------------------------------------------------------------------------


def feed_listeners(gw: Gateway) -> int:
    """Bus listeners that are feed clients: those above the services' own, counted at build."""
    return gw.ctx.bus.listener_count - gw.base_listeners


async def recv_json(ws: WsConn, timeout: float = WAIT) -> dict[str, Any]:
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type is WSMsgType.TEXT, f"expected a text frame, got {msg.type!r} {msg.data!r}"
    data = json.loads(msg.data)
    assert isinstance(data, dict)
    return data


async def recv_close(ws: WsConn, code: int, timeout: float = WAIT) -> None:
    """The next message is the server's close frame with `code`."""
    msg = await asyncio.wait_for(ws.receive(), timeout)
    assert msg.type is WSMsgType.CLOSE, f"expected close {code}, got {msg.type!r} {msg.data!r}"
    assert msg.data == code, msg.extra
    assert ws.close_code == code


async def connect(
    client: Client, style: str, token: str, params: dict[str, str] | None = None
) -> WsConn:
    """Open the feed and authenticate in one of the three styles a client may use."""
    query = dict(params or {})
    headers: dict[str, str] = {}
    if style == "header":
        headers["Authorization"] = f"Bearer {token}"
    elif style == "query":
        query["accesstoken"] = token
    else:
        assert style == "frame"
    ws = await client.ws_connect(WS, headers=headers, params=query)
    if style == "frame":
        await ws.send_str(json.dumps({"accesstoken": token}))
    return ws


async def start(
    client: Client,
    auth: dict[str, str],
    name: str,
    location: str | None = None,
    *,
    dummy: bool = False,
    order_type: str = "ON_PREMISES",
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "orderType": order_type}
    if location is not None:
        body["locationName"] = location
    params = {"dummy_tracker_address": "true"} if dummy else {}
    resp = await client.post(AO, json=body, headers=auth, params=params)
    assert resp.status in (200, 201), await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


def without(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def assert_contiguous(frames: Iterable[dict[str, Any]], first: int, last: int) -> None:
    seqs = [f["seq"] for f in frames]
    assert seqs == list(range(first, last + 1)), _gaps(seqs, first, last)


def _gaps(seqs: list[int], first: int, last: int) -> str:
    expected = set(range(first, last + 1))
    dup = len(seqs) - len(set(seqs))
    return (
        f"missing={sorted(expected - set(seqs))[:10]} extra={sorted(set(seqs) - expected)[:10]}"
        f" duplicates={dup}"
    )


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """For server-side state no frame announces: poll, bounded."""

    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


class Feed:
    """Reads one socket in the background so a test can await a condition on what arrived."""

    def __init__(self, ws: WsConn) -> None:
        self.ws = ws
        self.frames: list[dict[str, Any]] = []
        self.end: Any = None  # the message that ended the feed
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            msg = await self.ws.receive()
            if msg.type is not WSMsgType.TEXT:
                self.end = msg
                self._changed.set()
                return
            self.frames.append(json.loads(msg.data))
            self._changed.set()

    async def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = WAIT
    ) -> None:
        async def wait() -> None:
            while not done(self.frames):
                assert self.end is None, f"feed ended early: {self.end!r}"
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(wait(), timeout)

    async def until_seq(self, seq: int, timeout: float = WAIT) -> None:
        await self.until(lambda fr: bool(fr) and fr[-1]["seq"] >= seq, timeout)

    def by_seq(self) -> dict[int, dict[str, Any]]:
        return {f["seq"]: f for f in self.frames}

    async def stop(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)


@pytest.fixture
async def feeds() -> AsyncIterator[list[Feed]]:
    made: list[Feed] = []
    yield made
    for f in made:
        await f.stop()


GatewayFactory = Callable[..., Any]


@pytest.fixture
def custom(aiohttp_client: Any, tmp_path: Path) -> GatewayFactory:
    """Build a gateway with setting overrides: returns (gateway, client, auth header)."""
    counter = iter(range(1000))

    async def make(
        before_start: Callable[[Gateway], None] | None = None, **overrides: Any
    ) -> tuple[Gateway, Client, dict[str, str]]:
        gw = await build(make_settings(tmp_path / f"data{next(counter)}", **overrides))
        if before_start is not None:
            before_start(gw)
        cl = await aiohttp_client(gw.app)
        secret = (await gw.tokens.issue("ws-test", "127.0.0.1")).secret
        return gw, cl, {"Authorization": f"Bearer {secret}"}

    return make


# -- 1. authentication ---------------------------------------------------------------------


@pytest.mark.parametrize("style", AUTH_STYLES)
async def test_each_auth_style_gets_the_active_orders_snapshot(
    client: Client, gateway: Gateway, token: str, auth: dict[str, str], style: str
) -> None:
    via_http = (await start(client, auth, "66", "12"))["activeorder"]
    via_service = (await gateway.ctx.orders.start_or_locate("7", "TO_GO", None)).order
    listing = await (await client.get(AO, headers=auth)).json()

    ws = await connect(client, style, token)
    snap = await recv_json(ws)

    assert set(snap) == {"type", "count", "items", "seq"}
    assert snap["type"] == "ACTIVE_ORDERS"
    assert snap["seq"] == 2 == gateway.ctx.bus.last_seq
    assert snap["count"] == 2 == len(snap["items"])
    for item in snap["items"]:
        assert set(item) == ORDER_KEYS
    items = {i["name"]: i for i in snap["items"]}
    assert without(items["66"], "elapsedTime") == without(via_http, "elapsedTime")
    assert items["66"]["state"] == "located" and items["66"]["locationName"] == "12"
    assert items["7"]["uuid"] == via_service.uuid
    assert items["7"]["orderType"] == "TO_GO" and items["7"]["state"] == "started"
    assert items["7"]["locationName"] == "" and items["7"]["paged"] is False
    # the same orders the HTTP listing shows
    http_items = {i["uuid"]: without(i, "elapsedTime") for i in listing["items"]}
    assert {i["uuid"]: without(i, "elapsedTime") for i in snap["items"]} == http_items
    await ws.close()


# -- 2. refused connections -----------------------------------------------------------------


@pytest.mark.parametrize("style", AUTH_STYLES)
async def test_bad_token_gets_one_401_frame_then_close(
    client: Client, gateway: Gateway, style: str
) -> None:
    ws = await connect(client, style, "f" * 48)
    assert await recv_json(ws) == INVALID_TOKEN
    await recv_close(ws, CLOSE_AUTH)
    assert feed_listeners(gateway) == 0  # never subscribed


@pytest.mark.parametrize("style", AUTH_STYLES)
async def test_revoked_token_is_refused(client: Client, gateway: Gateway, style: str) -> None:
    issued = await gateway.tokens.issue("victim", "127.0.0.1")
    ws = await connect(client, style, issued.secret)
    assert (await recv_json(ws))["type"] == "ACTIVE_ORDERS"  # valid before the revocation
    await ws.close()

    await gateway.tokens.revoke(issued.info.id)
    ws = await connect(client, style, issued.secret)
    assert await recv_json(ws) == INVALID_TOKEN
    await recv_close(ws, CLOSE_AUTH)


@pytest.mark.parametrize("header", ["Basic dG9rZW46", "Bearer", "Bearer " + "a" * 300, "Token abc"])
async def test_malformed_authorization_header_is_400(client: Client, header: str) -> None:
    ws = await client.ws_connect(WS, headers={"Authorization": header})
    frame = await recv_json(ws)
    assert frame == {
        "status": 400,
        "returnCode": -1,
        "message": "Malformed or missing Authorization header.",
    }
    await recv_close(ws, CLOSE_AUTH)


@pytest.mark.parametrize(
    "first",
    [
        "not json",
        '{"accesstoken": ',
        '["accesstoken"]',
        "{}",
        '{"token": "abc"}',
        '{"accesstoken": ""}',
        '{"accesstoken": 12345}',
        "null",
        "[" * 50_000,  # nested too deep for json (RecursionError), under the frame limit
    ],
)
async def test_malformed_first_frame_is_400(client: Client, first: str) -> None:
    ws = await client.ws_connect(WS)
    await ws.send_str(first)
    assert await recv_json(ws) == BAD_FRAME
    await recv_close(ws, CLOSE_AUTH)


async def test_binary_first_frame_is_400(client: Client, token: str) -> None:
    ws = await client.ws_connect(WS)
    await ws.send_bytes(json.dumps({"accesstoken": token}).encode())
    assert await recv_json(ws) == BAD_FRAME
    await recv_close(ws, CLOSE_AUTH)


async def test_no_first_frame_times_out(custom: GatewayFactory) -> None:
    gw, client, _ = await custom(ws_auth_timeout=0.3)
    ws = await client.ws_connect(WS)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    frame = await recv_json(ws, timeout=3)
    assert frame == {
        "status": 400,
        "returnCode": -1,
        "message": "No access token received in time.",
    }
    assert 0.25 <= loop.time() - t0 < 3
    await recv_close(ws, CLOSE_AUTH)
    assert feed_listeners(gw) == 0


async def test_client_closing_during_auth_is_handled(client: Client) -> None:
    """A client that leaves before authenticating: nothing is sent to it, nothing is logged."""
    ws = await client.ws_connect(WS)
    await asyncio.wait_for(ws.close(), WAIT)
    assert ws.close_code == 1000
    # Its handler ends (sockets are registered from the upgrade on) without raising: a write
    # to the closing socket would be logged as an error and fail this test via conftest.
    await eventually(lambda: len(client.app[CLIENTS]) == 0)


# -- 3. live events -------------------------------------------------------------------------


async def test_live_events_follow_the_snapshot(
    client: Client, gateway: Gateway, auth: dict[str, str]
) -> None:
    ws = await client.ws_connect(WS, headers=auth)
    snap = await recv_json(ws)
    assert snap == {"type": "ACTIVE_ORDERS", "count": 0, "items": [], "seq": 0}

    created = (await start(client, auth, "66", dummy=True))["activeorder"]
    frame = await recv_json(ws)
    assert set(frame) == ORDER_KEYS | {"type", "seq"}
    assert frame == {**created, "type": "NEW_ORDER", "seq": 1}
    assert frame["state"] == "started" and frame["elapsedTime"] == 0

    located = (await start(client, auth, "66", "12"))["activeorder"]
    frame = await recv_json(ws)
    assert without(frame, "elapsedTime") == {
        **without(located, "elapsedTime"),
        "type": "ORDER_MODIFIED",
        "seq": 2,
    }
    assert frame["state"] == "located" and frame["locationName"] == "12"
    assert frame["uuid"] == created["uuid"]

    resp = await client.post(f"{AO}/66/page", headers=auth)
    assert resp.status == 200, await resp.text()
    paged = (await resp.json())["activeorder"]
    frame = await recv_json(ws)
    assert without(frame, "elapsedTime") == {
        **without(paged, "elapsedTime"),
        "type": "ORDER_PAGED",
        "seq": 3,
    }
    assert frame["paged"] is True

    resp = await client.delete(f"{AO}/66", headers=auth)
    assert resp.status == 200, await resp.text()
    cleared = (await resp.json())["activeorder"]
    frame = await recv_json(ws)
    assert frame == {**cleared, "type": "ORDER_CLEARED", "seq": 4}
    assert frame["state"] == "cleared" and frame["paged"] is False
    assert frame["uuid"] == created["uuid"]

    # a second order: the next frame is exactly seq 5 (nothing was sent in between)
    await gateway.ctx.orders.start_or_locate("67", "TO_GO", None)
    frame = await recv_json(ws)
    assert (frame["type"], frame["seq"], frame["name"]) == ("NEW_ORDER", 5, "67")
    # and a new subscriber's snapshot no longer lists the cleared order
    ws2 = await client.ws_connect(WS, headers=auth)
    snap2 = await recv_json(ws2)
    assert [i["name"] for i in snap2["items"]] == ["67"] and snap2["seq"] == 5


async def test_frames_are_identical_for_every_client(
    client: Client, gateway: Gateway, token: str, feeds: list[Feed]
) -> None:
    sockets = [await connect(client, style, token) for style in AUTH_STYLES]
    for ws in sockets:
        assert (await recv_json(ws))["seq"] == 0
    feeds.extend(Feed(ws) for ws in sockets)
    for n in range(1, 21):
        await gateway.ctx.orders.start_or_locate(str(n), "TO_GO", None)
    for f in feeds:
        await f.until_seq(20)
        assert_contiguous(f.frames, 1, 20)
    assert feeds[0].frames == feeds[1].frames == feeds[2].frames


# -- 4. newOrderEventType -----------------------------------------------------------------


async def test_new_order_event_type_setting_renames_creation_frames(
    client: Client, gateway: Gateway, auth: dict[str, str]
) -> None:
    ws = await client.ws_connect(WS, headers=auth)
    await recv_json(ws)
    await start(client, auth, "1")
    assert (await recv_json(ws))["type"] == "NEW_ORDER"

    resp = await client.post(
        "/api/v2/gateway/settings", json={"newOrderEventType": "ORDER_CREATED"}, headers=auth
    )
    assert resp.status == 200, await resp.text()
    await start(client, auth, "2")
    frame = await recv_json(ws)
    assert (frame["type"], frame["seq"], frame["name"]) == ("ORDER_CREATED", 2, "2")
    await start(client, auth, "2", "5")  # other types keep their names
    assert (await recv_json(ws))["type"] == "ORDER_MODIFIED"

    # a replay renders with the setting in force now, including for seq 1
    replay = await client.ws_connect(WS, headers=auth, params={"since": "0"})
    assert [(await recv_json(replay))["type"] for _ in range(3)] == [
        "ORDER_CREATED",
        "ORDER_CREATED",
        "ORDER_MODIFIED",
    ]

    resp = await client.post(
        "/api/v2/gateway/settings", json={"newOrderEventType": "NEW_ORDER"}, headers=auth
    )
    assert resp.status == 200
    await start(client, auth, "3")
    assert (await recv_json(ws))["type"] == "NEW_ORDER"


# -- 5. resume with since ----------------------------------------------------------------


async def test_resume_with_since_gets_exactly_the_missed_frames(
    client: Client, gateway: Gateway, auth: dict[str, str], feeds: list[Feed]
) -> None:
    observer = await client.ws_connect(WS, headers=auth)  # connected throughout
    await recv_json(observer)
    seen = Feed(observer)
    feeds.append(seen)

    ws = await client.ws_connect(WS, headers=auth)
    assert (await recv_json(ws))["seq"] == 0
    for n in ("1", "2", "3"):
        await start(client, auth, n)
    before = [await recv_json(ws) for _ in range(3)]
    assert_contiguous(before, 1, 3)
    await ws.close()
    last = before[-1]["seq"]

    # while it is away: a creation, a locate, a clear
    await start(client, auth, "4")
    await start(client, auth, "1", "9")
    assert (await client.delete(f"{AO}/2", headers=auth)).status == 200
    head = gateway.ctx.bus.last_seq
    assert head == 6

    ws = await client.ws_connect(WS, headers=auth, params={"since": str(last)})
    missed = [await recv_json(ws) for _ in range(head - last)]
    assert_contiguous(missed, last + 1, head)
    assert [(f["type"], f["name"]) for f in missed] == [
        ("NEW_ORDER", "4"),
        ("ORDER_MODIFIED", "1"),
        ("ORDER_CLEARED", "2"),
    ]
    # the replay (read back from the journal) is identical to what live clients were sent
    await seen.until_seq(head)
    live = seen.by_seq()
    assert missed == [live[s] for s in range(last + 1, head + 1)]

    # then live frames, with no gap and no duplicate
    await start(client, auth, "5")
    frame = await recv_json(ws)
    assert (frame["seq"], frame["type"], frame["name"]) == (head + 1, "NEW_ORDER", "5")


async def test_since_equal_to_head_sends_only_live_frames(
    client: Client, gateway: Gateway, auth: dict[str, str]
) -> None:
    for n in ("1", "2"):
        await start(client, auth, n)
    ws = await client.ws_connect(WS, headers=auth, params={"since": "2"})
    await start(client, auth, "3")
    frame = await recv_json(ws)
    assert (frame["type"], frame["seq"], frame["name"]) == ("NEW_ORDER", 3, "3")


@pytest.mark.parametrize("since", ["3", "999999999999999999"])
async def test_since_beyond_head_gets_a_snapshot(
    client: Client, gateway: Gateway, auth: dict[str, str], since: str
) -> None:
    for n in ("1", "2"):
        await start(client, auth, n)
    ws = await client.ws_connect(WS, headers=auth, params={"since": since})
    snap = await recv_json(ws)
    assert snap["type"] == "ACTIVE_ORDERS"
    assert snap["seq"] == 2 and snap["count"] == 2
    assert sorted(i["name"] for i in snap["items"]) == ["1", "2"]
    await start(client, auth, "3")
    assert (await recv_json(ws))["seq"] == 3


@pytest.mark.parametrize("style", AUTH_STYLES)
@pytest.mark.parametrize("since", ["abc", "-1", "1.5", "", " 1", "1" * 19, "\u00b2", "\u0661"])
async def test_invalid_since_is_refused(client: Client, token: str, style: str, since: str) -> None:
    ws = await connect(client, style, token, params={"since": since})
    assert await recv_json(ws) == BAD_SINCE
    await recv_close(ws, CLOSE_POLICY)


async def test_event_committed_while_the_replay_is_read_is_sent_once(
    client: Client, gateway: Gateway, auth: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The replay is read from the journal with an await; an order committed meanwhile must
    arrive exactly once (not in the replay and again live, and not lost between them)."""
    for n in ("1", "2", "3"):
        await start(client, auth, n)
    read_journal = gateway.ctx.orders.events_after

    async def racing(since: int, upto: int) -> Any:
        await gateway.ctx.orders.start_or_locate("50", "TO_GO", None)  # seq 4, mid-replay
        return await read_journal(since, upto)

    monkeypatch.setattr(gateway.ctx.orders, "events_after", racing)
    ws = await client.ws_connect(WS, headers=auth, params={"since": "1"})
    frames = [await recv_json(ws) for _ in range(3)]
    assert [(f["seq"], f["name"]) for f in frames] == [(2, "2"), (3, "3"), (4, "50")]
    await gateway.ctx.orders.start_or_locate("51", "TO_GO", None)
    assert (await recv_json(ws))["seq"] == 5


@pytest.mark.parametrize("resume", [False, True], ids=["snapshot", "since"])
async def test_subscribing_while_orders_are_created_concurrently(
    client: Client, gateway: Gateway, auth: dict[str, str], resume: bool
) -> None:
    """50 concurrent POS clients (asyncio.gather) each start 4 orders; subscribers join at
    staggered points of that stream. For each, the snapshot (or the replay from `since`) plus
    the following frames account for every order exactly once, with contiguous seqs.

    Group commit folds concurrent POSTs into one transaction whose events are published in
    one synchronous burst; several rounds per POS client keep bursts coming while subscribers
    connect, so snapshots and replays really are taken mid-stream (checked below).
    """
    workers, rounds = 50, 4
    total = workers * rounds
    names = [str(1000 + w * rounds + r) for w in range(workers) for r in range(rounds)]
    thresholds = [1, 20, 50, 80, 110, 140]
    reached = {t: asyncio.Event() for t in thresholds}

    def on_event(event: Any) -> None:
        for t, flag in reached.items():
            if event.seq >= t:
                flag.set()

    async def pos(worker: int) -> list[int]:
        statuses = []
        for r in range(rounds):
            name = str(1000 + worker * rounds + r)
            resp = await client.post(AO, json={"name": name, "orderType": "TO_GO"}, headers=auth)
            await resp.read()
            statuses.append(resp.status)
        return statuses

    async def subscriber(threshold: int) -> tuple[WsConn, list[dict[str, Any]]]:
        await reached[threshold].wait()
        params = {"since": str(threshold // 2)} if resume else {}
        ws = await client.ws_connect(WS, headers=auth, params=params)
        frames = [await recv_json(ws)]
        while frames[-1]["seq"] < total:
            frames.append(await recv_json(ws))
        return ws, frames

    unsubscribe = gateway.ctx.bus.subscribe(on_event)
    subs = asyncio.ensure_future(asyncio.gather(*(subscriber(t) for t in thresholds)))
    posts = asyncio.ensure_future(asyncio.gather(*(pos(w) for w in range(workers))))
    try:
        statuses = await asyncio.wait_for(posts, 10)
        results = await asyncio.wait_for(subs, 10)
    finally:
        unsubscribe()
        for task in (posts, subs):
            task.cancel()
    assert statuses == [[201] * rounds] * workers
    assert gateway.ctx.bus.last_seq == total

    live_after_join = 0
    for threshold, (_ws, frames) in zip(thresholds, results, strict=True):
        if resume:
            since = threshold // 2
            assert_contiguous(frames, since + 1, total)
            got = [f["name"] for f in frames]
            assert len(set(got)) == len(got) == total - since and set(got) <= set(names)
        else:
            snap, after = frames[0], frames[1:]
            assert snap["type"] == "ACTIVE_ORDERS"
            # Every event so far created one order: a consistent snapshot at seq S holds S.
            assert threshold <= snap["seq"] <= total
            assert snap["count"] == len(snap["items"]) == snap["seq"]
            assert_contiguous(after, snap["seq"] + 1, total)
            got = [i["name"] for i in snap["items"]] + [f["name"] for f in after]
            assert sorted(got) == sorted(names)  # each exactly once
            live_after_join += len(after)
        assert all(f["type"] == "NEW_ORDER" for f in frames if "items" not in f)
    if not resume:  # the race was exercised: some subscriber joined before the stream ended
        assert live_after_join > 0
    await start(client, auth, "1")  # nothing else was queued before the next live frame
    for ws, _ in results:
        assert (await recv_json(ws))["seq"] == total + 1


# -- 6. slow consumer -----------------------------------------------------------------------


class StalledClient:
    """A WebSocket client on a plain socket that can stop reading at the TCP level.

    An aiohttp client keeps reading into its own buffer (up to 512 KiB) even when the
    application never calls receive(), which would take thousands more frames to back up.
    Here nothing is read unless the test asks: the receive window closes like a stuck device's.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, host: str, port: int, path: str, headers: dict[str, str]) -> Any:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: no tuning
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (host, port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
        lines = [
            f"GET {path} HTTP/1.1",
            f"Host: {host}:{port}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
            *(f"{k}: {v}" for k, v in headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
        assert head.startswith(b"HTTP/1.1 101 "), head
        return cls(reader, writer)

    async def frame(self, timeout: float = WAIT) -> tuple[int, bytes]:
        """(opcode, payload) of the next server frame; (-1, b"") once the connection ends."""

        async def read() -> tuple[int, bytes]:
            try:
                b0, b1 = await self.reader.readexactly(2)
                size = b1 & 0x7F
                if size >= 126:
                    size = int.from_bytes(await self.reader.readexactly(2 if size == 126 else 8))
                payload = await self.reader.readexactly(size)
            except (asyncio.IncompleteReadError, ConnectionResetError):
                return -1, b""
            assert b0 & 0xF0 == 0x80 and not b1 & 0x80  # FIN, no extension, unmasked
            return b0 & 0x0F, payload

        return await asyncio.wait_for(read(), timeout)

    def close(self) -> None:
        self.writer.close()


def _constrain_marked_links(gw: Gateway) -> None:
    """Shrink the server's kernel send buffer for sockets that ask for it.

    On loopback Linux auto-tunes the send buffer to megabytes, so a client that stops reading
    would need tens of thousands of frames before the server's writes block. A 4 KiB buffer
    stands in for a slow Wi-Fi link; only the socket carrying the marker header gets it.
    """

    async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
        if request.headers.get(CONSTRAINED) and isinstance(response, web.WebSocketResponse):
            assert request.transport is not None
            sock = request.transport.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    gw.app.on_response_prepare.append(on_prepare)


async def test_slow_client_is_cut_off_and_resumes_without_gap(
    custom: GatewayFactory, feeds: list[Feed]
) -> None:
    gw, client, auth = await custom(_constrain_marked_links, ws_queue_size=8, synchronous="NORMAL")
    gw.ctx.ws.send_timeout = 0.3  # how long a blocked send may wait before the cut-off
    slow = await StalledClient.connect(client.host, client.port, WS, {**auth, CONSTRAINED: "1"})
    try:
        await _slow_client_scenario(gw, client, auth, slow, feeds)
    finally:
        slow.close()


async def _slow_client_scenario(
    gw: Gateway, client: Client, auth: dict[str, str], slow: StalledClient, feeds: list[Feed]
) -> None:
    clients = gw.app[CLIENTS]
    opcode, payload = await slow.frame()
    assert opcode == 1 and json.loads(payload)["seq"] == 0  # its snapshot; then it stops
    fast = await client.ws_connect(WS, headers=auth)
    assert (await recv_json(fast))["seq"] == 0
    reader = Feed(fast)
    feeds.append(reader)
    assert len(clients) == 2

    # The reader paces the producer: at most 4 (< queue size 8) of its frames are ever in
    # flight, so only the client that stopped reading can overflow. Unpaced, this one-process
    # producer outruns both pumps on a busy loop and healthy clients get cut off too.
    async def produce(name: str, location: str | None = None) -> int:
        await gw.ctx.orders.start_or_locate(name, "TO_GO", location)
        seq = gw.ctx.bus.last_seq
        if seq % 4 == 0:
            await reader.until_seq(seq)
        return seq

    loop = asyncio.get_running_loop()
    t0 = loop.time()
    produced = 0
    while len(clients) == 2:
        assert loop.time() - t0 < 10, f"the slow client was not cut off after {produced} events"
        produced = await produce(str(produced + 1))
    assert produced > 8  # it fell behind (its queue holds 8) before the cut-off
    assert len(clients) == 1 and reader.end is None, "the reading client was cut off"
    for n in range(1, 51):  # life goes on after the cut-off
        await produce(str(n), str(n))
    head = gw.ctx.bus.last_seq
    assert head == produced + 50

    # the reading client missed nothing
    await reader.until_seq(head)
    assert_contiguous(reader.frames, 1, head)
    live = reader.by_seq()

    # the slow client now reads what reached it, then the 4008 close if it still fitted in
    # the socket (here it did not: the server's buffer was full); the connection is dropped
    # at once either way
    got: list[dict[str, Any]] = []
    while (frame := await slow.frame())[0] == 1:
        got.append(json.loads(frame[1]))
    opcode, payload = frame
    assert opcode in (8, -1), f"expected a close frame or the end, got opcode {opcode}"
    if opcode == 8:
        assert int.from_bytes(payload[:2]) == CLOSE_TOO_SLOW, payload
        assert (await slow.frame())[0] == -1  # and the server closed the connection
    assert got, "the slow client received nothing before the cut-off"
    last = got[-1]["seq"]
    assert_contiguous(got, 1, last)
    assert last < head
    assert got == [live[s] for s in range(1, last + 1)]

    # it resumes from its last seq and gets the rest, exactly once, then live frames
    again = await client.ws_connect(WS, headers=auth, params={"since": str(last)})
    rest = [await recv_json(again) for _ in range(head - last)]
    assert_contiguous(rest, last + 1, head)
    assert rest == [live[s] for s in range(last + 1, head + 1)]
    await gw.ctx.orders.start_or_locate("100000", "TO_GO", None)
    assert (await recv_json(again))["seq"] == head + 1


# -- 7. origin ------------------------------------------------------------------------------


def _upgrade_headers(origin: str | None, auth: dict[str, str]) -> dict[str, str]:
    headers = {
        "Connection": "Upgrade",
        "Upgrade": "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        **auth,
    }
    if origin is not None:
        headers["Origin"] = origin
    return headers


@pytest.mark.parametrize(
    "origin",
    ["http://evil.example", "null", "https://127.0.0.1.evil.example", "file://", "ws://{host}"],
)
async def test_foreign_origin_is_refused_before_the_upgrade(
    client: Client, gateway: Gateway, auth: dict[str, str], origin: str
) -> None:
    origin = origin.format(host=f"{client.host}:{client.port}")
    resp = await client.get(WS, headers=_upgrade_headers(origin, auth))
    assert resp.status == 403
    assert "Upgrade" not in resp.headers and "Sec-WebSocket-Accept" not in resp.headers
    assert resp.content_type == "application/json"
    assert await resp.json() == {
        "status": 403,
        "returnCode": -43,
        "message": "Cross-origin request refused.",
    }
    assert feed_listeners(gateway) == 0


@pytest.mark.parametrize("origin", [None, "http://{host}", "https://{host}", "HTTP://{HOST}"])
async def test_same_host_or_no_origin_is_accepted(
    client: Client, auth: dict[str, str], origin: str | None
) -> None:
    host = f"{client.host}:{client.port}"
    headers = dict(auth)
    if origin is not None:
        headers["Origin"] = origin.format(host=host, HOST=host.upper())
    ws = await client.ws_connect(WS, headers=headers)
    assert (await recv_json(ws))["type"] == "ACTIVE_ORDERS"


async def test_configured_origin_is_accepted(custom: GatewayFactory) -> None:
    _, client, auth = await custom(allowed_origins=["http://pos.example"])
    ws = await client.ws_connect(WS, headers={**auth, "Origin": "http://pos.example"})
    assert (await recv_json(ws))["type"] == "ACTIVE_ORDERS"
    resp = await client.get(WS, headers=_upgrade_headers("http://other.example", auth))
    assert resp.status == 403


# -- 8. frame size limit --------------------------------------------------------------------


async def test_oversized_frame_after_auth_closes_1009(custom: GatewayFactory) -> None:
    gw, client, auth = await custom(ws_max_frame_bytes=2048)
    ws = await client.ws_connect(WS, headers=auth)
    await recv_json(ws)
    await ws.send_str("x" * 1000)  # under the limit: ignored, the socket stays open
    await gw.ctx.orders.start_or_locate("1", "TO_GO", None)
    assert (await recv_json(ws))["seq"] == 1
    await ws.send_str("x" * 4096)
    await recv_close(ws, 1009)


async def test_oversized_first_frame_closes_1009(custom: GatewayFactory) -> None:
    _, client, auth = await custom(ws_max_frame_bytes=2048)
    token = auth["Authorization"].removeprefix("Bearer ")
    ws = await client.ws_connect(WS)
    await ws.send_str(json.dumps({"accesstoken": token, "pad": "x" * 4096}))
    await recv_close(ws, 1009)


# -- 9. heartbeat ---------------------------------------------------------------------------


async def test_heartbeat_pings_and_drops_a_silent_peer(custom: GatewayFactory) -> None:
    gw, client, auth = await custom(ws_heartbeat=0.4)  # a pong is due within 0.2 s
    ws = await client.ws_connect(WS, headers=auth, autoping=False)
    await recv_json(ws)
    for _ in range(3):  # answered pings keep the socket open...
        msg = await asyncio.wait_for(ws.receive(), 3)
        assert msg.type is WSMsgType.PING
        await ws.pong(msg.data)
    await gw.ctx.orders.start_or_locate("1", "TO_GO", None)
    while (msg := await asyncio.wait_for(ws.receive(), 3)).type is WSMsgType.PING:
        await ws.pong(msg.data)
    assert msg.type is WSMsgType.TEXT and json.loads(msg.data)["seq"] == 1
    # ...an unanswered one gets the peer dropped
    msg = await asyncio.wait_for(ws.receive(), 3)
    assert msg.type is WSMsgType.PING
    msg = await asyncio.wait_for(ws.receive(), 3)
    # dropped without a close handshake: the peer is presumed dead (1006)
    assert msg.type in (WSMsgType.CLOSED, WSMsgType.ERROR), msg
    assert ws.close_code == 1006
    await eventually(lambda: feed_listeners(gw) == 0)  # and the server unsubscribed it


# -- 10. shutdown -------------------------------------------------------------------------


async def test_shutdown_closes_every_socket_with_1001(
    client: Client, gateway: Gateway, token: str
) -> None:
    # Own session: TestClient.close() would close its own sockets (1000) before the server.
    url = client.make_url(WS)
    async with ClientSession() as session:
        a = await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        b = await session.ws_connect(url)
        await b.send_str(json.dumps({"accesstoken": token}))
        for ws in (a, b):
            assert (await recv_json(ws))["type"] == "ACTIVE_ORDERS"
        pending = await session.ws_connect(url)  # connected, not yet authenticated
        await eventually(lambda: len(client.app[CLIENTS]) == 3)
        assert feed_listeners(gateway) == 2

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        closing = asyncio.ensure_future(client.close())
        try:
            for ws in (a, b, pending):
                msg = await asyncio.wait_for(ws.receive(), WAIT)
                assert (msg.type, msg.data, msg.extra) == (
                    WSMsgType.CLOSE,
                    1001,
                    "gateway stopping",
                ), msg
            await asyncio.wait_for(closing, WAIT)
        finally:
            if not closing.done():
                closing.cancel()
        assert loop.time() - t0 < 3  # nobody waited for an auth timeout


async def test_long_replay_is_paged_and_a_clear_all_burst_cuts_nobody(
    client: Client, gateway: Gateway, auth: dict[str, str]
) -> None:
    """A client 2,500 events behind gets them all, in pages; clearing 1,200 orders at once
    (one burst on the bus) does not overflow a client that reads."""
    orders = gateway.ctx.orders
    await asyncio.gather(*(orders.start_or_locate(str(n), "TO_GO", None) for n in range(1, 1201)))
    live = await client.ws_connect(WS, headers=auth)
    assert (await recv_json(live))["count"] == 1200
    assert (await client.delete(AO, headers=auth)).status == 200
    burst = [await recv_json(live) for _ in range(1200)]
    assert_contiguous(burst, 1201, 2400)
    assert {f["type"] for f in burst} == {"ORDER_CLEARED"}
    await start(client, auth, "7")
    head = gateway.ctx.bus.last_seq
    ws = await client.ws_connect(WS, headers=auth, params={"since": "0"})
    replay = [await recv_json(ws) for _ in range(head)]
    assert_contiguous(replay, 1, head)
    await live.close()
    await ws.close()
