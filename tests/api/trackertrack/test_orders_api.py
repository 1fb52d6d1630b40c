"""Every order route and returnCode of the table-tracker API, v2 and v1, against a real server."""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest

V2 = "/api/v2/activeorders"
V1 = "/api/v1/activeorders"


async def post(client: Any, auth: dict[str, str], body: Any, path: str = V2) -> tuple[int, Any]:
    resp = await client.post(path, json=body, headers=auth)
    return resp.status, await resp.json()


async def test_create_started_then_1009_then_locate_then_1010(client: Any, auth: Any) -> None:
    status, body = await post(client, auth, {"name": "66", "orderType": "ON_PREMISES"})
    assert (status, body["status"], body["returnCode"]) == (201, 201, 5)
    order = body["activeorder"]
    assert body["warning"] == "Tracker not assigned with order."
    assert order["state"] == "started" and order["locationName"] == ""
    assert set(order) == {
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
    assert order["paged"] is False and order["elapsedTime"] == 0
    uuid.UUID(order["uuid"])

    status, body = await post(client, auth, {"name": "66", "orderType": "ON_PREMISES"})
    assert (status, body) == (
        200,
        {"status": 200, "returnCode": 1009, "message": "Order already started."},
    )

    status, body = await post(
        client, auth, {"name": "66", "orderType": "ON_PREMISES", "locationName": "12"}
    )
    assert (status, body["returnCode"]) == (200, 5)
    assert body["activeorder"]["state"] == "located"
    assert body["activeorder"]["locationName"] == "12"
    assert body["activeorder"]["uuid"] == order["uuid"]

    status, body = await post(
        client, auth, {"name": "66", "orderType": "ON_PREMISE", "locationName": "12"}
    )
    assert (status, body) == (
        200,
        {"status": 200, "returnCode": 1010, "message": "Order already located."},
    )


async def test_create_located_directly_and_modify_type(client: Any, auth: Any) -> None:
    status, body = await post(
        client, auth, {"name": "7", "orderType": "TO_GO", "locationName": "3"}
    )
    assert status == 201 and body["activeorder"]["state"] == "located"
    status, body = await post(client, auth, {"name": "7", "orderType": "ON_PREMISE"})
    assert (status, body["returnCode"]) == (200, 5)
    assert body["activeorder"]["orderType"] == "ON_PREMISE"
    assert body["activeorder"]["state"] == "located"  # a type change keeps the location


async def test_both_premise_spellings_accepted(client: Any, auth: Any) -> None:
    for name, kind in (("1", "ON_PREMISE"), ("2", "ON_PREMISES"), ("3", "to_go")):
        status, body = await post(client, auth, {"name": name, "orderType": kind})
        assert status == 201, body
        assert body["activeorder"]["orderType"] == kind.upper()


@pytest.mark.parametrize(
    ("body", "rc"),
    [
        ({"orderType": "TO_GO"}, -8),
        ({"name": "", "orderType": "TO_GO"}, -8),
        ({"name": None, "orderType": "TO_GO"}, -8),
        ({"name": "abc", "orderType": "TO_GO"}, -9),
        ({"name": "-4", "orderType": "TO_GO"}, -9),
        ({"name": "0", "orderType": "TO_GO"}, -9),
        ({"name": "1.5", "orderType": "TO_GO"}, -9),
        ({"name": 1.5, "orderType": "TO_GO"}, -9),
        ({"name": True, "orderType": "TO_GO"}, -9),
        ({"name": ["1"], "orderType": "TO_GO"}, -9),
        ({"name": "1234567890", "orderType": "TO_GO"}, -9),
        ({"name": "5", "orderType": "TO_GO", "locationName": "x"}, -10),
        ({"name": "5", "orderType": "TO_GO", "locationName": 0}, -10),
        ({"name": "5", "orderType": "TO_GO", "locationName": {"a": 1}}, -10),
        ({"name": "5"}, -11),
        ({"name": "5", "orderType": ""}, -11),
        ({"name": "5", "orderType": "DELIVERY"}, -12),
        ({"name": "5", "orderType": 3}, -12),
    ],
)
async def test_start_validation(client: Any, auth: Any, body: Any, rc: int) -> None:
    status, reply = await post(client, auth, body)
    assert (status, reply["status"], reply["returnCode"]) == (400, 400, rc)
    assert reply["message"]
    listing = await (await client.get(V2, headers=auth)).json()
    assert listing["count"] == 0  # bad input changes nothing


async def test_integer_name_is_accepted_as_digits(client: Any, auth: Any) -> None:
    status, body = await post(client, auth, {"name": 66, "orderType": "TO_GO", "locationName": 4})
    assert status == 201
    assert (body["activeorder"]["name"], body["activeorder"]["locationName"]) == ("66", "4")
    status, body = await post(client, auth, {"name": "066", "orderType": "TO_GO"})
    assert body["returnCode"] == 1010  # same tracker number, written differently


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[1,2]",
        b'"str"',
        b"null",
        b"\xff\xfe",
        b"[" * 10000 + b"]" * 10000,
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"",
    ],
)
async def test_bad_json_is_31(client: Any, auth: Any, raw: bytes) -> None:
    resp = await client.post(V2, data=raw, headers={**auth, "Content-Type": "application/json"})
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (400, -31)


async def test_huge_body_is_413(client: Any, auth: Any) -> None:
    raw = b'{"name": "1", "orderType": "TO_GO", "pad": "' + b"x" * 200_000 + b'"}'
    resp = await client.post(V2, data=raw, headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 413
    assert (await resp.json())["returnCode"] == -42


async def test_unknown_path_and_method(client: Any, auth: Any) -> None:
    resp = await client.get("/api/v2/nothing-here", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -40)
    resp = await client.put(V2, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (405, -41)
    assert "POST" in resp.headers["Allow"]


async def test_get_one_by_name_and_uuid(client: Any, auth: Any) -> None:
    _, created = await post(client, auth, {"name": "12", "orderType": "TO_GO"})
    u = created["activeorder"]["uuid"]
    for ident in ("12", u, u.upper(), "012"):
        resp = await client.get(f"{V2}/{ident}", headers=auth)
        body = await resp.json()
        assert (resp.status, body["returnCode"]) == (200, 6), ident
        assert body["activeorder"]["uuid"] == u


@pytest.mark.parametrize(
    ("ident", "status", "rc"),
    [
        ("99", 404, -6),
        (str(uuid.uuid4()), 404, -6),
        ("abc", 400, -7),
        ("0", 400, -7),
        ("12x", 400, -7),
        ("1234-5678-zzzz", 400, -7),
        ("12345678-1234-1234-1234-12345678901", 400, -27),
        ("deadbeef-dead", 400, -27),
    ],
)
async def test_get_one_errors(client: Any, auth: Any, ident: str, status: int, rc: int) -> None:
    resp = await client.get(f"{V2}/{ident}", headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (status, rc)


async def test_delete_one_keeps_history(client: Any, auth: Any) -> None:
    _, created = await post(client, auth, {"name": "5", "orderType": "TO_GO"})
    resp = await client.delete(f"{V2}/5", headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (200, 1000)
    assert body["activeorder"]["state"] == "cleared"
    resp = await client.get(f"{V2}/5", headers=auth)
    assert resp.status == 404
    resp = await client.delete(f"{V2}/5", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -6)
    hist = await (await client.get("/api/v2/orders", headers=auth)).json()
    assert hist["items"][0]["uuid"] == created["activeorder"]["uuid"]
    assert hist["items"][0]["clearReason"] == "MANAGER_OVERRIDE"
    # The number is free again: a new order gets a new uuid.
    status, again = await post(client, auth, {"name": "5", "orderType": "TO_GO"})
    assert status == 201 and again["activeorder"]["uuid"] != created["activeorder"]["uuid"]


async def test_delete_all(client: Any, auth: Any) -> None:
    for n in range(1, 6):
        await post(client, auth, {"name": str(n), "orderType": "TO_GO"})
    resp = await client.delete(V2, headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"], body["count"]) == (200, 1000, 5)
    assert (await (await client.get(V2, headers=auth)).json())["count"] == 0
    hist = await (await client.get("/api/v2/orders", headers=auth)).json()
    assert hist["total"] == 5
    assert {o["clearReason"] for o in hist["items"]} == {"MANAGER_OVERRIDE"}


async def test_paging_with_dummy_tracker(client: Any, auth: Any) -> None:
    resp = await client.post(
        f"{V2}?dummy_tracker_address=true", json={"name": "8", "orderType": "TO_GO"}, headers=auth
    )
    body = await resp.json()
    assert resp.status == 201 and "warning" not in body
    resp = await client.post(f"{V2}/8/page", json={"tracking": "false"}, headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"], body["activeorder"]["paged"]) == (200, 1014, True)
    resp = await client.post(f"{V2}/8/guest_paging", headers=auth)
    assert (await resp.json())["returnCode"] == 1014
    resp = await client.delete(f"{V2}/8/page", headers=auth)
    body = await resp.json()
    assert (body["returnCode"], body["activeorder"]["paged"]) == (1002, False)


async def test_dummy_tracker_binds_an_existing_order(client: Any, auth: Any) -> None:
    _, body = await post(client, auth, {"name": "9", "orderType": "TO_GO"})
    assert "warning" in body
    resp = await client.post(
        f"{V2}?dummy_tracker_address=true", json={"name": "9", "orderType": "TO_GO"}, headers=auth
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (200, 5) and "warning" not in body


async def test_paging_errors(client: Any, auth: Any) -> None:
    await post(client, auth, {"name": "4", "orderType": "TO_GO"})
    resp = await client.post(f"{V2}/4/page", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (409, -14)
    resp = await client.post(f"{V2}/4/guest_paging", headers=auth)
    assert (await resp.json())["returnCode"] == -14
    resp = await client.delete(f"{V2}/4/page", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (200, 1003)
    resp = await client.post(f"{V2}/44/page", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -6)
    await client.post(
        f"{V2}?dummy_tracker_address=1", json={"name": "4", "orderType": "TO_GO"}, headers=auth
    )
    for bad in ({"tracking": "maybe"}, {"tracking": 7}, {"tracking": None}):
        resp = await client.post(f"{V2}/4/page", json=bad, headers=auth)
        assert (resp.status, (await resp.json())["returnCode"]) == (400, -15)
    resp = await client.post(f"{V2}/4/page", data=b"{nope", headers=auth)
    assert (await resp.json())["returnCode"] == -31
    resp = await client.post(
        f"{V2}?dummy_tracker_address=perhaps",
        json={"name": "4", "orderType": "TO_GO"},
        headers=auth,
    )
    assert (await resp.json())["returnCode"] == -15


async def test_elapsed_time_counts_whole_seconds(client: Any, auth: Any, gateway: Any) -> None:
    _, body = await post(client, auth, {"name": "3", "orderType": "TO_GO"})
    created = gateway.ctx.orders.active()[0].created
    with pytest.MonkeyPatch.context() as m:
        m.setattr(gateway.ctx.clock, "now", lambda: created + 61.9)
        body = await (await client.get(f"{V2}/3", headers=auth)).json()
    assert body["activeorder"]["elapsedTime"] == 61


async def test_v1_surface_uses_state_started_and_basic_auth(client: Any, token: str) -> None:
    basic = {"Authorization": "Basic " + base64.b64encode(f"{token}:".encode()).decode()}
    status, body = await post(client, basic, {"name": "21", "orderType": "ON_PREMISE"}, V1)
    assert status == 201
    assert "stateStarted" in body["activeorder"] and "stateChanged" not in body["activeorder"]
    body = await (await client.get(f"{V1}/21", headers=basic)).json()
    assert body["returnCode"] == 6 and "stateStarted" in body["activeorder"]
    bearer = {"Authorization": f"Bearer {token}"}
    body = await (await client.get(V1, headers=bearer)).json()
    assert body["count"] == 1 and "stateStarted" in body["items"][0]
    wrong = {"Authorization": "Basic " + base64.b64encode(b"nope:").decode()}
    resp = await client.get(V1, headers=wrong)
    assert (resp.status, (await resp.json())["returnCode"]) == (401, -2)
    resp = await client.get(V1, headers={"Authorization": "Basic !!!"})
    assert (resp.status, (await resp.json())["returnCode"]) == (400, -1)
    # v2 does not take Basic: its clients use Bearer.
    resp = await client.get(V2, headers=basic)
    assert (resp.status, (await resp.json())["returnCode"]) == (400, -1)


async def test_tracking_value_is_checked_before_the_order_and_its_tracker(
    client: Any, auth: Any
) -> None:
    # docs/api.md: a bad boolean is -15 whatever the order; no tracker is -14 only for a good one.
    await post(client, auth, {"name": "401", "orderType": "TO_GO"})  # no tracker bound
    for path, body in [
        ("401/page", {"tracking": "maybe"}),
        ("499/page", {"tracking": "maybe"}),
        ("401/page?tracking=maybe", None),
        ("499/page?tracking=2", None),
    ]:
        resp = await client.post(f"{V2}/{path}", json=body, headers=auth)
        assert (resp.status, (await resp.json())["returnCode"]) == (400, -15), path
    resp = await client.post(f"{V2}/401/page", json={"tracking": "yes"}, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (409, -14)
    resp = await client.post(f"{V2}/499/page", json={"tracking": "off"}, headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -6)


@pytest.mark.parametrize(
    ("body", "query", "tracking"),
    [
        ({"tracking": "on"}, "", True),
        ({"tracking": " NO "}, "", False),
        ({"tracking": 0}, "", False),
        (None, "?tracking=yes", True),
        (None, "?tracking=off", False),
        ({"tracking": True}, "?tracking=maybe", True),
    ],  # the body wins; the query is not read
)
async def test_tracking_accepts_the_documented_spellings(
    client: Any, auth: Any, gateway: Any, body: Any, query: str, tracking: bool
) -> None:
    await client.post(
        f"{V2}?dummy_tracker_address=on", json={"name": "402", "orderType": "TO_GO"}, headers=auth
    )
    resp = await client.post(f"{V2}/402/page{query}", json=body, headers=auth)
    answer = await resp.json()
    assert (resp.status, answer["returnCode"], answer["activeorder"]["paged"]) == (200, 1014, True)
    assert gateway.ctx.orders.lookup("402").tracking is tracking
