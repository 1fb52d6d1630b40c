"""Print API (seed 003) against a live gateway: GET /v1/orders/{id} with every status, thin
webhooks to real receivers on 127.0.0.1 on every status change (and only then), their exact
body and content type, Standard Webhooks signatures checked by the `standardwebhooks` package,
a 410 that disables the subscription, and the subscription API's bad input."""

from __future__ import annotations

import asyncio
import base64
import re
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway.app import Gateway
from gateway.core.models import ItemStatus
from gateway.services.orders.intake import NewItem, OrderIntake
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.deliveries import Receiver, Seen, eventually, scripted
from web.api.order_status.schemas import PrintApiOrder, WebhookList, WebhookSubscribed

Client = TestClient[web.Request, web.Application]
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", outbound_allow=["127.0.0.1"])


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        await r.close()


async def receiver(receivers: list[Receiver], **kw: Any) -> Receiver:
    r = await Receiver(**kw).start()
    receivers.append(r)
    return r


def intake(gw: Gateway) -> OrderIntake:
    assert gw.ctx.intake is not None
    return gw.ctx.intake


def secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def subscribe(client: Client, auth: dict[str, str], url: str, **extra: Any) -> dict[str, Any]:
    resp = await client.post("/api/integrations/webhooks", json={"url": url, **extra}, headers=auth)
    body = await resp.json()
    assert resp.status in (200, 201), body
    WebhookSubscribed.model_validate(body)
    return dict(body["subscription"])


async def status_of(client: Client, auth: dict[str, str], number: int) -> str:
    resp = await client.get(f"/v1/orders/{number}", headers=auth)
    assert resp.status == 200
    return str((await resp.json())["status"])


async def start(client: Client, auth: dict[str, str], name: str, **extra: Any) -> None:
    """POST /api/v2/activeorders: start, or locate with `locationName`."""
    resp = await client.post(
        "/api/v2/activeorders",
        headers=auth,
        json={"name": name, "orderType": "ON_PREMISES", **extra},
    )
    assert resp.status in (200, 201), await resp.json()


def number_of(gw: Gateway, name: str) -> int:
    order = gw.ctx.orders.lookup(name)
    assert order is not None
    return order.number


async def count(r: Receiver, n: int) -> None:
    async def arrived() -> bool:
        return len(r.requests) >= n

    await eventually(arrived)


# -- GET /v1/orders/{id} --------------------------------------------------------------------


async def test_get_order_with_every_status(
    client: Client, auth: dict[str, str], gateway: Gateway
) -> None:
    await start(client, auth, "66")
    n66 = number_of(gateway, "66")
    resp = await client.get(f"/v1/orders/{n66}", headers=auth)
    assert resp.status == 200 and resp.content_type == "application/json"
    body = await resp.json()
    PrintApiOrder.model_validate(body)
    assert body["id"] == str(n66) and body["status"] == "Created"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}", body["dateTime"])
    assert (body["name"], body["orderType"], body["locationName"], body["items"]) == (
        "66",
        "ON_PREMISES",
        "",
        [],
    )

    await start(client, auth, "66", locationName="12")  # located at a table
    assert await status_of(client, auth, n66) == "Processing"

    made = (
        await intake(gateway).create(
            [NewItem("Margherita", 2, "PZ1", 850), NewItem("Tiramisu")], source="test"
        )
    ).order
    got = await (await client.get(f"/v1/orders/{made.number}", headers=auth)).json()
    PrintApiOrder.model_validate(got)
    assert got["status"] == "Created"
    assert got["items"][0] == {
        "id": f"{made.number}-1",
        "productId": "PZ1",
        "title": "Margherita",
        "quantity": 2,
        "price": 8.5,
        "status": "registered",
    }
    assert got["items"][1]["price"] is None and got["items"][1]["productId"] == ""
    await intake(gateway).set_item_status(str(made.number), "1", ItemStatus.PRODUCING)
    assert await status_of(client, auth, made.number) == "Processing"  # an item in production

    resp = await client.delete("/api/v2/activeorders/66", headers=auth)
    assert resp.status == 200
    assert await status_of(client, auth, n66) == "Shipped"  # cleared orders are still answered

    await intake(gateway).cancel(str(made.number))
    assert await status_of(client, auth, made.number) == "Cancelled"


async def test_get_order_bad_input(client: Client, auth: dict[str, str]) -> None:
    for path, status, rc in (
        ("/v1/orders/999", 404, -6),
        ("/v1/orders/abc", 400, -7),
        ("/v1/orders/0", 400, -7),
        ("/v1/orders/" + "9" * 20, 400, -7),
    ):
        resp = await client.get(path, headers=auth)
        body = await resp.json()
        assert (resp.status, body["returnCode"]) == (status, rc), (path, body)
    resp = await client.get("/v1/orders/1", headers={"Authorization": "Bearer " + "0" * 48})
    assert resp.status == 401


@pytest.mark.parametrize(
    "header", [None, "", "Bearer", "Bearer  ", "Token abc", "Basic eDo=", "Bearer " + "x" * 300]
)
async def test_missing_or_malformed_authorization_is_401_with_a_bearer_challenge(
    client: Client,
    header: str | None,
) -> None:
    """Issue 10: the Print API answers RFC 6750's 401 + `WWW-Authenticate: Bearer` in its own
    envelope (the table-tracker vendor's 400/-1 stays on the table-tracker paths). Basic is
    malformed here: it is only the table-tracker v1's."""
    headers = {} if header is None else {"Authorization": header}
    resp = await client.get("/v1/orders/1", headers=headers)
    body = await resp.json()
    assert (resp.status, body["status"], body["returnCode"]) == (401, 401, -1), body
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    assert "Authorization" in body["message"]
    other = await client.get("/api/v2/activeorders", headers=headers)
    assert (other.status, (await other.json())["returnCode"]) == (400, -1)
    assert "WWW-Authenticate" not in other.headers


async def test_an_invalid_token_is_401_with_a_bearer_challenge(client: Client) -> None:
    resp = await client.get("/v1/orders/1", headers={"Authorization": "Bearer " + "0" * 48})
    assert (resp.status, (await resp.json())["returnCode"]) == (401, -2)
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


# -- thin webhooks ----------------------------------------------------------------------------


async def test_thin_webhook_on_every_status_change_and_only_then(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    seen_status: list[str] = []

    async def thin_client(request: web.Request, seen: Seen) -> web.StreamResponse:
        # What seed 003 asks of a receiver: read the order's status with the id it got.
        order_id = (await request.post())["orderId"]
        seen_status.append(await status_of(client, auth, int(str(order_id))))
        return web.Response(status=200)

    r = await receiver(receivers, respond=thin_client)
    sub = await subscribe(client, auth, r.url("/print-api"))
    assert sub["signed"] is False and sub["kind"] == "printapi"

    await start(client, auth, "7")
    number = number_of(gateway, "7")
    await count(r, 1)
    await start(client, auth, "7", locationName="3")
    await count(r, 2)
    # Not status changes: located again elsewhere, paged, started again.
    await start(client, auth, "7", locationName="4")
    await start(client, auth, "7", locationName="4")
    await client.post("/api/v2/activeorders/7/page", headers=auth, json={"tracking": False})
    await client.delete("/api/v2/activeorders/7", headers=auth)
    await count(r, 3)
    await asyncio.sleep(0.1)

    assert seen_status == ["Created", "Processing", "Shipped"]
    assert [s.body for s in r.requests] == [f"orderId={number}".encode()] * 3
    assert {s.headers["Content-Type"] for s in r.requests} == {FORM}
    assert all(s.path == "/print-api" for s in r.requests)
    ids = [s.headers["webhook-id"] for s in r.requests]
    assert len(set(ids)) == 3
    assert not any("webhook-signature" in s.headers for s in r.requests)


async def test_items_in_production_move_the_status_once(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    await subscribe(client, auth, r.url())
    svc = intake(gateway)
    a = (await svc.create([NewItem("Soup"), NewItem("Bread")], source="test")).order
    await count(r, 1)
    await svc.set_item_status(str(a.number), "1", ItemStatus.PRODUCING)  # Processing
    await count(r, 2)
    await svc.set_item_status(str(a.number), "2", ItemStatus.PRODUCING)  # still Processing
    await svc.set_item_status(str(a.number), "1", ItemStatus.PACKED)
    await svc.set_item_status(str(a.number), "1", ItemStatus.SHIPPED)
    await svc.set_item_status(str(a.number), "2", ItemStatus.SHIPPED)  # all shipped: Shipped
    await count(r, 3)
    b = (await svc.create([NewItem("Cake")], source="test")).order
    await count(r, 4)
    await svc.cancel(str(b.number))  # Cancelled
    await count(r, 5)
    await asyncio.sleep(0.1)
    assert [s.body.decode() for s in r.requests] == [
        f"orderId={a.number}",
        f"orderId={a.number}",
        f"orderId={a.number}",
        f"orderId={b.number}",
        f"orderId={b.number}",
    ]
    assert await status_of(client, auth, a.number) == "Shipped"
    assert await status_of(client, auth, b.number) == "Cancelled"


async def test_every_subscription_gets_every_webhook(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    one, two = await receiver(receivers), await receiver(receivers)
    await subscribe(client, auth, one.url())
    await subscribe(client, auth, two.url("/other"))
    await start(client, auth, "21", locationName="2")  # created at a table: Processing
    await count(one, 1)
    await count(two, 1)
    assert one.requests[0].body == two.requests[0].body
    assert one.requests[0].headers["webhook-id"] != two.requests[0].headers["webhook-id"]


async def test_signed_webhooks_verify_with_standardwebhooks(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    key = secret()
    sub = await subscribe(client, auth, r.url(), signingSecret=key)
    assert sub["signed"] is True
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    assert key not in str(listing)  # the secret is never shown again
    await start(client, auth, "31")
    await start(client, auth, "31", locationName="1")
    await count(r, 2)
    for seen in r.requests:
        headers = {k: v for k, v in seen.headers.items() if k.lower().startswith("webhook-")}
        assert set(headers) == {"webhook-id", "webhook-timestamp", "webhook-signature"}
        assert Webhook(key).verify(seen.body, headers, json_parse=False) is None
        with pytest.raises(WebhookVerificationError):
            Webhook(secret()).verify(seen.body, headers, json_parse=False)
        with pytest.raises(WebhookVerificationError):
            Webhook(key).verify(seen.body + b"0", headers, json_parse=False)
    # Replacing the secret with none: later calls are unsigned.
    await subscribe(client, auth, r.url())
    await client.delete("/api/v2/activeorders/31", headers=auth)
    await count(r, 3)
    assert "webhook-signature" not in r.requests[2].headers


async def test_gone_disables_the_subscription(
    client: Client, auth: dict[str, str], gateway: Gateway, receivers: list[Receiver]
) -> None:
    gate = asyncio.Event()

    async def first_held_then_gone(_req: web.Request, seen: Seen) -> web.StreamResponse:
        if len(r.requests) == 1:
            await gate.wait()  # the next changes queue behind this one meanwhile
        return web.Response(status=410)

    r = await receiver(receivers, respond=first_held_then_gone)
    sub = await subscribe(client, auth, r.url())
    await start(client, auth, "41")
    await count(r, 1)
    await start(client, auth, "41", locationName="5")
    await client.delete("/api/v2/activeorders/41", headers=auth)
    assert await gateway.deliveries.pending() == 3
    gate.set()

    async def disabled() -> bool:
        listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
        return bool(listing["items"][0]["disabled"])

    await eventually(disabled)
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    WebhookList.model_validate(listing)
    assert listing["items"][0]["disabled_reason"] == "HTTP 410 Gone"
    assert await gateway.deliveries.pending() == 0
    dead = await gateway.deliveries.dead_letters(10)
    assert len(dead) == 3 and all(d.last_error and d.last_error.startswith("gone") for d in dead)
    assert len(r.requests) == 1  # the siblings died without a request
    await start(client, auth, "42")  # a disabled subscription gets nothing new
    await asyncio.sleep(0.05)
    assert await gateway.deliveries.pending() == 0

    r.respond = scripted()  # the receiver is back; subscribing again enables it
    again = await subscribe(client, auth, r.url())
    assert again["id"] == sub["id"] and again["disabled"] is None
    await start(client, auth, "42", locationName="1")
    await count(r, 2)


# -- the subscription API -----------------------------------------------------------------------


async def test_subscription_api(client: Client, auth: dict[str, str]) -> None:
    url = "http://192.0.2.10/hook"
    resp = await client.post(
        "/api/integrations/webhooks", headers=auth, json={"url": url, "kind": "printapi"}
    )
    body = await resp.json()
    assert resp.status == 201 and body["returnCode"] == 130
    sub_id = body["subscription"]["id"]
    resp = await client.post(
        "/api/integrations/webhooks", headers=auth, json={"url": url, "signingSecret": secret()}
    )
    assert resp.status == 200 and (await resp.json())["subscription"]["signed"] is True
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    WebhookList.model_validate(listing)
    assert listing["count"] == 1 and listing["items"][0]["url"] == url
    resp = await client.delete(f"/api/integrations/webhooks?id={sub_id}", headers=auth)
    assert resp.status == 200 and (await resp.json())["returnCode"] == 1300
    resp = await client.delete(f"/api/integrations/webhooks?id={sub_id}", headers=auth)
    assert resp.status == 404
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    assert listing["count"] == 0


@pytest.mark.parametrize(
    ("body", "rc"),
    [
        ({}, -28),
        ({"url": ""}, -28),
        ({"url": 5}, -29),
        ({"url": "ftp://192.0.2.1/x"}, -29),
        ({"url": "http://localhost/x"}, -29),
        ({"url": "http://169.254.169.254/latest/meta-data"}, -29),
        ({"url": "http://[::1]/x"}, -29),
        ({"url": "http://metadata.google.internal/x"}, -29),
        ({"url": "http://u:p@192.0.2.1/x"}, -29),
        ({"url": "http://192.0.2.1/x", "kind": "cloudsignal"}, -21),
        ({"url": "http://192.0.2.1/x", "signingSecret": "hunter2"}, -21),
        ({"url": "http://192.0.2.1/x", "signingSecret": "whsec_c2hvcnQ="}, -21),
        ({"url": "http://192.0.2.1/x", "signingSecret": 12}, -21),
    ],
)
async def test_subscription_bad_input(
    client: Client, auth: dict[str, str], body: dict[str, Any], rc: int
) -> None:
    resp = await client.post("/api/integrations/webhooks", json=body, headers=auth)
    answer = await resp.json()
    assert (resp.status, answer["returnCode"]) == (400, rc), answer
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    assert listing["count"] == 0  # no side effect


async def test_subscription_api_needs_a_token(client: Client) -> None:
    for method in ("GET", "POST", "DELETE"):
        resp = await client.request(
            method,
            "/api/integrations/webhooks?id=1",
            headers={"Authorization": "Bearer " + "1" * 48},
        )
        assert resp.status == 401
    resp = await client.delete("/api/integrations/webhooks?id=x", headers={})
    assert resp.status == 400
