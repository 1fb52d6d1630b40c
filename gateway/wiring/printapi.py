"""Part of the composition root: wires the printapi dialect and what the outbox needs besides
it: the uplink check, pruning, Print API status webhooks (tx hook, 410 hook, signer), the
table-tracker `register` clients' webhooks, and the wake-up after each commit (bus).

Settings read here with defaults until `gateway.settings.Settings` declares them:
`uplink_probe` (host:port targets; empty turns the check off), `uplink_probe_interval`,
`deliveries_keep_days`, `deliveries_dead_keep_days`, `deliveries_prune_every`,
`deliveries_busy_rate` (0: no limit), `deliveries_quiet`.
"""

from __future__ import annotations

from gateway.core.ports import Clock
from gateway.services.access.config import ConfigService
from gateway.services.integrations import order_status as printapi
from gateway.services.integrations import trackertrack_hooks as trackertrack_webhooks
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.integrations.trackertrack_hooks import TrackerTrackWebhooks
from gateway.services.orders.book import OrderService
from gateway.services.outbox.service import BUSY_RATE, QUIET, DeliveryService
from gateway.services.outbox.uplink import DEFAULT_TARGETS, TcpProbe, Uplink
from gateway.settings import Settings
from gateway.store.reader import Reader
from gateway.store.writer import Writer

DAY = 86_400.0


async def wire(settings: Settings, writer: Writer, reader: Reader, clock: Clock,
               orders: OrderService, config: ConfigService,
               deliveries: DeliveryService) -> PrintApiService:
    """Called by gateway.app.build once the core services are loaded (before the outbox
    starts)."""
    targets = list(getattr(settings, "uplink_probe", DEFAULT_TARGETS))
    if targets:
        deliveries.set_uplink(Uplink(
            TcpProbe(targets), clock,
            interval=float(getattr(settings, "uplink_probe_interval", 30.0)),
            describe=", ".join(targets)))
    deliveries.set_pacing(float(getattr(settings, "deliveries_busy_rate", BUSY_RATE)) or None,
                          float(getattr(settings, "deliveries_quiet", QUIET)))
    deliveries.set_pruning(
        float(getattr(settings, "deliveries_prune_every", 3600.0)) or None,
        keep_delivered=float(getattr(settings, "deliveries_keep_days", 7.0)) * DAY,
        keep_dead=float(getattr(settings, "deliveries_dead_keep_days", 30.0)) * DAY)

    status = PrintApiService(writer, reader, clock,
                             allow=frozenset(settings.outbound_allow),
                             enqueued_with=deliveries.enqueued_with)
    await status.load(orders.active())
    orders.add_tx_hook(status.order_hook)
    deliveries.register_hook(printapi.KIND, status.delivery_hook)
    deliveries.register_signer(printapi.KIND, status.sign)

    clients = TrackerTrackWebhooks(config, enqueued_with=deliveries.enqueued_with)
    orders.add_tx_hook(clients.order_hook)
    deliveries.register_hook(trackertrack_webhooks.KIND, clients.delivery_hook,
                             on_commit=clients.after_delivery)
    return status
