"""Part of the composition root: the outbox's policy and uplink check from settings, and the
printapi dialect with what the outbox needs besides it: Print API status webhooks (tx hook,
410 hook, signer), the table-tracker `register` clients' webhooks.

Settings read here: `outbound_allow`, `uplink_probe` (host:port targets; empty turns the check
off), `uplink_probe_interval`, `deliveries_keep_days`, `deliveries_dead_keep_days`,
`deliveries_prune_every` (0: never), `deliveries_busy_rate` (0: no limit), `deliveries_quiet`.
"""

from __future__ import annotations

from gateway.core.ports import Clock
from gateway.services.access.config import ConfigService
from gateway.services.integrations import order_status as printapi
from gateway.services.integrations import trackertrack_hooks as trackertrack_webhooks
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.integrations.trackertrack_hooks import TrackerTrackWebhooks
from gateway.services.orders.book import OrderService
from gateway.services.outbox.policy import DAY, OutboxPolicy
from gateway.services.outbox.service import DeliveryService
from gateway.services.outbox.uplink import TcpProbe, Uplink
from gateway.settings import Settings
from gateway.store.reader import Reader
from gateway.store.writer import Writer


def outbox_policy(settings: Settings) -> OutboxPolicy:
    return OutboxPolicy(
        allow=frozenset(settings.outbound_allow),
        busy_rate=settings.deliveries_busy_rate or None,
        quiet=settings.deliveries_quiet,
        prune_every=settings.deliveries_prune_every or None,
        keep_delivered=settings.deliveries_keep_days * DAY,
        keep_dead=settings.deliveries_dead_keep_days * DAY)


def outbox_uplink(settings: Settings, clock: Clock) -> Uplink | None:
    targets = list(settings.uplink_probe)
    if not targets:
        return None
    return Uplink(TcpProbe(targets), clock, interval=settings.uplink_probe_interval,
                  describe=", ".join(targets))


async def wire(settings: Settings, writer: Writer, reader: Reader, clock: Clock,
               orders: OrderService, config: ConfigService,
               deliveries: DeliveryService) -> PrintApiService:
    """Called by gateway.app.build once the core services are loaded (before the outbox
    starts)."""
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
