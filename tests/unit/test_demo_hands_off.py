"""Demo mode keeps its hands off orders it did not start: a newcomer's curl (or a POS) may use
the simulated trackers' numbers, and the simulated restaurant must never locate, page or clear
those orders. The simulator runs fast (speed 50, fixed seed) with a kitchen that pages at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gateway.app import build
from gateway.compose.radio import demo_kitchen, start_radio
from gateway.core.events import Event, OrderEvent, OrderEventType
from gateway.core.models import ClearReason, Order
from tests.conftest import make_settings

V2 = "/api/v2/activeorders"


async def test_simulator_and_kitchen_never_touch_orders_they_did_not_start(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(
        tmp_path / "d",
        simulator=True,
        bluetooth=False,
        simulator_speed=50,
        simulator_seed=3,
        debounce_readings=1,
        debounce_seconds=0,
    )
    gw = await build(settings)
    events: list[OrderEvent] = []

    def record(event: Event) -> None:
        if isinstance(event, OrderEvent):
            events.append(event)

    gw.ctx.bus.subscribe(record)
    client = await aiohttp_client(gw.app)
    auth = {"Authorization": f"Bearer {(await gw.tokens.issue('pos', '127.0.0.1')).secret}"}
    # Half the simulated trackers' numbers, plus to-go orders with stand-in trackers that a
    # kitchen paging everything bound would page.
    mine: dict[str, Order | None] = {}

    async def create(name: str, kind: str, dummy: bool) -> None:
        query = "?dummy_tracker_address=true" if dummy else ""
        resp = await client.post(V2 + query, json={"name": name, "orderType": kind}, headers=auth)
        assert resp.status == 201, await resp.text()
        mine[name] = gw.ctx.orders.lookup(name)

    for name, kind, dummy in [
        ("1", "ON_PREMISES", False),
        ("2", "ON_PREMISES", False),
        ("3", "TO_GO", False),
        ("4", "ON_PREMISES", False),
        ("5", "TO_GO", True),
        ("6", "TO_GO", True),
    ]:
        await create(name, kind, dummy)
    radio = await start_radio(gw.core, gw.supervisor)
    kitchen = demo_kitchen(gw.core, radio, delay=(0.05, 0.1))
    try:
        # Numbers the simulator never uses, created while the kitchen listens.
        await create("400", "TO_GO", True)
        await create("401", "TO_GO", True)
        ours = {o.uuid for o in mine.values() if o is not None}

        def simulated(kind: OrderEventType) -> list[OrderEvent]:
            return [e for e in events if e.type is kind and e.order.uuid not in ours]

        async def restaurant_busy() -> None:
            # Bounded: the simulated restaurant starts, pages and clears its own orders.
            while not (
                len(simulated(OrderEventType.NEW_ORDER)) >= 8
                and any(
                    e.order.clear_reason is ClearReason.TRACKER
                    for e in simulated(OrderEventType.ORDER_CLEARED)
                )
                and any(e.order.paged for e in simulated(OrderEventType.ORDER_PAGED))
            ):
                await asyncio.sleep(0.05)

        await asyncio.wait_for(restaurant_busy(), 30)
        touched = [
            (e.type.value, e.order.name)
            for e in events
            if e.order.uuid in ours and e.type is not OrderEventType.NEW_ORDER
        ]
        assert touched == []
        for name, before in mine.items():
            assert gw.ctx.orders.lookup(name) == before, name
    finally:
        await kitchen.close()
        await radio.stop()
        await gw.trackers.drain()
        await client.close()
        await gw.writer.close()
        await gw.reader.close()


async def test_the_simulator_may_restart_its_own_leftovers_only(gateway: Any) -> None:
    # A demo stopped mid-story leaves the simulator's orders active; a restarted demo may take
    # those trackers again (the starter rebinds them), never one whose number a client used.
    from gateway.demo import simulator_may_start

    orders = gateway.ctx.orders
    may_start = simulator_may_start(orders)
    own, other = "C0:FF:EE:00:00:07", "C0:FF:EE:00:00:08"
    await orders.start_with_tracker("7", "ON_PREMISES", own)
    await orders.start_or_locate("8", "ON_PREMISES", None)
    assert may_start(7, own) is True
    assert may_start(8, other) is False
    assert may_start(9, "C0:FF:EE:00:00:09") is True
    await orders.start_with_tracker("10", "TO_GO", other)  # number 10, but tracker 8's puck
    assert may_start(8, other) is False and may_start(10, "C0:FF:EE:00:00:0A") is False
