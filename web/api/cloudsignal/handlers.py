"""The CloudSignal dialect (seed 002, API v1.1): item signals from a kitchen display, and the
management of its apikeys and of the receivers the gateway signals.

`POST /cloudsignal/1.1/status/` (and `/1.1/status/`) takes the seed's JSON signal; the apikey
travels in the body, so the route has no Bearer auth and this handler checks it. The request
was invalid or a parameter is missing → 400 with a message (checked first: it reads nothing);
then no apikey → 401, a wrong one → 403; an unknown order or item → 400; else 200. Every
answer is the gateway's JSON envelope `{status, returnCode, message}` (the seed defines no
body; it only says a 400 "can contain an error message"). Nothing here logs a body: the
apikey never reaches a log line.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from aiohttp import web

from gateway.core.errors import Code, Conflict, NotFound, ValidationFailed
from gateway.services.integrations.cloudsignal import (
    APIKEY_MAX,
    Inbound,
    IntegrationKey,
    SignalType,
    Subscription,
)
from web.common import read_json
from web.envelope import reply
from web.render import local_time
from web.services import SERVICES

# returnCodes (ours: the seed defines none). 1200+: signal acknowledged; 120-123: data.
APPLIED, UNCHANGED, KEY_REVOKED, UNSUBSCRIBED = 1200, 1201, 1202, 1203
KEY_CREATED, KEY_LIST, SUBSCRIBED, SUBSCRIPTION_LIST = 120, 121, 122, 123
MISSING_APIKEY, WRONG_APIKEY, BAD_PARAMETER, UNKNOWN_REF, BAD_TRANSITION = -60, -61, -62, -63, -64

MAX_REF = 64
MAX_CAUSE = 500
MAX_MESSAGE = 1000
MAX_TRACKING = 256
MAX_DELAY_HOURS = 8760  # a year
# Seed 002: `2016-01-20 13:00:00 GMT`; ISO 8601 spellings (T, Z, UTC, an offset) are accepted.
DATETIME = re.compile(
    r"(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}:\d{2})(?:\.\d{1,9})?"
    r"(?: ?(?:GMT|UTC|Z|[+-]\d{2}:?\d{2}))?"
)
HOURS = re.compile(r"\d{1,4}(?:\.\d{1,3})?")


class BadSignal(Exception):
    """The signal is invalid or a parameter is missing: 400 with this message."""


# -- inbound signals ------------------------------------------------------------------------


async def cloudsignal_status(request: web.Request) -> web.Response:
    """POST …/1.1/status/: one signal from a kitchen display."""
    svc = request.app[SERVICES].cloudsignal
    body = await read_json(request)  # not a JSON object: 400 (-31)
    try:
        # Seed 002's 400 ("invalid or parameters are missing") comes first: checking a body's
        # shape reads nothing, and tells a misconfigured display what it sends wrong.
        signal = parse_signal(body)
    except BadSignal as exc:
        return reply(400, BAD_PARAMETER, message=str(exc))
    apikey = body.get("apikey")
    if not isinstance(apikey, str) or not apikey:
        return reply(401, MISSING_APIKEY, message="Authentication failed: missing apikey.")
    if len(apikey) > APIKEY_MAX or svc.authenticate(apikey) is None:
        return reply(403, WRONG_APIKEY, message="Authentication failed: invalid apikey.")
    try:
        changed = await svc.apply(signal)
    except NotFound as exc:
        return reply(400, UNKNOWN_REF, message=exc.detail or "Unknown order or item.")
    except Conflict as exc:
        return reply(400, BAD_TRANSITION, message=exc.detail or "The item cannot move so.")
    if changed:
        return reply(200, APPLIED, message=f"{signal.type.value} applied.")
    return reply(200, UNCHANGED, message=f"{signal.type.value} acknowledged; nothing to change.")


def parse_signal(body: dict[str, Any]) -> Inbound:
    """The seed's parameters → an `Inbound` (delay converted from hours to minutes)."""
    kind_raw = _text(body, "type", required=True, limit=32)
    try:
        kind = SignalType(kind_raw)
    except ValueError:
        raise BadSignal(
            "Invalid type: must be one of " + ", ".join(t.value for t in SignalType) + "."
        ) from None
    order = _ref(body, "order")
    item = "" if kind is SignalType.ORDER_REGISTERED else _ref(body, "item")
    _datetime(body)
    if kind is SignalType.ITEM_SHIPPED:
        _text(body, "tracking", required=True, limit=MAX_TRACKING)  # the seed requires it
    cause = message = ""
    delay = None
    if kind in (SignalType.ITEM_ERROR, SignalType.ITEM_CANCELED):
        cause = _text(body, "cause", limit=MAX_CAUSE)
        delay = _delay(body)
    if kind is SignalType.ITEM_CANCELED:
        message = _text(body, "message", limit=MAX_MESSAGE)
    return Inbound(kind, order, item, cause, delay, message)


def _text(body: dict[str, Any], key: str, *, required: bool = False, limit: int) -> str:
    value = body.get(key)
    if value is None:
        if required:
            raise BadSignal(f"Missing parameter: {key}.")
        return ""
    if not isinstance(value, str):
        raise BadSignal(f"Invalid {key}: must be a string.")
    if len(value) > limit:
        raise BadSignal(f"Invalid {key}: longer than {limit} characters.")
    return value


def _ref(body: dict[str, Any], key: str) -> str:
    """An order or item id: a string (a JSON integer is taken as its digits)."""
    value = body.get(key)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**18:
        return str(value)
    text = _text(body, key, required=True, limit=MAX_REF)
    if not text or not text.isprintable():
        raise BadSignal(f"Invalid {key}: must be the full {key} id.")
    return text


def _datetime(body: dict[str, Any]) -> None:
    text = _text(body, "datetime", required=True, limit=40)
    match = DATETIME.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        datetime.strptime(f"{match[1]} {match[2]}", "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise BadSignal("Invalid datetime: use YYYY-MM-DD HH:MM:SS GMT.") from None


def _delay(body: dict[str, Any]) -> int | None:
    """Seed: "expected delay in hours", a string; a JSON number is accepted. → minutes."""
    value = body.get("delay")
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BadSignal("Invalid delay: must be a number of hours.")
    text = str(value).strip() if isinstance(value, str) else repr(value)
    if not HOURS.fullmatch(text) or float(text) > MAX_DELAY_HOURS:
        raise BadSignal(f"Invalid delay: must be a number of hours from 0 to {MAX_DELAY_HOURS}.")
    return round(float(text) * 60)


# -- management (Bearer token) --------------------------------------------------------------


def _key_dict(request: web.Request, key: IntegrationKey) -> dict[str, Any]:
    tz = request.app[SERVICES].config.tz
    return {
        "id": key.id,
        "name": key.name,
        "keyId": key.app_id,
        "creation_date": local_time(key.created, tz),
    }


def _subscription_dict(request: web.Request, sub: Subscription) -> dict[str, Any]:
    tz = request.app[SERVICES].config.tz
    return {
        "id": sub.id,
        "url": sub.url,
        "creation_date": local_time(sub.created, tz),
        "disabled": None if sub.disabled is None else local_time(sub.disabled, tz),
        "disabled_reason": sub.disabled_reason,
    }


def _id_query(request: web.Request) -> int:
    raw = request.query.get("id", "")
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed(Code.BAD_ORDER_ID, "Invalid id: must be a positive integer.")
    return int(raw)


async def cloudsignal_create_key(request: web.Request) -> web.Response:
    body = await read_json(request)
    info, apikey = await request.app[SERVICES].cloudsignal.create_key(body.get("name"))
    key = _key_dict(request, info) | {"apikey": apikey}  # shown this once; only its digest kept
    return reply(
        201, KEY_CREATED, message="CloudSignal apikey created; it is shown only now.", key=key
    )


async def cloudsignal_list_keys(request: web.Request) -> web.Response:
    items = [_key_dict(request, k) for k in request.app[SERVICES].cloudsignal.keys()]
    return reply(200, KEY_LIST, count=len(items), items=items)


async def cloudsignal_revoke_key(request: web.Request) -> web.Response:
    await request.app[SERVICES].cloudsignal.revoke_key(_id_query(request))
    return reply(200, KEY_REVOKED, message="CloudSignal apikey revoked.")


async def cloudsignal_subscribe(request: web.Request) -> web.Response:
    body = await read_json(request)
    svc = request.app[SERVICES].cloudsignal
    sub, new = await svc.subscribe(body.get("url"), body.get("apikey"))
    return reply(
        201 if new else 200,
        SUBSCRIBED,
        message="Subscription added." if new else "Subscription updated.",
        subscription=_subscription_dict(request, sub),
    )


async def cloudsignal_list_subscriptions(request: web.Request) -> web.Response:
    subs = request.app[SERVICES].cloudsignal.subscriptions()
    items = [_subscription_dict(request, s) for s in subs]
    return reply(200, SUBSCRIPTION_LIST, count=len(items), items=items)


async def cloudsignal_unsubscribe(request: web.Request) -> web.Response:
    await request.app[SERVICES].cloudsignal.unsubscribe(_id_query(request))
    return reply(200, UNSUBSCRIBED, message="Subscription removed.")
