"""The table-tracker LAN API (seed 004 and the reference note), v2 and the v1 compatibility
surface. Handlers parse, call one service method and render; they own no state."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.core.errors import Code, ValidationFailed
from gateway.core.models import ORDER_TYPES, ClearReason, HistoryQuery
from gateway.services.orders.stats import day_bounds, summarize
from gateway.services.orders.unit import StartOutcome
from web.common import parse_bool, parse_ident, positive_number, read_json
from web.envelope import error_reply, reply
from web.render import history_dict, local_time, order_dict
from web.services import SERVICES, Services

WARNING_NO_TRACKER = "Tracker not assigned with order."


def _v1(request: web.Request) -> bool:
    return request.path.startswith("/api/v1")


def _ctx(request: web.Request) -> Services:
    return request.app[SERVICES]


def _render(request: web.Request, order: Any) -> dict[str, Any]:
    ctx = _ctx(request)
    return order_dict(order, ctx.config.tz, ctx.clock.now(), v1=_v1(request))


# -- health ---------------------------------------------------------------------------


async def health(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    # Healthy means the writes land in the file the next start opens (issue 9 item 6).
    if not ctx.storage_check() or ctx.alarms.active():
        # Names only: this answer needs no token; the feed /api/ws carries the details.
        alarms = ctx.alarms.active()
        names = ", ".join(a.name for a in alarms) or "database-check"
        return error_reply(Code.API_UNAVAILABLE, f"Gateway not healthy (alarm: {names}).")
    now = ctx.clock.now()
    return reply(
        200,
        1,
        message="Tablegate gateway ready.",
        gatewayId=ctx.gateway_id,
        version=ctx.version,
        apiVersion="v1" if _v1(request) else "v2",
        demo=ctx.demo,
        time=local_time(now, ctx.config.tz),
        uptime=int(now - ctx.started),
        activeOrders=len(ctx.orders.active()),
        journalSeq=ctx.bus.last_seq,
    )


# -- active orders ----------------------------------------------------------------------


def parse_start(body: dict[str, Any]) -> tuple[str, str, str | None]:
    """Validate a start-or-locate body: (name, orderType, locationName or None)."""
    raw_name = body.get("name")
    if raw_name is None or raw_name == "":
        raise ValidationFailed(Code.MISSING_ORDER_NAME)
    name = positive_number(raw_name)
    if name is None:
        raise ValidationFailed(Code.BAD_ORDER_NAME)
    raw_location = body.get("locationName")
    location: str | None = None
    if raw_location is not None and raw_location != "":
        location = positive_number(raw_location)
        if location is None:
            raise ValidationFailed(Code.BAD_LOCATION_NAME)
    raw_type = body.get("orderType")
    if raw_type is None or raw_type == "":
        raise ValidationFailed(Code.MISSING_ORDER_TYPE)
    order_type = raw_type.strip().upper() if isinstance(raw_type, str) else None
    if order_type not in ORDER_TYPES:
        raise ValidationFailed(Code.BAD_ORDER_TYPE)
    return name, order_type, location


async def list_active(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    now, tz, v1 = ctx.clock.now(), ctx.config.tz, _v1(request)
    items = [order_dict(o, tz, now, v1=v1) for o in ctx.orders.active()]
    return reply(200, 5, count=len(items), items=items)


async def start_or_locate(request: web.Request) -> web.Response:
    body = await read_json(request)
    name, order_type, location = parse_start(body)
    dummy = "dummy_tracker_address" in request.query and parse_bool(
        request.query["dummy_tracker_address"]
    )
    result = await _ctx(request).orders.start_or_locate(name, order_type, location, dummy)
    if result.outcome is StartOutcome.ALREADY_STARTED:
        return reply(200, 1009, message="Order already started.")
    if result.outcome is StartOutcome.ALREADY_LOCATED:
        return reply(200, 1010, message="Order already located.")
    status = 201 if result.outcome is StartOutcome.CREATED else 200
    extra = {} if result.order.tracker else {"warning": WARNING_NO_TRACKER}
    return reply(status, 5, **extra, activeorder=_render(request, result.order))


async def get_one(request: web.Request) -> web.Response:
    order = _ctx(request).orders.find(parse_ident(request.match_info["ident"]))
    return reply(200, 6, activeorder=_render(request, order))


async def clear_one(request: web.Request) -> web.Response:
    ref = parse_ident(request.match_info["ident"])
    order = await _ctx(request).orders.clear(ref, ClearReason.MANAGER_OVERRIDE)
    return reply(200, 1000, message="Order cleared.", activeorder=_render(request, order))


async def clear_all(request: web.Request) -> web.Response:
    orders = await _ctx(request).orders.clear_all(ClearReason.MANAGER_OVERRIDE)
    return reply(200, 1000, message=f"{len(orders)} orders cleared.", count=len(orders))


async def page(request: web.Request) -> web.Response:
    ref = parse_ident(request.match_info["ident"])
    body = await read_json(request, optional=True)
    raw = body.get("tracking", request.query.get("tracking", True))
    order = await _ctx(request).orders.page(ref, parse_bool(raw))
    return reply(200, 1014, message="Tracker paged.", activeorder=_render(request, order))


async def guest_paging(request: web.Request) -> web.Response:
    ref = parse_ident(request.match_info["ident"])
    order = await _ctx(request).orders.page(ref, True)
    return reply(200, 1014, message="Tracker paged.", activeorder=_render(request, order))


async def cancel_paging(request: web.Request) -> web.Response:
    ref = parse_ident(request.match_info["ident"])
    order = await _ctx(request).orders.cancel_paging(ref)
    if order is None:
        return reply(200, 1003, message="No tracker to cancel paging for.")
    return reply(200, 1002, message="Paging cancelled.", activeorder=_render(request, order))


# -- history and statistics -----------------------------------------------------------------


def _int_param(request: web.Request, key: str, default: int, lo: int, hi: int, code: Code) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    # isascii: isdigit() alone accepts '²'; the length cap keeps int() away from huge input.
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12 or not lo <= int(raw) <= hi:
        raise ValidationFailed(code)
    return int(raw)


def _date_param(request: web.Request, key: str) -> float | None:
    raw = request.query.get(key)
    if raw is None:
        return None
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            parsed = datetime.strptime(raw, fmt)
        except ValueError:
            continue
        return parsed.replace(tzinfo=_ctx(request).config.tz).timestamp()
    raise ValidationFailed(Code.BAD_DATE, f"Invalid {key}. Use YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD.")


def parse_history(request: web.Request) -> HistoryQuery:
    order_type = request.query.get("order_type")
    if order_type is not None:
        order_type = order_type.upper()
        if order_type not in ORDER_TYPES:
            raise ValidationFailed(Code.BAD_ORDER_TYPE)
    location = request.query.get("location_name")
    if location is not None and positive_number(location) is None:
        raise ValidationFailed(Code.BAD_LOCATION_NAME)
    types = None
    if order_type is not None:
        types = ("TO_GO",) if order_type == "TO_GO" else ("ON_PREMISE", "ON_PREMISES")
    return HistoryQuery(
        offset=_int_param(request, "offset", 0, 0, 10**9, Code.BAD_OFFSET),
        limit=_int_param(request, "limit", 25, 1, 100, Code.BAD_LIMIT),
        created_after=_date_param(request, "created_after"),
        created_before=_date_param(request, "created_before"),
        order_type=types,
        location_name=None if location is None else positive_number(location),
    )


async def history(request: web.Request) -> web.Response:
    query = parse_history(request)
    ctx = _ctx(request)
    total, orders = await ctx.orders.history(query)
    now, tz, v1 = ctx.clock.now(), ctx.config.tz, _v1(request)
    items = [history_dict(o, tz, now, v1=v1) for o in orders]
    return reply(
        200, 5, count=len(items), total=total, offset=query.offset, limit=query.limit, items=items
    )


async def statistics(request: web.Request) -> web.Response:
    ctx = _ctx(request)
    target = _int_param(
        request,
        "target_time",
        ctx.config.get("targetTimeDefault"),
        1,
        86_400,
        Code.BAD_TARGET_TIME,
    )
    date, start, end = day_bounds(ctx.clock.now(), ctx.config.tz)
    s = summarize(await ctx.orders.created_between(start, end), date, target)
    body = {
        "date": s.date,
        "timezone": ctx.config.get("timezone"),
        "targetTime": s.target_time,
        "count": s.count,
        "located": s.located,
        "cleared": s.cleared,
        "averageTimeToSit": s.average_time_to_sit,
        "averageDeliveryTime": s.average_delivery_time,
        "withinTarget": s.within_target,
        "withinTargetShare": s.within_target_share,
    }
    if _v1(request):  # v1 answered flat; v2 nests under `statistics`
        return reply(200, 14, **body)
    return reply(200, 14, statistics=body)


# -- gateway settings and webhook clients ------------------------------------------------


async def get_settings(request: web.Request) -> web.Response:
    return reply(200, 13, settings=_ctx(request).config.settings())


async def post_settings(request: web.Request) -> web.Response:
    body = await read_json(request)
    settings = await _ctx(request).config.update(body)
    return reply(200, 1004, message="Settings changed.", settings=settings)


def _client_dict(client: Any) -> dict[str, Any]:
    return {"http_client": client.url, "apiVersion": client.api_version}


async def register(request: web.Request) -> web.Response:
    if request.method == "GET":  # v1: GET /api/v1/register?http_client=
        url: Any = request.query.get("http_client")
    else:
        url = (await read_json(request)).get("http_client")
    client = await _ctx(request).config.register_client(url, "v1" if _v1(request) else "v2")
    return reply(200, 1005, message="Client registered.", client=_client_dict(client))


async def unregister(request: web.Request) -> web.Response:
    url = (await read_json(request)).get("http_client")
    await _ctx(request).config.unregister_client(url)
    return reply(200, 1005, message="Client unregistered.")


async def list_clients(request: web.Request) -> web.Response:
    clients = [_client_dict(c) for c in _ctx(request).config.clients()]
    return reply(200, 4, count=len(clients), items=clients)
