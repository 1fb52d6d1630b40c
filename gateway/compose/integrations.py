"""Compose step: the integration dialects' services and their hooks into the order book and
the outbox.

- imprinted: its own failed-auth throttle and order queries.
- cloudsignal: signals written in each order change's transaction (tx hook); a receiver's 410
  disables its subscription (outbox hook).
- Print API (order status) webhooks (tx hook, 410 hook, signer) and the table-tracker
  `register` clients' webhooks.
Runs at build, once the core services are loaded and before the outbox starts; the services
are handed to the web layer in its Services object.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from gateway.compose.core import Core
from gateway.services.integrations import order_status as printapi
from gateway.services.integrations import trackertrack_hooks as trackertrack_webhooks
from gateway.services.integrations.cloudsignal import KIND as CLOUDSIGNAL_KIND
from gateway.services.integrations.cloudsignal import CloudSignalService
from gateway.services.integrations.imprinted.auth import ImprintedAuth
from gateway.services.integrations.imprinted.orders import ImprintedOrders
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.integrations.trackertrack_hooks import TrackerTrackWebhooks
from web.services import Imprinted


@dataclass(frozen=True)
class Integrations:
    imprinted: Imprinted
    cloudsignal: CloudSignalService
    order_status: PrintApiService


async def integrations(core: Core) -> AsyncIterator[Integrations]:
    # In the order their tx hooks run.
    made = Integrations(await _imprinted(core), await _cloudsignal(core), await _printapi(core))
    yield made  # nothing to stop: the outbox step and the store's close end what these started


async def _imprinted(core: Core) -> Imprinted:
    # Its own failed-auth throttle (reliability gate S5): an integration with a wrong secret
    # behind the same address (a NAT, a proxy) must not lock the POS terminals out of the
    # table-tracker API.
    auth = ImprintedAuth(core.writer, core.clock)
    await auth.load()
    return Imprinted(auth, ImprintedOrders(core.reader))


async def _cloudsignal(core: Core) -> CloudSignalService:
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
    return svc


async def _printapi(core: Core) -> PrintApiService:
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
    return status
