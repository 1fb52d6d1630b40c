"""Imprinted bodies as an attacker writes them: XML bombs, external entities, deep nesting, and
hypothesis fuzz of JSON and XML order bodies through the real app (never a 500, never an order
from a refused body); the parsers' round trip; the SQL status rule equals the Python one."""

from __future__ import annotations

import json
import sqlite3
import string
import time
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.app import Gateway
from gateway.core.errors import Code, ValidationFailed
from gateway.core.models import Item, ItemStatus, Order, OrderState
from gateway.services.integrations.imprinted.orders import STATUSES, order_status
from gateway.store import imprinted_orders as sql
from gateway.store import orders as repo
from gateway.store.migrations import apply_migrations
from tests.api.imprinted.test_imprinted_helpers import Client, Imprinted, make_app, parse_xml
from web.api.imprinted import xml as ix
from web.api.imprinted.parse import order_spec

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE order [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<order><comment>&lol9;</comment><items><item><pn>A</pn></item></items></order>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE order [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<order><comment>&xxe;</comment><items><item><pn>A</pn></item></items></order>"""
PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE order [<!ENTITY % p SYSTEM "http://127.0.0.1:9/evil.dtd"> %p;]>
<order><items><item><pn>A</pn></item></items></order>"""
EXTERNAL_DTD = b"""<?xml version="1.0"?>
<!DOCTYPE order SYSTEM "http://127.0.0.1:9/evil.dtd">
<order><items><item><pn>A</pn></item></items></order>"""
INTERNAL_DTD = b"""<?xml version="1.0"?><!DOCTYPE order [<!ELEMENT order ANY>]>
<order><items><item><pn>A</pn></item></items></order>"""
UNDECLARED_ENTITY = (
    b"<order><comment>&nope;</comment><items><item><pn>A</pn></item></items></order>"
)
DEEP = b"<order>" + b"<a>" * 4000 + b"</a>" * 4000 + b"</order>"


async def order_count(gw: Gateway) -> int:
    return len(gw.ctx.orders.active())


@pytest.mark.parametrize(
    "body",
    [
        BILLION_LAUGHS,
        EXTERNAL_ENTITY,
        PARAMETER_ENTITY,
        EXTERNAL_DTD,
        INTERNAL_DTD,
        UNDECLARED_ENTITY,
        DEEP,
    ],
    ids=[
        "billion-laughs",
        "xxe",
        "parameter-entity",
        "external-dtd",
        "internal-dtd",
        "undeclared-entity",
        "deep",
    ],
)
async def test_hostile_xml_is_400_with_no_side_effect(
    shop: Imprinted, gateway: Gateway, body: bytes
) -> None:
    resp = await shop.post_raw(body, "application/xml")
    raw = await resp.read()
    assert resp.status == 400, raw
    assert resp.content_type == "application/xml"
    error = parse_xml(raw)
    assert error["code"] == "bad_xml"
    assert "root:" not in error["message"]  # nothing of /etc/passwd
    assert await order_count(gateway) == 0
    # No replay claim either: the same body is refused for what it is, again.
    assert (await shop.post_raw(body, "application/xml")).status == 400


def test_the_xml_reader_directly() -> None:
    assert ix.parse(
        b"<order><items><item><pn>A</pn></item></items><comment/></order>", "order"
    ) == {"items": [{"pn": "A"}], "comment": ""}
    for raw, words in (
        (b"<order>text</order>", "text"),
        (b"<order><a>1</a><a>2</a></order>", "more than once"),
        (b"<order><items><thing/></items></order>", "<item>"),
        (b"<order><a>1</a>tail</order>", "mixes"),
        (b"\xff\xfe<", "malformed"),
        (b'<?xml version="1.0" encoding="klingon"?><order/>', "malformed"),
    ):
        with pytest.raises(ix.XmlError, match=words):
            ix.parse(raw, "order")


def test_the_xml_writer_escapes_and_stays_well_formed() -> None:
    nasty = "<&>\"' ]]> \x00\x07 \ud800 end"
    raw = ix.render(
        "order",
        {"comment": nasty, "items": [{"pn": "A"}], "bad key": "v", "none": None, "empty": {}},
    )
    back = parse_xml(raw)
    assert back["comment"] == "<&>\"' ]]> \ufffd\ufffd \ufffd end"
    assert back["items"] == [{"pn": "A"}] and back["field"] == "v"
    assert back["none"] == "" and back["empty"] == ""


# -- fuzzing through the real app --------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=8,
)
ITEM_FIELDS = [
    "pn",
    "title",
    "quantity",
    "retailPrice",
    "description",
    "brandName",
    "label",
    "designs",
    "mockups",
    "mockup",
    "price",
    "x",
]
ORDER_FIELDS = [
    "external_id",
    "brand",
    "brandName",
    "comment",
    "shipping_address",
    "shipping",
    "summary",
    "id",
    "status",
    "payment",
    "y",
]
item_values = json_values | st.sampled_from(
    [
        "JH001",
        "4",
        "20",
        "25.00",
        "1.234",
        "-1",
        "",
        {"front": "http://x/y.png"},
        {"type": "printed"},
    ]
)
items = st.lists(st.dictionaries(st.sampled_from(ITEM_FIELDS), item_values, max_size=6), max_size=3)
orders = st.fixed_dictionaries(
    {"items": items | json_values},
    optional={
        k: json_values
        | st.sampled_from(
            [{"shippingMethod": "courier"}, {"firstName": "Alex"}, {"currency": "GBP"}, "x"]
        )
        for k in ORDER_FIELDS
    },
)
bodies = orders | json_values

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
OK = {200, 201, 400}


async def _post(shop: Imprinted, gateway: Gateway, body: bytes, ctype: str) -> None:
    before = await order_count(gateway)
    resp = await shop.post_raw(body, ctype)
    answer = await resp.read()
    if resp.status == 403:  # hypothesis may send the same bytes twice: the replay cache
        assert b"replayed" in answer
        return
    assert resp.status in OK, (resp.status, answer, body)
    if resp.status == 400:
        assert await order_count(gateway) == before
    elif resp.status == 201:
        assert await order_count(gateway) == before + 1


@FUZZ
@given(body=bodies)
async def test_fuzzed_json_bodies_never_500(shop: Imprinted, gateway: Gateway, body: Any) -> None:
    await _post(shop, gateway, json.dumps(body).encode(), "application/json")


NAMES = st.sampled_from([*ITEM_FIELDS, *ORDER_FIELDS, "items", "item", "front", "type", "a"])
xml_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)


def _xml(tree: Any) -> str:
    if isinstance(tree, tuple):
        name, children = tree
        return f"<{name}>{''.join(_xml(c) for c in children)}</{name}>"
    return escape(tree)


xml_trees = st.recursive(
    xml_text,
    lambda children: st.tuples(NAMES, st.lists(children, max_size=4)),
    max_leaves=12,
)


@pytest.fixture
async def shop(client: Client, auth: dict[str, str]) -> Imprinted:
    return await make_app(client, auth)


@FUZZ
@given(tree=xml_trees, raw=st.binary(max_size=40), mode=st.integers(0, 3))
async def test_fuzzed_xml_bodies_never_500(
    shop: Imprinted, gateway: Gateway, tree: Any, raw: bytes, mode: int
) -> None:
    inner = _xml(tree)
    text = {
        0: f"<order>{inner}</order>",
        1: f"<order><items><item><pn>P</pn>{inner}</item></items></order>",
        2: inner,
        3: f"<order>{inner}",
    }[mode]
    await _post(
        shop, gateway, text.encode("utf-8", "surrogatepass") + raw[: mode * 5], "application/xml"
    )


# -- the parsers, without HTTP ------------------------------------------------------------


@settings(max_examples=300)
@given(body=bodies)
def test_order_spec_accepts_or_refuses_with_bad_order(body: Any) -> None:
    try:
        spec = order_spec(body)
    except ValidationFailed as exc:
        assert exc.code is Code.BAD_ORDER and exc.detail
        return
    assert 1 <= len(spec.items) <= 500
    for item in spec.items:
        assert item.product_code and item.title and 1 <= item.quantity <= 9999
        assert item.price is None or item.price >= 0
    orjson.dumps(spec.extra)  # storable as it is


def _as_xml(value: Any, name: str) -> str:
    if isinstance(value, dict):
        return f"<{name}>{''.join(_as_xml(v, k) for k, v in value.items())}</{name}>"
    if isinstance(value, list):
        return f"<{name}>{''.join(_as_xml(v, 'item') for v in value)}</{name}>"
    return f"<{name}>{escape(str(value))}</{name}>"


words = st.text(string.ascii_letters + string.digits + " -", min_size=1, max_size=12).filter(
    lambda s: s.strip() == s
)
good_items = st.lists(
    st.fixed_dictionaries(
        {"pn": words},
        optional={
            "title": words,
            "quantity": st.integers(1, 9999),
            "retailPrice": st.integers(0, 10**6).map(lambda c: f"{c // 100}.{c % 100:02d}"),
            "description": words,
            "brandName": words,
            "label": st.fixed_dictionaries({"type": words, "name": words}),
            "designs": st.dictionaries(
                st.sampled_from(["front", "back", "sleeve"]), words, min_size=1
            ),
        },
    ),
    min_size=1,
    max_size=4,
)
good_orders = st.fixed_dictionaries(
    {"items": good_items},
    optional={
        "external_id": words,
        "brand": words,
        "comment": words,
        "shipping": st.just({"shippingMethod": "courier"}),
        "shipping_address": st.fixed_dictionaries({"firstName": words, "city": words}),
    },
)


@settings(max_examples=200)
@given(body=good_orders)
def test_json_and_xml_forms_parse_to_the_same_order(body: dict[str, Any]) -> None:
    from_json = order_spec(orjson.loads(orjson.dumps(body)))
    from_xml = order_spec(ix.parse(_as_xml(body, "order").encode(), "order"))
    assert from_json == from_xml


# -- the status rule: SQL == Python ---------------------------------------------------------

statuses = st.sampled_from(list(ItemStatus))
payments = (
    st.none()
    | st.sampled_from(["", "2016-10-17T16:14:08+01:00", 1, True, None])
    | st.just({"x": 1})
)


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path: Path = tmp_path_factory.mktemp("status") / "s.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn)
    return conn


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    items=st.lists(statuses, max_size=4),
    located=st.booleans(),
    paid=payments,
    refunded=payments,
    payment_shape=st.sampled_from(["dict", "string", "none"]),
)
def test_sql_status_is_the_python_status(
    db: sqlite3.Connection,
    items: list[ItemStatus],
    located: bool,
    paid: Any,
    refunded: Any,
    payment_shape: str,
) -> None:
    extra: dict[str, Any] = {}
    if payment_shape == "dict":
        extra["payment"] = {
            k: v for k, v in (("paid_at", paid), ("refunded_at", refunded)) if v is not None
        }
    elif payment_shape == "string":
        extra["payment"] = "paid"
    number = repo.next_number(db)
    order = Order(
        uuid=f"u{number}",
        name=str(number),
        order_type="TO_GO",
        location="4" if located else "",
        state=OrderState.STARTED,
        created=1.0,
        state_changed=1.0,
        located_at=2.0 if located else None,
        number=number,
        source="imprinted:APP-1",
        extra=extra,
        items=tuple(Item(f"{number}-{p}", p, "T", status=s) for p, s in enumerate(items, 1)),
    )
    repo.save(db, order)
    expected = order_status(order)
    assert expected in STATUSES
    assert sql.status_of(db, order.uuid) == expected


def test_the_largest_body_parses_quickly() -> None:
    """A sanity bound: 500 items parse well under a request's budget, in both formats."""
    body = {
        "items": [
            {
                "pn": f"P{n}",
                "quantity": 1,
                "retailPrice": "1.00",
                "designs": {"front": "http://x/" + "a" * 50},
            }
            for n in range(500)
        ]
    }
    start = time.monotonic()
    assert order_spec(body) == order_spec(ix.parse(_as_xml(body, "order").encode(), "order"))
    assert time.monotonic() - start < 1.0
