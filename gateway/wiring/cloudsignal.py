"""Part of the composition root: wires the cloudsignal dialect (its service and hooks)."""

from __future__ import annotations

from gateway.core.ports import Clock
from gateway.services.integrations.cloudsignal import KIND, CloudSignalService
from gateway.services.orders.book import OrderService
from gateway.services.orders.intake import OrderIntake
from gateway.services.outbox.service import DeliveryService
from gateway.settings import Settings
from gateway.store.reader import Reader
from gateway.store.writer import Writer


async def wire(settings: Settings, writer: Writer, reader: Reader, clock: Clock,
               orders: OrderService, intake: OrderIntake,
               deliveries: DeliveryService) -> CloudSignalService:
    """Called by gateway.app.build once the core services are loaded: signals are written in
    each order change's transaction (tx hook) and the outbox is woken when that change is
    published; a receiver's 410 disables its subscription (outbox hook)."""
    svc = CloudSignalService(writer, reader, clock, intake,
                             allow=frozenset(settings.outbound_allow),
                             enqueued_with=deliveries.enqueued_with)
    await svc.load()
    orders.add_tx_hook(svc.order_hook)
    deliveries.register_hook(KIND, svc.delivery_hook, on_commit=svc.after_delivery)
    return svc
