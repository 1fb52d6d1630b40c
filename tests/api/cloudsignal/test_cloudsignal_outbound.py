"""CloudSignal v1.1 (seed 002) outbound: every item change becomes the seed's signal, written
in the change's transaction and delivered by the real outbox worker to a real receiver on
127.0.0.1, in order, with the subscription's apikey and the seed's exact field names."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ClearReason, Item, ItemStatus, Order, OrderState
from gateway.services.integrations.cloudsignal import (
    SignalType,
    order_id,
    signal_time,
    signals_for,
    tracking_of,
)
from gateway.services.orders.book import OrderRef
from gateway.services.orders.intake import NewItem
from gateway.settings import Settings
from tests.conftest import make_settings
from tests.support.deliveries import Receiver, eventually, scripted

Client = TestClient[web.Request, web.Application]
SEED_APIKEY = "13b37bb1ed6d3403e158abe719b4f6d0"
SUBS = "/api/integrations/cloudsignal/subscriptions"
DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} GMT$")
# The seed's parameter tables, in its examples' key order.
FIELDS = {
    "OrderRegistered": ["apikey", "type", "order", "datetime"],
    "ItemProduce": ["apikey", "type", "order", "item", "datetime"],
    "ItemProduced": ["apikey", "type", "order", "item", "datetime"],
    "ItemPacked": ["apikey", "type", "order", "item", "datetime"],
    "ItemShipped": ["apikey", "type", "order", "item", "tracking", "datetime"],
    "ItemError": ["apikey", "type", "order", "item", "cause", "delay", "datetime"],
    "ItemCanceled": ["apikey", "type", "order", "item", "cause", "message", "datetime"],
}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data", outbound_allow=["127.0.0.1"])


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.close()


async def subscribe(
    client: Client, auth: dict[str, str], url: str, apikey: str = SEED_APIKEY
) -> int:
    resp = await client.post(SUBS, json={"url": url, "apikey": apikey}, headers=auth)
    assert resp.status in (200, 201), await resp.text()
    return int((await resp.json())["subscription"]["id"])


async def make_order(gateway: Gateway, *titles: str, **kw: Any) -> Order:
    assert gateway.ctx.intake is not None
    return (
        await gateway.ctx.intake.create(
            [NewItem(t) for t in titles or ("Burger",)], source="test", **kw
        )
    ).order


async def move(gateway: Gateway, order: Order, index: int, status: ItemStatus, **kw: Any) -> Order:
    assert gateway.ctx.intake is not None
    return await gateway.ctx.intake.set_item_status(order.uuid, order.items[index].id, status, **kw)


def signals(receiver: Receiver) -> list[dict[str, Any]]:
    return [json.loads(s.body) for s in receiver.requests]


async def received(receiver: Receiver, n: int) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len(receiver.requests) >= n

    await eventually(enough)
    return signals(receiver)


async def outbox_rows(gateway: Gateway) -> list[tuple[str, str, str, bytes]]:
    def read(conn: sqlite3.Connection) -> list[tuple[str, str, str, bytes]]:
        return conn.execute(
            "SELECT event_id, kind, content_type, body FROM outbox ORDER BY id"
        ).fetchall()

    return await gateway.reader.run(read)


def check_shape(body: dict[str, Any]) -> None:
    assert list(body) == FIELDS[body["type"]] or (
        # optional parameters are left out when the item has no value for them
        set(body) <= set(FIELDS[body["type"]]) and body["type"] in ("ItemError", "ItemCanceled")
    ), body
    assert all(isinstance(v, str) for v in body.values()), body
    assert DATETIME.match(body["datetime"]), body


# -- end to end -------------------------------------------------------------------------------


async def test_every_signal_reaches_a_real_receiver_in_order(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url("/1.1/status/"))
    order = await make_order(gateway, "Burger", "Fries", "Shake", location="12")
    n = str(order.number)
    for status in (
        ItemStatus.PRODUCING,
        ItemStatus.PRODUCED,
        ItemStatus.PACKED,
        ItemStatus.SHIPPED,
    ):
        await move(gateway, order, 0, status)
    await move(
        gateway, order, 1, ItemStatus.ERROR, cause="Print error, reprint needed", delay=24 * 60
    )
    await move(gateway, order, 1, ItemStatus.CANCELED, cause="190", message="Example message")
    await move(gateway, order, 2, ItemStatus.SHIPPED)  # the last one: the order is handed over
    got = await received(receiver, 8)
    assert [(b["type"], b.get("item")) for b in got] == [
        ("OrderRegistered", None),
        ("ItemProduce", f"{n}-1"),
        ("ItemProduced", f"{n}-1"),
        ("ItemPacked", f"{n}-1"),
        ("ItemShipped", f"{n}-1"),
        ("ItemError", f"{n}-2"),
        ("ItemCanceled", f"{n}-2"),
        ("ItemShipped", f"{n}-3"),
    ]
    for body in got:
        check_shape(body)
        assert body["apikey"] == SEED_APIKEY and body["order"] == n
    assert got[4]["tracking"] == "table:12"
    assert (got[5]["cause"], got[5]["delay"]) == ("Print error, reprint needed", "24")
    assert (got[6]["cause"], got[6]["message"]) == ("190", "Example message")
    seen = receiver.requests
    assert {s.headers["Content-Type"] for s in seen} == {"application/json"}
    assert {s.path for s in seen} == {"/1.1/status/"}
    assert len({s.event_id for s in seen}) == 8  # a stable id each (webhook-id)
    assert len(receiver.requests) == 8  # the automatic hand-over added no second ItemShipped


async def test_a_cleared_order_ships_what_was_not_done_yet(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url())
    order = await make_order(gateway, "Burger", "Fries", "Shake")
    await move(gateway, order, 0, ItemStatus.CANCELED, cause="sold out")
    await move(gateway, order, 1, ItemStatus.PACKED)
    await gateway.ctx.orders.clear(OrderRef(uuid=order.uuid), ClearReason.MANAGER_OVERRIDE)
    got = await received(receiver, 5)
    n = order.number
    assert [(b["type"], b.get("item")) for b in got] == [
        ("OrderRegistered", None),
        ("ItemCanceled", f"{n}-1"),
        ("ItemPacked", f"{n}-2"),
        ("ItemShipped", f"{n}-2"),
        ("ItemShipped", f"{n}-3"),
    ]
    assert got[3]["tracking"] == got[4]["tracking"] == f"pickup:{order.name}"
    assert got[1] == {
        "apikey": SEED_APIKEY,
        "type": "ItemCanceled",
        "order": str(n),
        "item": f"{n}-1",
        "cause": "sold out",
        "datetime": got[1]["datetime"],
    }


async def test_a_cancelled_order_cancels_its_items(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    await subscribe(client, auth, receiver.url())
    order = await make_order(gateway, "Burger", "Fries")
    await move(gateway, order, 0, ItemStatus.SHIPPED)
    assert gateway.ctx.intake is not None
    await gateway.ctx.intake.cancel(order.uuid)
    got = await received(receiver, 3)
    assert [(b["type"], b.get("cause")) for b in got] == [
        ("OrderRegistered", None),
        ("ItemShipped", None),
        ("ItemCanceled", "order-cancelled"),
    ]


async def test_each_subscriber_gets_its_own_apikey(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    receiver: Receiver,
) -> None:
    other = await Receiver().start()
    try:
        await subscribe(client, auth, receiver.url(), "key-one")
        await subscribe(client, auth, other.url(), "key-two")
        await make_order(gateway)
        assert (await received(receiver, 1))[0]["apikey"] == "key-one"
        assert (await received(other, 1))[0]["apikey"] == "key-two"
        assert receiver.requests[0].event_id != other.requests[0].event_id
    finally:
        await other.close()


async def test_a_receiver_that_answers_410_is_unsubscribed(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
) -> None:
    gone = await Receiver(respond=scripted(410)).start()
    try:
        await subscribe(client, auth, gone.url())
        await make_order(gateway)
        await received(gone, 1)

        async def disabled() -> bool:
            listing = await (await client.get(SUBS, headers=auth)).json()
            return listing["items"][0]["disabled"] is not None

        await eventually(disabled)
        listing = await (await client.get(SUBS, headers=auth)).json()
        assert listing["items"][0]["disabled_reason"] == "HTTP 410 Gone"
        before = len(await outbox_rows(gateway))
        await make_order(gateway)
        assert len(await outbox_rows(gateway)) == before  # nothing more for it
        await subscribe(client, auth, gone.url())  # subscribing again enables it
        await make_order(gateway)
        assert len(await outbox_rows(gateway)) == before + 1
    finally:
        await gone.close()


# -- in the change's transaction (the outbox worker is not running: gateway without client) ---


async def add_subscription(
    gateway: Gateway, url: str = "http://signals.example/1.1/status/", apikey: str = SEED_APIKEY
) -> None:
    await gateway.ctx.cloudsignal.subscribe(url, apikey)


async def test_rows_commit_with_the_change(gateway: Gateway) -> None:
    await add_subscription(gateway)
    order = await make_order(gateway, "Burger", "Fries")
    rows = await outbox_rows(gateway)
    assert [(k, ct) for _, k, ct, _ in rows] == [("cloudsignal", "application/json")]
    await move(gateway, order, 0, ItemStatus.PRODUCING)
    assert len(await outbox_rows(gateway)) == 2
    with pytest.raises(Exception, match="cannot become"):  # refused: no change, no signal
        await move(gateway, order, 0, ItemStatus.REGISTERED)
    await move(gateway, order, 0, ItemStatus.PRODUCING)  # the same again: nothing new
    assert len(await outbox_rows(gateway)) == 2


async def test_nothing_is_written_without_a_subscription_or_items(gateway: Gateway) -> None:
    order = await make_order(gateway)
    await move(gateway, order, 0, ItemStatus.PRODUCING)
    assert await outbox_rows(gateway) == []
    await add_subscription(gateway)
    await gateway.ctx.orders.start_or_locate("77", "TO_GO", None)  # a POS order: no items
    assert await outbox_rows(gateway) == []


async def test_a_frozen_clock_still_signals_each_fact_once(
    gateway: Gateway,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The last item's move and the hand-over it causes read the same clock: the hand-over
    event sees that item changed at its own time, and must not signal it a second time."""
    await add_subscription(gateway)
    monkeypatch.setattr(gateway.ctx.clock, "now", lambda: 1_700_000_000.0)
    order = await make_order(gateway, "Burger")
    await move(gateway, order, 0, ItemStatus.SHIPPED)
    types = [json.loads(body)["type"] for *_, body in await outbox_rows(gateway)]
    assert types == ["OrderRegistered", "ItemShipped"]


# -- the rendering, without I/O ---------------------------------------------------------------


def _order(**kw: Any) -> Order:
    base: dict[str, Any] = dict(
        uuid="u-1",
        name="7",
        order_type="TO_GO",
        location="",
        state=OrderState.STARTED,
        created=1.0,
        state_changed=1.0,
        number=42,
    )
    return Order(**(base | kw))


def test_tracking_names_where_the_dish_went() -> None:
    assert tracking_of(_order(location="12")) == "table:12"
    assert tracking_of(_order(tracker="AA:BB:CC:DD:EE:FF")) == "tracker:7"
    assert tracking_of(_order()) == "pickup:7"
    assert order_id(_order()) == "42"


def test_datetime_is_the_seeds() -> None:
    assert signal_time(1453294800.0) == "2016-01-20 13:00:00 GMT"  # the seed's example


def test_signals_for_each_event_type() -> None:
    ts = 1453294800.0
    items = (
        Item(
            "42-1", 1, "Burger", status=ItemStatus.ERROR, status_changed=ts, cause="burnt", delay=90
        ),
        Item("42-2", 2, "Fries", status=ItemStatus.PACKED, status_changed=ts - 5),
    )
    order = _order(items=items)
    new = list(signals_for(OrderEvent(1, OrderEventType.NEW_ORDER, ts, order)))
    assert [s.type for s in new] == [SignalType.ORDER_REGISTERED, SignalType.ITEM_ERROR]
    body = json.loads(new[1].body("k"))
    assert body == {
        "apikey": "k",
        "type": "ItemError",
        "order": "42",
        "item": "42-1",
        "cause": "burnt",
        "delay": "2",
        "datetime": "2016-01-20 13:00:00 GMT",
    }
    paged = list(signals_for(OrderEvent(2, OrderEventType.ORDER_PAGED, ts + 1, order)))
    assert paged == []  # nothing changed at that time
    assert list(signals_for(OrderEvent(3, OrderEventType.NEW_ORDER, ts, _order()))) == []
