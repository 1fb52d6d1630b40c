"""Trackers and repeaters (radio receivers) in the table-tracker dialect."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.errors import Code, ValidationFailed
from gateway.services.trackers.inventory import TrackerService
from web.common import read_json
from web.envelope import reply
from web.render import local_time, tracker_dict
from web.services import SERVICES, Services


def _service(request: web.Request) -> tuple[Services, TrackerService]:
    ctx = request.app[SERVICES]
    return ctx, ctx.trackers


def _number(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 5 or not 1 <= int(raw) <= 65535:
        raise ValidationFailed(Code.BAD_TRACKER, "Tracker number must be 1 to 65535.")
    return int(raw)


async def list_trackers(request: web.Request) -> web.Response:
    ctx, svc = _service(request)
    items = [tracker_dict(ctx, svc, t) for t in svc.list()]
    return reply(200, 16, count=len(items), items=items)


async def get_tracker(request: web.Request) -> web.Response:
    ctx, svc = _service(request)
    tracker = svc.get(_number(request.match_info["number"]))
    return reply(200, 17, tracker=tracker_dict(ctx, svc, tracker))


async def pair_tracker(request: web.Request) -> web.Response:
    ctx, svc = _service(request)
    body = await read_json(request)
    tracker = await svc.pair(body.get("number"), body.get("address"))
    return reply(200, 1016, message="Tracker paired.", tracker=tracker_dict(ctx, svc, tracker))


async def rename_tracker(request: web.Request) -> web.Response:
    ctx, svc = _service(request)
    body = await read_json(request)
    new = body.get("number")
    if not isinstance(new, int) or isinstance(new, bool):
        raise ValidationFailed(Code.BAD_TRACKER, "Tracker number must be 1 to 65535.")
    tracker = await svc.rename(_number(request.match_info["number"]), new)
    return reply(200, 1017, message="Tracker renamed.", tracker=tracker_dict(ctx, svc, tracker))


async def forget_tracker(request: web.Request) -> web.Response:
    _, svc = _service(request)
    await svc.forget(_number(request.match_info["number"]))
    return reply(200, 1018, message="Tracker forgotten.")


async def clear_inventory(request: web.Request) -> web.Response:
    _, svc = _service(request)
    count = await svc.clear_inventory()
    return reply(200, 1007, message="Tracker inventory cleared.", count=count)


def _receivers(ctx: Services) -> list[dict[str, Any]]:
    tz = ctx.config.tz
    return [
        {
            "id": r.id,
            "type": r.kind,
            "status": r.status,
            "detail": r.detail,
            "lastSeen": None if r.last_seen is None else local_time(r.last_seen, tz),
        }
        for r in ctx.receivers()
    ]


async def list_repeaters(request: web.Request) -> web.Response:
    ctx, svc = _service(request)
    return reply(200, 15, repeaters=_receivers(ctx), pairing=svc.pairing_open)


async def clear_repeaters(request: web.Request) -> web.Response:
    # Remote repeaters are not built yet; the local receivers cannot be forgotten.
    _service(request)
    return reply(200, 1006, message="Repeaters cleared.")


async def begin_pairing(request: web.Request) -> web.Response:
    _, svc = _service(request)
    body = await read_json(request, optional=True)
    timeout = body.get("timeout", request.query.get("timeout", 60))
    if isinstance(timeout, str) and timeout.isascii() and timeout.isdigit() and len(timeout) < 4:
        timeout = int(timeout)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 <= timeout <= 254:
        raise ValidationFailed(Code.BAD_PAIRING_TIMEOUT)
    svc.begin_pairing(timeout)
    return reply(200, 1012, message="Pairing mode on.", timeout=timeout)


async def end_pairing(request: web.Request) -> web.Response:
    _, svc = _service(request)
    svc.end_pairing()
    return reply(200, 1013, message="Pairing mode off.")
