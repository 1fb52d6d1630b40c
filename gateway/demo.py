"""Demo mode's kitchen: pages each to-go order a little while after it starts, the way a
kitchen display would when the food is ready, so a newcomer sees paging happen. Only wired in
with --demo; without it the gateway never invents activity."""

from __future__ import annotations

import asyncio
import logging
import random

from gateway.core.errors import GatewayError
from gateway.core.events import Bus, Event, OrderEvent, OrderEventType
from gateway.services.orders.book import OrderRef, OrderService

log = logging.getLogger(__name__)


class DemoKitchen:
    def __init__(self, bus: Bus, orders: OrderService, *, delay: tuple[float, float] = (8, 20),
                 seed: int | None = None) -> None:
        self._orders = orders
        self._delay = delay
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, OrderEvent) or event.order.order_type != "TO_GO":
            return
        bound_now = event.type in (OrderEventType.NEW_ORDER, OrderEventType.ORDER_MODIFIED)
        if bound_now and event.order.tracker and not event.order.paged:
            if any(t.get_name() == event.order.uuid for t in self._tasks):
                return
            task = asyncio.create_task(self._page_later(event.order.uuid), name=event.order.uuid)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _page_later(self, uuid: str) -> None:
        await asyncio.sleep(self._random.uniform(*self._delay))
        try:
            order = await self._orders.page(OrderRef(uuid=uuid), tracking=True)
        except GatewayError:
            return  # cleared or unbound meanwhile
        log.info("demo kitchen: order %s is ready, paging its tracker", order.name)

    async def close(self) -> None:
        self._unsubscribe()
        for task in list(self._tasks):
            task.cancel()
