"""Every HTTP route in one table: method, path, handler and who may call it.

The table drives registration, the authorization wrapper and the OpenAPI document alike, so a
new route cannot skip authentication or the spec by accident.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from web.api import tokens
from web.api import trackertrack as tt
from web.api.common import authenticate
from web.ws import compat

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Auth(Enum):
    NONE = "none"  # liveness, the button window
    TOKEN = "token"  # Authorization: Bearer <token> (v1 also Basic with token as username)
    ADMIN = "admin"  # the box-local admin cookie (checked by the handler)
    SOCKET = "socket"  # WebSocket: header, ?accesstoken= or first frame (checked by the handler)


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    auth: Auth
    summary: str
    tag: str = "orders"


def _orders(base: str) -> list[Route]:
    ao = f"{base}/activeorders"
    one = f"{ao}/{{ident}}"
    return [
        Route("GET", base, tt.health, Auth.NONE, "Liveness and gateway facts", "gateway"),
        Route("GET", ao, tt.list_active, Auth.TOKEN, "All active orders"),
        Route("POST", ao, tt.start_or_locate, Auth.TOKEN, "Start or locate an order"),
        Route("DELETE", ao, tt.clear_all, Auth.TOKEN, "Clear every active order"),
        Route("GET", one, tt.get_one, Auth.TOKEN, "One active order by number or uuid"),
        Route("DELETE", one, tt.clear_one, Auth.TOKEN, "Clear one order (manual override)"),
        Route("POST", f"{one}/page", tt.page, Auth.TOKEN, "Page the order's tracker"),
        Route("DELETE", f"{one}/page", tt.cancel_paging, Auth.TOKEN, "Cancel paging"),
        Route("POST", f"{one}/guest_paging", tt.guest_paging, Auth.TOKEN, "Page (no body)"),
        Route("GET", f"{base}/orders", tt.history, Auth.TOKEN, "Order history", "history"),
        Route("GET", f"{base}/statistics", tt.statistics, Auth.TOKEN, "Today's statistics",
              "history"),
        Route("GET", f"{base}/gateway/settings", tt.get_settings, Auth.TOKEN, "Gateway settings",
              "gateway"),
        Route("POST", f"{base}/gateway/settings", tt.post_settings, Auth.TOKEN,
              "Change gateway settings", "gateway"),
        Route("GET", f"{base}/register/clients", tt.list_clients, Auth.TOKEN,
              "Registered webhook clients", "webhooks"),
        Route("DELETE", f"{base}/register", tt.unregister, Auth.TOKEN,
              "Unregister a webhook client", "webhooks"),
    ]


def _tokens(base: str) -> list[Route]:
    at = f"{base}/accesstoken"
    return [
        Route("GET", f"{at}/generate", tokens.generate_in_window, Auth.NONE,
              "Get a token while the button window is open", "tokens"),
        Route("POST", f"{at}/generate", tokens.generate_with_token, Auth.TOKEN,
              "Mint a further token", "tokens"),
        Route("GET", at, tokens.list_tokens, Auth.TOKEN, "List tokens (no secrets)", "tokens"),
        Route("DELETE", f"{at}/{{token_id}}", tokens.revoke_token, Auth.TOKEN, "Revoke a token",
              "tokens"),
    ]


ROUTES: list[Route] = [
    *_orders("/api/v2"),
    *_tokens("/api/v2"),
    Route("POST", "/api/v2/register", tt.register, Auth.TOKEN, "Register a webhook client",
          "webhooks"),
    Route("GET", "/api/v2/websocket", compat.websocket, Auth.SOCKET, "Order feed (WebSocket)",
          "feed"),
    *_orders("/api/v1"),
    *_tokens("/api/v1"),
    Route("GET", "/api/v1/register", tt.register, Auth.TOKEN, "Register a webhook client (v1)",
          "webhooks"),
    Route("POST", "/api/admin/token-window", tokens.open_window, Auth.ADMIN,
          "Open the token window (box-local admin cookie)", "tokens"),
]


def protect(handler: Handler, *, allow_basic: bool) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        authenticate(request, allow_basic=allow_basic)
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded


def add_routes(app: web.Application) -> None:
    for r in ROUTES:
        handler = r.handler
        if r.auth is Auth.TOKEN:
            handler = protect(handler, allow_basic=r.path.startswith("/api/v1"))
        app.router.add_route(r.method, r.path, handler)
