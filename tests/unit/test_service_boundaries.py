"""The service layer's house rules (issue 10): small modules, time only through the Clock, and
the order book's unit of work landing changes only after COMMIT."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import pytest

from gateway.app import Gateway
from gateway.core.events import Event, OrderEventType
from gateway.core.models import ClearReason
from gateway.core.ports import SystemClock
from gateway.services.orders.unit import OrderUnit
from gateway.services.outbox.service import DeliveryService, OutboxPolicy
from tests.support.deliveries import FakeClock, Store

SERVICES = Path(__file__).resolve().parents[2] / "gateway" / "services"
# A wait or a reading of time that bypasses the injected Clock. `asyncio.sleep(0)` is a yield
# to the loop, not a wait, and stays allowed.
BYPASS = re.compile(r"time\.(monotonic|time|perf_counter)\(|asyncio\.sleep\((?!0\))")


def test_no_service_module_is_over_400_lines_unless_the_architecture_says_why() -> None:
    sizes = {
        p.relative_to(SERVICES).as_posix(): len(p.read_text().splitlines())
        for p in SERVICES.rglob("*.py")
    }
    assert sizes and {p: n for p, n in sizes.items() if n > 600} == {}
    explained = (SERVICES.parents[1] / "docs" / "architecture.md").read_text()
    unexplained = {p: n for p, n in sizes.items() if n > 400 and f"`{p}`" not in explained}
    assert unexplained == {}, "split them, or say in docs/architecture.md why not"


def test_services_read_time_and_wait_only_through_the_clock() -> None:
    found = [
        f"{p.relative_to(SERVICES)}:{n}: {line.strip()}"
        for p in sorted(SERVICES.rglob("*.py"))
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if BYPASS.search(line)
    ]
    assert found == []


async def test_the_system_clock_measures_and_waits() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    await clock.sleep(0.01)
    assert clock.monotonic() > before and abs(clock.now() - time.time()) < 5


async def test_pacing_waits_on_the_injected_clock(tmp_path: Path) -> None:
    """While orders change, the backlog is paced through the Clock's sleep (a fake clock here:
    the pacing gaps are recorded, and no real time passes for them)."""
    store = Store(tmp_path / "outbox.db")
    await store.open()
    clock = FakeClock()
    svc = DeliveryService(
        store.writer, store.reader, clock, OutboxPolicy(busy_rate=10.0, quiet=3600.0)
    )
    try:
        svc.note_activity()
        for _ in range(3):
            await svc._pacer.pace()
        # Three requests at 10/s: the first goes at once, the next two each wait 0.1 s.
        assert [round(s, 6) for s in clock.sleeps] == [0.1, 0.1]
    finally:
        await svc.close()
        await store.close()


def test_an_outbox_policy_refuses_a_jitter_out_of_range() -> None:
    with pytest.raises(ValueError):
        OutboxPolicy(jitter=1.0)


async def test_a_unit_of_work_lands_after_commit_or_not_at_all(gateway: Gateway) -> None:
    """Intake's unit of work: its changes reach the book and the bus after COMMIT; a unit that
    fails leaves both as they were."""
    orders = gateway.ctx.orders
    seen: list[Event] = []
    gateway.ctx.bus.subscribe(seen.append)
    made = await orders.start_or_locate("41", "TO_GO", None)
    seen.clear()

    def fails(unit: OrderUnit) -> None:
        unit.clear(made.order, ClearReason.MANAGER_OVERRIDE)
        assert orders.lookup("41") is not None  # not yet applied inside the transaction
        raise RuntimeError("after the change")

    with pytest.raises(RuntimeError):
        await orders.transact(fails)
    assert orders.lookup("41") is not None and seen == []

    cleared = await orders.transact(
        lambda unit: unit.clear(made.order, ClearReason.MANAGER_OVERRIDE)
    )
    assert orders.lookup("41") is None and not cleared.active
    await asyncio.sleep(0)
    assert [getattr(e, "type", None) for e in seen] == [OrderEventType.ORDER_CLEARED]
