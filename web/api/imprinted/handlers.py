"""The Imprinted order API (seed 001): signed requests, JSON or XML, one app's orders.

    GET    /api/orders.php        list (ids, limit, page, since_id, created_at_*, status)
    GET    /api/order.php?id=     one order
    GET    /api/orders/count.php  count (same filters)
    POST   /api/orders.php        create (JSON or XML by Content-Type; idempotent by external_id)
    DELETE /api/orders.php?id=    cancel an unpaid order (it then shows deleted "true")

Every call is verified first (gateway.services.integrations.imprinted.auth: the seed's SHA1
scheme or the HMAC-SHA256 one, over the raw bytes); nothing is parsed, read or written for a
caller that fails. Answers come in the request's format: `format=json|xml` for GET/DELETE, the
body's Content-Type for POST; errors too: `{"error": {"code", "message"}}` or
`<error><code/><message/></error>`.

Plus the app management under /api/integrations/imprinted (Bearer token, table-tracker
envelope): create an app (AppId + secret, shown once), list, revoke.
"""

from __future__ import annotations

import contextlib
import sqlite3
from typing import Any

import orjson
from aiohttp import web

from gateway.core.errors import Code, Conflict, GatewayError, ValidationFailed
from gateway.services.integrations.imprinted.auth import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    App,
    SignedRequest,
    split_query,
)
from gateway.services.integrations.imprinted.orders import paid_at
from gateway.services.orders.intake import OrderIntake
from web.api.imprinted import xml as ix
from web.api.imprinted.parse import (
    LIST_PARAMS,
    ONE_PARAMS,
    POST_PARAMS,
    listing,
    order_id,
    order_spec,
    query_params,
    response_format,
)
from web.api.imprinted.render import order_dict
from web.common import read_json
from web.envelope import ERRORS, IMPRINTED_ERRORS, reply
from web.render import local_time
from web.services import SERVICES, Imprinted

ORDERS = "/api/orders.php"
ORDER = "/api/order.php"
COUNT = "/api/orders/count.php"
APPS = "/api/integrations/imprinted"
PATHS = frozenset({ORDERS, ORDER, COUNT})
JSON_TYPES = frozenset({"application/json", "text/json"})
XML_TYPES = frozenset({"application/xml", "text/xml"})


# -- formats and the error envelope ----------------------------------------------------------


def body_format(request: web.BaseRequest) -> str | None:
    ctype = request.content_type.lower()
    if ctype in JSON_TYPES or ctype.endswith("+json"):
        return "json"
    if ctype in XML_TYPES or ctype.endswith("+xml"):
        return "xml"
    return None


def _error_format(request: web.BaseRequest) -> str:
    try:
        if request.method == "POST":
            return body_format(request) or "json"
        value = request.query.get("format", "")
        return "xml" if value.strip().lower() == "xml" else "json"
    except Exception:  # the envelope itself must never fail
        return "json"


def answer(
    fmt: str, status: int, root: str, value: Any, headers: dict[str, str] | None = None
) -> web.Response:
    if fmt == "xml":
        return web.Response(
            body=ix.render(root, value),
            status=status,
            headers=headers,
            content_type="application/xml",
            charset="utf-8",
        )
    return web.Response(
        body=orjson.dumps({root: value}),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def fail(request: web.BaseRequest, code: Code, detail: str | None, status: int) -> web.Response:
    # A code outside the dialect's table keeps its table-tracker status, else its class's.
    status, default = IMPRINTED_ERRORS.get(code, (ERRORS.get(code, (status,))[0], code.value))
    headers: dict[str, str] = {}
    if status in (429, 503):
        headers["Retry-After"] = "60" if status == 429 else "2"
    return answer(
        _error_format(request),
        status,
        "error",
        {"code": code.value, "message": detail or default},
        headers,
    )


def fail_status(request: web.BaseRequest, status: int, reason: str, code: Code) -> web.Response:
    return fail(request, code, reason, status)


# -- the signed request ----------------------------------------------------------------------


def _service(request: web.Request) -> Imprinted:
    return request.app[SERVICES].imprinted


def _intake(request: web.Request) -> OrderIntake:
    return request.app[SERVICES].intake


def _verify(request: web.Request, svc: Imprinted, body: bytes) -> tuple[SignedRequest, str]:
    """The caller, and the query string it signed (the raw query without Signature)."""
    raw_path, _, raw_query = request.raw_path.partition("?")
    raw_query = raw_query.partition("#")[0]
    headers = {
        name: value
        for name in (SIGNATURE_HEADER, TIMESTAMP_HEADER)
        if (value := request.headers.get(name)) is not None
    }
    signed = svc.auth.verify(
        method=request.method,
        path=raw_path,
        raw_query=raw_query,
        body=body,
        headers=headers,
        client=request.remote,
    )
    return signed, split_query(raw_query)[0]


# -- handlers --------------------------------------------------------------------------------


async def list_orders(request: web.Request) -> web.Response:
    svc = _service(request)
    signed, query = _verify(request, svc, b"")
    params = query_params(query, LIST_PARAMS)
    fmt = response_format(params.get("format"))
    tz = request.app[SERVICES].config.tz
    found = listing(params, signed.source, tz)
    orders = await svc.orders.list(found.filters, limit=found.limit, offset=found.offset)
    return answer(fmt, 200, "orders", [order_dict(o, tz) for o in orders])


async def count_orders(request: web.Request) -> web.Response:
    svc = _service(request)
    signed, query = _verify(request, svc, b"")
    params = query_params(query, LIST_PARAMS)  # limit and page are checked, and do not count
    fmt = response_format(params.get("format"))
    found = listing(params, signed.source, request.app[SERVICES].config.tz)
    return answer(fmt, 200, "count", await svc.orders.count(found.filters))


async def get_order(request: web.Request) -> web.Response:
    svc = _service(request)
    signed, query = _verify(request, svc, b"")
    params = query_params(query, ONE_PARAMS)
    fmt = response_format(params.get("format"))
    order = await svc.orders.get(signed.source, order_id(params))
    return answer(fmt, 200, "order", order_dict(order, request.app[SERVICES].config.tz))


async def create_order(request: web.Request) -> web.Response:
    svc = _service(request)
    body = await request.read()  # bounded by client_max_size (413)
    signed, query = _verify(request, svc, body)
    query_params(query, POST_PARAMS)
    fmt = body_format(request)
    if fmt is None:
        raise GatewayError(
            Code.UNSUPPORTED_MEDIA_TYPE,
            f"Content-Type {request.content_type[:60]!r} is not accepted: use "
            "application/json or application/xml.",
        )
    spec = order_spec(_decode(body, fmt))
    intake = _intake(request)
    claim = await svc.auth.claim(signed)  # after parsing: a refused body can be fixed and sent
    try:
        created = await intake.create(
            spec.items,
            source=signed.source,
            order_type="TO_GO",
            external_id=spec.external_id,
            extra=spec.extra,
        )
    except (GatewayError, sqlite3.Error):  # nothing was written: a retry is not a replay
        with contextlib.suppress(Exception):
            await svc.auth.release(claim)
        raise
    order = order_dict(created.order, request.app[SERVICES].config.tz)
    return answer(fmt, 201 if created.created else 200, "order", order)


def _decode(body: bytes, fmt: str) -> Any:
    if fmt == "xml":
        try:
            return ix.parse(body, "order")
        except ix.XmlError as exc:
            raise ValidationFailed(Code.BAD_XML, f"Invalid XML body: {exc}.") from None
    if not body.strip():
        raise ValidationFailed(Code.BAD_JSON, "Invalid JSON body: the body is empty.")
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationFailed(Code.BAD_JSON, f"Invalid JSON body: {str(exc)[:200]}.") from None


async def delete_order(request: web.Request) -> web.Response:
    svc = _service(request)
    signed, query = _verify(request, svc, b"")
    params = query_params(query, ONE_PARAMS)
    fmt = response_format(params.get("format"))
    order = await svc.orders.get(signed.source, order_id(params))
    if paid_at(order):
        raise Conflict(Code.ORDER_PAID, f"Order {order.number} is paid; it cannot be deleted.")
    cancelled = await _intake(request).cancel(order.uuid)
    return answer(fmt, 200, "order", order_dict(cancelled, request.app[SERVICES].config.tz))


# -- app management (Bearer token; the table-tracker envelope) -------------------------------


def _app_dict(request: web.Request, app: App) -> dict[str, Any]:
    return {
        "appId": app.app_id,
        "name": app.name,
        "created": local_time(app.created, request.app[SERVICES].config.tz),
    }


async def create_app(request: web.Request) -> web.Response:
    body = await read_json(request)
    new = await _service(request).auth.create(body.get("name"))
    app = _app_dict(request, new.app) | {"secret": new.secret}  # shown this once
    return reply(201, 2, message="Imprinted app created.", app=app)


async def list_apps(request: web.Request) -> web.Response:
    apps = _service(request).auth.list()
    return reply(200, 3, count=len(apps), items=[_app_dict(request, a) for a in apps])


async def revoke_app(request: web.Request) -> web.Response:
    await _service(request).auth.revoke(request.match_info["app_id"])
    return reply(200, 1001, message="Imprinted app revoked.")
