"""The box-local admin call that opens the token window (the software button)."""

from __future__ import annotations

import hmac

from aiohttp import web

from gateway.core.errors import AuthFailed, Code
from web.common import bearer_secret
from web.envelope import reply
from web.services import SERVICES


async def open_window(request: web.Request) -> web.Response:
    """POST /api/admin/token-window: the software button. Only a caller that can read the
    box's admin cookie file (someone on the box) may press it."""
    ctx = request.app[SERVICES]
    secret = bearer_secret(request.headers.get("Authorization", ""))
    # The cookie is checked first: failures from the same address never refuse the right one.
    if not hmac.compare_digest(secret.encode(), ctx.admin_cookie.encode()):
        ctx.tokens.throttle.failed(request.remote)  # 429 once the address is blocked
        raise AuthFailed(Code.AUTH_INVALID)
    seconds = ctx.tokens.open_window()
    return reply(200, 1015, message="Token window open.", seconds=int(seconds))
