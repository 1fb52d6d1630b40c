"""Demo mode's kitchen: pages each to-go order of the simulated restaurant a little while after
it starts, the way a kitchen display would when the food is ready, so a newcomer sees paging
happen. Only wired in with --demo; without it the gateway never invents activity. Orders someone
else started (a newcomer's curl, a POS) are never paged: `ours` says which are the simulator's."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

from gateway.core.errors import GatewayError
from gateway.core.events import Bus, Event, OrderEvent, OrderEventType
from gateway.core.models import Order
from gateway.services.orders.book import OrderRef, OrderService

log = logging.getLogger(__name__)


def simulator_may_start(orders: OrderService) -> Callable[[int, str], bool]:
    """A simulated tracker may leave the charger only if neither its number nor its puck belongs
    to an order the simulator did not start: the starter pad would bind that order (the POS's,
    or a newcomer's curl) and the clearer would clear it. Its own leftovers (a demo restarted
    mid-story) are fair game: the starter rebinds them, as with real pucks."""

    def own_or_none(order: Order | None, number: int, address: str) -> bool:
        return order is None or (
            order.source == "tracker" and order.tracker == address and order.name == str(number)
        )

    def may_start(number: int, address: str) -> bool:
        named, bound = orders.lookup(str(number)), orders.bound_to(address)
        return own_or_none(named, number, address) and own_or_none(bound, number, address)

    return may_start


def started_by(started: Callable[[str, str], bool]) -> Callable[[Order], bool]:
    """`started(name, address)`: the simulator's own record of the orders it started."""

    def ours(order: Order) -> bool:
        return (
            order.source == "tracker"
            and bool(order.tracker)
            and started(order.name, order.tracker or "")
        )

    return ours


class DemoKitchen:
    def __init__(
        self,
        bus: Bus,
        orders: OrderService,
        *,
        ours: Callable[[Order], bool],
        delay: tuple[float, float] = (8, 20),
        seed: int | None = None,
    ) -> None:
        self._orders = orders
        self._ours = ours
        self._delay = delay
        self._random = random.Random(seed)
        self._tasks: set[asyncio.Task[None]] = set()
        self._unsubscribe = bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if not isinstance(event, OrderEvent) or event.order.order_type != "TO_GO":
            return
        bound_now = event.type in (OrderEventType.NEW_ORDER, OrderEventType.ORDER_MODIFIED)
        if bound_now and event.order.tracker and not event.order.paged and self._ours(event.order):
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
