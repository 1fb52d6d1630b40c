"""The outbox for an operator (Bearer token): its state, the dead-letter list, and replay.

A dead delivery (10 failed attempts, 410, a forbidden URL, a removed subscription) stays in the
list until it is replayed or pruned; `POST /api/admin/deliveries/{id}/replay` sends it again
with a fresh budget of attempts, before any younger delivery to the same receiver. URLs are
shown without query string or credentials (they may carry secrets).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.errors import Code, NotFound, ValidationFailed
from gateway.services.outbox.service import OutboxRow, safe_url
from web.envelope import reply
from web.render import local_time
from web.services import SERVICES

# returnCodes (ours): 140-141 data; 1400+ action acknowledged.
OVERVIEW, DEAD_LIST, REPLAYED = 140, 141, 1400
MAX_LIMIT = 100


def _int(request: web.Request, key: str, default: int, lo: int, hi: int, code: Code) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not lo <= int(raw) <= hi:
        raise ValidationFailed(code)
    return int(raw)


def dead_dict(request: web.Request, row: OutboxRow) -> dict[str, Any]:
    tz = request.app[SERVICES].config.tz
    return {
        "id": row.id,
        "eventId": row.event_id,
        "kind": row.kind,
        "url": safe_url(row.url),
        "attempts": row.attempts,
        "lastStatus": row.last_status,
        "lastError": row.last_error,
        "created": local_time(row.created, tz),
        "finished": None if row.finished is None else local_time(row.finished, tz),
    }


async def overview(request: web.Request) -> web.Response:
    svc = request.app[SERVICES].deliveries
    uplink = svc.uplink
    stats = svc.stats
    return reply(
        200,
        OVERVIEW,
        pending=await svc.pending(),
        dead=await svc.dead_count(),
        uplink="off" if uplink is None or not uplink.enabled else uplink.state.value,
        sent=stats.sent,
        delivered=stats.delivered,
        failed=stats.failed,
        offline=stats.offline,
    )


async def dead_letters(request: web.Request) -> web.Response:
    limit = _int(request, "limit", 25, 1, MAX_LIMIT, Code.BAD_LIMIT)
    offset = _int(request, "offset", 0, 0, 1_000_000_000, Code.BAD_OFFSET)
    svc = request.app[SERVICES].deliveries
    rows = await svc.dead_letters(limit, offset)
    return reply(
        200, DEAD_LIST, total=await svc.dead_count(), items=[dead_dict(request, r) for r in rows]
    )


async def replay(request: web.Request) -> web.Response:
    raw = request.match_info["delivery_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed(Code.BAD_ORDER_ID, "Invalid delivery id.")
    if not await request.app[SERVICES].deliveries.replay(int(raw)):
        raise NotFound(Code.NOT_FOUND, f"No dead delivery {int(raw)}.")
    return reply(200, REPLAYED, message=f"Delivery {int(raw)} queued again.")
