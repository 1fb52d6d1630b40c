"""Trackers through the service entry points the radio calls, and the tracker/repeater API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from gateway.app import Gateway, build
from gateway.core.events import Event, OrderEvent, TrackerEvent
from gateway.core.models import HistoryQuery, TrackerReading
from tests.conftest import make_settings

A66 = "C0:FF:EE:00:00:42"
A7 = "C0:FF:EE:00:00:07"


class FakePager:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    def available(self) -> bool:
        return True

    async def page(self, address: str, duration_s: int) -> None:
        self.calls.append(("page", address, duration_s))

    async def stop(self, address: str) -> None:
        self.calls.append(("stop", address, 0))


@pytest.fixture
def pager() -> FakePager:
    return FakePager()


@pytest.fixture
async def gw(tmp_path: Any, pager: FakePager) -> AsyncIterator[Gateway]:
    g = await build(make_settings(tmp_path / "d", debounce_seconds=0, page_duration=1), pager=pager)
    yield g
    await g.paging.close()
    await g.writer.close()
    await g.reader.close()


@pytest.fixture
def events(gw: Gateway) -> list[Event]:
    seen: list[Event] = []
    gw.ctx.bus.subscribe(seen.append)
    return seen


@pytest.fixture
async def api(aiohttp_client: Any, gw: Gateway) -> Any:
    client = await aiohttp_client(gw.app)
    secret = (await gw.tokens.issue("t", None)).secret
    client.auth_headers = {"Authorization": f"Bearer {secret}"}
    return client


def reading(address: str, number: int, table: int = 0, **flags: Any) -> TrackerReading:
    return TrackerReading(
        address=address, number=number, table=table, battery=flags.pop("battery", 80), **flags
    )


def order_types(events: list[Event]) -> list[str]:
    return [e.type.value for e in events if isinstance(e, OrderEvent)]


async def test_pairing_window_then_starter_then_table_then_clearer(
    gw: Gateway, events: list[Event]
) -> None:
    svc = gw.trackers
    svc.on_pad("pad1", "STARTER_DINE_IN", 66, A66)  # window closed: refused
    await svc.drain()
    assert svc.list() == [] and svc.rejected["unknown tracker on a pad"] == 1
    svc.begin_pairing(60)
    svc.on_pad("pad1", "STARTER_DINE_IN", 66, A66)
    await svc.drain()
    assert [t.number for t in svc.list()] == [66]
    assert gw.ctx.orders.active() == []  # pairing only teaches the puck
    svc.end_pairing()

    svc.on_pad("pad1", "STARTER_DINE_IN", 66, A66.lower())
    await svc.drain()
    (order,) = gw.ctx.orders.active()
    assert (order.name, order.order_type, order.tracker) == ("66", "ON_PREMISES", A66)

    for table in (12, 12, 12):
        svc.on_reading(reading(A66, 66, table))
    await svc.drain()
    (order,) = gw.ctx.orders.active()
    assert (order.state.value, order.location) == ("located", "12")

    svc.on_pad("pad2", "CLEARER", 66, A66)
    await svc.drain()
    assert gw.ctx.orders.active() == []
    assert order_types(events) == ["NEW_ORDER", "ORDER_MODIFIED", "ORDER_CLEARED"]
    cleared = next(
        e for e in events if isinstance(e, OrderEvent) and e.type.value == "ORDER_CLEARED"
    )
    assert cleared.order.clear_reason is not None
    assert cleared.order.clear_reason.value == "TRACKER"
    assert cleared.order.time_to_sit is not None and cleared.order.delivery_time is not None


async def test_pos_first_then_starter_binds_and_warning_goes(gw: Gateway, api: Any) -> None:
    await gw.trackers.pair(7, A7)
    resp = await api.post(
        "/api/v2/activeorders", json={"name": "7", "orderType": "TO_GO"}, headers=api.auth_headers
    )
    assert "warning" in await resp.json()
    gw.trackers.on_pad("p", "STARTER_DINE_IN", 7, A7)
    await gw.trackers.drain()
    body = await (
        await api.post(
            "/api/v2/activeorders",
            json={"name": "7", "orderType": "TO_GO"},
            headers=api.auth_headers,
        )
    ).json()
    assert body == {"status": 200, "returnCode": 1009, "message": "Order already started."}
    (order,) = gw.ctx.orders.active()
    assert (order.tracker, order.order_type) == (A7, "TO_GO")  # the POS's type is kept


async def test_a_tracker_between_two_tables_does_not_flap(gw: Gateway, events: list[Event]) -> None:
    await gw.trackers.pair(66, A66)
    gw.trackers.on_pad("p", "STARTER_DINE_IN", 66, A66)
    await gw.trackers.drain()
    for _ in range(20):
        for table in (12, 13):
            gw.trackers.on_reading(reading(A66, 66, table))
    await gw.trackers.drain()
    assert gw.ctx.orders.active()[0].state.value == "started"
    for table in (13, 13, 13, 12, 13, 13, 13):
        gw.trackers.on_reading(reading(A66, 66, table))
    await gw.trackers.drain()
    assert gw.ctx.orders.active()[0].location == "13"
    assert order_types(events).count("ORDER_MODIFIED") == 1


async def test_debounce_needs_time_as_well_as_readings(tmp_path: Any) -> None:
    g = await build(make_settings(tmp_path / "d", debounce_seconds=0.3))
    try:
        await g.trackers.pair(66, A66)
        g.trackers.on_pad("p", "STARTER_TO_GO", 66, A66)
        await g.trackers.drain()
        for _ in range(10):
            g.trackers.on_reading(reading(A66, 66, 5))
        await g.trackers.drain()
        assert g.ctx.orders.active()[0].state.value == "started"
        await asyncio.sleep(0.35)
        g.trackers.on_reading(reading(A66, 66, 5))
        await g.trackers.drain()
        assert g.ctx.orders.active()[0].location == "5"
    finally:
        await g.writer.close()
        await g.reader.close()


async def test_charger_and_unknown_trackers_change_nothing(gw: Gateway) -> None:
    await gw.trackers.pair(66, A66)
    gw.trackers.on_pad("p", "STARTER_DINE_IN", 66, A66)
    await gw.trackers.drain()
    for _ in range(5):
        gw.trackers.on_reading(reading(A66, 66, 9, on_charger=True))
        gw.trackers.on_reading(reading(A7, 7, 9))
    await gw.trackers.drain()
    assert gw.ctx.orders.active()[0].state.value == "started"
    assert gw.trackers.rejected["unknown tracker"] == 5


async def test_paging_with_tracking_until_picked_up(
    gw: Gateway, api: Any, pager: FakePager
) -> None:
    await gw.trackers.pair(66, A66)
    gw.trackers.on_pad("p", "STARTER_TO_GO", 66, A66)
    await gw.trackers.drain()
    resp = await api.post(
        "/api/v2/activeorders/66/page", json={"tracking": True}, headers=api.auth_headers
    )
    assert (await resp.json())["returnCode"] == 1014
    await asyncio.sleep(1.3)  # page_duration=1: paged again when the first page ran out
    assert [c[0] for c in pager.calls].count("page") >= 2
    gw.trackers.on_reading(reading(A66, 66, 0, vibrating=True, button=True))
    await gw.trackers.drain()
    await asyncio.sleep(0.05)
    assert gw.ctx.orders.active()[0].paged is False
    assert pager.calls[-1] == ("stop", A66, 0)
    assert gw.paging.paging == set()


async def test_page_once_and_cancel(gw: Gateway, api: Any, pager: FakePager) -> None:
    await gw.trackers.pair(66, A66)
    gw.trackers.on_pad("p", "STARTER_TO_GO", 66, A66)
    await gw.trackers.drain()
    await api.post(
        "/api/v2/activeorders/66/page", json={"tracking": False}, headers=api.auth_headers
    )
    await asyncio.sleep(0.05)
    resp = await api.delete("/api/v2/activeorders/66/page", headers=api.auth_headers)
    assert (await resp.json())["returnCode"] == 1002
    await asyncio.sleep(0.05)
    assert pager.calls == [("page", A66, 1), ("stop", A66, 0)]


async def test_battery_low_and_offline_events(gw: Gateway, events: list[Event]) -> None:
    await gw.trackers.pair(66, A66)
    for battery in (50, 19, 18, 22, 26, 10):
        gw.trackers.on_reading(reading(A66, 66, battery=battery))
    kinds = [e.type.value for e in events if isinstance(e, TrackerEvent)]
    assert kinds.count("TRACKER_BATTERY_LOW") == 2  # 19, then again after recovering to 26
    gw.trackers.policy = type(gw.trackers.policy)(offline_after=0.01, auto_clear_after=None)
    await asyncio.sleep(0.05)
    await gw.trackers.check_health()
    await gw.trackers.check_health()
    kinds = [e.type.value for e in events if isinstance(e, TrackerEvent)]
    assert kinds.count("TRACKER_OFFLINE") == 1
    gw.trackers.on_reading(reading(A66, 66))
    assert [e.type.value for e in events if isinstance(e, TrackerEvent)][-1] == "TRACKER_ONLINE"
    assert gw.trackers.get(66).battery == 80


async def test_automatic_clear_after_max_age(gw: Gateway) -> None:
    await gw.ctx.orders.start_or_locate("3", "TO_GO", None)
    gw.trackers.policy = type(gw.trackers.policy)(auto_clear_after=0.0)
    await gw.trackers.check_health()
    assert gw.ctx.orders.active() == []
    _, (order,) = await gw.ctx.orders.history(HistoryQuery())
    assert order.clear_reason is not None and order.clear_reason.value == "AUTOMATIC"


async def test_tracker_api(gw: Gateway, api: Any) -> None:
    h = api.auth_headers
    resp = await api.post(
        "/api/v2/trackers", json={"number": 66, "address": A66.lower()}, headers=h
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"], body["tracker"]["address"]) == (200, 1016, A66)
    listing = await (await api.get("/api/v2/trackers", headers=h)).json()
    assert (listing["returnCode"], listing["count"]) == (16, 1)
    assert listing["items"][0]["state"] == "unseen"
    gw.trackers.on_reading(reading(A66, 66, battery=55))
    one = await (await api.get("/api/v2/trackers/66", headers=h)).json()
    assert (one["returnCode"], one["tracker"]["battery"], one["tracker"]["state"]) == (
        17,
        55,
        "idle",
    )
    resp = await api.post("/api/v2/trackers/66/rename", json={"number": 67}, headers=h)
    assert (await resp.json())["returnCode"] == 1017
    assert (await api.get("/api/v2/trackers/66", headers=h)).status == 404
    resp = await api.delete("/api/v2/trackers/67", headers=h)
    assert (await resp.json())["returnCode"] == 1018
    await api.post("/api/v2/trackers", json={"number": 1, "address": A7}, headers=h)
    resp = await api.delete("/api/v2/trackers", headers=h)
    assert ((await resp.json())["returnCode"], gw.trackers.list()) == (1007, [])


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "rc"),
    [
        ("GET", "/api/v2/trackers/5", None, 404, -36),
        ("GET", "/api/v2/trackers/0", None, 400, -37),
        ("GET", "/api/v2/trackers/x", None, 400, -37),
        ("POST", "/api/v2/trackers", {"number": 0, "address": A66}, 400, -37),
        ("POST", "/api/v2/trackers", {"number": 5, "address": "nope"}, 400, -37),
        ("POST", "/api/v2/trackers", {"number": "5", "address": A66}, 400, -37),
        ("POST", "/api/v2/trackers/5/rename", {"number": 6}, 404, -36),
        ("DELETE", "/api/v2/trackers/5", None, 404, -36),
        ("POST", "/api/v2/repeaters/beginPairing", {"timeout": 255}, 400, -16),
        ("POST", "/api/v2/repeaters/beginPairing", {"timeout": -1}, 400, -16),
        ("POST", "/api/v2/repeaters/beginPairing", {"timeout": "soon"}, 400, -16),
    ],
)
async def test_radio_api_errors(
    api: Any, method: str, path: str, body: Any, status: int, rc: int
) -> None:
    resp = await api.request(method, path, json=body, headers=api.auth_headers)
    assert (resp.status, (await resp.json())["returnCode"]) == (status, rc)


async def test_repeaters_and_pairing_api(gw: Gateway, api: Any) -> None:
    h = api.auth_headers
    body = await (await api.get("/api/v2/repeaters", headers=h)).json()
    assert (body["returnCode"], body["pairing"]) == (15, False)
    resp = await api.post("/api/v2/repeaters/beginPairing", json={"timeout": 30}, headers=h)
    assert ((await resp.json())["returnCode"], gw.trackers.pairing_open) == (1012, True)
    resp = await api.post("/api/v2/repeaters/endPairing", headers=h)
    assert ((await resp.json())["returnCode"], gw.trackers.pairing_open) == (1013, False)
    resp = await api.post("/api/v2/repeaters/beginPairing", headers=h)  # default 60
    assert (await resp.json())["timeout"] == 60
    resp = await api.delete("/api/v2/repeaters", headers=h)
    assert (await resp.json())["returnCode"] == 1006


async def test_native_feed_carries_orders_and_tracker_facts(gw: Gateway, api: Any) -> None:
    ws = await api.ws_connect("/api/ws", headers=api.auth_headers)
    first = await asyncio.wait_for(ws.receive_json(), 5)
    assert (first["type"], first["orders"], first["trackers"]) == ("SNAPSHOT", [], [])
    await gw.trackers.pair(66, A66)
    gw.trackers.on_pad("p", "STARTER_TO_GO", 66, A66)
    await gw.trackers.drain()
    gw.trackers.on_reading(reading(A66, 66, battery=5))
    frames = [await asyncio.wait_for(ws.receive_json(), 5) for _ in range(3)]
    assert [f["type"] for f in frames] == ["TRACKER_PAIRED", "NEW_ORDER", "TRACKER_BATTERY_LOW"]
    assert frames[0]["tracker"]["number"] == 66
    assert frames[1]["order"]["tracker"] == A66 and frames[1]["seq"] == 1
    assert frames[2]["detail"] == "5 %"
    await ws.close()
    # The compatible feed never shows tracker facts.
    compat = await api.ws_connect("/api/v2/websocket", headers=api.auth_headers)
    assert (await asyncio.wait_for(compat.receive_json(), 5))["type"] == "ACTIVE_ORDERS"
    gw.trackers.on_reading(reading(A66, 66, battery=50))
    gw.trackers.on_reading(reading(A66, 66, battery=4))
    gw.trackers.on_pad("p", "CLEARER", 66, A66)
    await gw.trackers.drain()
    assert (await asyncio.wait_for(compat.receive_json(), 5))["type"] == "ORDER_CLEARED"
    await compat.close()
