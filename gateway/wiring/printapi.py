"""Part of the composition root: wires the printapi dialect and what the outbox needs besides
it: the uplink check, pruning, Print API status webhooks (tx hook, 410 hook, signer), the
table-tracker `register` clients' webhooks, and the wake-up after each commit (bus).

Settings read here with defaults until `gateway.settings.Settings` declares them:
`uplink_probe` (host:port targets; empty turns the check off), `uplink_probe_interval`,
`deliveries_keep_days`, `deliveries_dead_keep_days`, `deliveries_prune_every`,
`deliveries_busy_rate` (0: no limit), `deliveries_quiet`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.services.integrations import order_status as printapi
from gateway.services.integrations import trackertrack_hooks as trackertrack_webhooks
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.integrations.trackertrack_hooks import TrackerTrackWebhooks
from gateway.services.outbox.service import BUSY_RATE, QUIET
from gateway.services.outbox.uplink import DEFAULT_TARGETS, TcpProbe, Uplink
from web.api.admin.deliveries import DELIVERIES
from web.api.order_status.handlers import PRINTAPI

if TYPE_CHECKING:
    from gateway.app import Gateway

DAY = 86_400.0


async def wire(gw: Gateway) -> None:
    """Called by gateway.app.build once the core services are loaded (before the outbox
    starts)."""
    settings, deliveries, ctx = gw.settings, gw.deliveries, gw.ctx

    targets = list(getattr(settings, "uplink_probe", DEFAULT_TARGETS))
    if targets:
        deliveries.set_uplink(Uplink(
            TcpProbe(targets), ctx.clock,
            interval=float(getattr(settings, "uplink_probe_interval", 30.0)),
            describe=", ".join(targets)))
    deliveries.set_pacing(float(getattr(settings, "deliveries_busy_rate", BUSY_RATE)) or None,
                          float(getattr(settings, "deliveries_quiet", QUIET)))
    deliveries.set_pruning(
        float(getattr(settings, "deliveries_prune_every", 3600.0)) or None,
        keep_delivered=float(getattr(settings, "deliveries_keep_days", 7.0)) * DAY,
        keep_dead=float(getattr(settings, "deliveries_dead_keep_days", 30.0)) * DAY)

    status = PrintApiService(gw.writer, gw.reader, ctx.clock,
                             allow=frozenset(settings.outbound_allow),
                             enqueued_with=deliveries.enqueued_with)
    await status.load(ctx.orders.active())
    ctx.orders.add_tx_hook(status.order_hook)
    deliveries.register_hook(printapi.KIND, status.delivery_hook)
    deliveries.register_signer(printapi.KIND, status.sign)

    clients = TrackerTrackWebhooks(ctx.config, enqueued_with=deliveries.enqueued_with)
    ctx.orders.add_tx_hook(clients.order_hook)
    deliveries.register_hook(trackertrack_webhooks.KIND, clients.delivery_hook,
                             on_commit=clients.after_delivery)

    gw.app[PRINTAPI] = status
    gw.app[DELIVERIES] = deliveries
