"""Reliability gate W4: attempts are not spent while the gateway's own uplink is down (a
connectivity check), including "a weekend" offline with 50,000 queued deliveries that then all
arrive, in order per endpoint."""

from __future__ import annotations

import asyncio
import socket
import time
from collections import defaultdict
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import pytest

from gateway.core.ports import SystemClock
from gateway.services.outbox.service import OFFLINE
from gateway.services.outbox.uplink import State, TcpProbe, Uplink, needs_uplink, parse_target
from gateway.store import outbox
from gateway.store.outbox import Delivery
from tests.support.deliveries import (
    ALLOW,
    T0,
    FakeClock,
    FastReceiver,
    Receiver,
    Store,
    delivery_service,
    eventually,
)

HOUR = 3600.0


class Switch:
    """A probe the test flips: the uplink's state of the world."""

    def __init__(self, up: bool = False) -> None:
        self.up = up
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        await asyncio.sleep(0)
        return self.up


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    await s.open()
    yield s
    await s.close()


async def attempts(store: Store) -> list[int]:
    return await store.reader.run(
        lambda c: [int(a) for (a,) in c.execute("SELECT attempts FROM outbox ORDER BY id")]
    )


async def never(_seconds: float) -> None:
    await asyncio.Event().wait()


# -- the weekend ------------------------------------------------------------------------------


async def test_a_weekend_offline_spends_nothing_then_everything_arrives_in_order(
    store: Store,
) -> None:
    n, endpoints = 50_000, 4
    seen: dict[int, list[int]] = defaultdict(list)
    receivers = [
        FastReceiver(p, partial(lambda i, body: seen[i].append(int(body)), i))
        for i, p in enumerate(free_ports(endpoints))
    ]
    # Queued over the weekend, interleaved over the endpoints, in one transaction.
    rows = [Delivery(f"evt-{i}", receivers[i % endpoints].url, "test", b"%d" % i) for i in range(n)]
    clock = FakeClock()
    await store.enqueue(*rows, now=clock.now())
    switch = Switch(up=False)

    async def tick(seconds: float) -> None:  # 15 minutes of weekend per 2 ms
        clock.t += seconds
        await asyncio.sleep(0.002)

    uplink = Uplink(switch, clock, sleep=tick, interval=900.0, covers=lambda _e: True)
    svc = delivery_service(store.writer, store.reader, clock, allow=ALLOW, uplink=uplink)
    await svc.start()
    svc.wake()
    try:
        # Nothing answers (the uplink is down): the weekend passes on the fake clock.
        async def weekend_over() -> bool:
            return clock.now() - T0 >= 60 * HOUR

        await eventually(weekend_over, timeout=30.0)
        assert uplink.state is State.DOWN
        # Not one attempt spent: at most the canaries now on their way are counted, and they
        # are given back when they fail (the final count of 1 per row below proves it).
        assert sum(await attempts(store)) <= endpoints
        assert await store.reader.run(outbox.count_pending) == n
        assert svc.stats.failed == 0 and svc.stats.dead == 0
        assert svc.stats.offline >= 1  # the first tries were given back
        assert uplink.stats.canaries >= 1  # the link was tried now and then, for free
        sent_while_down = svc.stats.sent

        # Monday: the internet is back.
        started = time.monotonic()
        for r in receivers:
            await r.start()
        switch.up = True

        async def drained() -> bool:
            return await store.reader.run(outbox.count_pending) == 0

        await eventually(drained, timeout=120.0)
        elapsed = time.monotonic() - started
        print(
            f"\n50,000 deliveries after the weekend: {elapsed:.1f} s "
            f"({n / elapsed:,.0f}/s); {sent_while_down} refused requests while offline, "
            f"{svc.stats.offline} attempts given back"
        )
        for i in range(endpoints):
            assert seen[i] == list(range(i, n, endpoints))  # all, once each, in order
        assert set(await attempts(store)) == {1}
        assert svc.stats.failed == 0 and svc.stats.delivered == n
    finally:
        await svc.close()
        for r in receivers:
            await r.stop()


# -- the rules, one by one -------------------------------------------------------------------


async def test_a_receiver_down_while_the_uplink_is_up_spends_attempts(store: Store) -> None:
    r = await Receiver().start()
    url = r.url()
    await r.close()  # connection refused: the receiver's fault
    clock = FakeClock()
    switch = Switch(up=True)
    uplink = Uplink(switch, clock, covers=lambda _e: True)
    (row_id,) = await store.enqueue(Delivery("e1", url, "test", b"{}"), now=clock.now())
    svc = delivery_service(store.writer, store.reader, clock, allow=ALLOW, uplink=uplink)
    await svc.start()
    svc.wake()
    try:

        async def dead() -> bool:
            return (await store.row(row_id)).state == "dead"

        await eventually(dead, timeout=10.0)
        assert (await store.row(row_id)).attempts == 10
        assert svc.stats.offline == 0 and uplink.state is State.UP
        assert switch.calls <= 10  # one probe per failure at most ("fresh" answers shared)
    finally:
        await svc.close()


async def test_offline_attempts_are_given_back_and_the_hook_sees_it(store: Store) -> None:
    r = await Receiver().start()
    url = r.url()
    await r.close()
    clock = FakeClock()
    uplink = Uplink(Switch(up=False), clock, sleep=never, covers=lambda _e: True)  # no canary
    events: list[tuple[str, int, str | None]] = []
    (row_id,) = await store.enqueue(Delivery("e1", url, "test", b"{}"), now=clock.now())
    svc = delivery_service(store.writer, store.reader, clock, allow=ALLOW, uplink=uplink)
    svc.register_hook(
        "test", lambda _c, row, event, code, _m: events.append((event, row.attempts, code))
    )
    await svc.start()
    svc.wake()
    try:

        async def refunded() -> bool:
            return svc.stats.offline >= 1

        await eventually(refunded)
        assert events[:2] == [("sending", 1, None), ("retry", 0, OFFLINE)]
        row = await store.row(row_id)
        assert (row.state, row.attempts) == ("pending", 0)
        assert row.last_error is not None and row.last_error.startswith("offline")
        assert row.next_at == T0  # its schedule did not move
    finally:
        await svc.close()


async def test_lan_endpoints_are_never_held(store: Store) -> None:
    """With the uplink down, a receiver on the LAN (here: loopback) still gets its rows."""
    r = await Receiver().start()
    clock = FakeClock()
    uplink = Uplink(Switch(up=False), clock)  # default: needs_uplink
    await uplink.confirm()
    assert uplink.down
    await store.enqueue(Delivery("e1", r.url(), "test", b"{}"), now=clock.now())
    svc = delivery_service(store.writer, store.reader, clock, allow=ALLOW, uplink=uplink)
    await svc.start()
    svc.wake()
    try:

        async def arrived() -> bool:
            return len(r.requests) == 1

        await eventually(arrived)
    finally:
        await svc.close()
        await r.close()


async def test_a_canary_answer_brings_the_uplink_back() -> None:
    """A probe target a firewall blocks cannot stop deliveries for ever: any HTTP answer from
    a receiver over the internet proves the link works."""
    clock = FakeClock()
    changes: list[bool] = []
    uplink = Uplink(Switch(up=False), clock, interval=60.0)
    uplink.on_change(changes.append)
    assert await uplink.confirm() is False and uplink.down
    for _ in range(50):
        if uplink.take_canary():
            break
        await asyncio.sleep(0)
    else:
        raise AssertionError("no canary offered")
    assert uplink.take_canary() is False  # one per interval
    uplink.alive()
    assert uplink.state is State.UP and changes[0] is False and changes[-1] is True
    await uplink.close()


async def test_confirm_shares_one_probe_and_trusts_a_fresh_up() -> None:
    clock = FakeClock()
    gate = asyncio.Event()
    calls = 0

    async def slow_probe() -> bool:
        nonlocal calls
        calls += 1
        await gate.wait()
        return True

    uplink = Uplink(slow_probe, clock, fresh=5.0)
    waiting = [asyncio.create_task(uplink.confirm()) for _ in range(20)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*waiting) == [True] * 20
    assert calls == 1
    clock.t += 4.0
    assert await uplink.confirm() is True and calls == 1  # still fresh
    clock.t += 2.0
    assert await uplink.confirm() is True and calls == 2
    await uplink.close()


async def test_monitor_finds_the_uplink_back() -> None:
    clock = FakeClock()
    switch = Switch(up=False)
    changes: list[bool] = []
    uplink = Uplink(switch, clock, interval=30.0)
    uplink.on_change(changes.append)
    assert await uplink.confirm() is False
    await asyncio.sleep(0.01)
    switch.up = True

    async def back() -> bool:
        return uplink.state is State.UP

    await eventually(back)
    assert changes[-1] is True and uplink.stats.outages == 1
    assert await uplink.confirm() is True
    await uplink.close()


async def test_no_probe_means_no_check() -> None:
    uplink = Uplink(None, SystemClock())
    assert not uplink.enabled and not uplink.covers("http://93.184.216.34:80")
    assert await uplink.confirm() is True


async def test_tcp_probe_against_real_sockets() -> None:
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    (closed,) = free_ports(1)
    try:
        assert await TcpProbe([f"127.0.0.1:{closed}", f"127.0.0.1:{port}"])() is True
        assert await TcpProbe([f"127.0.0.1:{closed}"], timeout=1.0)() is False
        assert await TcpProbe([])() is True
    finally:
        server.close()
        await server.wait_closed()


def test_which_endpoints_need_the_uplink() -> None:
    assert needs_uplink("https://backoffice.example.com:443")
    assert needs_uplink("http://93.184.216.34:80")
    assert needs_uplink("http://[2606:4700::1111]:80")
    for local in (
        "http://127.0.0.1:80",
        "http://192.168.1.20:80",
        "http://10.0.0.5:8080",
        "http://172.16.3.3:80",
        "http://[fe80::1]:80",
        "http://[fd00::5]:80",
        "http://printer.local:80",
        "http://kds.lan:80",
        "http://pos:80",
        "http://box.home.arpa:80",
        "not a url",
    ):
        assert not needs_uplink(local), local
    assert parse_target("1.1.1.1:443") == ("1.1.1.1", 443)
    assert parse_target("[2606:4700::1111]:443") == ("2606:4700::1111", 443)
    for bad in ("1.1.1.1", "host:0", "host:99999", ":80", "host:x"):
        with pytest.raises(ValueError):
            parse_target(bad)
