"""A route: method, path, handler and who may call it; and the wrapper that enforces it.

Each dialect lists its routes (web.api.<dialect>.DIALECT); the same list drives
registration, the authorization wrapper and the OpenAPI document, so a route cannot skip
authentication or the spec by accident.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import Enum

from aiohttp import web
from pydantic import BaseModel

from web.common import authenticate

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Documentation only: a response's model, several (oneOf), or None (no JSON body).
ResponseModels = type[BaseModel] | tuple[type[BaseModel], ...] | None
Responses = dict[int, ResponseModels]


class Auth(Enum):
    NONE = "none"  # liveness, the button window, signed or apikey-in-body dialects
    TOKEN = "token"  # Authorization: Bearer <token> (and Basic where the route allows it)
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
    # Documentation only (web.openapi); the handlers do not read these.
    body: type[BaseModel] | None = None  # the JSON request body
    body_required: bool = True
    query: type[BaseModel] | None = None  # one field per query parameter
    responses: Responses = field(default_factory=dict)  # status -> model(s) of the body
    # Error statuses (the dialect's error envelope) besides those the auth and body imply.
    errors: tuple[int, ...] = ()
    # Other spellings of the path served by the same handler (e.g. with a trailing slash);
    # registered and authorized like the path, documented as a note on its operation.
    aliases: tuple[str, ...] = ()
    # The media type of a 2xx body that is not JSON (documented with no schema).
    produces: str | None = None
    # Auth.TOKEN only: HTTP Basic with the token as the user name is accepted too (v1).
    basic: bool = False


def protect(handler: Handler, *, allow_basic: bool) -> Handler:
    async def guarded(request: web.Request) -> web.StreamResponse:
        authenticate(request, allow_basic=allow_basic)
        return await handler(request)

    guarded.__name__ = getattr(handler, "__name__", "guarded")
    return guarded


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    for r in routes:
        handler = r.handler
        if r.auth is Auth.TOKEN:
            handler = protect(handler, allow_basic=r.basic)
        for path in (r.path, *r.aliases):
            app.router.add_route(r.method, path, handler)
