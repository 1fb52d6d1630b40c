"""Helpers for the Imprinted (seed 001) tests: an app made through the admin API, and a client
that signs its requests the way an integrator would (over the exact bytes it sends)."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient
from defusedxml.ElementTree import fromstring  # type: ignore[import-untyped]

from web.api.imprinted import schemas as isc

Client = TestClient[web.Request, web.Application]
APPS = "/api/integrations/imprinted"

# The seed's own examples (the JSON one with its trailing commas removed).
SEED_JSON: dict[str, Any] = {
    "brandName": "Imprinted",
    "comment": "Test order.",
    "shipping_address": {
        "firstName": "Alex",
        "lastName": "Cunliffe",
        "company": "Imprinted",
        "address1": "Unit 501a",
        "address2": "Glenfield Park Two",
        "city": "Blackburn",
        "county": "Lancashire",
        "postcode": "BB1 5QH",
        "country": "United Kingdom",
        "phone1": "+44 (0)1254 777070",
    },
    "shipping": {"shippingMethod": "courier"},
    "items": [
        {
            "pn": "JH001",
            "quantity": 4,
            "retailPrice": 20,
            "description": "Please print as large as posible",
            "label": {"type": "printed", "name": "ink-label"},
            "designs": {
                "front": "http://animalfair.com/wp-content/uploads/2014/06/"
                "little_cute_cat_1920x1080.jpg",
                "back": "http://data3.whicdn.com/images/168204223/large.jpg",
            },
        }
    ],
}
SEED_XML = b"""<?xml version="1.1" encoding="UTF-8" ?>
<order>
<brandName>Imprinted</brandName>
<comment>Test order.</comment>
<shipping_address>
<firstName>Alex</firstName>
<lastName>Cunliffe</lastName>
<company>Imprinted</company>
<address1>Unit 501a</address1>
<address2>Glenfield Park Two</address2>
<city>Blackburn</city>
<county>Lancashire</county>
<country>United Kingdom</country>
<postcode>BB1 5QH</postcode>
<phone1>+44 (0)1254 777070</phone1>
</shipping_address>
<shipping>
<shippingMethod>courier</shippingMethod>
</shipping>
<items>
<item>
<pn>JH001</pn>
<quantity>4</quantity>
<retailPrice>25.00</retailPrice>
<description>Please print as large as posible</description>
<label>
<type>printed</type>
<name>ink-label</name>
</label>
<designs>
<front>http://animalfair.com/wp-content/uploads/2014/06/little_cute_cat_1920x1080.jpg</front>
<back>http://data3.whicdn.com/images/168204223/large.jpg</back>
</designs>
</item>
</items>
</order>"""

ORDER_KEYS = {
    "id",
    "external_id",
    "created_at",
    "type",
    "status",
    "deleted",
    "brand",
    "comment",
    "billing_address",
    "shipping_address",
    "items",
    "summary",
    "shipping",
    "payment",
}
ITEM_KEYS = {
    "pn",
    "title",
    "price",
    "retailPrice",
    "quantity",
    "description",
    "brandName",
    "label",
    "designs",
    "mockups",
}


def sha1_sig(payload: bytes, secret: str) -> str:
    return hashlib.sha1(payload + secret.encode()).hexdigest()


@dataclass
class Imprinted:
    """An integrator: its AppId, secret, and signed calls."""

    client: Client
    app_id: str
    secret: str

    def signed_query(self, query: str = "") -> str:
        """The query with AppId first, then `query`, then the Signature over the rest."""
        q = f"AppId={self.app_id}" + (f"&{query}" if query else "")
        return f"{q}&Signature={sha1_sig(q.encode(), self.secret)}"

    async def get(self, path: str, query: str = "") -> ClientResponse:
        return await self.client.get(f"{path}?{self.signed_query(query)}")

    async def delete(self, query: str) -> ClientResponse:
        return await self.client.delete(f"/api/orders.php?{self.signed_query(query)}")

    async def post_raw(
        self,
        body: bytes,
        content_type: str = "application/json",
        signature: str | None = None,
        query: str = "",
    ) -> ClientResponse:
        sig = signature if signature is not None else sha1_sig(body, self.secret)
        extra = f"&{query}" if query else ""
        return await self.client.post(
            f"/api/orders.php?AppId={self.app_id}&Signature={sig}{extra}",
            data=body,
            headers={"Content-Type": content_type},
        )

    async def post(self, order: dict[str, Any]) -> ClientResponse:
        return await self.post_raw(orjson.dumps(order))

    async def create(self, order: dict[str, Any] | None = None) -> dict[str, Any]:
        resp = await self.post(order or SEED_JSON)
        body = await resp.json()
        assert resp.status in (200, 201), body
        isc.ImprintedOrderResponse.model_validate(body)
        return body["order"]  # type: ignore[no-any-return]

    def hmac_headers(
        self, method: str, path: str, payload: bytes, ts: int | None = None
    ) -> dict[str, str]:
        stamp = str(int(time.time()) if ts is None else ts)
        msg = f"{stamp}.{method}.{path}.".encode() + payload
        return {
            "X-Imprinted-Timestamp": stamp,
            "X-Imprinted-Signature": hmac.new(
                self.secret.encode(), msg, hashlib.sha256
            ).hexdigest(),
        }


async def make_app(client: Client, auth: dict[str, str], name: str = "shop") -> Imprinted:
    resp = await client.post(APPS, json={"name": name}, headers=auth)
    body = await resp.json()
    assert resp.status == 201, body
    isc.ImprintedAppCreated.model_validate(body)
    return Imprinted(client, body["app"]["appId"], body["app"]["secret"])


def xml_value(element: Any) -> Any:
    """An XML answer as plain values: leaves are text, <items>/<orders> are lists."""
    children = list(element)
    if not children:
        return element.text or ""
    if element.tag in ("items", "orders"):
        return [xml_value(c) for c in children]
    return {c.tag: xml_value(c) for c in children}


def parse_xml(raw: bytes) -> Any:
    return xml_value(fromstring(raw, forbid_dtd=True))


def as_text(value: Any) -> Any:
    """A JSON answer as XML would carry it: null and {} become "", numbers text."""
    if value is None or value == {} or value == []:
        return ""
    if isinstance(value, dict):
        return {k: as_text(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_text(v) for v in value]
    return str(value)
