"""The outbox's admin API (Bearer token): overview, dead-letter list, replay."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.deliveries import Receiver, eventually, scripted
from web.api.admin.schemas import DeadList, Overview

Client = TestClient[web.Request, web.Application]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", outbound_allow=["127.0.0.1"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver(respond=scripted(410)).start()
    yield r
    await r.close()


async def test_dead_letters_and_replay(
    client: Client, auth: dict[str, str], gateway: Gateway, receiver: Receiver
) -> None:
    resp = await client.post(
        "/api/v2/register", json={"http_client": receiver.url("/x?k=S")}, headers=auth
    )
    assert resp.status == 200
    await client.post(
        "/api/v2/activeorders", json={"name": "5", "orderType": "TO_GO"}, headers=auth
    )

    async def dead() -> bool:
        return await gateway.deliveries.dead_count() == 1

    await eventually(dead)

    resp = await client.get("/api/admin/deliveries", headers=auth)
    overview = await resp.json()
    Overview.model_validate(overview)
    # Tests run without an uplink probe (tests.conftest.make_settings): the check is "off".
    assert (overview["pending"], overview["dead"], overview["uplink"]) == (0, 1, "off")

    resp = await client.get("/api/admin/deliveries/dead?limit=10", headers=auth)
    listing = await resp.json()
    DeadList.model_validate(listing)
    assert listing["total"] == 1
    (item,) = listing["items"]
    assert item["kind"] == "trackertrack-webhook" and item["lastStatus"] == 410
    assert item["url"] == receiver.url("/x")  # no query string: it may carry a secret
    assert item["eventId"] == receiver.requests[0].headers["webhook-id"]

    resp = await client.post(f"/api/admin/deliveries/{item['id']}/replay", headers=auth)
    body = await resp.json()
    assert resp.status == 200 and body["returnCode"] == 1400, body

    async def delivered() -> bool:
        return len(receiver.requests) == 2 and await gateway.deliveries.pending() == 0

    await eventually(delivered)
    assert receiver.requests[1].headers["webhook-id"] == item["eventId"]  # the same event
    listing = await (await client.get("/api/admin/deliveries/dead", headers=auth)).json()
    assert listing["total"] == 0 and listing["items"] == []

    resp = await client.post(f"/api/admin/deliveries/{item['id']}/replay", headers=auth)
    assert resp.status == 404  # not dead any more


@pytest.mark.parametrize(
    ("method", "path", "status", "rc"),
    [
        ("GET", "/api/admin/deliveries/dead?limit=0", 400, -23),
        ("GET", "/api/admin/deliveries/dead?limit=101", 400, -23),
        ("GET", "/api/admin/deliveries/dead?limit=x", 400, -23),
        ("GET", "/api/admin/deliveries/dead?offset=-1", 400, -24),
        ("POST", "/api/admin/deliveries/99/replay", 404, -40),
        ("POST", "/api/admin/deliveries/abc/replay", 400, -7),
    ],
)
async def test_admin_bad_input(
    client: Client, auth: dict[str, str], method: str, path: str, status: int, rc: int
) -> None:
    resp = await client.request(method, path, headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (status, rc), body


async def test_admin_needs_a_token(client: Client) -> None:
    for method, path in (
        ("GET", "/api/admin/deliveries"),
        ("GET", "/api/admin/deliveries/dead"),
        ("POST", "/api/admin/deliveries/1/replay"),
    ):
        resp = await client.request(method, path)
        assert resp.status == 400 and (await resp.json())["returnCode"] == -1
        resp = await client.request(method, path, headers={"Authorization": "Bearer " + "2" * 48})
        assert resp.status == 401
