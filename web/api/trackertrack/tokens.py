"""Access tokens: the button window, minting, listing and revoking (table-tracker dialect)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.core.errors import Code, ValidationFailed
from gateway.core.models import TokenInfo
from gateway.services.access.tokens import Issued
from web.common import read_json
from web.envelope import reply
from web.render import local_time
from web.services import SERVICES, Services


def _info_dict(ctx: Services, t: TokenInfo) -> dict[str, Any]:
    tz = ctx.config.tz
    return {
        "id": t.id,
        "name": t.name,
        "creation_date": local_time(t.created, tz),
        "last_used": None if t.last_used is None else local_time(t.last_used, tz),
        "ip_address": t.ip_address,
    }


def _created(ctx: Services, issued: Issued) -> web.Response:
    token = _info_dict(ctx, issued.info)
    token["token"] = issued.secret  # shown this once; only its digest is kept
    return reply(201, 2, message="Token created.", token=token)


async def _mint(request: web.Request, name: Any) -> web.Response:
    ctx = request.app[SERVICES]
    if not isinstance(name, str):
        raise ValidationFailed(Code.TOKEN_BAD_NAME)
    return _created(ctx, await ctx.tokens.issue(name, request.remote))


def _timeout(request: web.Request) -> int | None:
    raw = request.query.get("timeout")
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):
        raise ValidationFailed(Code.TOKEN_BAD_TIMEOUT)
    if len(raw) > 6 or not 1 <= int(raw) <= 120:
        raise ValidationFailed(Code.TOKEN_TIMEOUT_RANGE)
    return int(raw)


async def generate_in_window(request: web.Request) -> web.Response:
    """GET …/accesstoken/generate?name=[&timeout=]: only while the button window is open;
    with `timeout` it waits for someone to press the button (long poll). One press hands
    out a bounded number of tokens (TokenService quotas)."""
    ctx = request.app[SERVICES]
    name = ctx.tokens.check_name(request.query.get("name"))
    timeout = _timeout(request)
    issued = await ctx.tokens.issue_in_window(name, request.remote, wait=timeout)
    return _created(ctx, issued)


async def generate_with_token(request: web.Request) -> web.Response:
    name: Any = request.query.get("name")
    if name is None:
        name = (await read_json(request, optional=True)).get("name")
    return await _mint(request, name)


async def list_tokens(request: web.Request) -> web.Response:
    ctx = request.app[SERVICES]
    items = [_info_dict(ctx, t) for t in ctx.tokens.list()]
    return reply(200, 3, count=len(items), items=items)


async def revoke_token(request: web.Request) -> web.Response:
    raw = request.match_info["token_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 12:
        raise ValidationFailed(Code.BAD_ORDER_ID, "Invalid token id.")
    await request.app[SERVICES].tokens.revoke(int(raw))
    return reply(200, 1001, message="Token deleted.")
