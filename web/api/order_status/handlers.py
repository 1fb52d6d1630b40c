"""The Print API dialect (seed 003): `GET /v1/orders/{id}` and the webhook subscriptions.

`GET /v1/orders/{id}` (Bearer token) answers the order in Print API's vocabulary: `id` (the
order's numeric id, the one thin webhooks carry as `orderId`), `status` (Created / Processing /
Shipped / Cancelled, see `services.printapi.print_status`), `dateTime` (creation, gateway local
time with .NET's seven fractional digits, as in the seed) and the rest of its data. Errors use
the gateway's JSON envelope `{status, returnCode, message}` (the seed documents none).

`/api/integrations/webhooks` manages the receivers of the thin webhooks.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from aiohttp import web

from gateway.core.errors import Code, ValidationFailed
from gateway.core.models import Item, Order
from gateway.services.integrations.order_status import (
    KIND,
    Subscription,
    print_status,
)
from web.common import read_json
from web.envelope import reply
from web.render import local_time
from web.services import SERVICES

# returnCodes (ours): 130-131 data; 1300+ action acknowledged.
SUBSCRIBED, SUBSCRIPTION_LIST, UNSUBSCRIBED = 130, 131, 1300
MAX_ID = 10**15


def date_time(ts: float, tz: ZoneInfo) -> str:
    """Seed 003's `2015-10-21T12:53:06.9931422`: local time, seven fractional digits."""
    t = datetime.fromtimestamp(ts, tz)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{t.microsecond:06d}0"


def _item(i: Item) -> dict[str, Any]:
    return {
        "id": i.id,
        "productId": i.product_code,
        "title": i.title,
        "quantity": i.quantity,
        "price": None if i.price is None else i.price / 100,
        "status": i.status.value,
    }


def order_json(o: Order, tz: ZoneInfo) -> dict[str, Any]:
    return {
        "id": str(o.number),
        "status": print_status(o).value,
        "dateTime": date_time(o.created, tz),
        "name": o.name,
        "orderType": o.order_type,
        "locationName": o.location,
        "items": [_item(i) for i in o.items],
    }


async def get_order(request: web.Request) -> web.Response:
    raw = request.match_info["order_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 15 or not 0 < int(raw) < MAX_ID:
        raise ValidationFailed(Code.BAD_ORDER_ID, "Invalid order id: must be a positive integer.")
    order = await request.app[SERVICES].order_status.order(int(raw))
    body = orjson.dumps(order_json(order, request.app[SERVICES].config.tz))
    return web.Response(body=body, content_type="application/json")


# -- subscriptions (Bearer token) -----------------------------------------------------------


def subscription_dict(request: web.Request, sub: Subscription) -> dict[str, Any]:
    tz = request.app[SERVICES].config.tz
    return {
        "id": sub.id,
        "kind": sub.kind,
        "url": sub.url,
        "signed": sub.signing_secret is not None,
        "creation_date": local_time(sub.created, tz),
        "disabled": None if sub.disabled is None else local_time(sub.disabled, tz),
        "disabled_reason": sub.disabled_reason,
    }


async def subscribe(request: web.Request) -> web.Response:
    body = await read_json(request)
    kind = body.get("kind", KIND)
    if kind != KIND:
        raise ValidationFailed(
            Code.BAD_SETTING_VALUE,
            f"kind must be {KIND!r} (CloudSignal receivers are managed under "
            "/api/integrations/cloudsignal/subscriptions).",
        )
    svc = request.app[SERVICES].order_status
    sub, new = await svc.subscribe(body.get("url"), body.get("signingSecret"))
    return reply(
        201 if new else 200,
        SUBSCRIBED,
        message="Subscription added." if new else "Subscription updated.",
        subscription=subscription_dict(request, sub),
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    subs = await request.app[SERVICES].order_status.subscriptions()
    items = [subscription_dict(request, s) for s in subs]
    return reply(200, SUBSCRIPTION_LIST, count=len(items), items=items)


async def unsubscribe(request: web.Request) -> web.Response:
    raw = request.query.get("id", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed(Code.BAD_ORDER_ID, "Invalid id: must be a positive integer.")
    dropped = await request.app[SERVICES].order_status.unsubscribe(int(raw))
    return reply(
        200, UNSUBSCRIBED, message=f"Subscription removed; {dropped} pending webhooks dropped."
    )
