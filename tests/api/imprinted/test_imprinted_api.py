"""The Imprinted order API (seed 001) on a real gateway: JSON and XML round-trips, the seed's
field names, filters and paging, delete, idempotency, and one order model."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.app import Gateway, build
from gateway.core.models import ItemStatus
from gateway.services.orders.intake import NewItem, OrderIntake
from printers.escpos_tokens import to_text
from tests.api.imprinted.test_imprinted_helpers import (
    ITEM_KEYS,
    ORDER_KEYS,
    SEED_JSON,
    SEED_XML,
    Client,
    Imprinted,
    as_text,
    make_app,
    parse_xml,
)
from tests.conftest import make_settings
from tests.printers.fake_printer import FakePrinter
from web.api.imprinted import schemas as isc


@pytest.fixture
async def shop(client: Client, auth: dict[str, str]) -> Imprinted:
    return await make_app(client, auth)


def intake(gw: Gateway) -> OrderIntake:
    assert gw.ctx.intake is not None
    return gw.ctx.intake


async def bulk(gw: Gateway, shop: Imprinted, n: int, **kw: Any) -> list[int]:
    """n orders of the app straight through the intake (same model, faster than HTTP)."""
    made = await asyncio.gather(
        *(
            intake(gw).create(
                [NewItem("Hoodie", 1, "JH001", 2000)], source=f"imprinted:{shop.app_id}", **kw
            )
            for _ in range(n)
        )
    )
    return sorted(c.order.number for c in made)


async def ids_of(shop: Imprinted, query: str) -> list[int]:
    resp = await shop.get("/api/orders.php", query)
    body = await resp.json()
    assert resp.status == 200, body
    isc.ImprintedOrderList.model_validate(body)
    return [int(o["id"]) for o in body["orders"]]


async def count_of(shop: Imprinted, query: str = "") -> int:
    resp = await shop.get("/api/orders/count.php", query)
    body = await resp.json()
    assert resp.status == 200, body
    return int(isc.ImprintedCount.model_validate(body).count)


async def error_of(resp: Any, status: int, code: str) -> str:
    body = await resp.json()
    assert resp.status == status, body
    isc.ImprintedError.model_validate(body)
    assert body["error"]["code"] == code, body
    return str(body["error"]["message"])


# -- round trips --------------------------------------------------------------------------


async def test_json_round_trip_create_get_list_count(shop: Imprinted, gateway: Gateway) -> None:
    created = await shop.create({**SEED_JSON, "external_id": "TEST-234324"})
    assert set(created) == ORDER_KEYS
    assert set(created["items"][0]) == ITEM_KEYS
    assert created["type"] == "order" and created["status"] == "received"
    assert created["deleted"] == "false" and created["external_id"] == "TEST-234324"
    assert created["brand"] == "Imprinted" and created["comment"] == "Test order."
    assert created["shipping_address"]["postcode"] == "BB1 5QH"
    assert created["shipping"] == {
        "shippingMethod": "courier",
        "trackingNumber": None,
        "shiped_at": None,
    }
    item = created["items"][0]
    assert item == {
        "pn": "JH001",
        "title": "JH001",
        "price": "20.00",
        "retailPrice": "20.00",
        "quantity": "4",
        "description": "Please print as large as posible",
        "brandName": "Imprinted",
        "label": {"type": "printed", "name": "ink-label"},
        "designs": SEED_JSON["items"][0]["designs"],
        "mockups": {},
    }
    assert created["summary"]["subtotalPrice"] == "80.00"
    assert created["billing_address"] is None and created["payment"] is None
    assert created["created_at"].endswith("+00:00")  # the gateway's zone (UTC by default)

    oid = created["id"]
    resp = await shop.get("/api/order.php", f"id={oid}")
    got = await resp.json()
    assert resp.status == 200 and got == {"order": created}
    assert await ids_of(shop, "") == [int(oid)]
    assert await count_of(shop) == 1
    # The canonical order behind it: items in minor units, the extras kept verbatim.
    order = await intake(gateway).get(created["id"])
    assert order.source == f"imprinted:{shop.app_id}" and order.external_id == "TEST-234324"
    assert order.items[0].price == 2000 and order.items[0].product_code == "JH001"
    assert order.extra["shipping"] == {"shippingMethod": "courier"}


async def test_xml_round_trip_with_the_seeds_example(shop: Imprinted) -> None:
    resp = await shop.post_raw(SEED_XML, "application/xml")
    raw = await resp.read()
    assert resp.status == 201, raw
    assert resp.content_type == "application/xml"
    created = parse_xml(raw)
    assert set(created) == ORDER_KEYS
    item = created["items"][0]
    assert set(item) == ITEM_KEYS
    assert item["retailPrice"] == "25.00" and item["quantity"] == "4"
    assert item["designs"]["back"] == "http://data3.whicdn.com/images/168204223/large.jpg"
    assert created["shipping_address"]["phone1"] == "+44 (0)1254 777070"
    oid = created["id"]

    one = await shop.get("/api/order.php", f"id={oid}&format=xml")
    assert one.status == 200 and parse_xml(await one.read()) == created
    listed = await shop.get("/api/orders.php", "format=XML")
    orders = parse_xml(await listed.read())
    assert orders == [created]
    counted = await shop.get("/api/orders/count.php", "format=xml")
    assert (await counted.read()).decode().strip().endswith("<count>1</count>")
    # The same order in JSON carries the same values.
    as_json = await (await shop.get("/api/order.php", f"id={oid}")).json()
    assert as_text(as_json["order"]) == created


async def test_json_and_xml_bodies_make_the_same_order(shop: Imprinted) -> None:
    xml = SEED_XML.replace(b"<retailPrice>25.00</retailPrice>", b"<retailPrice>20</retailPrice>")
    from_xml = parse_xml(await (await shop.post_raw(xml, "text/xml")).read())
    from_json = await shop.create()
    for order in (from_xml, from_json):
        order.pop("id"), order.pop("created_at")
    assert as_text(from_json) == from_xml


async def test_jsn_is_json_and_wrapped_bodies_are_accepted(shop: Imprinted) -> None:
    created = await shop.create({"order": {"items": [{"pn": "X1"}]}})
    assert created["items"][0]["quantity"] == "1" and created["items"][0]["retailPrice"] is None
    resp = await shop.get("/api/orders.php", "format=JSN")
    assert resp.status == 200 and resp.content_type == "application/json"


async def test_an_order_made_here_is_an_active_order_for_the_pos(
    shop: Imprinted, client: Client, auth: dict[str, str]
) -> None:
    created = await shop.create()
    resp = await client.get("/api/v2/activeorders", headers=auth)
    body = await resp.json()
    assert [o["name"] for o in body["items"]] == [created["id"]]
    assert body["items"][0]["orderType"] == "TO_GO"


# -- filters and paging -------------------------------------------------------------------


async def test_limit_page_and_the_limit_of_250(shop: Imprinted, gateway: Gateway) -> None:
    numbers = await bulk(gateway, shop, 260)
    assert await ids_of(shop, "") == numbers[:50]  # default limit 50, by id
    assert await ids_of(shop, "limit=250") == numbers[:250]
    assert await ids_of(shop, "limit=250&page=2") == numbers[250:]
    assert await ids_of(shop, "limit=7&page=3") == numbers[14:21]
    assert await ids_of(shop, "limit=250&page=3") == []
    assert await count_of(shop) == 260
    assert await count_of(shop, "limit=1&page=9") == 260  # paging does not change a count
    for bad in ("limit=251", "limit=0", "limit=x", "limit=-1"):
        resp = await shop.get("/api/orders.php", bad)
        assert "250" in await error_of(resp, 400, "bad_limit")
    resp = await shop.get("/api/orders.php", "page=0")
    await error_of(resp, 400, "bad_parameter")


async def test_since_id_ids_and_created_at(shop: Imprinted, gateway: Gateway) -> None:
    first = await bulk(gateway, shop, 3)
    await asyncio.sleep(1.05)  # the next ones are created in a later second
    later = await bulk(gateway, shop, 2)
    assert await ids_of(shop, f"since_id={first[1]}") == [first[2], *later]
    assert await count_of(shop, f"since_id={first[2]}") == 2
    assert await ids_of(shop, f"ids={later[1]},{first[0]}") == [first[0], later[1]]
    assert await ids_of(shop, "ids=999999") == []
    resp = await shop.get("/api/order.php", f"id={later[0]}")
    boundary = (await resp.json())["order"]["created_at"]
    iso = boundary.replace("+", "%2B")
    assert await ids_of(shop, f"created_at_min={iso}") == later
    assert await ids_of(shop, f"created_at_max={iso}") == [*first, *later]
    resp = await shop.get("/api/order.php", f"id={first[0]}")
    early = (await resp.json())["order"]["created_at"].replace("+", "%2B")
    assert await ids_of(shop, f"created_at_max={early}") == first
    assert await count_of(shop, f"created_at_min={iso}&created_at_max={iso}") == 2
    # Another zone's offset names the same instant; an unencoded '+' arrives as a space.
    assert await ids_of(shop, f"created_at_min={boundary}") == later
    for bad, code in (
        ("created_at_min=yesterday", "bad_date"),
        ("created_at_min=2016-13-45T99:00:00Z", "bad_date"),
        ("ids=1,,2", "bad_order_id"),
        ("ids=a", "bad_order_id"),
        ("since_id=-1", "bad_parameter"),
        ("sinceid=1", "bad_parameter"),
        ("limit=1&limit=2", "bad_parameter"),
        ("format=yaml", "bad_parameter"),
    ):
        await error_of(await shop.get("/api/orders.php", bad), 400, code)


async def test_status_filter_follows_the_kitchen(shop: Imprinted, gateway: Gateway) -> None:
    a, b, c = [
        await shop.create({"external_id": f"S{n}", "items": [{"pn": "A"}, {"pn": "B"}]})
        for n in range(3)
    ]
    located = await intake(gateway).create(
        [NewItem("Tea")], source=f"imprinted:{shop.app_id}", location="12"
    )
    await intake(gateway).set_item_status(b["id"], f"{b['id']}-1", ItemStatus.PRODUCING)
    for pos in (1, 2):
        await intake(gateway).set_item_status(c["id"], f"{c['id']}-{pos}", ItemStatus.PRODUCED)
    expect = {
        "received": [int(a["id"])],
        "printing": [int(b["id"])],
        "quality control": [int(c["id"])],
        "in progress": [located.order.number],
        "paid": [],
        "refunded": [],
        "stock allocation": [],
        "internal order query": [],
    }
    for status, numbers in expect.items():
        query = f"status={status.replace(' ', '%20')}"
        assert await ids_of(shop, query) == numbers, status
        assert await count_of(shop, query) == len(numbers), status
    assert await ids_of(shop, "status=in+progress") == [located.order.number]
    resp = await shop.get("/api/order.php", f"id={b['id']}")
    assert (await resp.json())["order"]["status"] == "printing"
    msg = await error_of(
        await shop.get("/api/orders.php", "status=shipped"), 400, "bad_status_filter"
    )
    assert "received" in msg
    await error_of(await shop.get("/api/orders/count.php", "status=nope"), 400, "bad_status_filter")


async def test_an_app_sees_only_its_own_orders(
    shop: Imprinted, client: Client, auth: dict[str, str], gateway: Gateway
) -> None:
    other = await make_app(client, auth, "other")
    mine = await shop.create()
    theirs = await other.create()
    await gateway.ctx.orders.start_or_locate("77", "TO_GO", None)  # a POS order
    assert await ids_of(shop, "") == [int(mine["id"])]
    assert await ids_of(other, "") == [int(theirs["id"])]
    await error_of(await shop.get("/api/order.php", f"id={theirs['id']}"), 404, "order_not_found")
    await error_of(await shop.delete(f"id={theirs['id']}"), 404, "order_not_found")


# -- delete -------------------------------------------------------------------------------


async def test_delete_unpaid_then_twice(
    shop: Imprinted, client: Client, auth: dict[str, str]
) -> None:
    created = await shop.create()
    resp = await shop.delete(f"id={created['id']}")
    body = await resp.json()
    assert resp.status == 200, body
    assert body["order"]["deleted"] == "true"
    assert body["order"]["shipping"]["shiped_at"] is None  # cancelled, not handed over
    got = await (await shop.get("/api/order.php", f"id={created['id']}")).json()
    assert got["order"]["deleted"] == "true"
    active = await (await client.get("/api/v2/activeorders", headers=auth)).json()
    assert active["count"] == 0
    await error_of(await shop.delete(f"id={created['id']}"), 409, "order_closed")
    await error_of(await shop.delete("id=424242"), 404, "order_not_found")
    await error_of(await shop.delete("id=abc"), 400, "bad_order_id")
    await error_of(await shop.delete(""), 400, "bad_order_id")


async def test_a_paid_order_cannot_be_deleted(shop: Imprinted, gateway: Gateway) -> None:
    paid = await intake(gateway).create(
        [NewItem("Hoodie", 1, "JH001", 2000)],
        source=f"imprinted:{shop.app_id}",
        extra={
            "payment": {
                "methodMethod": "Pay by Credit or Debit Card",
                "paid_at": "2016-10-17T16:14:08+01:00",
            }
        },
    )
    number = paid.order.number
    await error_of(await shop.delete(f"id={number}"), 409, "order_paid")
    got = (await (await shop.get("/api/order.php", f"id={number}")).json())["order"]
    assert got["deleted"] == "false" and got["status"] == "paid"
    assert got["payment"] == {
        "methodMethod": "Pay by Credit or Debit Card",
        "paid_at": "2016-10-17T16:14:08+01:00",
    }
    assert await ids_of(shop, "status=paid") == [number]
    assert (await intake(gateway).get(str(number))).active


async def test_a_delete_answers_in_xml_when_asked(shop: Imprinted) -> None:
    created = await shop.create()
    resp = await shop.delete(f"id={created['id']}&format=xml")
    assert resp.status == 200 and parse_xml(await resp.read())["deleted"] == "true"
    again = await shop.delete(f"id={created['id']}&format=xml")
    assert again.status == 409
    assert parse_xml(await again.read())["code"] == "order_closed"


async def test_handed_over_orders_show_shiped_at(shop: Imprinted, gateway: Gateway) -> None:
    created = await shop.create({"items": [{"pn": "A"}]})
    await intake(gateway).set_item_status(created["id"], "1", ItemStatus.SHIPPED)
    got = (await (await shop.get("/api/order.php", f"id={created['id']}")).json())["order"]
    assert got["status"] == "quality control" and got["deleted"] == "false"
    assert got["shipping"]["shiped_at"] is not None


# -- idempotency --------------------------------------------------------------------------


async def test_same_external_id_returns_the_same_order(shop: Imprinted) -> None:
    first = await shop.post({**SEED_JSON, "external_id": "EXT-1"})
    assert first.status == 201
    # A retry after a lost answer (new bytes: another retry attempt's serialization).
    again = await shop.post({**SEED_JSON, "external_id": "EXT-1", "comment": "retry"})
    body = await again.json()
    assert again.status == 200, body
    assert body["order"]["id"] == (await first.json())["order"]["id"]
    assert body["order"]["comment"] == "Test order."  # the first order, unchanged
    assert await count_of(shop) == 1
    xml = SEED_XML.replace(b"<order>", b"<order><external_id>EXT-1</external_id>")
    resp = await shop.post_raw(xml, "application/xml")
    assert resp.status == 200 and await count_of(shop) == 1


async def test_concurrent_retries_make_one_order(shop: Imprinted) -> None:
    bodies = [
        orjson.dumps({**SEED_JSON, "external_id": "EXT-2", "comment": f"try {n}"}) for n in range(8)
    ]
    answers = await asyncio.gather(*(shop.post_raw(b) for b in bodies))
    assert sorted(r.status for r in answers) == [200] * 7 + [201]
    assert len({(await r.json())["order"]["id"] for r in answers}) == 1
    assert await count_of(shop) == 1


# -- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("order", "field"),
    [
        ({}, "items"),
        ({"items": []}, "items"),
        ({"items": [{}]}, "items[0].pn"),
        ({"items": [{"pn": "A", "quantity": 0}]}, "items[0].quantity"),
        ({"items": [{"pn": "A", "quantity": "four"}]}, "items[0].quantity"),
        ({"items": [{"pn": "A", "quantity": True}]}, "items[0].quantity"),
        ({"items": [{"pn": "A", "retailPrice": "1.234"}]}, "items[0].retailPrice"),
        ({"items": [{"pn": "A", "retailPrice": -1}]}, "items[0].retailPrice"),
        ({"items": [{"pn": "A", "retailPrice": [1]}]}, "items[0].retailPrice"),
        ({"items": [{"pn": "A", "designs": ["front"]}]}, "items[0].designs"),
        ({"items": [{"pn": "A", "designs": {"front": 1}}]}, "items[0].designs.front"),
        ({"items": [{"pn": "A", "colour": "red"}]}, "items[0].colour"),
        ({"items": [{"pn": "A\u0001"}]}, "items[0].pn"),
        ({"items": [{"pn": "A"}], "shipping": {"shippingMethod": "pigeon"}}, "shippingMethod"),
        ({"items": [{"pn": "A"}], "shipping_address": {"planet": "Mars"}}, "planet"),
        ({"items": [{"pn": "A"}], "shipping_adress": {}}, "shipping_adress"),
        ({"items": [{"pn": "A"}], "comment": 5}, "comment"),
        ({"items": [{"pn": "A"}], "summary": {"currency": "pounds"}}, "currency"),
        ({"items": "JH001"}, "items"),
    ],
)
async def test_wrong_types_are_400_with_the_field_named(
    shop: Imprinted, order: dict[str, Any], field: str
) -> None:
    msg = await error_of(await shop.post(order), 400, "bad_order")
    assert field in msg
    assert await count_of(shop) == 0


async def test_malformed_bodies_are_400_in_their_format(shop: Imprinted) -> None:
    await error_of(await shop.post_raw(b'{"items": [}'), 400, "bad_json")
    await error_of(await shop.post_raw(b""), 400, "bad_json")
    await error_of(await shop.post_raw(b"[1, 2]"), 400, "bad_order")
    await error_of(await shop.post_raw(b"[" * 5000 + b"]" * 5000), 400, "bad_json")
    resp = await shop.post_raw(b"<order><items>", "application/xml")
    assert resp.status == 400 and resp.content_type == "application/xml"
    err = parse_xml(await resp.read())
    assert err["code"] == "bad_xml" and "malformed" in err["message"]
    resp = await shop.post_raw(b"<basket/>", "application/xml")
    assert parse_xml(await resp.read())["message"].startswith("Invalid XML body: the root")
    await error_of(
        await shop.post_raw(b"items=1", "application/x-www-form-urlencoded"),
        415,
        "unsupported_media_type",
    )
    await error_of(
        await shop.post_raw(orjson.dumps(SEED_JSON), query="colour=red"), 400, "bad_parameter"
    )
    assert await count_of(shop) == 0


async def test_oversized_body_is_413_in_the_envelope(shop: Imprinted) -> None:
    await error_of(await shop.post_raw(b" " * 70_000), 413, "body_too_large")


async def test_method_and_unknown_order(shop: Imprinted, client: Client) -> None:
    resp = await client.put("/api/orders.php")
    await error_of(resp, 405, "method_not_allowed")
    await error_of(await shop.get("/api/order.php", "id=31337"), 404, "order_not_found")
    await error_of(await shop.get("/api/order.php", ""), 400, "bad_order_id")


async def test_times_carry_the_gateways_offset(
    shop: Imprinted, client: Client, auth: dict[str, str]
) -> None:
    resp = await client.post(
        "/api/v2/gateway/settings", json={"timezone": "Asia/Kolkata"}, headers=auth
    )
    assert resp.status == 200
    created = await shop.create()
    assert created["created_at"].endswith("+05:30")
    stamp = created["created_at"].replace("+", "%2B")
    assert await ids_of(shop, f"created_at_min={stamp}&created_at_max={stamp}") == [
        int(created["id"])
    ]
    # Without an offset: the gateway's time zone.
    assert await ids_of(shop, f"created_at_min={stamp[:19]}") == [int(created["id"])]


async def test_an_order_made_here_prints_a_kitchen_ticket(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    async with FakePrinter() as fake:
        settings = make_settings(
            tmp_path / "data",
            outbound_allow=["127.0.0.1"],
            print_kitchen_station="kitchen",
            printers=[
                {
                    "id": "kp",
                    "name": "Kitchen",
                    "station": "kitchen",
                    "address": f"tcp://127.0.0.1:{fake.port}",
                }
            ],
        )
        gw = await build(settings)
        client = await aiohttp_client(gw.app)
        token = (await gw.tokens.issue("pos", "127.0.0.1")).secret
        app = await make_app(client, {"Authorization": f"Bearer {token}"})
        created = await app.create(
            {"external_id": "K-1", "items": [{"pn": "JH001", "title": "Hoodie", "quantity": 2}]}
        )
        again = await app.post({"external_id": "K-1", "items": [{"pn": "JH001"}]})
        assert again.status == 200  # the same order: no second ticket
        end = time.monotonic() + 10
        while not fake.printed:
            assert time.monotonic() < end, "no ticket printed"
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)
        assert len(fake.printed) == 1
        text = to_text(fake.printed[0])
        assert f"#{created['id']}" in text and "Hoodie" in text


async def test_null_fields_are_fields_left_out(shop: Imprinted) -> None:
    created = await shop.create(
        {
            "external_id": None,
            "comment": None,
            "shipping": None,
            "shipping_address": {"firstName": "Alex", "address2": None},
            "items": [
                {
                    "pn": "JH001",
                    "title": None,
                    "retailPrice": None,
                    "label": None,
                    "designs": {"front": "http://x/f.png", "back": None},
                }
            ],
        }
    )
    assert created["external_id"] == "" and created["comment"] == ""
    assert created["shipping_address"] == {"firstName": "Alex"}
    item = created["items"][0]
    assert item["title"] == "JH001" and item["retailPrice"] is None and item["label"] is None
    assert item["designs"] == {"front": "http://x/f.png"}
