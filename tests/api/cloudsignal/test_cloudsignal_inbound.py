"""CloudSignal v1.1 (seed 002) inbound: a kitchen display's signals move the gateway's items.

Every response code the seed lists (200, 400, 401, 403), with the seed's parameter names and
its example values; idempotence; and a fuzz of bodies that must never produce a 500."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.core.models import ItemStatus, Order
from gateway.services.orders.intake import NewItem
from web.api.trackertrack import schemas as sc

Client = TestClient[web.Request, web.Application]
PATH = "/cloudsignal/1.1/status/"
PATHS = (PATH, "/cloudsignal/1.1/status", "/1.1/status/", "/1.1/status")
WHEN = "2016-01-20 13:00:00 GMT"  # the seed's


async def new_key(client: Client, auth: dict[str, str], name: str = "kds") -> str:
    resp = await client.post(
        "/api/integrations/cloudsignal/keys", json={"name": name}, headers=auth
    )
    assert resp.status == 201
    return str((await resp.json())["key"]["apikey"])


@pytest.fixture
async def apikey(client: Client, auth: dict[str, str]) -> str:
    return await new_key(client, auth)


@pytest.fixture
async def order(gateway: Gateway) -> Order:
    assert gateway.ctx.intake is not None
    made = await gateway.ctx.intake.create(
        [NewItem("Burger", product_code="B1"), NewItem("Fries"), NewItem("Shake")],
        source="test",
        location="12",
    )
    return made.order


async def current(gateway: Gateway, order: Order) -> Order:
    assert gateway.ctx.intake is not None
    return await gateway.ctx.intake.get(order.uuid)


async def journal_size(gateway: Gateway) -> int:
    return int(
        await gateway.reader.run(lambda c: c.execute("SELECT count(*) FROM journal").fetchone()[0])
    )


def signal(
    apikey: str, type_: str, order: Order, item: int | None = 0, **extra: Any
) -> dict[str, Any]:
    """A body in the seed's key order; `item` is an index into the order's items."""
    body: dict[str, Any] = {"apikey": apikey, "type": type_, "order": str(order.number)}
    if item is not None:
        body["item"] = order.items[item].id
    return body | extra | {"datetime": WHEN}


async def post(client: Client, body: Any, path: str = PATH) -> tuple[int, dict[str, Any]]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resp = await client.post(path, data=data, headers={"Content-Type": "application/json"})
    answer = await resp.json()
    assert answer["status"] == resp.status
    sc.Message.model_validate(answer)  # {status, returnCode, message}, nothing else
    return resp.status, answer


# -- 200: each signal of the seed moves the item --------------------------------------------


SEED_SIGNALS = [
    # (type, the seed's optional/extra parameters, the item status it means)
    ("ItemProduce", {}, ItemStatus.PRODUCING),
    ("ItemProduced", {}, ItemStatus.PRODUCED),
    ("ItemPacked", {}, ItemStatus.PACKED),
    ("ItemShipped", {"tracking": "1A2B3C4D5E6F"}, ItemStatus.SHIPPED),
    ("ItemError", {"cause": "Print error, reprint needed", "delay": "24"}, ItemStatus.ERROR),
    ("ItemCanceled", {"cause": "190", "message": "Example message"}, ItemStatus.CANCELED),
]


@pytest.mark.parametrize(("type_", "extra", "status"), SEED_SIGNALS)
async def test_each_seed_signal_moves_the_item(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
    type_: str,
    extra: dict[str, str],
    status: ItemStatus,
) -> None:
    code, answer = await post(client, signal(apikey, type_, order, **extra))
    assert (code, answer["returnCode"]) == (200, 1200), answer
    item = (await current(gateway, order)).items[0]
    assert item.status is status
    if type_ == "ItemError":
        assert (item.cause, item.delay) == ("Print error, reprint needed", 24 * 60)
    if type_ == "ItemCanceled":
        assert (item.cause, item.message) == ("190", "Example message")
    assert all(i.status is ItemStatus.REGISTERED for i in (await current(gateway, order)).items[1:])


async def test_a_whole_item_life_and_the_order_is_handed_over(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
) -> None:
    for index in range(3):
        for type_, extra in (
            ("ItemProduce", {}),
            ("ItemProduced", {}),
            ("ItemPacked", {}),
            ("ItemShipped", {"tracking": "table:12"}),
        ):
            code, answer = await post(client, signal(apikey, type_, order, index, **extra))
            assert code == 200, answer
    done = await current(gateway, order)
    assert not done.active and not done.cancelled
    assert {i.status for i in done.items} == {ItemStatus.SHIPPED}


async def test_an_item_in_error_is_produced_again(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
) -> None:
    assert (await post(client, signal(apikey, "ItemError", order, cause="burnt")))[0] == 200
    assert (await post(client, signal(apikey, "ItemProduce", order)))[0] == 200
    assert (await current(gateway, order)).items[0].status is ItemStatus.PRODUCING


@pytest.mark.parametrize("path", PATHS)
async def test_every_spelling_of_the_path_answers(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
    path: str,
) -> None:
    code, _ = await post(client, signal(apikey, "ItemProduce", order), path)
    assert code == 200
    assert (await current(gateway, order)).items[0].status is ItemStatus.PRODUCING


async def test_order_and_item_refs(
    client: Client, gateway: Gateway, apikey: str, order: Order
) -> None:
    """The seed's ids are strings; the order's uuid, an integer order id and the item's
    position are accepted too."""
    body = signal(apikey, "ItemProduce", order) | {"order": order.uuid}
    assert (await post(client, body))[0] == 200
    body = signal(apikey, "ItemProduce", order, 1) | {"order": order.number, "item": "2"}
    assert (await post(client, body))[0] == 200
    assert [i.status for i in (await current(gateway, order)).items] == [
        ItemStatus.PRODUCING,
        ItemStatus.PRODUCING,
        ItemStatus.REGISTERED,
    ]


async def test_order_registered_is_acknowledged(
    client: Client, gateway: Gateway, apikey: str, order: Order
) -> None:
    before = await journal_size(gateway)
    code, answer = await post(client, signal(apikey, "OrderRegistered", order, None))
    assert (code, answer["returnCode"]) == (200, 1201), answer
    assert await journal_size(gateway) == before
    code, answer = await post(
        client, signal(apikey, "OrderRegistered", order, None) | {"order": "999999"}
    )
    assert (code, answer["returnCode"]) == (400, -63)


# -- idempotence -----------------------------------------------------------------------------


@pytest.mark.parametrize(("type_", "extra", "status"), SEED_SIGNALS)
async def test_the_same_signal_twice_changes_nothing_the_second_time(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
    type_: str,
    extra: dict[str, str],
    status: ItemStatus,
) -> None:
    body = signal(apikey, type_, order, **extra)
    assert (await post(client, body))[1]["returnCode"] == 1200
    before, item = await journal_size(gateway), (await current(gateway, order)).items[0]
    code, answer = await post(client, body)
    assert (code, answer["returnCode"]) == (200, 1201), answer
    assert await journal_size(gateway) == before
    assert (await current(gateway, order)).items[0] == item


async def test_a_repeated_last_signal_of_a_handed_over_order_is_still_200(
    client: Client,
    gateway: Gateway,
    apikey: str,
) -> None:
    assert gateway.ctx.intake is not None
    one = (await gateway.ctx.intake.create([NewItem("Tea")], source="test")).order
    body = signal(apikey, "ItemShipped", one, tracking="x")
    assert (await post(client, body))[0] == 200
    assert not (await current(gateway, one)).active  # its only item shipped: handed over
    before = await journal_size(gateway)
    assert await post(client, body) == (
        200,
        {
            "status": 200,
            "returnCode": 1201,
            "message": "ItemShipped acknowledged; nothing to change.",
        },
    )
    assert await journal_size(gateway) == before


async def test_a_new_error_cause_is_a_new_fact(
    client: Client, gateway: Gateway, apikey: str, order: Order
) -> None:
    assert (await post(client, signal(apikey, "ItemError", order, cause="a")))[1][
        "returnCode"
    ] == 1200
    assert (await post(client, signal(apikey, "ItemError", order, cause="b", delay="1")))[1][
        "returnCode"
    ] == 1200
    item = (await current(gateway, order)).items[0]
    assert (item.cause, item.delay) == ("b", 60)


# -- 401 / 403 -------------------------------------------------------------------------------


@pytest.mark.parametrize("apikey_value", [None, "", 13, ["k"], {"k": 1}, True])
async def test_401_without_an_apikey(
    client: Client, gateway: Gateway, order: Order, apikey_value: Any
) -> None:
    body = signal("x", "ItemProduce", order)
    if apikey_value is None:
        del body["apikey"]
    else:
        body["apikey"] = apikey_value
    code, answer = await post(client, body)
    assert (code, answer["returnCode"]) == (401, -60), answer
    assert (await current(gateway, order)).items[0].status is ItemStatus.REGISTERED


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"type": "Nonsense"},
        {"apikey": "x"},
        {"apikey": "13b37bb1ed6d3403e158abe719b4f6d0"},
        {"apikey": "", "type": "ItemProduce"},
    ],
)
async def test_400_for_missing_parameters_comes_before_the_apikey(
    client: Client,
    body: dict[str, Any],
) -> None:
    """Issue 10 (seed 002: 400 "the request was invalid or parameters are missing"): a body
    without the signal's required parameters is 400 with a message, whatever its apikey."""
    code, answer = await post(client, body)
    assert (code, answer["returnCode"]) == (400, -62), answer
    assert answer["message"].startswith(("Missing parameter", "Invalid")), answer


@pytest.mark.parametrize("wrong", ["13b37bb1ed6d3403e158abe719b4f6d0", "x", "k" * 300])
async def test_403_with_a_wrong_apikey(
    client: Client, gateway: Gateway, apikey: str, order: Order, wrong: str
) -> None:
    code, answer = await post(client, signal(wrong, "ItemProduce", order))
    assert (code, answer["returnCode"]) == (403, -61), answer
    assert apikey not in answer["message"] and wrong not in answer["message"]
    assert (await current(gateway, order)).items[0].status is ItemStatus.REGISTERED


async def test_a_revoked_key_is_refused_and_others_still_work(
    client: Client,
    auth: dict[str, str],
    gateway: Gateway,
    apikey: str,
    order: Order,
) -> None:
    other = await new_key(client, auth, "expo")
    listing = await (await client.get("/api/integrations/cloudsignal/keys", headers=auth)).json()
    first = next(k["id"] for k in listing["items"] if k["name"] == "kds")
    resp = await client.delete(f"/api/integrations/cloudsignal/keys?id={first}", headers=auth)
    assert resp.status == 200
    assert (await post(client, signal(apikey, "ItemProduce", order)))[0] == 403
    assert (await post(client, signal(other, "ItemProduce", order)))[0] == 200


# -- 400 -------------------------------------------------------------------------------------


def _without(body: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != key}


BAD: list[tuple[str, Any, str]] = [
    # (what, how the valid ItemShipped body is spoiled, a word the message must contain)
    ("no type", lambda b: _without(b, "type"), "type"),
    ("unknown type", lambda b: b | {"type": "ItemBurnt"}, "type"),
    ("type of wrong case", lambda b: b | {"type": "itemshipped"}, "type"),
    ("no order", lambda b: _without(b, "order"), "order"),
    ("empty order", lambda b: b | {"order": ""}, "order"),
    ("order not a string", lambda b: b | {"order": [1]}, "order"),
    ("no item", lambda b: _without(b, "item"), "item"),
    ("item not a string", lambda b: b | {"item": 1.5}, "item"),
    ("no datetime", lambda b: _without(b, "datetime"), "datetime"),
    ("bad datetime", lambda b: b | {"datetime": "yesterday"}, "datetime"),
    ("impossible date", lambda b: b | {"datetime": "2016-02-30 13:00:00 GMT"}, "datetime"),
    ("no tracking", lambda b: _without(b, "tracking"), "tracking"),
    ("tracking not a string", lambda b: b | {"tracking": 7}, "tracking"),
    ("unknown order", lambda b: b | {"order": "987654"}, "order"),
    ("unknown item", lambda b: b | {"item": "987654-1"}, "item"),
]


@pytest.mark.parametrize(("what", "spoil", "word"), BAD, ids=[b[0] for b in BAD])
async def test_400_for_invalid_or_missing_parameters(
    client: Client,
    gateway: Gateway,
    apikey: str,
    order: Order,
    what: str,
    spoil: Any,
    word: str,
) -> None:
    body = spoil(signal(apikey, "ItemShipped", order, tracking="t"))
    code, answer = await post(client, body)
    assert code == 400, answer
    assert word in answer["message"].lower(), answer
    assert apikey not in answer["message"]
    assert (await current(gateway, order)).items[0].status is ItemStatus.REGISTERED


@pytest.mark.parametrize("delay", ["soon", "-1", "1e3", "99999", True, [1]])
async def test_400_for_a_bad_delay(client: Client, apikey: str, order: Order, delay: Any) -> None:
    code, answer = await post(client, signal(apikey, "ItemError", order, delay=delay))
    assert (code, answer["returnCode"]) == (400, -62), answer
    assert "delay" in answer["message"]


@pytest.mark.parametrize(("delay", "minutes"), [("24", 1440), (2, 120), ("0.5", 30), ("", None)])
async def test_delay_is_hours(
    client: Client, gateway: Gateway, apikey: str, order: Order, delay: Any, minutes: int | None
) -> None:
    assert (await post(client, signal(apikey, "ItemError", order, delay=delay)))[0] == 200
    assert (await current(gateway, order)).items[0].delay == minutes


async def test_400_for_a_move_the_item_cannot_make(
    client: Client, gateway: Gateway, apikey: str, order: Order
) -> None:
    assert (await post(client, signal(apikey, "ItemPacked", order)))[0] == 200
    code, answer = await post(client, signal(apikey, "ItemProduce", order))
    assert (code, answer["returnCode"]) == (400, -64), answer
    assert "packed" in answer["message"]
    assert (await post(client, signal(apikey, "ItemCanceled", order)))[0] == 200
    code, answer = await post(client, signal(apikey, "ItemShipped", order, tracking="t"))
    assert (code, answer["returnCode"]) == (400, -64), answer


@pytest.mark.parametrize("raw", [b"", b"{", b"[]", b'"apikey"', b"null", b"\xff\xfe"])
async def test_400_for_a_body_that_is_not_a_json_object(client: Client, raw: bytes) -> None:
    code, answer = await post(client, raw)
    assert (code, answer["returnCode"]) == (400, -31), answer


async def test_413_for_an_oversized_body(client: Client, apikey: str) -> None:
    code, answer = await post(client, {"apikey": apikey, "cause": "x" * 100_000})
    assert code == 413, answer


async def test_other_methods_are_refused(client: Client) -> None:
    resp = await client.get(PATH)
    assert resp.status == 405
    assert (await resp.json())["returnCode"] == -41


# -- fuzz --------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
KEYS = ["apikey", "type", "order", "item", "tracking", "cause", "delay", "message", "datetime"]
TYPES = [
    "OrderRegistered",
    "ItemProduce",
    "ItemProduced",
    "ItemPacked",
    "ItemShipped",
    "ItemError",
    "ItemCanceled",
]


@st.composite
def signal_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """Mostly well-formed signals with the real apikey (marker "KEY"), some parameters
    spoiled, dropped or added; refs that name real and unknown items."""
    body: dict[str, Any] = {
        "apikey": draw(st.sampled_from(["KEY", "KEY", "KEY", "wrong", ""]) | json_values),
        "type": draw(st.sampled_from(TYPES) | json_values),
        "order": draw(st.sampled_from(["ORDER", "ORDER", "0", "uuid"]) | json_values),
        "item": draw(st.sampled_from(["ITEM", "ITEM", "1", "3", "4", "B1"]) | json_values),
        "tracking": draw(st.text(max_size=10) | json_values),
        "cause": draw(st.text(max_size=10) | json_values),
        "delay": draw(st.sampled_from(["24", "0.5", "", "x"]) | json_values),
        "message": draw(st.text(max_size=10) | json_values),
        "datetime": draw(st.sampled_from([WHEN, "2016-01-20T13:00:00Z"]) | json_values),
    }
    dropped = draw(st.sets(st.sampled_from(KEYS), max_size=3))
    extra = draw(st.dictionaries(st.text(max_size=6), json_values, max_size=2))
    return {k: v for k, v in body.items() if k not in dropped} | extra


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=signal_bodies() | json_values, raw=st.none() | st.binary(max_size=100))
async def test_fuzzed_signals_never_500(
    client: Client, gateway: Gateway, apikey: str, order: Order, body: Any, raw: bytes | None
) -> None:
    if isinstance(body, dict):
        real = {
            "KEY": apikey,
            "ORDER": str(order.number),
            "ITEM": order.items[0].id,
            "uuid": order.uuid,
        }
        body = {k: real.get(v, v) if isinstance(v, str) else v for k, v in body.items()}
    code, _ = await post(client, raw if raw is not None else body)
    assert code in (200, 400, 401, 403)
