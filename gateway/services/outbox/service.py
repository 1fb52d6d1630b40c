"""Sends the outbox: print reports, order-status webhooks, table-tracker webhooks, signals.

Guarantees, and what they cost:

- **At-least-once.** A row is written in the transaction of the change it reports
  (`store.outbox.enqueue`) and stays pending until a receiver answered 2xx or it is dead. The
  attempt counter is committed *before* each request leaves, so a crash (kill -9) between that
  commit and the answer never loses the count (attempts never exceed the schedule's 10) and,
  on restart, the row is sent again. A row can therefore arrive twice: every attempt carries the
  same `webhook-id` header (the row's event id) so receivers can drop duplicates.
- **FIFO per endpoint** (`scheme://host:port`): an endpoint's next row is not sent before the
  previous one is delivered or dead. Different endpoints proceed concurrently, at most
  `max_inflight_endpoints` at once, served round-robin so a long backlog cannot starve others.
- **Schedule** (seed 003): after a failed attempt n, the next one follows `schedule[n-1]`
  seconds later, ±`jitter`; after the last one the row is dead ("max-retries"). 410 kills the
  row at once ("gone"); 429/503 with Retry-After delay the next attempt to at least that time;
  redirects are not followed (a 3xx is a failure); URLs that `core.netguard` refuses are never
  contacted ("invalid-url"), and host names resolving only to loopback/link-local addresses are
  refused at connect time.
- **Offline is not the receiver's fault** (`services.uplink`). When a request to an endpoint
  that needs the internet gets no HTTP answer, the uplink is checked; if the gateway itself is
  offline the attempt is given back (`outbox.refund_attempt`, hook event `retry` with code
  `offline`) and such endpoints are held (not tried, no attempt spent, schedule unchanged)
  until the uplink answers again. A weekend offline therefore costs no attempts; the backlog
  then drains in order.
- **Batches; live traffic first.** A backlog goes in batches: one commit counts the attempts
  of an endpoint's next `batch` rows (the first row of a drain goes alone, so a receiver that
  fails costs one request), they are sent one at a time, and one commit settles them and begins
  the next batch: about 1/`batch` commit per delivery. A batch stops at its first failure and
  gives the rows it did not send their attempts back (hook event `retry`, no code). A crash
  mid-batch can thus charge the rows behind the one on the wire one attempt they never used
  (at most one per crash; never the reverse). While order changes are being made (one in the
  last `quiet` seconds) all endpoints together send at most `busy_rate` requests/s, so a
  backlog does not take the CPU from live orders; when the gateway is quiet it drains at full
  speed.
- **Signatures.** `register_signer(kind, signer)` adds headers to each attempt of a kind's rows
  (Standard Webhooks: `webhook-timestamp`, `webhook-signature`, see `webhook_signing`).
- **Hooks.** A service that owns the changes behind a row kind (printing: the request's
  `report` block; a subscription that answered 410) registers a hook that runs on the writer
  thread inside the transaction that updates the outbox row, so its own state can never
  disagree with the outbox.
- **Pruning.** Delivered rows are deleted after `keep_delivered` seconds, dead ones after
  `keep_dead`, in short chunks that never hold the writer for long.

Time comes from the injected Clock; waiting goes through the injected `sleep`, so tests run
the whole ten-attempt schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from functools import partial
from typing import Any

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.core.errors import Unavailable
from gateway.core.events import Event, OrderEvent
from gateway.core.netguard import forbidden_reason
from gateway.core.ports import Clock
from gateway.services.outbox.http import (
    GONE,
    HTTP_STATUS,
    NETWORK,
    REDIRECT,
    RETRY_AFTER_CAP,
    TIMEOUT,
    Answer,
    GuardedResolver,
    post,
    retry_after_at,
    safe_url,
)
from gateway.services.outbox.ledger import (
    DEAD,
    DELIVERED,
    INVALID_URL,
    MAX_RETRIES,
    OFFLINE,
    REFUND,
    RETRY,
    SENDING,
    UNSENT,
    CommitHook,
    DeliveryStats,
    Hook,
    Ledger,
    Outcome,
    Step,
)
from gateway.services.outbox.prune import prune_outbox
from gateway.services.outbox.uplink import Uplink
from gateway.store import outbox
from gateway.store.outbox import OutboxRow
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

# Seed 003: "after ± 2 minutes, after ± 5 minutes, then after ± 60 minutes, up to 7 times".
SCHEDULE: tuple[float, ...] = (120.0, 300.0) + (3600.0,) * 7
POLL_SECONDS = 30.0  # safety net for rows enqueued without wake() and for clock jumps

BATCH = 32  # rows whose attempts one commit counts (a backlog costs ~1/BATCH commit per row)
BUSY_RATE = 50.0  # requests/s while order changes are being made (None: no limit)
QUIET = 0.5  # seconds without an order change before a backlog drains at full speed

__all__ = [  # re-exported: hooks and tests name them from here
    "DEAD", "DELIVERED", "GONE", "HTTP_STATUS", "INVALID_URL", "MAX_RETRIES", "NETWORK",
    "OFFLINE", "REDIRECT", "RETRY", "RETRY_AFTER_CAP", "SENDING", "TIMEOUT", "UNSENT",
    "CommitHook", "DeliveryStats", "GuardedResolver", "Hook", "OutboxRow", "retry_after_at",
    "safe_url"]

# The seam for Standard Webhooks signatures: (row, unix timestamp) -> extra headers, e.g.
# webhook-timestamp and webhook-signature over f"{row.event_id}.{timestamp}.{row.body}".
Signer = Callable[[OutboxRow, int], Mapping[str, str]]
Sleep = Callable[[float], Awaitable[None]]


class DeliveryService:
    """The outbox worker. `sleep` is how it waits for the next due retry and `clock` what it
    computes due times from (tests pass a fake pair); `poll` is a real-time safety net for rows
    enqueued without `wake()`. `signer` adds headers to every attempt (signatures). One-shot:
    start once, close once; close it before the reader and the writer."""

    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        *,
        allow: frozenset[str] = frozenset(),
        schedule: tuple[float, ...] = SCHEDULE,
        jitter: float = 0.2,
        timeout: float = 10.0,
        max_inflight_endpoints: int = 8,
        signer: Signer | None = None,
        sleep: Sleep = asyncio.sleep,
        poll: float = POLL_SECONDS,
        rng: random.Random | None = None,
        batch: int = BATCH,
        busy_rate: float | None = BUSY_RATE,
        quiet: float = QUIET,
        resolver: AbstractResolver | None = None,
    ) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._allow = allow
        self._resolver = resolver  # DNS under the guard (tests pass a stub: no traffic)
        self._schedule = schedule
        self._jitter = jitter
        self._timeout = timeout
        self._max_inflight = max(1, max_inflight_endpoints)
        self._signer = signer
        self._sleep = sleep
        self._poll = poll
        self._rng = rng or random.Random()
        self._ledger = Ledger(writer, clock, allow, len(schedule) + 1, max(1, batch))
        self.stats = self._ledger.stats
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._served: dict[str, int] = {}  # endpoint -> turn it last finished (round-robin)
        self._turn = 0
        self._slot_wanted = False  # due endpoints are waiting for a free slot
        self._held: dict[str, float] = {}  # endpoint -> not before (after an unexpected error)
        self._session: aiohttp.ClientSession | None = None
        # Drain tasks inside a request -> whether close() cancelled that request.
        self._requests: dict[asyncio.Task[Any], bool] = {}
        self._closing = False
        self._signers: dict[str, Signer] = {}
        self._uplink: Uplink | None = None
        self._wake_seqs: set[int] = set()  # journal seqs whose transaction enqueued rows
        self._pruner: asyncio.Task[None] | None = None
        self._prune_every: float | None = None
        self._keep = (7 * 86_400.0, 30 * 86_400.0)
        self._batch = max(1, batch)
        self._busy_rate = busy_rate
        self._quiet = quiet
        self._busy_until = 0.0  # time.monotonic() until which order changes count as recent
        self._next_slot = 0.0  # the pacer's next free send time while busy

    @property
    def max_attempts(self) -> int:
        return len(self._schedule) + 1

    def register_hook(self, kind: str, hook: Hook, on_commit: CommitHook | None = None) -> None:
        """`hook(conn, row, event, error_code, message)` runs on the writer thread inside the
        transaction that moves a `kind` row (event: sending / delivered / retry / dead; `row` as
        updated). Its writes commit with that change; if it raises, its writes are rolled back,
        the outbox change still commits, and the failure is logged. `on_commit()` then runs on
        the event loop after that commit, once per hook call (for publishing: the hook stashes
        what changed, on_commit makes it visible; it never runs for a failed commit)."""
        self._ledger.register_hook(kind, hook, on_commit)

    def register_signer(self, kind: str, signer: Signer) -> None:
        """`signer(row, unix_time)` -> headers added to every attempt of a `kind` row (it runs
        on the loop, per attempt: the timestamp is the attempt's)."""
        if kind in self._signers:
            raise ValueError(f"a signer for {kind!r} is already registered")
        self._signers[kind] = signer

    def set_uplink(self, uplink: Uplink) -> None:
        """Check connectivity before spending attempts (see `services.uplink`); before start."""
        self._uplink = uplink
        uplink.on_change(lambda _up: self.wake())

    @property
    def uplink(self) -> Uplink | None:
        return self._uplink

    @property
    def busy(self) -> bool:
        """Whether an endpoint is being served right now (requests or commits in progress)."""
        return bool(self._inflight)

    def set_pacing(self, busy_rate: float | None, quiet: float = QUIET) -> None:
        """Live traffic first (see `_pace`): at most `busy_rate` requests/s while order
        changes were made in the last `quiet` seconds; None: no limit."""
        self._busy_rate = busy_rate if busy_rate is None or busy_rate > 0 else None
        self._quiet = quiet

    def set_pruning(self, every: float | None, keep_delivered: float,
                    keep_dead: float) -> None:
        """Prune finished rows every `every` seconds (None: never); before start."""
        self._prune_every = every
        self._keep = (keep_delivered, keep_dead)

    # -- waking after an order change ------------------------------------------------------

    def enqueued_with(self, seq: int) -> None:
        """Writer thread, inside an order change's transaction: rows were enqueued with the
        journal event `seq`; `on_event` wakes the worker when that event is published (after
        COMMIT). A rolled-back seq is reused by a later event, which then wakes it: harmless."""
        self._wake_seqs.add(seq)

    def on_event(self, event: Event) -> None:
        """Bus listener: wake for the committed events whose transaction enqueued rows; and
        note that live traffic is flowing (see `_pace`)."""
        if isinstance(event, OrderEvent):
            self.note_activity()
            if self._wake_seqs and event.seq in self._wake_seqs:
                self._wake_seqs.discard(event.seq)
                self.wake()

    def note_activity(self) -> None:
        """Live traffic now: a backlog yields to it for the next `quiet` seconds."""
        self._busy_until = time.monotonic() + self._quiet

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker, after the store is open. Pending rows left by an earlier run
        (including a crash) are picked up at once."""
        if self._worker is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._allow,
                                                                     self._resolver)),
            cookie_jar=aiohttp.DummyCookieJar(),  # receivers must not steer later requests
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        self._worker = asyncio.create_task(self._run(), name="deliveries")
        if self._prune_every:
            self._pruner = asyncio.create_task(self._prune_forever(self._prune_every),
                                               name="deliveries-prune")

    def wake(self) -> None:
        """Look at the outbox now: call after committing a job that enqueued rows."""
        self._wake.set()

    async def close(self) -> None:
        """Stop sending; close before the reader and the writer. Requests in flight are
        abandoned (their attempt is already counted, the row stays pending and the next start
        sends it again). Store calls in progress are awaited, never cancelled: a cancelled
        await would leave its thread using a connection that the store is about to close."""
        self._closing = True
        self.wake()
        if self._timer is not None:
            self._timer.cancel()
        if self._pruner is not None:
            self._pruner.cancel()
        for task in list(self._requests):
            self._requests[task] = True
            task.cancel()
        if self._uplink is not None:
            await self._uplink.close()
        tasks = [t for t in (self._worker, self._timer, self._pruner, *self._inflight.values())
                 if t]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = self._timer = self._pruner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- queries and operator actions -----------------------------------------------------

    async def dead_letters(self, limit: int = 50, offset: int = 0) -> list[OutboxRow]:
        return await self._reader.run(partial(outbox.dead_letters, limit=limit, offset=offset))

    async def replay(self, row_id: int) -> bool:
        """Send a dead row again with a fresh attempt budget; False if it is not dead."""
        ok = await self._writer.run(partial(outbox.replay, row_id=row_id, now=self._clock.now()))
        if ok:
            self.wake()
        return ok

    async def pending(self) -> int:
        n = await self._reader.run(outbox.count_pending)
        self.stats.pending = n
        return n

    async def dead_count(self) -> int:
        return await self._reader.run(outbox.count_dead)

    async def prune(self, keep_delivered: float | None = None,
                    keep_dead: float | None = None) -> int:
        """Delete delivered rows finished more than `keep_delivered` seconds ago and dead ones
        more than `keep_dead` ago; returns how many. Each chunk is its own short write job."""
        now = self._clock.now()
        deleted = await prune_outbox(
            self._writer, self._reader,
            delivered_before=now - (self._keep[0] if keep_delivered is None else keep_delivered),
            dead_before=now - (self._keep[1] if keep_dead is None else keep_dead),
            stop=lambda: self._closing)
        self.stats.pruned += deleted
        if deleted:
            log.info("pruned %d finished deliveries", deleted)
        return deleted

    async def _prune_forever(self, every: float) -> None:
        while not self._closing:
            try:
                await self.prune()
            except Unavailable:
                return
            except Exception:
                log.exception("pruning the outbox failed")
            await asyncio.sleep(every)  # real time: pruning is housekeeping, not schedule

    # -- the worker: decides which endpoint heads to send -----------------------------------

    async def _run(self) -> None:
        while not self._closing:
            self._wake.clear()  # before looking: a wake() during the look is not lost
            try:
                await self._dispatch()
            except Unavailable:
                return  # the store is closing
            except Exception:
                log.exception("delivery worker: looking at the outbox failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._poll)

    async def _dispatch(self) -> None:
        heads, self.stats.pending = await self._reader.run(_heads_and_count)
        if self._closing:
            return
        now = self._clock.now()
        waiting = [h for h in heads if h.endpoint not in self._inflight]
        uplink = self._uplink
        if uplink is not None and uplink.down:
            # Offline: endpoints that need the internet wait for the uplink (it wakes us),
            # except one canary per probe interval.
            held = [h for h in waiting if uplink.covers(h.endpoint)]
            waiting = [h for h in waiting if not uplink.covers(h.endpoint)]
            canary = next((h for h in held if self._due_at(h) <= now), None)
            if canary is not None and uplink.take_canary():
                waiting.append(canary)
        due = [h for h in waiting if self._due_at(h) <= now]
        due.sort(key=lambda h: self._served.get(h.endpoint, 0))  # least recently served first
        free = self._max_inflight - len(self._inflight)
        for head in due[:free]:
            self._inflight[head.endpoint] = asyncio.create_task(
                self._drain(head), name=f"deliveries-{head.endpoint}")
        self._slot_wanted = len(due) > free
        later = [self._due_at(h) for h in waiting if self._due_at(h) > now]
        self._arm_timer(min(later) - now if later else None)
        known = {h.endpoint for h in heads}
        for endpoint in [e for e in self._served if e not in known and e not in self._inflight]:
            del self._served[endpoint]  # bounded by endpoints with work

    def _held_offline(self, endpoint: str) -> bool:
        return self._uplink is not None and self._uplink.down and self._uplink.covers(endpoint)

    def _due_at(self, head: OutboxRow) -> float:
        return max(head.next_at, self._held.get(head.endpoint, 0.0))

    def _arm_timer(self, delay: float | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None:
            self._timer = asyncio.create_task(self._ring(delay), name="deliveries-timer")

    async def _ring(self, delay: float) -> None:
        await self._sleep(delay)
        self.wake()

    async def _drain(self, head: OutboxRow) -> None:
        """Send one endpoint's due rows in order, until one must wait for a retry. Rows go in
        batches: one commit counts the attempts of up to `batch` rows, they are sent one at a
        time (FIFO), and one commit settles them and begins the next batch."""
        endpoint = head.endpoint
        row: OutboxRow | None = head
        batch: list[Step] = []
        try:
            while not self._closing:
                if not batch:
                    if row is None or row.next_at > self._clock.now():
                        break  # a retry is not due yet: the dispatcher's timer brings it back
                    if self._held_offline(endpoint) and row is not head:
                        break  # the uplink went down meanwhile: the dispatcher decides
                    reason = forbidden_reason(row.url, self._allow)
                    if reason is not None:
                        await self._ledger.commit(partial(
                            self._ledger.finish, row_id=row.id, event=DEAD, status=None,
                            code=INVALID_URL, message=reason, next_at=0.0))
                    else:
                        # One row first (a receiver that fails costs one request); its
                        # success begins full batches.
                        batch = [s for s in await self._ledger.commit_steps(partial(
                            self._ledger.begin_batch, endpoint=endpoint, limit=1))
                            if s.event == SENDING]
                    if not batch:
                        row = await self._reader.run(partial(outbox.next_pending,
                                                             endpoint=endpoint))
                        continue
                batch, going_on = await self._send_batch(endpoint, batch)
                if not going_on:
                    break  # failed, will retry: later rows of this endpoint wait (FIFO)
                if not batch:
                    if self._slot_wanted:
                        break  # let another endpoint have this slot
                    row = await self._reader.run(partial(outbox.next_pending, endpoint=endpoint))
            self._held.pop(endpoint, None)
        except Unavailable:
            pass  # the store is closing
        except Exception:
            # A bug or a storage error: hold the endpoint for a poll interval rather than spin.
            log.exception("delivery to %s failed unexpectedly; holding it for %.0f s",
                          endpoint, self._poll)
            self._held[endpoint] = self._clock.now() + self._poll
        finally:
            self._inflight.pop(endpoint, None)
            self._turn += 1
            self._served[endpoint] = self._turn
            self.wake()

    # -- one batch --------------------------------------------------------------------------

    async def _send_batch(self, endpoint: str, batch: list[Step]
                          ) -> tuple[list[Step], bool]:
        """Send the begun rows in order, stopping at the first that is not delivered; settle
        them in one commit that, when the endpoint may go on, begins its next batch. Returns
        that batch and whether the endpoint may go on."""
        outcomes: list[Outcome] = []
        abandoned = False
        for step in batch:
            if self._closing:
                break
            if self._busy_rate is not None and time.monotonic() < self._busy_until:
                await self._pace()
            answer = await self._send(step.row)
            if answer is None:
                abandoned = True  # by close(): counted, maybe received; sent again next start
                break
            if answer.code is None and answer.status is not None and (
                    self._uplink is None or not self._uplink.covers(endpoint)):
                outcome = Outcome(step.row, DELIVERED, answer.status)  # the common case
            else:
                outcome = await self._judge(step.row, answer)
            outcomes.append(outcome)
            if outcome.event != DELIVERED:
                break
        done = len(outcomes) + (1 if abandoned else 0)
        unsent = [s.row.id for s in batch[done:]]
        going_on = bool(outcomes) and outcomes[-1].event in (DELIVERED, DEAD) \
            and not abandoned and not self._closing
        chain = going_on and not (self._slot_wanted or self._held_offline(endpoint))
        if not outcomes and not unsent:
            return [], False
        _, begun = await self._writer.run(partial(
            self._ledger.settle, endpoint=endpoint, outcomes=outcomes, unsent=unsent, chain=chain),
            self._ledger.committed_batch)
        return [s for s in begun if s.event == SENDING], going_on

    async def _send(self, row: OutboxRow) -> Answer | None:
        """One request; None if close() abandoned it."""
        self.stats.sent += 1
        headers = {"Content-Type": row.content_type, "webhook-id": row.event_id}
        signer = self._signers.get(row.kind, self._signer)
        try:
            if signer is not None:
                headers.update(signer(row, int(self._clock.now())))
        except Exception as exc:  # a signer bug: a failed attempt, not a dead worker
            return Answer(None, code=NETWORK, message=f"signing failed: {type(exc).__name__}")
        assert self._session is not None
        # Awaited in the drain's own task (a task per request costs a third of the loop's
        # time per delivery); close() cancels the drains that are inside a request, and only
        # those cancellations are swallowed here.
        task = asyncio.current_task()
        assert task is not None
        self._requests[task] = False
        try:
            return await post(self._session, row.url, row.body, headers, self._clock.now(),
                              self._timeout)
        except asyncio.CancelledError:
            if self._requests.get(task):  # cancelled by close(): the row stays pending
                task.uncancel()
                return None
            raise
        finally:
            self._requests.pop(task, None)

    async def _judge(self, row: OutboxRow, answer: Answer) -> Outcome:
        """What an answer means for the row: delivered, retry (when), dead, or given back."""
        uplink = self._uplink
        if uplink is not None and uplink.covers(row.endpoint):
            if answer.status is None and not await uplink.confirm():
                # No answer because the gateway itself is offline: not the receiver's failure.
                return Outcome(row, REFUND, None, OFFLINE, answer.message)
            if answer.status is not None:
                uplink.alive()
        if answer.code is None:
            return Outcome(row, DELIVERED, answer.status)
        if answer.code == GONE or row.attempts >= self.max_attempts:
            code = GONE if answer.code == GONE else MAX_RETRIES
            return Outcome(row, DEAD, answer.status, code, answer.message)
        next_at = self._clock.now() + self._delay(row.attempts)
        if answer.retry_at is not None:  # Retry-After: not before that, nor before the schedule
            next_at = max(next_at, answer.retry_at)
        return Outcome(row, RETRY, answer.status, answer.code, answer.message, next_at)

    async def _pace(self) -> None:
        """Live traffic first: while order changes are being made (one in the last `quiet`
        seconds), all endpoints together send at most `busy_rate` requests per second; when
        the gateway is quiet a backlog drains at full speed. Real time: this shares the CPU."""
        if self._busy_rate is None:
            return
        now = time.monotonic()
        if now >= self._busy_until:
            return
        slot = max(self._next_slot, now)
        self._next_slot = slot + 1.0 / self._busy_rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def _delay(self, attempts: int) -> float:
        base = self._schedule[attempts - 1]
        return base * self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)

def _heads_and_count(conn: sqlite3.Connection) -> tuple[list[OutboxRow], int]:
    return outbox.pending_heads(conn), outbox.count_pending(conn)


