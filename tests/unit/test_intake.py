"""Orders with items: one model that the POS API, the feeds, the journal and printing all see."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.app import Gateway, build
from gateway.core.errors import Conflict, NotFound, ValidationFailed
from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ClearReason, ItemStatus, OrderState
from gateway.services.orders.book import OrderRef
from gateway.services.orders.intake import NewItem, OrderIntake
from tests.conftest import make_settings


def intake(gw: Gateway) -> OrderIntake:
    assert gw.ctx.intake is not None
    return gw.ctx.intake


ITEMS = [
    NewItem("Margherita", 2, "PZ1", 850, "well done", "oven"),
    NewItem("Tiramisu", 1, "DS4", 550),
]


async def test_create_gives_number_items_and_a_new_order_event(gateway: Gateway) -> None:
    events: list[OrderEvent] = []
    gateway.ctx.bus.subscribe(lambda e: events.append(e) if isinstance(e, OrderEvent) else None)
    created = await intake(gateway).create(
        ITEMS, source="test", external_id="ext-1", extra={"brand": "Da Mario"}
    )
    order = created.order
    assert created.created and order.number >= 1 and order.name == str(order.number)
    assert [i.id for i in order.items] == [f"{order.number}-1", f"{order.number}-2"]
    assert order.items[0].price == 850 and order.items[0].status is ItemStatus.REGISTERED
    assert [e.type for e in events] == [OrderEventType.NEW_ORDER]
    assert events[0].order.items == order.items
    # The POS sees the same order, items included in the book.
    assert gateway.ctx.orders.find(OrderRef(uuid=order.uuid)).items == order.items


async def test_same_external_id_returns_the_first_order(gateway: Gateway) -> None:
    first = await intake(gateway).create(ITEMS, source="app-A", external_id="X-9")
    again = await intake(gateway).create(ITEMS, source="app-A", external_id="X-9")
    other = await intake(gateway).create(ITEMS, source="app-B", external_id="X-9")
    assert not again.created and again.order.uuid == first.order.uuid
    assert other.created and other.order.uuid != first.order.uuid
    assert len(gateway.ctx.orders.active()) == 2


async def test_numbers_skip_a_name_the_pos_already_uses(gateway: Gateway) -> None:
    await gateway.ctx.orders.start_or_locate("2", "TO_GO", None)  # number 1, named "2"
    await gateway.ctx.orders.start_or_locate("3", "TO_GO", None)  # number 2, named "3"
    # The next number is 3, but "3" is on a POS ticket already: intake skips to 4.
    created = await intake(gateway).create(ITEMS, source="test")
    assert (created.order.number, created.order.name) == (4, "4")
    with pytest.raises(Conflict):
        await intake(gateway).create(ITEMS, source="test", name="2")


async def test_items_move_forward_and_journal_item_status(gateway: Gateway) -> None:
    order = (await intake(gateway).create(ITEMS, source="test")).order
    moved = await intake(gateway).set_item_status(str(order.number), "1", ItemStatus.PRODUCING)
    assert moved.items[0].status is ItemStatus.PRODUCING
    same = await intake(gateway).set_item_status(order.uuid, "PZ1", ItemStatus.PRODUCING)
    assert same.items[0].status is ItemStatus.PRODUCING  # repeated: no change
    with pytest.raises(Conflict):
        await intake(gateway).set_item_status(order.uuid, "1", ItemStatus.REGISTERED)
    err = await intake(gateway).set_item_status(
        order.uuid, order.items[1].id, ItemStatus.ERROR, cause="out of mascarpone", delay=10
    )
    assert (err.items[1].cause, err.items[1].delay) == ("out of mascarpone", 10)
    back = await intake(gateway).set_item_status(order.uuid, "2", ItemStatus.PRODUCING)
    assert back.items[1].status is ItemStatus.PRODUCING  # after an error, production resumes
    with pytest.raises(NotFound):
        await intake(gateway).set_item_status(order.uuid, "9", ItemStatus.PRODUCED)
    events = await gateway.ctx.orders.events_after(0, gateway.ctx.bus.last_seq)
    assert events is not None
    assert [e.type for e in events].count(OrderEventType.ITEM_STATUS) == 3


async def test_all_items_shipped_hands_the_order_over(gateway: Gateway) -> None:
    order = (await intake(gateway).create(ITEMS, source="test")).order
    await intake(gateway).set_item_status(order.uuid, "1", ItemStatus.SHIPPED)
    last = await intake(gateway).set_item_status(
        order.uuid, "2", ItemStatus.CANCELED, cause="guest left"
    )
    assert last.state is OrderState.CLEARED and not last.cancelled
    assert last.clear_reason is ClearReason.AUTOMATIC
    with pytest.raises(Conflict):
        await intake(gateway).set_item_status(order.uuid, "2", ItemStatus.PRODUCING)


async def test_clearing_ships_what_is_left(gateway: Gateway) -> None:
    order = (await intake(gateway).create(ITEMS, source="test")).order
    await intake(gateway).set_item_status(order.uuid, "2", ItemStatus.CANCELED, cause="none left")
    cleared = await gateway.ctx.orders.clear(
        OrderRef(uuid=order.uuid), ClearReason.MANAGER_OVERRIDE
    )
    assert [i.status for i in cleared.items] == [ItemStatus.SHIPPED, ItemStatus.CANCELED]


async def test_cancel_only_unpaid_orders(gateway: Gateway) -> None:
    unpaid = (await intake(gateway).create(ITEMS, source="test")).order
    paid = (
        await intake(gateway).create(
            ITEMS, source="test", extra={"payment": {"paid_at": "2026-11-29T12:00:00+00:00"}}
        )
    ).order
    cancelled = await intake(gateway).cancel(str(unpaid.number))
    assert cancelled.cancelled and cancelled.state is OrderState.CLEARED
    assert all(i.status is ItemStatus.CANCELED for i in cancelled.items)
    with pytest.raises(Conflict):
        await intake(gateway).cancel(paid.uuid)
    with pytest.raises(Conflict):
        await intake(gateway).cancel(unpaid.uuid)  # already cancelled
    found = await intake(gateway).get(str(unpaid.number))
    assert found.cancelled and len(found.items) == 2


async def test_bad_orders_are_refused(gateway: Gateway) -> None:
    with pytest.raises(ValidationFailed):
        await intake(gateway).create([], source="test")
    with pytest.raises(NotFound):
        await intake(gateway).get("999999")


async def test_items_survive_a_restart_and_old_journal_rows_still_read(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    gw = await build(settings)
    pos = await gw.ctx.orders.start_or_locate("77", "TO_GO", None)
    order = (await intake(gw).create(ITEMS, source="test")).order
    await intake(gw).set_item_status(order.uuid, "1", ItemStatus.PRODUCED)
    await gw.writer.close()
    await gw.reader.close()
    # A journal row as an older version wrote it (no number, items or extra keys).
    conn = sqlite3.connect(settings.db_path)
    payload = conn.execute(
        "SELECT payload FROM journal WHERE order_uuid = ? ORDER BY seq LIMIT 1", (pos.order.uuid,)
    ).fetchone()[0]
    import orjson

    old: dict[str, Any] = orjson.loads(payload)
    for key in ("number", "source", "external_id", "cancelled", "extra"):
        old.pop(key, None)
    conn.execute(
        "UPDATE journal SET payload = ? WHERE order_uuid = ? AND seq = "
        "(SELECT MIN(seq) FROM journal WHERE order_uuid = ?)",
        (orjson.dumps(old).decode(), pos.order.uuid, pos.order.uuid),
    )
    conn.commit()
    conn.close()
    gw2 = await build(settings)
    try:
        again = gw2.ctx.orders.find(OrderRef(uuid=order.uuid))
        assert again.items[0].status is ItemStatus.PRODUCED and again.number == order.number
        events = await gw2.ctx.orders.events_after(0, gw2.ctx.bus.last_seq)
        assert events is not None and events[0].order.number == 0  # read as the default
    finally:
        await gw2.writer.close()
        await gw2.reader.close()


async def test_table_tracker_feed_shows_item_moves_as_modifications(
    client: Any, auth: dict[str, str], gateway: Gateway
) -> None:
    order = (await intake(gateway).create(ITEMS, source="test")).order
    ws = await client.ws_connect("/api/v2/websocket", headers=auth)
    snapshot = await ws.receive_json(timeout=5)
    assert snapshot["type"] == "ACTIVE_ORDERS"
    await intake(gateway).set_item_status(order.uuid, "1", ItemStatus.PRODUCING)
    frame = await asyncio.wait_for(ws.receive_json(), 5)
    assert frame["type"] == "ORDER_MODIFIED" and frame["seq"] == snapshot["seq"] + 1
    await ws.close()


async def test_kitchen_tickets_split_by_item_station(tmp_path: Path, aiohttp_client: Any) -> None:
    from printers.escpos_tokens import to_text
    from tests.printers.fake_printer import FakePrinter

    async with FakePrinter() as kitchen, FakePrinter() as oven:
        settings = make_settings(
            tmp_path / "data",
            outbound_allow=["127.0.0.1"],
            print_kitchen_station="kitchen",
            printers=[
                {
                    "id": "k",
                    "name": "Kitchen",
                    "station": "kitchen",
                    "address": f"tcp://127.0.0.1:{kitchen.port}",
                },
                {
                    "id": "o",
                    "name": "Oven",
                    "station": "oven",
                    "address": f"tcp://127.0.0.1:{oven.port}",
                },
            ],
        )
        gw = await build(settings)
        await aiohttp_client(gw.app)
        order = (await intake(gw).create(ITEMS, source="test")).order
        for _ in range(200):
            if kitchen.printed and oven.printed:
                break
            await asyncio.sleep(0.02)
        assert "Margherita" in to_text(oven.printed[0]) and "well done" in to_text(oven.printed[0])
        assert "Tiramisu" in to_text(kitchen.printed[0])
        assert "Margherita" not in to_text(kitchen.printed[0])
        assert f"#{order.name}" in to_text(kitchen.printed[0])
