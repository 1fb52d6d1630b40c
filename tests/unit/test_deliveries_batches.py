"""The outbox's batches (one commit per many deliveries, attempts given back when a batch
stops), live traffic first, pruning, and the seed-003 schedule across an outage."""

from __future__ import annotations

import asyncio
import itertools
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from gateway.core.ports import SystemClock
from gateway.services.outbox.service import SCHEDULE
from gateway.services.outbox.uplink import State, Uplink
from gateway.store import outbox
from gateway.store.outbox import OutboxRow
from tests.support.deliveries import (
    ALLOW,
    FakeClock,
    Receiver,
    Seen,
    Store,
    delivery,
    delivery_service,
    eventually,
)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    await s.open()
    yield s
    await s.close()


async def finished(store: Store) -> None:
    async def check() -> bool:
        return await store.reader.run(outbox.count_pending) == 0

    await eventually(check)


async def test_a_backlog_costs_a_fraction_of_a_commit_per_delivery(store: Store) -> None:
    r = await Receiver().start()
    await store.enqueue(*(delivery(r, n) for n in range(200)))
    svc = delivery_service(store.writer, store.reader, SystemClock(), allow=ALLOW, batch=16)
    before = store.writer.stats.transactions
    await svc.start()
    svc.wake()
    try:
        await finished(store)
        commits = store.writer.stats.transactions - before
        assert commits <= 200 / 16 + 5, commits  # one per batch (and the first row alone)
        assert r.ids() == [f"evt-{n}" for n in range(200)]
        assert {x.attempts for x in await store.rows()} == {1}
    finally:
        await svc.close()
        await r.close()


async def test_a_failure_mid_batch_gives_the_rows_behind_it_their_attempts_back(
    store: Store,
) -> None:
    clock = FakeClock()
    answers = [200, 200, 500]  # rows 0 and 1 alone/first batch, row 3 fails inside a batch

    async def respond(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        return web.Response(status=answers.pop(0) if answers else 200)

    r = await Receiver(respond=respond, clock=clock).start()
    ids = await store.enqueue(*(delivery(r, n) for n in range(6)), now=clock.now())
    events: list[tuple[int, str, int, str | None]] = []
    svc = delivery_service(
        store.writer, store.reader, clock, allow=ALLOW, batch=8, rng=random.Random(1)
    )
    svc.register_hook(
        "test",
        lambda _c, row, event, code, _m: events.append(
            (ids.index(row.id), event, row.attempts, code)
        ),
    )
    await svc.start()
    svc.wake()
    try:
        await finished(store)
        assert (2, "retry", 1, "http-status") in events
        # Begun in the batch, never sent: their attempts given back, no error code.
        assert {(n, "sending", 1, None) for n in (3, 4, 5)} <= set(events)
        assert {(n, "retry", 0, None) for n in (3, 4, 5)} <= set(events)
        assert r.ids() == ["evt-0", "evt-1", "evt-2", "evt-2", "evt-3", "evt-4", "evt-5"]
        assert [(await store.row(i)).attempts for i in ids] == [1, 1, 2, 1, 1, 1]
        assert r.gaps()[2] >= SCHEDULE[0] * 0.8  # the retry waited for the schedule
    finally:
        await svc.close()
        await r.close()


async def test_live_traffic_first(store: Store) -> None:
    """While order changes are being made, the backlog is paced to busy_rate; once the
    gateway is quiet it drains at full speed."""
    r = await Receiver().start()
    await store.enqueue(*(delivery(r, n) for n in range(60)))
    svc = delivery_service(
        store.writer, store.reader, SystemClock(), allow=ALLOW, busy_rate=50.0, quiet=0.4
    )
    svc.note_activity()  # an order was just committed
    started = time.monotonic()
    await svc.start()
    svc.wake()
    try:
        await asyncio.sleep(0.3)
        paced = len(r.requests)
        assert 5 <= paced <= 25, paced  # ~50/s for 0.3 s (the first goes at once)
        await finished(store)
        assert time.monotonic() - started < 2.0  # quiet after 0.4 s: the rest at full speed
        assert r.ids() == [f"evt-{n}" for n in range(60)]
    finally:
        await svc.close()
        await r.close()


async def test_the_schedule_survives_an_outage_without_losing_attempts(store: Store) -> None:
    """A receiver failing on schedule; after its third answer the gateway goes offline for two
    days; then the schedule goes on where it stopped: 10 attempts in all, none spent offline."""
    clock = FakeClock()
    state = {"offline": False}
    answered: list[float] = []

    async def respond(request: web.Request, _seen: Seen) -> web.StreamResponse:
        if state["offline"]:  # nothing gets through: the connection drops
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=500)
        answered.append(clock.now())
        if len(answered) == 3:
            state["offline"] = True  # the outage starts right after the third answer
        return web.Response(status=500)

    r = await Receiver(respond=respond, clock=clock).start()
    probe_now = asyncio.Event()

    async def probe() -> bool:
        return not state["offline"]

    async def monitor_sleep(_s: float) -> None:
        await probe_now.wait()
        probe_now.clear()

    uplink = Uplink(probe, clock, sleep=monitor_sleep, covers=lambda _e: True)
    (row_id,) = await store.enqueue(delivery(r, 1), now=clock.now())
    svc = delivery_service(
        store.writer, store.reader, clock, allow=ALLOW, jitter=0.0, uplink=uplink
    )
    await svc.start()
    svc.wake()
    try:

        async def held() -> bool:
            return uplink.state is State.DOWN and not svc.busy

        await eventually(held)
        row = await store.row(row_id)
        assert (row.state, row.attempts) == ("pending", 3)
        assert svc.stats.offline >= 1  # the fourth went nowhere and was given back
        clock.t += 2 * 86_400.0  # two days offline
        state["offline"] = False
        probe_now.set()  # the monitor's next probe finds the link

        async def dead() -> bool:
            return (await store.row(row_id)).state == "dead"

        await eventually(dead)
        assert (await store.row(row_id)).attempts == 10 and len(answered) == 10
        gaps = [round(b - a) for a, b in itertools.pairwise(answered)]
        assert gaps[:2] == [120, 300] and gaps[3:] == [3600] * 6, gaps
        assert svc.stats.failed == 10
    finally:
        await svc.close()
        await r.close()


async def test_prune_keeps_what_is_recent_or_pending(store: Store) -> None:
    clock = FakeClock()
    day = 86_400.0
    ids = await store.enqueue(
        *(delivery(f"http://192.0.2.{n % 3 + 1}/h", n) for n in range(3000)), now=clock.now()
    )

    def finish(conn: sqlite3.Connection) -> None:
        for n, row_id in enumerate(ids):
            if n % 3 == 0:
                outbox.mark_delivered(conn, row_id, clock.now(), 200)
            elif n % 3 == 1:
                outbox.mark_dead(conn, row_id, clock.now(), 410, "gone: x")

    await store.writer.run(finish)
    svc = delivery_service(store.writer, store.reader, clock, allow=ALLOW)
    clock.t += 8 * day
    assert await svc.prune(keep_delivered=7 * day, keep_dead=30 * day) == 1000
    rows: list[OutboxRow] = await store.rows()
    assert {x.state for x in rows} == {"pending", "dead"} and len(rows) == 2000
    clock.t += 30 * day
    assert await svc.prune(keep_delivered=7 * day, keep_dead=30 * day) == 1000
    assert {x.state for x in await store.rows()} == {"pending"}
    assert svc.stats.pruned == 2000
    await svc.close()
