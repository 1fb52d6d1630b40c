"""The table-tracker `register` clients get every active-order change through the outbox: the
order object exactly as the WebSocket feed frames it (seed 004 TrackerTrack's NEW_ORDER /
ORDER_MODIFIED notification), per the client's API version; a client that answers 410 is
unregistered."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.core.models import ClearReason, ItemStatus, Order, OrderState
from gateway.services.integrations.trackertrack_hooks import order_frame
from gateway.services.orders.intake import NewItem
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.deliveries import Receiver, eventually, scripted
from web.render import order_dict

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", outbound_allow=["127.0.0.1"])


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        await r.close()


async def count(r: Receiver, n: int) -> None:
    async def arrived() -> bool:
        return len(r.requests) >= n

    await eventually(arrived)


async def test_register_clients_get_the_feed_frames(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    v2, v1 = await Receiver().start(), await Receiver().start()
    receivers += [v2, v1]
    resp = await client.post("/api/v2/register", json={"http_client": v2.url("/tt")}, headers=auth)
    assert resp.status == 200
    resp = await client.get(
        "/api/v1/register", params={"http_client": v1.url("/tt1")}, headers=auth
    )
    assert resp.status == 200
    ws = await client.ws_connect("/api/v2/websocket", headers=auth)
    assert json.loads((await ws.receive()).data)["type"] == "ACTIVE_ORDERS"

    await client.post(
        "/api/v2/activeorders", json={"name": "66", "orderType": "ON_PREMISES"}, headers=auth
    )  # NEW_ORDER
    await client.post(
        "/api/v2/activeorders?dummy_tracker_address=true",
        headers=auth,
        json={"name": "66", "orderType": "ON_PREMISES", "locationName": "7"},
    )
    await client.post("/api/v2/activeorders/66/page", headers=auth)  # ORDER_PAGED
    assert gateway.ctx.intake is not None
    made = (await gateway.ctx.intake.create([NewItem("Soup")], source="test")).order
    await gateway.ctx.intake.set_item_status(str(made.number), "1", ItemStatus.PRODUCING)
    await client.delete("/api/v2/activeorders/66", headers=auth)  # ORDER_CLEARED
    frames = [json.loads((await ws.receive()).data) for _ in range(6)]
    await ws.close()
    await count(v2, 6)
    await count(v1, 6)

    assert [f["type"] for f in frames] == [
        "NEW_ORDER",
        "ORDER_MODIFIED",
        "ORDER_PAGED",
        "NEW_ORDER",
        "ORDER_MODIFIED",
        "ORDER_CLEARED",
    ]
    got = [json.loads(s.body) for s in v2.requests]
    assert got == frames  # byte for byte the same object as the feed's frame
    for s in v2.requests + v1.requests:
        assert s.headers["Content-Type"] == "application/json" and s.headers["webhook-id"]
    legacy = [json.loads(s.body) for s in v1.requests]
    for old, frame in zip(legacy, frames, strict=True):
        assert old.pop("stateStarted") == frame.pop("stateChanged")
        assert old == frame
    assert {s.path for s in v2.requests} == {"/tt"}


async def test_new_order_type_follows_the_setting(
    client: Client, auth: dict[str, str], receivers: list[Receiver]
) -> None:
    r = await Receiver().start()
    receivers.append(r)
    await client.post("/api/v2/register", json={"http_client": r.url()}, headers=auth)
    await client.post(
        "/api/v2/gateway/settings", json={"newOrderEventType": "ORDER_CREATED"}, headers=auth
    )
    await client.post(
        "/api/v2/activeorders", json={"name": "3", "orderType": "TO_GO"}, headers=auth
    )
    await count(r, 1)
    assert json.loads(r.requests[0].body)["type"] == "ORDER_CREATED"


async def test_a_client_that_answers_410_is_unregistered(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    r = await Receiver(respond=scripted(410)).start()
    receivers.append(r)
    await client.post("/api/v2/register", json={"http_client": r.url()}, headers=auth)
    await client.post(
        "/api/v2/activeorders", json={"name": "9", "orderType": "TO_GO"}, headers=auth
    )

    async def gone() -> bool:
        listing = await (await client.get("/api/v2/register/clients", headers=auth)).json()
        return listing["count"] == 0

    await eventually(gone)
    assert gateway.ctx.config.clients() == []
    await client.post(
        "/api/v2/activeorders", json={"name": "9", "orderType": "ON_PREMISES"}, headers=auth
    )
    assert await gateway.deliveries.pending() == 0
    assert len(r.requests) == 1


async def test_no_clients_no_rows(client: Client, auth: dict[str, str], gateway: Gateway) -> None:
    await client.post(
        "/api/v2/activeorders", json={"name": "1", "orderType": "TO_GO"}, headers=auth
    )
    assert await gateway.deliveries.pending() == 0
    assert await gateway.deliveries.dead_count() == 0


# -- the services-side rendering is the web one ------------------------------------------------

TIMES = st.floats(1_600_000_000, 1_900_000_000, allow_nan=False)
ZONES = st.sampled_from(["UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Kolkata"])


@hsettings(max_examples=200, deadline=None)
@given(
    created=TIMES,
    later=st.floats(0, 100_000),
    now=st.floats(0, 200_000),
    tz=ZONES,
    state=st.sampled_from(list(OrderState)),
    paged=st.booleans(),
    v1=st.booleans(),
    name=st.from_regex(r"[1-9][0-9]{0,5}", fullmatch=True),
    location=st.sampled_from(["", "4", "12"]),
)
def test_frame_renders_like_the_feed(
    created: float,
    later: float,
    now: float,
    tz: str,
    state: OrderState,
    paged: bool,
    v1: bool,
    name: str,
    location: str,
) -> None:
    zone = ZoneInfo(tz)
    cleared = created + later if state is OrderState.CLEARED else None
    o = Order(
        "54ed91e6-286b-4912-b44c-7a7a3001d715",
        name,
        "TO_GO",
        location,
        state,
        created,
        created + later / 2,
        paged=paged,
        cleared_at=cleared,
        clear_reason=ClearReason.TRACKER if cleared else None,
    )
    expected: dict[str, Any] = order_dict(o, zone, created + now, v1=v1)
    expected |= {"type": "ORDER_MODIFIED", "seq": 42}
    assert order_frame(o, zone, created + now, "ORDER_MODIFIED", 42, v1=v1) == expected
