"""Part of the composition root: wires the cloudsignal dialect (services, hooks, app keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.services.integrations.cloudsignal import KIND, CloudSignalService
from web.api.cloudsignal.handlers import CLOUDSIGNAL

if TYPE_CHECKING:
    from gateway.app import Gateway


async def wire(gw: Gateway) -> None:
    """Called by gateway.app.build once the core services are loaded: signals are written in
    each order change's transaction (tx hook) and the outbox is woken when that change is
    published; a receiver's 410 disables its subscription (outbox hook)."""
    intake = gw.ctx.intake
    assert intake is not None
    svc = CloudSignalService(gw.writer, gw.reader, gw.ctx.clock, intake,
                             allow=frozenset(gw.settings.outbound_allow),
                             enqueued_with=gw.deliveries.enqueued_with)
    await svc.load()
    gw.ctx.orders.add_tx_hook(svc.order_hook)
    gw.deliveries.register_hook(KIND, svc.delivery_hook, on_commit=svc.after_delivery)
    gw.app[CLOUDSIGNAL] = svc
