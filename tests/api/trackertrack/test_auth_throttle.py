"""Issue 9, item 7: failed authentications are throttled per address (S5), but a valid
credential is never refused because of someone else's failures behind the same address."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.core.errors import AuthFailed, Code
from gateway.services.access.tokens import AuthThrottle

BAD = {"Authorization": "Bearer " + "0" * 48}


async def _fail(client: Any, times: int, path: str = "/api/v2/activeorders") -> list[int]:
    statuses = []
    for _ in range(times):
        statuses.append((await client.get(path, headers=BAD)).status)
    return statuses


async def test_a_valid_token_is_served_from_a_blocked_address(client: Any, auth: Any) -> None:
    statuses = await _fail(client, 25)  # a POS with a stale token, from 127.0.0.1
    assert statuses == [401] * 20 + [429] * 5
    # The kitchen display behind the same address, with its valid token: served.
    resp = await client.get("/api/v2/activeorders", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (200, 5)
    # The stale token is still throttled.
    resp = await client.get("/api/v2/activeorders", headers=BAD)
    assert (resp.status, (await resp.json())["returnCode"]) == (429, -44)
    assert int(resp.headers["Retry-After"]) > 0


async def test_a_valid_token_opens_the_feed_from_a_blocked_address(client: Any, token: str) -> None:
    await _fail(client, 25)
    ws = await client.ws_connect("/api/v2/websocket", headers={"Authorization": f"Bearer {token}"})
    try:
        snapshot = orjson.loads((await ws.receive(timeout=5)).data)
        assert snapshot["type"] == "ACTIVE_ORDERS"  # authenticated: the feed starts
    finally:
        await ws.close()
    ws = await client.ws_connect("/api/v2/websocket", headers=BAD)
    try:
        frame = orjson.loads((await ws.receive(timeout=5)).data)
        assert (frame["status"], frame["returnCode"]) == (429, -44)
    finally:
        await ws.close()


async def test_the_admin_cookie_is_accepted_from_a_blocked_address(
    client: Any, gateway: Any
) -> None:
    url = "/api/admin/token-window"
    statuses = [
        (await client.post(url, headers={"Authorization": "Bearer wrong"})).status
        for _ in range(25)
    ]
    assert statuses == [401] * 20 + [429] * 5
    resp = await client.post(url, headers={"Authorization": f"Bearer {gateway.ctx.admin_cookie}"})
    assert (resp.status, (await resp.json())["returnCode"]) == (200, 1015)
    assert gateway.tokens.window_remaining() > 0
    resp = await client.post(url, headers={"Authorization": "Bearer wrong"})
    assert resp.status == 429


def test_throttle_memory_is_bounded() -> None:
    clock = [0.0]
    throttle = AuthThrottle(limit=3, window=60.0, now=lambda: clock[0], max_clients=100)
    for i in range(5_000):  # many addresses (IPv6 makes them cheap), each failing a few times
        for _ in range(3):
            throttle.failed(f"2001:db8::{i:x}")
        clock[0] += 0.001
    assert throttle.tracked() <= 200
    # The most recent addresses are still blocked; the oldest were forgotten.
    with pytest.raises(AuthFailed) as blocked:
        throttle.failed("2001:db8::1387")
    assert blocked.value.code is Code.TOO_MANY_FAILURES
    assert not throttle.blocked("2001:db8::0")


def test_a_block_expires_and_failures_outside_the_window_do_not_count() -> None:
    clock = [0.0]
    throttle = AuthThrottle(limit=3, window=10.0, now=lambda: clock[0])
    for _ in range(2):
        throttle.failed("a")
    clock[0] = 11.0  # the first two are forgotten
    for _ in range(2):
        throttle.failed("a")
    assert not throttle.blocked("a")
    throttle.failed("a")  # the third in the window: blocked, this one still answered 401
    assert throttle.blocked("a")
    clock[0] = 22.0
    assert not throttle.blocked("a")
    throttle.failed("a")  # counted afresh, no 429
    assert not throttle.blocked("a")
