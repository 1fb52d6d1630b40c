"""History, statistics, gateway settings, webhook client registration and health."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import pytest

V2 = "/api/v2/activeorders"


async def create(client: Any, auth: Any, name: str, kind: str = "TO_GO", **extra: str) -> Any:
    resp = await client.post(V2, json={"name": name, "orderType": kind, **extra}, headers=auth)
    assert resp.status == 201
    return (await resp.json())["activeorder"]


async def test_health_needs_no_token(client: Any) -> None:
    resp = await client.get("/api/v2")
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (200, 1)
    assert body["demo"] is False and body["apiVersion"] == "v2"
    assert body["activeOrders"] == 0 and body["journalSeq"] == 0


async def test_history_filters_and_paging(client: Any, auth: Any) -> None:
    for n in range(1, 31):
        await create(
            client,
            auth,
            str(n),
            "TO_GO" if n % 2 else "ON_PREMISES",
            **({"locationName": "7"} if n % 3 == 0 else {}),
        )
    await client.delete(f"{V2}/1", headers=auth)
    body = await (await client.get("/api/v2/orders", headers=auth)).json()
    assert (body["returnCode"], body["count"], body["total"], body["limit"]) == (5, 25, 30, 25)
    assert body["items"][0]["name"] == "30"  # newest first
    page2 = await (await client.get("/api/v2/orders?offset=25&limit=10", headers=auth)).json()
    assert page2["count"] == 5 and page2["items"][-1]["name"] == "1"
    assert page2["items"][-1]["state"] == "cleared"
    togo = await (
        await client.get("/api/v2/orders?order_type=TO_GO&limit=100", headers=auth)
    ).json()
    assert togo["total"] == 15 and {o["orderType"] for o in togo["items"]} == {"TO_GO"}
    prem = await (await client.get("/api/v2/orders?order_type=ON_PREMISE", headers=auth)).json()
    assert prem["total"] == 15  # either spelling selects both
    table = await (await client.get("/api/v2/orders?location_name=7", headers=auth)).json()
    assert table["total"] == 10
    future = await (
        await client.get("/api/v2/orders?created_after=2999-01-01", headers=auth)
    ).json()
    assert future["total"] == 0
    past = await (
        await client.get(
            "/api/v2/orders?created_after=2000-01-01T00:00:00&created_before=2999-01-01",
            headers=auth,
        )
    ).json()
    assert past["total"] == 30


@pytest.mark.parametrize(
    ("query", "rc"),
    [
        ("limit=0", -23),
        ("limit=101", -23),
        ("limit=x", -23),
        ("limit=-1", -23),
        ("offset=-1", -24),
        ("offset=a", -24),
        ("created_after=yesterday", -25),
        ("created_before=2024-13-01", -25),
        ("order_type=BOAT", -12),
        ("location_name=x", -10),
    ],
)
async def test_history_errors(client: Any, auth: Any, query: str, rc: int) -> None:
    resp = await client.get(f"/api/v2/orders?{query}", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (400, rc)


async def test_statistics_today(client: Any, auth: Any, gateway: Any) -> None:
    await create(client, auth, "1", locationName="4")
    await create(client, auth, "2")
    await client.delete(f"{V2}/1", headers=auth)
    body = await (await client.get("/api/v2/statistics?target_time=60", headers=auth)).json()
    assert body["returnCode"] == 14
    s = body["statistics"]
    assert (s["count"], s["located"], s["cleared"], s["targetTime"]) == (2, 1, 1, 60)
    assert s["averageDeliveryTime"] == 0 and s["withinTargetShare"] == 1.0
    v1 = await (await client.get("/api/v1/statistics", headers=auth)).json()
    assert v1["targetTime"] == 300 and "statistics" not in v1


@pytest.mark.parametrize("value", ["0", "abc", "86401", "-5", "1.5"])
async def test_statistics_bad_target(client: Any, auth: Any, value: str) -> None:
    resp = await client.get(f"/api/v2/statistics?target_time={value}", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (400, -22)


async def test_settings_roundtrip_and_timezone(client: Any, auth: Any, gateway: Any) -> None:
    body = await (await client.get("/api/v2/gateway/settings", headers=auth)).json()
    assert body["returnCode"] == 13
    assert body["settings"] == {
        "targetTimeDefault": 300,
        "timezone": "UTC",
        "zigbeePreset": 0,
        "newOrderEventType": "NEW_ORDER",
    }
    order = await create(client, auth, "3")
    resp = await client.post(
        "/api/v2/gateway/settings",
        json={"timezone": "Asia/Kolkata", "targetTimeDefault": 240},
        headers=auth,
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (200, 1004)
    assert body["settings"]["timezone"] == "Asia/Kolkata"
    again = (await (await client.get(f"{V2}/3", headers=auth)).json())["activeorder"]
    assert again["created"] != order["created"]  # rendered in the new zone (UTC+5:30)
    stats = await (await client.get("/api/v2/statistics", headers=auth)).json()
    assert stats["statistics"]["targetTime"] == 240


async def test_settings_persist(settings: Any, aiohttp_client: Any) -> None:
    from gateway.app import build

    gw = await build(settings)
    await gw.ctx.config.update({"targetTimeDefault": 90})
    await gw.writer.close()
    await gw.reader.close()
    gw2 = await build(settings)
    assert gw2.ctx.config.get("targetTimeDefault") == 90


@pytest.mark.parametrize(
    ("body", "status", "rc"),
    [
        ({"colour": "red"}, 400, -20),
        ({"targetTimeDefault": 60, "colour": "red"}, 400, -20),
        ({"targetTimeDefault": "60"}, 400, -21),
        ({"targetTimeDefault": 0}, 400, -21),
        ({"targetTimeDefault": True}, 400, -21),
        ({"timezone": "Mars/Olympus"}, 400, -21),
        ({"timezone": "../../etc/passwd"}, 400, -21),
        ({"newOrderEventType": "CREATED"}, 400, -21),
        ({"zigbeePreset": 999}, 400, -21),
    ],
)
async def test_settings_errors_change_nothing(
    client: Any, auth: Any, body: Any, status: int, rc: int
) -> None:
    resp = await client.post("/api/v2/gateway/settings", json=body, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (status, rc)
    now = await (await client.get("/api/v2/gateway/settings", headers=auth)).json()
    assert now["settings"]["targetTimeDefault"] == 300


async def test_register_webhook_client(client: Any, auth: Any) -> None:
    url = "http://192.0.2.10:8080/hook"
    resp = await client.post("/api/v2/register", json={"http_client": url}, headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (200, 1005)
    again = await client.post("/api/v2/register", json={"http_client": url}, headers=auth)
    assert (await again.json())["returnCode"] == 1005  # idempotent
    listing = await (await client.get("/api/v2/register/clients", headers=auth)).json()
    assert [c["http_client"] for c in listing["items"]] == [url]
    v1 = await client.get(
        f"/api/v1/register?http_client={quote('https://pos.example/x')}", headers=auth
    )
    assert (await v1.json())["returnCode"] == 1005
    resp = await client.delete("/api/v2/register", json={"http_client": url}, headers=auth)
    assert (await resp.json())["returnCode"] == 1005
    resp = await client.delete("/api/v2/register", json={"http_client": url}, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -30)


@pytest.mark.parametrize(
    ("body", "rc"),
    [
        ({}, -28),
        ({"http_client": ""}, -28),
        ({"http_client": 5}, -29),
        ({"http_client": "ftp://x.example/"}, -29),
        ({"http_client": "http://"}, -29),
        ({"http_client": "http://127.0.0.1:9/"}, -29),
        ({"http_client": "http://localhost/"}, -29),
        ({"http_client": "http://169.254.169.254/latest/meta-data"}, -29),
        ({"http_client": "http://[::1]/"}, -29),
        ({"http_client": "http://[::ffff:127.0.0.1]/"}, -29),
        ({"http_client": "http://user:pw@example.com/"}, -29),
        ({"http_client": "http://example.com:99999/"}, -29),
        ({"http_client": "http://example.com/" + "a" * 3000}, -29),
    ],
)
async def test_register_errors(client: Any, auth: Any, body: Any, rc: int) -> None:
    resp = await client.post("/api/v2/register", json=body, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (400, rc)
    listing = await (await client.get("/api/v2/register/clients", headers=auth)).json()
    assert listing["count"] == 0


async def test_unregister_unknown_client(client: Any, auth: Any) -> None:
    resp = await client.delete(
        "/api/v2/register", json={"http_client": "http://192.0.2.1/"}, headers=auth
    )
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -30)


async def test_register_loopback_when_allow_listed(tmp_path: Any, aiohttp_client: Any) -> None:
    from gateway.app import build
    from tests.conftest import make_settings

    gw = await build(make_settings(tmp_path / "d", outbound_allow=["127.0.0.1"]))
    client = await aiohttp_client(gw.app)
    secret = (await gw.tokens.issue("t", None)).secret
    resp = await client.post(
        "/api/v2/register",
        json={"http_client": "http://127.0.0.1:9/h"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert (await resp.json())["returnCode"] == 1005
