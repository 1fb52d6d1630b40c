"""Builds the aiohttp application from an explicit tuple of dialects and the services."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Middleware

from web.access_log import DISCONNECTS, MALFORMED_COUNT, install_malformed_request_filter
from web.api import admin, cloudsignal, imprimo, imprinted, order_status, trackertrack
from web.body import body_guard
from web.dialect import DIALECTS_KEY, Dialect, Dialects
from web.envelope import envelope_middleware
from web.hostcheck import HOST_CHECK, HostCheck, host_middleware, own_names
from web.routing import add_routes
from web.services import SERVICES, Services
from web.ws.compat import FRAMES, FrameCache
from web.ws.native import LAST_FRAME, LastFrame
from web.ws.session import CLIENTS, close_all

OPENAPI_FILE = Path(__file__).with_name("openapi.json")
# Every dialect the gateway speaks. Error envelopes claim paths in this order: the last one
# (table-tracker, the gateway's own envelope) answers every path no other dialect owns.
DIALECTS: tuple[Dialect, ...] = (
    imprimo.DIALECT,
    imprinted.DIALECT,
    order_status.DIALECT,
    cloudsignal.DIALECT,
    admin.DIALECT,
    trackertrack.DIALECT,
)


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=OPENAPI_FILE.read_bytes(), content_type="application/json")


def build_web_app(
    services: Services,
    dialects: tuple[Dialect, ...] = DIALECTS,
    *,
    max_body_bytes: int = 64 * 1024,
    body_read_timeout: float = 30.0,
) -> web.Application:
    speaks = Dialects(dialects)
    install_malformed_request_filter()
    middlewares: list[Middleware] = [envelope_middleware]
    host_check = (
        None if "*" in services.allowed_hosts else HostCheck(own_names(services.allowed_hosts))
    )
    if host_check is not None:
        # Inside the envelope middleware, so a refusal is rendered in the path's dialect; before
        # the body guard, so a foreign Host's body is never read.
        middlewares.append(host_middleware(host_check))
    middlewares.append(body_guard(max_body_bytes, body_read_timeout))
    app = web.Application(client_max_size=max_body_bytes, middlewares=middlewares)
    if host_check is not None:
        app[HOST_CHECK] = host_check
    app[SERVICES] = services
    app[DIALECTS_KEY] = speaks
    app[FRAMES] = FrameCache(services)
    app[LAST_FRAME] = LastFrame(services)
    app[CLIENTS] = set()
    add_routes(app, speaks.routes())
    app.router.add_get("/api/openapi.json", openapi)
    app.on_shutdown.append(close_all)
    app.on_cleanup.append(_flush_counters)
    return app


async def _flush_counters(app: web.Application) -> None:
    # What was counted in the last minute is said before the process stops.
    DISCONNECTS.flush()
    MALFORMED_COUNT.flush()
