"""The outbox's bookkeeping: the writer jobs that move rows (begin, settle, finish, give an
attempt back), the hooks that run inside them, and what happens on the loop after each commit
(counters, logs, the hooks' `on_commit`). `DeliveryService` decides what to send; this module
records it, so that the outbox, the hooks' own state and the counters always agree."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.netguard import forbidden_reason
from gateway.core.ports import Clock
from gateway.services.outbox.http import safe_url
from gateway.services.outbox.policy import HookEvent
from gateway.store import outbox
from gateway.store.outbox import OutboxRow
from gateway.store.writer import Writer

log = logging.getLogger("gateway.services.outbox.service")  # one logger for the outbox


class Internal(StrEnum):
    """Steps and outcomes the hooks never hear as such."""

    NOT_DUE = "not-due"  # nothing changed, hooks are not called
    REFUND = "refund"  # the attempt is given back (offline); hooks see `retry`


Event = HookEvent | Internal

# Error codes passed to hooks and stored (as "code: message") in outbox.last_error; those of
# an HTTP answer (gone, network-timeout, network-error, http-status, redirect) are in
# outbox.http.
INVALID_URL = "invalid-url"
MAX_RETRIES = "max-retries"
OFFLINE = "offline"  # the gateway's own uplink was down: the attempt was given back
UNSENT = "unsent"  # internal: a batch stopped before this row; hooks see `retry`, no code
Hook = Callable[[sqlite3.Connection, OutboxRow, HookEvent, str | None, str | None], None]
CommitHook = Callable[[], None]


@dataclass(slots=True)
class DeliveryStats:
    sent: int = 0  # requests started
    delivered: int = 0
    failed: int = 0  # failed attempts (each retry and each final failure)
    dead: int = 0
    pending: int = 0  # as of the worker's last look at the table
    hook_errors: int = 0
    offline: int = 0  # attempts given back because the uplink was down
    pruned: int = 0


@dataclass(frozen=True, slots=True)
class Step:
    """One committed change of an outbox row, as the hooks saw it."""

    row: OutboxRow
    event: Event
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class DeliveryOutcome:
    """What one answer means for its row, to be committed with the rest of its batch."""

    row: OutboxRow
    event: Event  # delivered | retry | dead | refund
    status: int | None
    code: str | None = None
    message: str | None = None
    next_at: float = 0.0


class Ledger:
    def __init__(
        self, writer: Writer, clock: Clock, allow: frozenset[str], max_attempts: int, batch: int
    ) -> None:
        self._writer = writer
        self._clock = clock
        self._allow = allow
        self.max_attempts = max_attempts
        self._batch = batch
        self.stats = DeliveryStats()
        self._hooks: dict[str, tuple[Hook, CommitHook | None]] = {}
        self._hook_failing: set[str] = set()  # kinds whose hook failure was already logged
        self._down: set[str] = set()  # endpoints whose failure was logged (once per episode)

    def register_hook(self, kind: str, hook: Hook, on_commit: CommitHook | None = None) -> None:
        if kind in self._hooks:
            raise ValueError(f"a hook for {kind!r} is already registered")
        self._hooks[kind] = (hook, on_commit)

    # -- writer jobs (writer thread) --------------------------------------------------------

    def begin(self, conn: sqlite3.Connection, row_id: int) -> Step | None:
        row = outbox.get(conn, row_id)
        if row is None or row.state != outbox.PENDING:
            return None
        if row.next_at > self._clock.now():
            # The dispatcher looked at an older snapshot; this retry is not due yet.
            return Step(row, Internal.NOT_DUE)
        if row.attempts >= self.max_attempts:
            # Only after a crash between the last attempt's commit and its outcome.
            return self.finish(
                conn,
                row_id,
                HookEvent.DEAD,
                row.last_status,
                MAX_RETRIES,
                "attempts spent before a restart",
                0.0,
            )
        row = outbox.mark_attempt(conn, row_id)
        return None if row is None else self.fire(conn, Step(row, HookEvent.SENDING))

    def begin_batch(self, conn: sqlite3.Connection, endpoint: str, limit: int) -> list[Step]:
        """Count the attempts of the endpoint's oldest pending rows, up to `limit` of them,
        stopping before one that is not due or whose URL is refused (the loop deals with
        it). Committed before any of them is sent. One UPDATE for the batch."""
        steps: list[Step] = []
        if limit <= 0:
            return steps
        now = self._clock.now()
        ready: list[int] = []
        for row in outbox.pending_run(conn, endpoint, limit):
            if row.next_at > now or forbidden_reason(row.url, self._allow) is not None:
                break
            if row.attempts >= self.max_attempts:
                # Only after a crash between the last attempt's commit and its outcome.
                dead = self.finish(
                    conn,
                    row.id,
                    HookEvent.DEAD,
                    row.last_status,
                    MAX_RETRIES,
                    "attempts spent before a restart",
                    0.0,
                )
                if dead is not None:
                    steps.append(dead)
                continue
            ready.append(row.id)
        for row in outbox.mark_attempts(conn, ready):
            steps.append(self.fire(conn, Step(row, HookEvent.SENDING)))
        return steps

    def settle(
        self,
        conn: sqlite3.Connection,
        endpoint: str,
        outcomes: list[DeliveryOutcome],
        unsent: list[int],
        chain: bool,
    ) -> tuple[list[Step], list[Step]]:
        """The outcomes of a batch, the attempts of its rows that were not sent given back,
        and (`chain`) the next batch begun: one commit."""
        done: list[Step | None] = []
        delivered: dict[int, list[int]] = {}  # status -> rows: one UPDATE per status
        for o in outcomes:
            if o.event == HookEvent.DELIVERED and o.status is not None:
                delivered.setdefault(o.status, []).append(o.row.id)
        now = self._clock.now()
        for status, ids in delivered.items():
            done += [
                self.fire(conn, Step(row, HookEvent.DELIVERED))
                for row in outbox.mark_delivered_many(conn, ids, now, status)
            ]
        for o in outcomes:
            if o.event == Internal.REFUND:
                done.append(self.refund(conn, o.row.id, o.message))
            elif o.event != HookEvent.DELIVERED:
                done.append(
                    self.finish(conn, o.row.id, o.event, o.status, o.code, o.message, o.next_at)
                )
        for row_id in unsent:
            row = outbox.refund_attempt(conn, row_id, None)
            if row is not None:
                done.append(self.fire(conn, Step(row, HookEvent.RETRY, UNSENT)))
        begun = self.begin_batch(conn, endpoint, self._batch if chain else 0)
        return [s for s in done if s is not None], begun

    async def commit_steps(self, job: Callable[[sqlite3.Connection], list[Step]]) -> list[Step]:
        return await self._writer.run(job, self.committed_steps)

    def committed_steps(self, steps: list[Step]) -> None:
        for step in steps:
            self.committed(step)

    def committed_batch(self, steps: tuple[list[Step], list[Step]]) -> None:
        for group in steps:
            self.committed_steps(group)

    def refund(self, conn: sqlite3.Connection, row_id: int, message: str | None) -> Step | None:
        error = f"{OFFLINE}: uplink down ({message or 'no answer'}); attempt not counted"
        row = outbox.refund_attempt(conn, row_id, error)
        return (
            None if row is None else self.fire(conn, Step(row, HookEvent.RETRY, OFFLINE, message))
        )

    def finish(
        self,
        conn: sqlite3.Connection,
        row_id: int,
        event: Event,
        status: int | None,
        code: str | None,
        message: str | None,
        next_at: float,
    ) -> Step | None:
        now = self._clock.now()
        error = f"{code}: {message}" if code else ""
        if event == HookEvent.DELIVERED:
            assert status is not None
            row = outbox.mark_delivered(conn, row_id, now, status)
        elif event == HookEvent.RETRY:
            row = outbox.mark_retry(conn, row_id, next_at, status, error)
        else:
            row = outbox.mark_dead(conn, row_id, now, status, error)
        return None if row is None else self.fire(conn, Step(row, event, code, message))

    def fire(self, conn: sqlite3.Connection, step: Step) -> Step:
        entry = self._hooks.get(step.row.kind)
        if entry is None:
            return step
        assert isinstance(step.event, HookEvent)  # internal steps are never fired
        # Its own savepoint: a failing hook loses its writes, never the outbox change.
        conn.execute("SAVEPOINT outbox_hook")
        try:
            code = None if step.code == UNSENT else step.code
            entry[0](conn, step.row, step.event, code, step.message)
        except Exception:
            conn.execute("ROLLBACK TO outbox_hook")
            self.stats.hook_errors += 1
            if step.row.kind not in self._hook_failing:
                self._hook_failing.add(step.row.kind)
                log.exception(
                    "outbox hook for %s failed (%s of row %d); further failures are only counted",
                    step.row.kind,
                    step.event,
                    step.row.id,
                )
        finally:
            conn.execute("RELEASE outbox_hook")
        return step

    async def commit(self, job: Callable[[sqlite3.Connection], Step | None]) -> Step | None:
        return await self._writer.run(job, self.committed)

    # -- after commit (event loop) ------------------------------------------------------------

    def committed(self, step: Step | None) -> None:
        if step is None or step.event == Internal.NOT_DUE:
            return
        row, event = step.row, step.event
        if event == HookEvent.DELIVERED:
            self.stats.delivered += 1
            if row.endpoint in self._down:
                self._down.discard(row.endpoint)
                log.info("deliveries to %s work again", row.endpoint)
        elif step.code == OFFLINE:
            self.stats.offline += 1
        elif step.code == UNSENT:
            pass
        elif event in (HookEvent.RETRY, HookEvent.DEAD):
            if step.code != INVALID_URL:
                self.stats.failed += 1
            if event == HookEvent.DEAD:
                self.stats.dead += 1
                log.warning(
                    "delivery %d (%s) to %s is dead: %s %s",
                    row.id,
                    row.kind,
                    safe_url(row.url),
                    step.code,
                    step.message or "",
                )
            elif row.endpoint not in self._down:
                self._down.add(row.endpoint)
                log.warning(
                    "deliveries to %s failing: %s (retrying on schedule)",
                    safe_url(row.url),
                    step.message,
                )
        entry = self._hooks.get(row.kind)
        if entry is not None and entry[1] is not None:
            try:
                entry[1]()
            except Exception:
                self.stats.hook_errors += 1
                if row.kind not in self._hook_failing:
                    self._hook_failing.add(row.kind)
                    log.exception("outbox on_commit for %s failed", row.kind)
