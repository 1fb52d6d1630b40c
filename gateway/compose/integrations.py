"""Compose step: the integration dialects' services, their hooks into the order book and the
outbox, and the outbox's own policy (uplink check, pacing, pruning).

- imprinted: its own failed-auth throttle and order queries.
- cloudsignal: signals written in each order change's transaction (tx hook); a receiver's 410
  disables its subscription (outbox hook).
- Print API status webhooks (tx hook, 410 hook, signer) and the table-tracker `register`
  clients' webhooks.
Runs at build, once the core services are loaded and before the outbox starts.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from gateway.compose.core import Core
from gateway.services.integrations import order_status as printapi
from gateway.services.integrations import trackertrack_hooks as trackertrack_webhooks
from gateway.services.integrations.cloudsignal import KIND as CLOUDSIGNAL_KIND
from gateway.services.integrations.cloudsignal import CloudSignalService
from gateway.services.integrations.imprinted.auth import ImprintedAuth
from gateway.services.integrations.imprinted.orders import ImprintedOrders
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.integrations.trackertrack_hooks import TrackerTrackWebhooks
from gateway.services.outbox.uplink import TcpProbe, Uplink
from web.api.admin.deliveries import DELIVERIES
from web.api.cloudsignal.handlers import CLOUDSIGNAL
from web.api.imprinted.handlers import IMPRINTED, Imprinted
from web.api.order_status.handlers import PRINTAPI

DAY = 86_400.0


async def integrations(core: Core, app: web.Application) -> AsyncIterator[None]:
    await _imprinted(core, app)
    await _cloudsignal(core, app)
    _outbox_policy(core)
    await _printapi(core, app)
    yield  # nothing to stop: the outbox step and the store's close end what these started


async def _imprinted(core: Core, app: web.Application) -> None:
    # Its own failed-auth throttle (S5): an integration with a wrong secret behind the same
    # address (a NAT, a proxy) must not lock the POS terminals out of the table-tracker API.
    auth = ImprintedAuth(core.writer, core.clock)
    await auth.load()
    app[IMPRINTED] = Imprinted(auth, ImprintedOrders(core.reader))


async def _cloudsignal(core: Core, app: web.Application) -> None:
    svc = CloudSignalService(
        core.writer,
        core.reader,
        core.clock,
        core.intake,
        allow=frozenset(core.settings.outbound_allow),
        enqueued_with=core.deliveries.enqueued_with,
    )
    await svc.load()
    core.orders.add_tx_hook(svc.order_hook)
    core.deliveries.register_hook(CLOUDSIGNAL_KIND, svc.delivery_hook, on_commit=svc.after_delivery)
    app[CLOUDSIGNAL] = svc


def _outbox_policy(core: Core) -> None:
    settings, deliveries = core.settings, core.deliveries
    if targets := list(settings.uplink_probe):  # empty turns the check off
        deliveries.set_uplink(
            Uplink(
                TcpProbe(targets),
                core.clock,
                interval=settings.uplink_probe_interval,
                describe=", ".join(targets),
            )
        )
    deliveries.set_pacing(settings.deliveries_busy_rate or None, settings.deliveries_quiet)
    deliveries.set_pruning(
        settings.deliveries_prune_every or None,
        keep_delivered=settings.deliveries_keep_days * DAY,
        keep_dead=settings.deliveries_dead_keep_days * DAY,
    )


async def _printapi(core: Core, app: web.Application) -> None:
    deliveries = core.deliveries
    status = PrintApiService(
        core.writer,
        core.reader,
        core.clock,
        allow=frozenset(core.settings.outbound_allow),
        enqueued_with=deliveries.enqueued_with,
    )
    await status.load(core.orders.active())
    core.orders.add_tx_hook(status.order_hook)
    deliveries.register_hook(printapi.KIND, status.delivery_hook)
    deliveries.register_signer(printapi.KIND, status.sign)

    clients = TrackerTrackWebhooks(core.config, enqueued_with=deliveries.enqueued_with)
    core.orders.add_tx_hook(clients.order_hook)
    deliveries.register_hook(
        trackertrack_webhooks.KIND, clients.delivery_hook, on_commit=clients.after_delivery
    )
    app[PRINTAPI] = status
    app[DELIVERIES] = deliveries
