"""The Print API status: the §3 mapping, and "a webhook per status change" kept true across a
restart and a rolled-back change."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from gateway.app import Gateway, build
from gateway.core.events import OrderEventType
from gateway.core.models import ClearReason, Item, ItemStatus, Order, OrderState
from gateway.services.integrations.order_status import PrintStatus, print_status
from gateway.services.orders.book import OrderRef
from gateway.services.orders.unit import OrderUnit
from gateway.store import orders as repo
from tests.conftest import make_settings
from tests.support.deliveries import Receiver, eventually


def order(
    state: OrderState = OrderState.STARTED, *items: ItemStatus, cancelled: bool = False
) -> Order:
    return Order(
        "u",
        "1",
        "TO_GO",
        "",
        state,
        0.0,
        0.0,
        number=1,
        cancelled=cancelled,
        items=tuple(Item(f"1-{n}", n, "x", status=s) for n, s in enumerate(items, 1)),
    )


@pytest.mark.parametrize(
    ("o", "expected"),
    [
        (order(), PrintStatus.CREATED),
        (
            order(OrderState.STARTED, ItemStatus.REGISTERED, ItemStatus.CANCELED),
            PrintStatus.CREATED,
        ),
        (order(OrderState.LOCATED), PrintStatus.PROCESSING),
        (
            order(OrderState.STARTED, ItemStatus.REGISTERED, ItemStatus.PRODUCING),
            PrintStatus.PROCESSING,
        ),
        (order(OrderState.STARTED, ItemStatus.PRODUCED), PrintStatus.PROCESSING),
        (order(OrderState.STARTED, ItemStatus.PACKED), PrintStatus.PROCESSING),
        (order(OrderState.STARTED, ItemStatus.ERROR), PrintStatus.PROCESSING),
        (order(OrderState.CLEARED), PrintStatus.SHIPPED),
        (order(OrderState.CLEARED, ItemStatus.SHIPPED), PrintStatus.SHIPPED),
        (order(OrderState.CLEARED, ItemStatus.CANCELED, cancelled=True), PrintStatus.CANCELLED),
    ],
)
def test_status_mapping(o: Order, expected: PrintStatus) -> None:
    assert print_status(o) is expected


@asynccontextmanager
async def running(data: Path, receiver: Receiver) -> AsyncIterator[Gateway]:
    """A gateway with its app started (the outbox runs) and a printapi subscription."""
    gw = await build(make_settings(data, outbound_allow=["127.0.0.1"]))
    client: TestClient[Any, Any] = TestClient(TestServer(gw.app))
    await client.start_server()
    try:
        await gw.ctx.order_status.subscribe(receiver.url())
        yield gw
    finally:
        await client.close()
        await gw.writer.close()
        await gw.reader.close()


async def webhooks(r: Receiver, n: int) -> list[bytes]:
    async def arrived() -> bool:
        return len(r.requests) >= n

    await eventually(arrived)
    return [s.body for s in r.requests]


async def test_no_second_webhook_after_a_restart(tmp_path: Path) -> None:
    r = await Receiver().start()
    try:
        async with running(tmp_path / "data", r) as gw:
            await gw.ctx.orders.start_or_locate("5", "TO_GO", "2")  # Processing
            number = gw.ctx.orders.find(OrderRef(name="5")).number
            assert await webhooks(r, 1) == [b"orderId=%d" % number]
        async with running(tmp_path / "data", r) as gw:
            # Located again at another table after the restart: still Processing.
            await gw.ctx.orders.start_or_locate("5", "TO_GO", "3")
            await gw.ctx.orders.clear(OrderRef(name="5"), ClearReason.TRACKER)  # Shipped
            assert await webhooks(r, 2) == [b"orderId=%d" % number] * 2

            # The receiver has the request a moment before the outbox commits it delivered.
            async def settled() -> bool:
                return await gw.deliveries.pending() == 0

            await eventually(settled)
    finally:
        await r.close()


async def test_a_rolled_back_change_is_not_taken_for_announced(tmp_path: Path) -> None:
    r = await Receiver().start()
    try:
        async with running(tmp_path / "data", r) as gw:
            orders = gw.ctx.orders
            await orders.start_or_locate("8", "TO_GO", None)  # Created
            await webhooks(r, 1)

            def located_then_failed(unit: OrderUnit) -> None:
                existing = repo.active_by_name(unit.conn, "8")
                assert existing is not None
                moved = existing.evolve(
                    state=OrderState.LOCATED, location="1", state_changed=1.0, located_at=1.0
                )
                unit.save(moved, OrderEventType.ORDER_MODIFIED, 1.0)  # hooks run
                raise RuntimeError("the change fails after its hooks ran")

            with pytest.raises(RuntimeError):
                await orders.transact(located_then_failed)
            assert await gw.deliveries.pending() == 0  # its webhook rolled back with it
            # The same move, for real, reuses the rolled-back seq: it must still be announced.
            await orders.start_or_locate("8", "TO_GO", "1")
            assert len(await webhooks(r, 2)) == 2
    finally:
        await r.close()
