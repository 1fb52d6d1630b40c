"""Sends the outbox: decides which endpoint's rows go when, sends them, and has the ledger
record each answer. The guarantees are in the package docstring (`gateway.services.outbox`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import sqlite3
from functools import partial

from aiohttp.abc import AbstractResolver

from gateway.core.errors import Unavailable
from gateway.core.events import Event, OrderEvent
from gateway.core.netguard import forbidden_reason
from gateway.core.ports import Clock
from gateway.services.outbox.http import (
    GONE,
    RETRY_AFTER_CAP,
    Answer,
    GuardedResolver,
    retry_after_at,
    safe_url,
)
from gateway.services.outbox.ledger import (
    INVALID_URL,
    MAX_RETRIES,
    OFFLINE,
    CommitHook,
    DeliveryOutcome,
    Hook,
    Internal,
    Ledger,
    Step,
)
from gateway.services.outbox.pacing import Pacer
from gateway.services.outbox.policy import SCHEDULE, HookEvent, OutboxPolicy
from gateway.services.outbox.prune import Pruner
from gateway.services.outbox.sender import Sender, Signer
from gateway.services.outbox.uplink import Uplink
from gateway.store import outbox
from gateway.store.outbox import OutboxRow
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

__all__ = [  # re-exported: callers and tests name them from here
    "OFFLINE",
    "RETRY_AFTER_CAP",
    "SCHEDULE",
    "GuardedResolver",
    "HookEvent",
    "OutboxPolicy",
    "OutboxRow",
    "retry_after_at",
    "safe_url",
]


class DeliveryService:
    """The outbox worker. `clock` is what it computes due times from and how it waits (tests
    pass a fake); `policy.poll` is a safety net for rows enqueued without `wake()`. `signer`
    adds headers to every attempt (signatures); `uplink` checks connectivity before attempts
    are spent (see `outbox.uplink`); `resolver` is DNS under the guard (tests pass a stub: no
    traffic). One-shot: start once, close once; close it before the reader and the writer."""

    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        policy: OutboxPolicy | None = None,
        *,
        signer: Signer | None = None,
        uplink: Uplink | None = None,
        rng: random.Random | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self.policy = policy = policy or OutboxPolicy()
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._sender = Sender(clock, policy.allow, policy.timeout, signer, resolver)
        self._max_inflight = max(1, policy.max_inflight_endpoints)
        self._rng = rng or random.Random()
        self._batch = max(1, policy.batch)  # rows per commit in a backlog
        self._ledger = Ledger(writer, clock, policy.allow, policy.max_attempts, self._batch)
        self.stats = self._ledger.stats
        self._pacer = Pacer(clock, policy.busy_rate, policy.quiet)
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._served: dict[str, int] = {}  # endpoint -> turn it last finished (round-robin)
        self._turn = 0
        self._slot_wanted = False  # due endpoints are waiting for a free slot
        self._held: dict[str, float] = {}  # endpoint -> not before (after an unexpected error)
        self._closing = False
        self._uplink = uplink
        if uplink is not None:
            uplink.on_change(lambda _up: self.wake())
        self._wake_seqs: set[int] = set()  # journal seqs whose transaction enqueued rows
        self._pruner = Pruner(
            writer,
            reader,
            clock,
            self.stats,
            keep_delivered=policy.keep_delivered,
            keep_dead=policy.keep_dead,
            stop=lambda: self._closing,
        )
        self._pruning: asyncio.Task[None] | None = None

    @property
    def max_attempts(self) -> int:
        return self.policy.max_attempts

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
        self._sender.register_signer(kind, signer)

    @property
    def uplink(self) -> Uplink | None:
        return self._uplink

    @property
    def busy(self) -> bool:
        """Whether an endpoint is being served right now (requests or commits in progress)."""
        return bool(self._inflight)

    # -- waking after an order change ------------------------------------------------------

    def enqueued_with(self, seq: int) -> None:
        """Writer thread, inside an order change's transaction: rows were enqueued with the
        journal event `seq`; `on_event` wakes the worker when that event is published (after
        COMMIT). A rolled-back seq is reused by a later event, which then wakes it: harmless."""
        self._wake_seqs.add(seq)

    def on_event(self, event: Event) -> None:
        """Bus listener: wake for the committed events whose transaction enqueued rows; and
        note that live traffic is flowing (see `outbox.pacing`)."""
        if isinstance(event, OrderEvent):
            self.note_activity()
            if self._wake_seqs and event.seq in self._wake_seqs:
                self._wake_seqs.discard(event.seq)
                self.wake()

    def note_activity(self) -> None:
        """Live traffic now: a backlog yields to it for the next `quiet` seconds."""
        self._pacer.note_activity()

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker, after the store is open. Pending rows left by an earlier run
        (including a crash) are picked up at once."""
        if self._worker is not None:
            return
        self._sender.open()
        self._worker = asyncio.create_task(self._run(), name="deliveries")
        if self.policy.prune_every:
            self._pruning = asyncio.create_task(
                self._pruner.run(self.policy.prune_every), name="deliveries-prune"
            )

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
        if self._pruning is not None:
            self._pruning.cancel()
        self._sender.abandon_all()
        if self._uplink is not None:
            await self._uplink.close()
        tasks = [
            t for t in (self._worker, self._timer, self._pruning, *self._inflight.values()) if t
        ]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = self._timer = self._pruning = None
        await self._sender.close()

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

    async def prune(
        self, keep_delivered: float | None = None, keep_dead: float | None = None
    ) -> int:
        """Delete delivered rows finished more than `keep_delivered` seconds ago and dead ones
        more than `keep_dead` ago (the policy's by default); returns how many. Each chunk is
        its own short write job."""
        return await self._pruner.prune(keep_delivered, keep_dead)

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
                await asyncio.wait_for(self._wake.wait(), self.policy.poll)

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
                self._drain(head), name=f"deliveries-{head.endpoint}"
            )
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
        await self._clock.sleep(delay)
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
                    reason = forbidden_reason(row.url, self.policy.allow)
                    if reason is not None:
                        await self._ledger.commit(
                            partial(
                                self._ledger.finish,
                                row_id=row.id,
                                event=HookEvent.DEAD,
                                status=None,
                                code=INVALID_URL,
                                message=reason,
                                next_at=0.0,
                            )
                        )
                    else:
                        # One row first (a receiver that fails costs one request); its
                        # success begins full batches.
                        batch = [
                            s
                            for s in await self._ledger.commit_steps(
                                partial(self._ledger.begin_batch, endpoint=endpoint, limit=1)
                            )
                            if s.event is HookEvent.SENDING
                        ]
                    if not batch:
                        row = await self._reader.run(
                            partial(outbox.next_pending, endpoint=endpoint)
                        )
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
            log.exception(
                "delivery to %s failed unexpectedly; holding it for %.0f s",
                endpoint,
                self.policy.poll,
            )
            self._held[endpoint] = self._clock.now() + self.policy.poll
        finally:
            self._inflight.pop(endpoint, None)
            self._turn += 1
            self._served[endpoint] = self._turn
            self.wake()

    # -- one batch --------------------------------------------------------------------------

    async def _send_batch(self, endpoint: str, batch: list[Step]) -> tuple[list[Step], bool]:
        """Send the begun rows in order, stopping at the first that is not delivered; settle
        them in one commit that, when the endpoint may go on, begins its next batch. Returns
        that batch and whether the endpoint may go on."""
        outcomes: list[DeliveryOutcome] = []
        abandoned = False
        for step in batch:
            if self._closing:
                break
            if self._pacer.busy:
                await self._pacer.pace()
            answer = await self._send(step.row)
            if answer is None:
                abandoned = True  # by close(): counted, maybe received; sent again next start
                break
            if (
                answer.code is None
                and answer.status is not None
                and (self._uplink is None or not self._uplink.covers(endpoint))
            ):
                outcome = DeliveryOutcome(step.row, HookEvent.DELIVERED, answer.status)  # common
            else:
                outcome = await self._judge(step.row, answer)
            outcomes.append(outcome)
            if outcome.event is not HookEvent.DELIVERED:
                break
        done = len(outcomes) + (1 if abandoned else 0)
        unsent = [s.row.id for s in batch[done:]]
        going_on = (
            bool(outcomes)
            and outcomes[-1].event in (HookEvent.DELIVERED, HookEvent.DEAD)
            and not abandoned
            and not self._closing
        )
        chain = going_on and not (self._slot_wanted or self._held_offline(endpoint))
        if not outcomes and not unsent:
            return [], False
        _, begun = await self._writer.run(
            partial(
                self._ledger.settle,
                endpoint=endpoint,
                outcomes=outcomes,
                unsent=unsent,
                chain=chain,
            ),
            self._ledger.committed_batch,
        )
        return [s for s in begun if s.event is HookEvent.SENDING], going_on

    async def _send(self, row: OutboxRow) -> Answer | None:
        """One request; None if close() abandoned it."""
        self.stats.sent += 1
        return await self._sender.send(row)

    async def _judge(self, row: OutboxRow, answer: Answer) -> DeliveryOutcome:
        """What an answer means for the row: delivered, retry (when), dead, or given back."""
        uplink = self._uplink
        if uplink is not None and uplink.covers(row.endpoint):
            if answer.status is None and not await uplink.confirm():
                # No answer because the gateway itself is offline: not the receiver's failure.
                return DeliveryOutcome(row, Internal.REFUND, None, OFFLINE, answer.message)
            if answer.status is not None:
                uplink.alive()
        if answer.code is None:
            return DeliveryOutcome(row, HookEvent.DELIVERED, answer.status)
        if answer.code == GONE or row.attempts >= self.max_attempts:
            code = GONE if answer.code == GONE else MAX_RETRIES
            return DeliveryOutcome(row, HookEvent.DEAD, answer.status, code, answer.message)
        next_at = self._clock.now() + self._delay(row.attempts)
        if answer.retry_at is not None:  # Retry-After: not before that, nor before the schedule
            next_at = max(next_at, answer.retry_at)
        return DeliveryOutcome(
            row, HookEvent.RETRY, answer.status, answer.code, answer.message, next_at
        )

    def _delay(self, attempts: int) -> float:
        base, jitter = self.policy.schedule[attempts - 1], self.policy.jitter
        return base * self._rng.uniform(1.0 - jitter, 1.0 + jitter)


def _heads_and_count(conn: sqlite3.Connection) -> tuple[list[OutboxRow], int]:
    return outbox.pending_heads(conn), outbox.count_pending(conn)
