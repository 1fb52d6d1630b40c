from __future__ import annotations

from typing import Any


async def test_start_order_then_list(client: Any, auth: dict[str, str]) -> None:
    resp = await client.post(
        "/api/v2/activeorders", json={"name": "66", "orderType": "ON_PREMISES"}, headers=auth
    )
    assert resp.status == 201
    body = await resp.json()
    assert body["returnCode"] == 5
    assert body["warning"] == "Tracker not assigned with order."
    listing = await (await client.get("/api/v2/activeorders", headers=auth)).json()
    assert [o["name"] for o in listing["items"]] == ["66"]
