"""The Imprimo dialect (seed 000) under /api/dev/: printers ("devices") and their print
requests. Answers are `{"success": true, ...}`; failures `{"success": false, "error": ...}`
(web.envelope, IMPRIMO_ERRORS). Devices and requests are rendered by
`gateway.services.printing.imprimo_format`, which the automatic reports use too.

Handlers parse, call one PrintService method and render; they own no state.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from aiohttp import web

from gateway.core.errors import Code, NotFound, ValidationFailed
from gateway.core.printing import Source
from gateway.services.printing.commands import parse_command
from gateway.services.printing.imprimo_format import device_json, request_json
from gateway.services.printing.service import DeviceSpec, PrintService
from web.common import read_json
from web.services import SERVICES, Services

MAX_LIMIT = 100
MAX_OFFSET = 10**9
# A deadline this large is milliseconds (year 5138 in seconds): say so rather than "too far".
MILLISECONDS = 1e11
SUBMIT_KEYS = ("command", "data", "deadline", "reserved", "reportUrl")
DEVICE_KEYS = ("id", "name", "address", "station", "paper")
ANSWER_KEYS = ("accepted", "time")
# A client of the API may name a printer's device file, never a disk or any other file: the
# worker writes status queries to it. (The settings file, written by the operator, may name any.)
LOCAL_SCHEMES = ("serial://", "usb://", "lp://")
PRINTER_FILE = re.compile(
    r"(serial|usb|lp):///dev/(tty(S|USB|ACM|AMA)[0-9]{1,3}|usb/lp[0-9]{1,3}|lp[0-9]{1,3}"
    r"|rfcomm[0-9]{1,3}|serial/by-(id|path)/[A-Za-z0-9][A-Za-z0-9:._+-]{0,200})(\?.*)?"
)


def ok(payload: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps({"success": True, **payload}),
        status=status,
        content_type="application/json",
    )


def _service(request: web.Request) -> tuple[Services, PrintService]:
    ctx = request.app[SERVICES]
    return ctx, ctx.printing


# -- parameters and bodies ----------------------------------------------------------------


def parse_limit(raw: str | None) -> int:
    """Default 100; larger values are capped at 100 (seed 000: "Capped at 100")."""
    if raw is None:
        return MAX_LIMIT
    digits = raw.lstrip("0")
    if not (raw.isascii() and raw.isdigit()) or not digits:
        raise ValidationFailed(
            Code.BAD_LIMIT,
            f"limit must be a positive integer (values "
            f"above {MAX_LIMIT} are capped), not {raw[:20]!r}.",
        )
    return MAX_LIMIT if len(digits) > 3 else min(int(digits), MAX_LIMIT)


def parse_offset(raw: str | None) -> int:
    if raw is None:
        return 0
    digits = raw.lstrip("0") or "0"
    if not (raw.isascii() and raw.isdigit()) or len(digits) > 10 or int(digits) > MAX_OFFSET:
        raise ValidationFailed(
            Code.BAD_OFFSET, f"offset must be an integer from 0 to {MAX_OFFSET}, not {raw[:20]!r}."
        )
    return int(digits)


def only(body: dict[str, Any], allowed: Iterable[str]) -> None:
    """Unknown top-level properties are refused by name: a typo must not pass silently."""
    allowed = tuple(allowed)
    if extra := sorted(set(body) - set(allowed)):
        names = ", ".join(repr(k[:40]) for k in extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise ValidationFailed(
            Code.BAD_JSON, f"Unknown properties: {names}. Allowed: {', '.join(allowed)}."
        )


def parse_deadline(value: object) -> float | None:
    """A Unix time in seconds, int or float; bool is not a number. null = the default."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValidationFailed(
            Code.PRINT_BAD_DEADLINE, "deadline must be a number: Unix time in seconds."
        )
    if value >= MILLISECONDS:
        raise ValidationFailed(
            Code.PRINT_BAD_DEADLINE, "deadline looks like milliseconds; send Unix time in seconds."
        )
    return float(value)


def optional_text(body: dict[str, Any], key: str, code: Code, what: str) -> str | None:
    value = body.get(key)
    if value is not None and not isinstance(value, str):
        raise ValidationFailed(code, f"{key} must be {what} or null.")
    return value


def text(body: dict[str, Any], key: str, *, default: str | None = None) -> str:
    value = body.get(key, default)
    if value is None:
        raise ValidationFailed(Code.PRINT_BAD_DEVICE, f"{key} is required.")
    if not isinstance(value, str):
        raise ValidationFailed(Code.PRINT_BAD_DEVICE, f"{key} must be a string.")
    return value


def _page(
    request: web.Request, key: str, items: list[dict[str, Any]], limit: int, offset: int, total: int
) -> web.Response:
    after = offset + len(items)
    following = None
    if items and after < total:
        following = str(request.rel_url.with_query(limit=str(limit), offset=str(after)))
    return ok({key: {"next": following, "count": len(items), "total": total, "items": items}})


# -- devices --------------------------------------------------------------------------------


async def list_devices(request: web.Request) -> web.Response:
    _, svc = _service(request)
    limit = parse_limit(request.query.get("limit"))
    offset = parse_offset(request.query.get("offset"))
    devices, total = svc.list_devices(limit, offset)
    return _page(request, "devices", [device_json(d) for d in devices], limit, offset, total)


async def get_device(request: web.Request) -> web.Response:
    _, svc = _service(request)
    return ok({"device": device_json(svc.device(request.match_info["device_id"]))})


async def add_device(request: web.Request) -> web.Response:
    _, svc = _service(request)
    body = await read_json(request)
    only(body, DEVICE_KEYS)
    raw_id = body.get("id")
    if raw_id is not None and not isinstance(raw_id, str):
        raise ValidationFailed(Code.PRINT_BAD_DEVICE, "id must be a string or left out.")
    address = _address(body)
    spec = DeviceSpec(
        name=text(body, "name"),
        address=address,
        station=text(body, "station", default=""),
        paper=text(body, "paper", default="80mm"),
        id=raw_id,
    )
    device = await svc.add_device(spec, Source.API)
    return ok({"device": device_json(device)}, 201)


def _address(body: dict[str, Any]) -> str:
    address = text(body, "address")
    if address.startswith(LOCAL_SCHEMES) and not PRINTER_FILE.fullmatch(address):
        raise ValidationFailed(
            Code.PRINT_BAD_DEVICE,
            "address must name a printer port: "
            "/dev/ttyS*, ttyUSB*, ttyACM*, ttyAMA*, rfcomm*, usb/lp*, lp* or "
            "serial/by-id/*.",
        )
    return address


async def move_device(request: web.Request) -> web.Response:
    _, svc = _service(request)
    body = await read_json(request)
    only(body, ("address",))
    device = await svc.move_device(request.match_info["device_id"], _address(body))
    return ok({"device": device_json(device)})


async def remove_device(request: web.Request) -> web.Response:
    _, svc = _service(request)
    await svc.remove_device(request.match_info["device_id"])
    return ok({})


# -- requests -------------------------------------------------------------------------------


async def submit(request: web.Request) -> web.Response:
    _, svc = _service(request)
    device = svc.device(request.match_info["device_id"])  # 404 before judging the body
    body = await read_json(request)
    only(body, SUBMIT_KEYS)
    command = parse_command(body.get("command"))
    deadline = parse_deadline(body.get("deadline"))
    reserved = optional_text(
        body, "reserved", Code.PRINT_BAD_RESERVED, "a string of at most 60 ASCII characters"
    )
    report_url = optional_text(
        body, "reportUrl", Code.PRINT_BAD_REPORT_URL, "an http(s) URL string"
    )
    created = await svc.submit(
        device.id,
        command,
        body.get("data"),
        deadline=deadline,
        reserved=reserved,
        report_url=report_url,
    )
    return ok({"request": request_json(created)})


async def list_requests(request: web.Request) -> web.Response:
    _, svc = _service(request)
    device_id = request.match_info["device_id"]
    svc.device(device_id)
    limit = parse_limit(request.query.get("limit"))
    offset = parse_offset(request.query.get("offset"))
    found, total = await svc.list_requests(device_id, limit, offset)
    return _page(request, "requests", [request_json(r) for r in found], limit, offset, total)


async def get_request(request: web.Request) -> web.Response:
    _, svc = _service(request)
    found = await svc.request(request.match_info["device_id"], request.match_info["request_id"])
    return ok({"request": request_json(found)})


async def respond(request: web.Request) -> web.Response:
    _, svc = _service(request)
    device_id, request_id = request.match_info["device_id"], request.match_info["request_id"]
    svc.device(device_id)
    body = await read_json(request)
    only(body, ANSWER_KEYS)
    done = await svc.respond(device_id, request_id, body.get("accepted"), body.get("time"))
    return ok({"request": request_json(done)})


# -- preview of a demo virtual printer -------------------------------------------------------

Tickets = list[tuple[float, str, Callable[[], bytes]]]


def _tickets(request: web.Request) -> Tickets:
    ctx, svc = _service(request)
    device = svc.device(request.match_info["device_id"])
    source = ctx.previews.get(device.id)
    if source is None:
        raise NotFound(
            Code.NOT_FOUND, f"Device {device.id!r} is not a virtual printer: it has no preview."
        )
    return source()


async def preview(request: web.Request) -> web.Response:
    tickets = [{"receivedAt": int(at), "text": txt} for at, txt, _ in _tickets(request)]
    resp = ok({"tickets": tickets})
    resp.headers["Cache-Control"] = "no-store"
    return resp


async def preview_png(request: web.Request) -> web.Response:
    tickets = _tickets(request)
    if not tickets:
        raise NotFound(Code.NOT_FOUND, "Nothing printed on this device yet.")
    _, _, png = tickets[-1]
    body = await asyncio.to_thread(png)  # rasterising a ticket must not stall the loop
    return web.Response(body=body, content_type="image/png", headers={"Cache-Control": "no-store"})
