"""Compose: the web layer's Services and aiohttp application over the Core, and the server
runner as production runs it."""

from __future__ import annotations

from aiohttp import web

from gateway import __version__
from gateway.compose.core import Core
from gateway.compose.integrations import Integrations
from gateway.core.hostnames import mdns_host_name
from web.access_log import RedactingAccessLogger
from web.protocol import GatewayRunner
from web.server import build_web_app
from web.services import Services, WsLimits


def services(core: Core, integrations: Integrations) -> Services:
    settings = core.settings
    return Services(
        orders=core.orders,
        tokens=core.tokens,
        config=core.config,
        bus=core.bus,
        clock=core.clock,
        trackers=core.trackers,
        printing=core.printing,
        intake=core.intake,
        alarms=core.alarms,
        deliveries=core.deliveries,
        cloudsignal=integrations.cloudsignal,
        order_status=integrations.order_status,
        imprinted=integrations.imprinted,
        admin_cookie=core.admin_cookie,
        gateway_id=core.gateway_id,
        version=__version__,
        storage_check=core.guard.check,
        previews=core.previews,
        receivers=core.receivers,
        demo=settings.demo,
        started=core.started,
        ws=WsLimits(
            queue_size=settings.ws_queue_size,
            queue_bytes=settings.ws_queue_bytes,
            socket_buffer=settings.ws_socket_buffer,
            heartbeat=settings.ws_heartbeat,
            auth_timeout=settings.ws_auth_timeout,
            send_timeout=settings.ws_send_timeout,
            max_frame_bytes=settings.ws_max_frame_bytes,
        ),
        allowed_origins=frozenset(settings.allowed_origins),
        allowed_hosts=frozenset(settings.allowed_hosts) | {mdns_host_name(core.gateway_id)},
    )


def web_app(core: Core, made: Services) -> web.Application:
    return build_web_app(
        made,
        max_body_bytes=core.settings.max_body_bytes,
        body_read_timeout=core.settings.body_read_timeout,
    )


def make_runner(app: web.Application) -> web.AppRunner:
    """The server as production runs it (tests that need its exact behaviour use this too)."""
    return GatewayRunner(
        app,
        handle_signals=False,
        shutdown_timeout=5.0,
        access_log_class=RedactingAccessLogger,
        # aiohttp keeps an idle keep-alive connection for an hour by default; POS terminals
        # poll every few seconds, so a minute is plenty and idle sockets do not pile up.
        keepalive_timeout=75.0,
    )
