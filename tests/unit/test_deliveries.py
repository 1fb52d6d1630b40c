"""The outbox and its delivery worker, against real aiohttp receivers on 127.0.0.1."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.core.ports import Clock, SystemClock
from gateway.services.outbox.service import (
    RETRY_AFTER_CAP,
    SCHEDULE,
    DeliveryService,
    GuardedResolver,
    retry_after_at,
    safe_url,
)
from gateway.store import outbox
from gateway.store.outbox import Delivery, OutboxRow, endpoint_of
from tests.support.deliveries import (
    ALLOW,
    FakeClock,
    Receiver,
    Seen,
    Store,
    delivery,
    delivery_service,
    eventually,
    scripted,
)

Make = Callable[..., DeliveryService]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = Store(tmp_path / "db.sqlite")
    await s.open()
    yield s
    await s.close()


@pytest.fixture
async def receivers() -> AsyncIterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        await r.close()


@pytest.fixture
async def make(store: Store) -> AsyncIterator[Make]:
    made: list[DeliveryService] = []

    def build(clock: Clock | None = None, **kw: Any) -> DeliveryService:
        kw.setdefault("allow", ALLOW)
        svc = delivery_service(store.writer, store.reader, clock or SystemClock(), **kw)
        made.append(svc)
        return svc

    yield build
    for svc in made:
        await svc.close()


async def receiver(receivers: list[Receiver], **kw: Any) -> Receiver:
    r = await Receiver(**kw).start()
    receivers.append(r)
    return r


def all_finished(store: Store) -> Callable[[], Any]:
    async def check() -> bool:
        return all(r.state != outbox.PENDING for r in await store.rows())

    return check


# -- the store ------------------------------------------------------------------------------


def test_endpoint_is_scheme_host_port() -> None:
    assert endpoint_of("http://Example.COM/a?b=1") == "http://example.com:80"
    assert endpoint_of("https://example.com./x") == "https://example.com:443"
    assert endpoint_of("http://10.0.0.5:8080/x") == "http://10.0.0.5:8080"
    assert endpoint_of("http://[::1]:81/") == "http://[::1]:81"
    assert endpoint_of("not a url") == "not a url"
    assert Delivery("e", "http://h:1/p", "k", b"").endpoint == "http://h:1"
    assert Delivery("e", "http://h:1/p", "k", b"", endpoint="custom").endpoint == "custom"


async def test_enqueue_commits_and_rolls_back_with_the_change(store: Store) -> None:
    d = delivery("http://192.0.2.1/hook", 1)

    def change_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_settings (key, value) VALUES ('k', 'v')")
        outbox.enqueue(conn, d, 1.0)
        raise ValueError("the change failed after enqueueing")

    with pytest.raises(ValueError):
        await store.writer.run(change_then_fail)
    assert await store.rows() == []

    def change(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO gateway_settings (key, value) VALUES ('k', 'v')")
        return outbox.enqueue(conn, d, 1.0)

    row = await store.row(await store.writer.run(change))
    assert (row.event_id, row.state, row.attempts, row.next_at, row.body) == (
        "evt-1",
        "pending",
        0,
        1.0,
        d.body,
    )
    with pytest.raises(sqlite3.IntegrityError):  # event ids are unique
        await store.writer.run(change)


async def test_pending_heads_are_the_oldest_row_per_endpoint(store: Store) -> None:
    ids = await store.enqueue(
        delivery("http://a.example/1", 1),
        delivery("http://b.example/1", 2),
        delivery("http://a.example/2", 3),
        delivery("http://c.example/1", 4),
        now=5.0,
    )
    await store.writer.run(lambda c: outbox.mark_dead(c, ids[3], 6.0, None, "x"))
    heads = await store.reader.run(outbox.pending_heads)
    assert [h.id for h in heads] == [ids[0], ids[1]]
    assert await store.reader.run(outbox.count_pending) == 3


# -- delivery and ordering ----------------------------------------------------------------


async def test_delivers_in_order_per_endpoint(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    rng = random.Random(1)

    async def jittery(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        # Uneven answer times: concurrent sends to one endpoint would arrive out of order.
        await asyncio.sleep(rng.uniform(0, 0.004))
        return web.Response(status=204)

    r = await receiver(receivers, respond=jittery)
    ds = [delivery(r, n, content_type="application/x-www-form-urlencoded") for n in range(20)]
    await store.enqueue(*ds)
    svc = make()
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert r.ids() == [d.event_id for d in ds]
    assert r.max_inflight == 1
    assert [s.body for s in r.requests] == [d.body for d in ds]
    assert {s.headers["Content-Type"] for s in r.requests} == {"application/x-www-form-urlencoded"}
    rows = await store.rows()
    assert {(x.state, x.attempts, x.last_status) for x in rows} == {("delivered", 1, 204)}
    assert (svc.stats.sent, svc.stats.delivered, svc.stats.failed) == (20, 20, 0)


async def test_wake_sends_at_once_without_polling(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    svc = make(poll=3600.0)
    await svc.start()
    await asyncio.sleep(0.02)  # the worker has looked at an empty outbox and waits
    await store.enqueue(delivery(r, 1))
    svc.wake()
    await eventually(all_finished(store), timeout=1.0)
    assert r.ids() == ["evt-1"]


async def test_poll_finds_rows_enqueued_without_wake(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    svc = make(poll=0.05)
    await svc.start()
    await asyncio.sleep(0.02)
    await store.enqueue(delivery(r, 1))
    await eventually(all_finished(store), timeout=1.0)
    assert r.ids() == ["evt-1"]


async def test_endpoints_do_not_block_each_other(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    async def held(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        await slow.gate.wait()
        return web.Response(status=200)

    slow = await receiver(receivers, respond=held)
    fast = await receiver(receivers)
    await store.enqueue(
        delivery(slow, 1), *(delivery(fast, n) for n in range(2, 7)), delivery(slow, 7)
    )
    svc = make()
    await svc.start()
    svc.wake()

    async def fast_done() -> bool:
        return len(fast.requests) == 5

    await eventually(fast_done)
    assert fast.ids() == [f"evt-{n}" for n in range(2, 7)]
    assert slow.ids() == ["evt-1"]  # still held; evt-7 waits behind it
    slow.gate.set()
    await eventually(all_finished(store))
    assert slow.ids() == ["evt-1", "evt-7"]


async def test_inflight_endpoints_are_bounded(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    gate = asyncio.Event()
    arrived: list[str] = []

    async def held(_req: web.Request, seen: Seen) -> web.StreamResponse:
        arrived.append(seen.event_id)
        await gate.wait()
        return web.Response(status=200)

    rs = [await receiver(receivers, respond=held) for _ in range(3)]
    await store.enqueue(*(delivery(r, n) for n, r in enumerate(rs)))
    svc = make(max_inflight_endpoints=2)
    await svc.start()
    svc.wake()

    async def two() -> bool:
        return len(arrived) >= 2

    await eventually(two)
    await asyncio.sleep(0.1)
    assert len(arrived) == 2
    gate.set()
    await eventually(all_finished(store))
    assert sorted(arrived) == ["evt-0", "evt-1", "evt-2"]


async def test_a_long_backlog_does_not_starve_other_endpoints(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    busy, other = await receiver(receivers), await receiver(receivers)
    order: list[str] = []
    for r in (busy, other):

        async def note(_req: web.Request, seen: Seen) -> web.StreamResponse:
            order.append(seen.event_id)
            return web.Response(status=200)

        r.respond = note
    await store.enqueue(*(delivery(busy, n) for n in range(30)), delivery(other, 99))
    svc = make(max_inflight_endpoints=1)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert order.index("evt-99") < 5  # served in turn, not after the whole backlog


# -- the schedule under a fake clock ------------------------------------------------------------


async def test_full_schedule_then_dead(store: Store, make: Make, receivers: list[Receiver]) -> None:
    clock = FakeClock()
    r = await receiver(receivers, respond=scripted(*([500] * 20)), clock=clock)
    (row_id,) = await store.enqueue(delivery(r, 1), now=clock.now())
    svc = make(clock, rng=random.Random(3))
    started = time.monotonic()
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert time.monotonic() - started < 2.0
    assert len(r.requests) == 10
    assert set(r.ids()) == {"evt-1"}  # the same webhook-id on every attempt
    gaps = r.gaps()
    for gap, base in zip(gaps, SCHEDULE, strict=True):
        assert base * 0.8 <= gap <= base * 1.2, (gap, base)
    assert len({round(g, 3) for g in gaps[2:]}) > 1  # jittered, not fixed
    row = await store.row(row_id)
    assert (row.state, row.attempts, row.last_status) == ("dead", 10, 500)
    assert row.last_error is not None and row.last_error.startswith("max-retries")
    assert (svc.stats.sent, svc.stats.failed, svc.stats.dead) == (10, 10, 1)


async def test_schedule_without_jitter_is_seed_003(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    clock = FakeClock()
    r = await receiver(receivers, respond=scripted(*([503] * 20)), clock=clock)
    await store.enqueue(delivery(r, 1), now=clock.now())
    svc = make(clock, jitter=0.0)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert [round(g, 6) for g in r.gaps()] == [120.0, 300.0] + [3600.0] * 7


async def test_retry_after_is_honoured(store: Store, make: Make, receivers: list[Receiver]) -> None:
    clock = FakeClock()
    answers: list[tuple[int, dict[str, str]]] = [
        (429, {"Retry-After": "1000"}),  # later than the schedule's 120 s
        (503, {}),  # replaced below with an HTTP date 2000 s ahead
        (429, {"Retry-After": "5"}),  # sooner than the schedule: the schedule wins
        (500, {"Retry-After": "9999"}),  # only 429/503 carry a meaning for it
    ]

    async def respond(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        if not answers:
            return web.Response(status=200)
        status, headers = answers.pop(0)
        if status == 503:
            headers = {"Retry-After": email.utils.formatdate(clock.now() + 2000, usegmt=True)}
        return web.Response(status=status, headers=headers)

    r = await receiver(receivers, respond=respond, clock=clock)
    (row_id,) = await store.enqueue(delivery(r, 1), now=clock.now())
    svc = make(clock)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    gaps = r.gaps()
    assert len(gaps) == 4
    assert gaps[0] == pytest.approx(1000.0)
    assert 1999.0 <= gaps[1] <= 2000.0  # HTTP dates have whole seconds
    assert 3600 * 0.8 <= gaps[2] <= 3600 * 1.2
    assert 3600 * 0.8 <= gaps[3] <= 3600 * 1.2
    assert (await store.row(row_id)).state == "delivered"


def test_retry_after_parsing() -> None:
    now = 1_700_000_000.0
    assert retry_after_at("120", now) == now + 120
    assert retry_after_at(" 0 ", now) == now
    assert retry_after_at(email.utils.formatdate(now + 60, usegmt=True), now) == now + 60
    assert retry_after_at("99999999", now) == now + RETRY_AFTER_CAP
    for bad in (None, "", "-5", "soon", "1.5", "²"):
        assert retry_after_at(bad, now) is None


# -- failures that end a row, or do not --------------------------------------------------------


async def test_gone_is_dead_at_once_and_the_endpoint_goes_on(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers, respond=scripted(410))
    a, b = await store.enqueue(delivery(r, 1), delivery(r, 2))
    svc = make()
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    dead, ok = await store.row(a), await store.row(b)
    assert (dead.state, dead.attempts, dead.last_status) == ("dead", 1, 410)
    assert dead.last_error is not None and dead.last_error.startswith("gone")
    assert ok.state == "delivered"
    assert r.ids() == ["evt-1", "evt-2"]


async def test_redirects_are_failures_and_not_followed(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    clock = FakeClock()
    r = await receiver(receivers, clock=clock)
    target = r.url("/elsewhere")
    answers = [302, 307]

    async def respond(request: web.Request, _seen: Seen) -> web.StreamResponse:
        if request.path == "/elsewhere":
            return web.Response(status=200)
        if answers:
            return web.Response(status=answers.pop(0), headers={"Location": target})
        return web.Response(status=200)

    r.respond = respond
    (row_id,) = await store.enqueue(delivery(r, 1), now=clock.now())
    svc = make(clock)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert [s.path for s in r.requests] == ["/hook"] * 3
    row = await store.row(row_id)
    assert (row.state, row.attempts, row.last_status) == ("delivered", 3, 200)
    assert svc.stats.failed == 2


async def test_timeout_is_a_failed_attempt(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    async def hang(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        await r.gate.wait()
        return web.Response(status=200)

    r = await receiver(receivers, respond=hang)
    (row_id,) = await store.enqueue(delivery(r, 1))
    svc = make(timeout=0.2)
    await svc.start()
    svc.wake()

    async def retried() -> bool:
        return (await store.row(row_id)).last_error is not None

    await eventually(retried)
    row = await store.row(row_id)
    assert (row.state, row.attempts, row.last_status) == ("pending", 1, None)
    assert row.last_error is not None and row.last_error.startswith("network-timeout")
    assert row.next_at >= time.time() + 120 * 0.8 - 5


async def test_connection_refused_is_a_failed_attempt(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    url = r.url()
    await r.close()  # nobody listens on that port any more
    (row_id,) = await store.enqueue(delivery(url, 1))
    svc = make()
    await svc.start()
    svc.wake()

    async def retried() -> bool:
        return (await store.row(row_id)).last_error is not None

    await eventually(retried)
    row = await store.row(row_id)
    assert row.state == "pending" and row.attempts == 1
    assert row.last_error is not None and row.last_error.startswith("network-error")


@pytest.mark.parametrize(
    "url,allow",
    [
        ("LOOPBACK", frozenset()),  # the live receiver, but not allow-listed
        ("http://169.254.169.254/latest/meta-data/", ALLOW),
        ("http://metadata.google.internal/x", ALLOW),
        ("ftp://192.0.2.1/x", ALLOW),
        ("http://user:pw@192.0.2.1/x", ALLOW),
    ],
)
async def test_forbidden_urls_are_dead_without_a_request(
    store: Store, make: Make, receivers: list[Receiver], url: str, allow: frozenset[str]
) -> None:
    r = await receiver(receivers)
    (row_id,) = await store.enqueue(delivery(r.url() if url == "LOOPBACK" else url, 1))
    svc = make(allow=allow)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    row = await store.row(row_id)
    assert (row.state, row.attempts) == ("dead", 0)  # attempts are counted before any send
    assert row.last_error is not None and row.last_error.startswith("invalid-url")
    assert svc.stats.sent == 0 and r.requests == []


async def test_names_resolving_to_local_addresses_are_refused() -> None:
    class Stub(AbstractResolver):
        def __init__(self, ips: list[str]) -> None:
            self.ips = ips

        async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
            return [
                ResolveResult(hostname=host, host=ip, port=port, family=0, proto=0, flags=0)
                for ip in self.ips
            ]

        async def close(self) -> None:
            pass

    mixed = GuardedResolver(frozenset(), Stub(["127.0.0.1", "93.184.216.34", "fe80::1"]))
    assert [r["host"] for r in await mixed.resolve("rebind.example", 80)] == ["93.184.216.34"]
    with pytest.raises(OSError):
        await GuardedResolver(frozenset(), Stub(["127.0.0.1"])).resolve("x.nip.io", 80)
    with pytest.raises(OSError):
        await GuardedResolver(frozenset(), Stub(["169.254.169.254"])).resolve("meta.example")
    allowed = GuardedResolver(frozenset({"printer.lan"}), Stub(["127.0.0.1"]))
    assert len(await allowed.resolve("printer.lan.", 80)) == 1


# -- hooks ----------------------------------------------------------------------------------


async def test_hooks_run_inside_the_outbox_transaction(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    await store.writer.run(
        lambda c: c.execute(
            "CREATE TABLE scratch (row_id INT, event TEXT, attempts INT, code TEXT, "
            "outbox_state TEXT, outbox_attempts INT)"
        )
    )
    threads: set[str] = set()
    in_tx: set[bool] = set()
    stash: list[tuple[str, int]] = []  # what the hook changed, published by on_commit
    committed: list[tuple[str, int]] = []

    def hook(
        conn: sqlite3.Connection, row: OutboxRow, event: str, code: str | None, _message: str | None
    ) -> None:
        threads.add(threading.current_thread().name)
        in_tx.add(conn.in_transaction)
        # The outbox change is already made in this transaction, and not yet committed.
        state, attempts = conn.execute(
            "SELECT state, attempts FROM outbox WHERE id = ?", (row.id,)
        ).fetchone()
        conn.execute(
            "INSERT INTO scratch VALUES (?, ?, ?, ?, ?, ?)",
            (row.id, event, row.attempts, code, state, attempts),
        )
        stash.append((event, row.attempts))

    def on_commit() -> None:
        assert threading.current_thread() is threading.main_thread()
        event, attempts = stash.pop(0)
        # By now the hook's row is committed: an independent connection sees it.
        with sqlite3.connect(store.path) as other:
            (n,) = other.execute(
                "SELECT count(*) FROM scratch WHERE event = ? AND attempts = ?", (event, attempts)
            ).fetchone()
        committed.append((event, n))

    clock = FakeClock()
    r = await receiver(receivers, respond=scripted(500), clock=clock)
    await store.enqueue(delivery(r, 1), delivery(r, 2, kind="other"), now=clock.now())
    svc = make(clock)
    svc.register_hook("test", hook, on_commit)
    with pytest.raises(ValueError):
        svc.register_hook("test", hook)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    rows = await store.writer.run(
        lambda c: c.execute(
            "SELECT row_id, event, attempts, code, outbox_state, outbox_attempts FROM scratch "
            "ORDER BY rowid"
        ).fetchall()
    )
    assert [tuple(x[1:]) for x in rows] == [
        ("sending", 1, None, "pending", 1),
        ("retry", 1, "http-status", "pending", 1),
        ("sending", 2, None, "pending", 2),
        ("delivered", 2, None, "delivered", 2),
    ]
    assert {x[0] for x in rows} == {1}  # the "other" kind has no hook
    assert threads == {"sqlite-writer"} and in_tx == {True}
    assert committed == [("sending", 1), ("retry", 1), ("sending", 1), ("delivered", 1)]
    assert stash == []


@pytest.mark.allow_logged_errors
async def test_a_failing_hook_loses_its_writes_not_the_outbox_change(
    store: Store, make: Make, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    await store.writer.run(lambda c: c.execute("CREATE TABLE scratch (event TEXT)"))

    def hook(
        conn: sqlite3.Connection, _row: OutboxRow, event: str, _c: str | None, _m: str | None
    ) -> None:
        conn.execute("INSERT INTO scratch VALUES (?)", (event,))
        if event == "delivered":
            raise RuntimeError("hook bug")

    r = await receiver(receivers)
    await store.enqueue(delivery(r, 1), delivery(r, 2))
    svc = make()
    svc.register_hook("test", hook)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert {x.state for x in await store.rows()} == {"delivered"}
    events = await store.writer.run(
        lambda c: [e for (e,) in c.execute("SELECT event FROM scratch")]
    )
    assert events == ["sending", "sending"]
    assert svc.stats.hook_errors == 2
    assert len([x for x in caplog.records if "hook" in x.getMessage()]) == 1  # logged once


# -- durability and restart -----------------------------------------------------------------


async def test_rows_survive_a_close_before_sending(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    ids = await store.enqueue(delivery(r, 1), delivery(r, 2))
    first = make()
    await first.start()
    await first.close()  # before its worker ever ran
    assert r.requests == []
    await store.reopen()
    second = make()
    await second.start()
    second.wake()
    await eventually(all_finished(store))
    assert r.ids() == ["evt-1", "evt-2"]
    assert [(await store.row(i)).attempts for i in ids] == [1, 1]


async def test_attempt_is_committed_before_the_request(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    async def first_hangs(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        if len(r.requests) == 1:
            await r.gate.wait()
        return web.Response(status=200)

    r = await receiver(receivers, respond=first_hangs)
    (row_id,) = await store.enqueue(delivery(r, 1))
    first = make()
    await first.start()
    first.wake()

    async def arrived() -> bool:
        return len(r.requests) == 1

    await eventually(arrived)
    # The request is on the wire: its attempt is already durable, read by another connection.
    with sqlite3.connect(store.path) as other:
        assert other.execute(
            "SELECT attempts, state FROM outbox WHERE id = ?", (row_id,)
        ).fetchone() == (1, "pending")
    await first.close()  # the "crash": the answer never comes back
    await store.reopen()
    second = make()
    await second.start()
    second.wake()
    await eventually(all_finished(store))
    assert r.ids() == ["evt-1", "evt-1"]  # at-least-once: sent twice, same webhook-id
    row = await store.row(row_id)
    assert (row.state, row.attempts) == ("delivered", 2)


async def test_attempts_spent_before_a_restart_are_not_exceeded(
    store: Store, make: Make, receivers: list[Receiver]
) -> None:
    r = await receiver(receivers)
    (row_id,) = await store.enqueue(delivery(r, 1))
    # A crash right after the 10th attempt's counter was committed.
    await store.writer.run(
        lambda c: c.execute("UPDATE outbox SET attempts = 10 WHERE id = ?", (row_id,))
    )
    events: list[str] = []
    svc = make()
    svc.register_hook("test", lambda _c, _r, event, _code, _m: events.append(event))
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    row = await store.row(row_id)
    assert (row.state, row.attempts) == ("dead", 10)
    assert row.last_error is not None and row.last_error.startswith("max-retries")
    assert r.requests == [] and events == ["dead"]


# -- dead letters, replay, stats, signer, logs ----------------------------------------------------


async def test_dead_letters_and_replay(store: Store, make: Make, receivers: list[Receiver]) -> None:
    r = await receiver(receivers, respond=scripted(410, 410))
    a, b = await store.enqueue(delivery(r, 1), delivery(r, 2))
    svc = make()
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert [x.id for x in await svc.dead_letters(10, 0)] == [b, a]  # newest first
    assert [x.id for x in await svc.dead_letters(1, 1)] == [a]
    assert await svc.pending() == 0
    assert await svc.replay(a) is True
    assert await svc.replay(a) is False  # not dead any more
    assert await svc.replay(12345) is False
    await eventually(all_finished(store))
    row = await store.row(a)
    assert (row.state, row.attempts, row.last_error) == ("delivered", 1, None)
    assert [x.id for x in await svc.dead_letters(10, 0)] == [b]
    assert r.ids() == ["evt-1", "evt-2", "evt-1"]


async def test_stats_count_pending(store: Store, make: Make, receivers: list[Receiver]) -> None:
    r = await receiver(receivers, respond=scripted(500))
    await store.enqueue(delivery(r, 1), delivery(r, 2))
    svc = make()
    assert await svc.pending() == 2
    await svc.start()
    svc.wake()

    async def failed_once() -> bool:
        return svc.stats.failed == 1

    await eventually(failed_once)
    assert await svc.pending() == 2  # the first waits for its retry, the second behind it
    assert (svc.stats.sent, svc.stats.delivered, svc.stats.dead) == (1, 0, 0)


async def test_signer_adds_headers(store: Store, make: Make, receivers: list[Receiver]) -> None:
    clock = FakeClock()
    r = await receiver(receivers, clock=clock)
    await store.enqueue(delivery(r, 1), now=clock.now())
    svc = make(
        clock,
        signer=lambda row, ts: {
            "webhook-timestamp": str(ts),
            "webhook-signature": f"v1,{row.event_id}",
        },
    )
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    (seen,) = r.requests
    assert seen.headers["webhook-id"] == "evt-1"
    assert seen.headers["webhook-timestamp"] == str(int(clock.now()))
    assert seen.headers["webhook-signature"] == "v1,evt-1"


async def test_logs_once_per_episode_and_never_secrets(
    store: Store, make: Make, receivers: list[Receiver], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = FakeClock()
    r = await receiver(receivers, respond=scripted(500, 503, 500), clock=clock)
    url = r.url("/hook?token=SECRETQUERY")
    await store.enqueue(
        Delivery("e1", url, "test", b'{"password": "SECRETBODY"}'),
        Delivery("e2", url, "test", b'{"password": "SECRETBODY"}'),
        now=clock.now(),
    )
    svc = make(clock)
    await svc.start()
    svc.wake()
    await eventually(all_finished(store))
    assert svc.stats.failed == 3
    mine = [x.getMessage() for x in caplog.records if x.name == "gateway.services.outbox.service"]
    assert len([m for m in mine if "failing" in m]) == 1
    assert len([m for m in mine if "work again" in m]) == 1
    # Everything but the test receiver's own access log (it is the far end, not the gateway).
    text = "\n".join(x.getMessage() for x in caplog.records if x.name != "aiohttp.access")
    assert "failing" in text
    assert "SECRETQUERY" not in text and "SECRETBODY" not in text


def test_safe_url_drops_query_and_credentials() -> None:
    assert safe_url("https://u:p@h.example:8443/a/b?token=x#f") == "https://h.example:8443/a/b"
    assert safe_url("http://[::1]/x?y") == "http://[::1]/x"
