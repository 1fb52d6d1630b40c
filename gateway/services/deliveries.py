"""Sends the outbox: automatic print reports now, webhooks later.

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
- **Hooks.** A service that owns the changes behind a row kind (printing: the request's
  `report` block) registers a hook that runs on the writer thread inside the transaction that
  updates the outbox row, so its own state can never disagree with the outbox.

Time comes from the injected Clock; waiting goes through the injected `sleep`, so tests run
the whole ten-attempt schedule in milliseconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import re
import socket
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC
from functools import partial
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.core.errors import Unavailable
from gateway.core.netguard import forbidden_reason
from gateway.core.ports import Clock
from gateway.store import outbox
from gateway.store.outbox import OutboxRow
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

# Seed 003: "after ± 2 minutes, after ± 5 minutes, then after ± 60 minutes, up to 7 times".
SCHEDULE: tuple[float, ...] = (120.0, 300.0) + (3600.0,) * 7
RETRY_AFTER_CAP = 86_400.0  # a receiver cannot park its own queue for more than a day
POLL_SECONDS = 30.0  # safety net for rows enqueued without wake() and for clock jumps

# Hook events.
SENDING = "sending"
DELIVERED = "delivered"
RETRY = "retry"
DEAD = "dead"
_NOT_DUE = "not-due"  # internal: nothing changed, hooks are not called

# Error codes passed to hooks and stored (as "code: message") in outbox.last_error.
INVALID_URL = "invalid-url"
GONE = "gone"
MAX_RETRIES = "max-retries"
TIMEOUT = "network-timeout"
NETWORK = "network-error"
HTTP_STATUS = "http-status"
REDIRECT = "redirect"

Hook = Callable[[sqlite3.Connection, OutboxRow, str, str | None, str | None], None]
CommitHook = Callable[[], None]
# The seam for Standard Webhooks signatures: (row, unix timestamp) -> extra headers, e.g.
# webhook-timestamp and webhook-signature over f"{row.event_id}.{timestamp}.{row.body}".
Signer = Callable[[OutboxRow, int], Mapping[str, str]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(slots=True)
class DeliveryStats:
    sent: int = 0  # requests started
    delivered: int = 0
    failed: int = 0  # failed attempts (each retry and each final failure)
    dead: int = 0
    pending: int = 0  # as of the worker's last look at the table
    hook_errors: int = 0


@dataclass(frozen=True, slots=True)
class _Step:
    """One committed change of an outbox row, as the hooks saw it."""

    row: OutboxRow
    event: str
    code: str | None = None
    message: str | None = None


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int | None  # None: no HTTP answer (timeout, connection error)
    retry_at: float | None = None
    code: str | None = None  # None: delivered
    message: str | None = None


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
    ) -> None:
        if not 0.0 <= jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")
        self._writer = writer
        self._reader = reader
        self._clock = clock
        self._allow = allow
        self._schedule = schedule
        self._jitter = jitter
        self._timeout = timeout
        self._max_inflight = max(1, max_inflight_endpoints)
        self._signer = signer
        self._sleep = sleep
        self._poll = poll
        self._rng = rng or random.Random()
        self.stats = DeliveryStats()
        self._hooks: dict[str, tuple[Hook, CommitHook | None]] = {}
        self._hook_failing: set[str] = set()  # kinds whose hook failure was already logged
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._timer: asyncio.Task[None] | None = None
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._served: dict[str, int] = {}  # endpoint -> turn it last finished (round-robin)
        self._turn = 0
        self._slot_wanted = False  # due endpoints are waiting for a free slot
        self._held: dict[str, float] = {}  # endpoint -> not before (after an unexpected error)
        self._down: set[str] = set()  # endpoints whose failure was logged (once per episode)
        self._session: aiohttp.ClientSession | None = None
        self._requests: set[asyncio.Task[_Answer]] = set()  # cancelled by close()
        self._closing = False

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
        if kind in self._hooks:
            raise ValueError(f"a hook for {kind!r} is already registered")
        self._hooks[kind] = (hook, on_commit)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the worker, after the store is open. Pending rows left by an earlier run
        (including a crash) are picked up at once."""
        if self._worker is not None:
            return
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(resolver=GuardedResolver(self._allow)),
            cookie_jar=aiohttp.DummyCookieJar(),  # receivers must not steer later requests
            timeout=aiohttp.ClientTimeout(total=self._timeout),
        )
        self._worker = asyncio.create_task(self._run(), name="deliveries")

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
        for request in self._requests:
            request.cancel()
        tasks = [t for t in (self._worker, self._timer, *self._inflight.values()) if t]
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = self._timer = None
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
        """Send one endpoint's due rows in order, until one must wait for a retry."""
        endpoint = head.endpoint
        row: OutboxRow | None = head
        try:
            while row is not None and not self._closing:
                if row.next_at > self._clock.now():
                    break  # a retry is not due yet: the dispatcher's timer brings it back
                if not await self._attempt(row):
                    break  # failed, will retry: later rows of this endpoint wait (FIFO)
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

    # -- one attempt ----------------------------------------------------------------------

    async def _attempt(self, row: OutboxRow) -> bool:
        """One attempt at `row`; True when the row is finished (delivered or dead)."""
        reason = forbidden_reason(row.url, self._allow)
        if reason is not None:
            await self._commit(partial(
                self._finish, row_id=row.id, event=DEAD, status=None, code=INVALID_URL,
                message=reason, next_at=0.0))
            return True
        if self._closing:
            return False
        begun = await self._commit(partial(self._begin, row_id=row.id))
        if begun is not None and begun.event == _NOT_DUE:
            return False
        if begun is None or begun.event != SENDING:
            return True  # no longer pending, or its attempts were spent before a crash
        row = begun.row
        self.stats.sent += 1
        request = asyncio.create_task(self._post(row))
        self._requests.add(request)
        try:
            answer = await request
        except asyncio.CancelledError:
            if self._closing and request.cancelled():
                return False  # abandoned by close(): the row stays pending
            raise
        finally:
            self._requests.discard(request)
        now = self._clock.now()
        if answer.code is None:
            assert answer.status is not None
            await self._commit(partial(
                self._finish, row_id=row.id, event=DELIVERED, status=answer.status, code=None,
                message=None, next_at=0.0))
            return True
        if answer.code == GONE or row.attempts >= self.max_attempts:
            code = GONE if answer.code == GONE else MAX_RETRIES
            await self._commit(partial(
                self._finish, row_id=row.id, event=DEAD, status=answer.status, code=code,
                message=answer.message, next_at=0.0))
            return True
        next_at = now + self._delay(row.attempts)
        if answer.retry_at is not None:  # Retry-After: not before that, nor before the schedule
            next_at = max(next_at, answer.retry_at)
        await self._commit(partial(
            self._finish, row_id=row.id, event=RETRY, status=answer.status, code=answer.code,
            message=answer.message, next_at=next_at))
        return False

    def _delay(self, attempts: int) -> float:
        base = self._schedule[attempts - 1]
        return base * self._rng.uniform(1.0 - self._jitter, 1.0 + self._jitter)

    async def _post(self, row: OutboxRow) -> _Answer:
        assert self._session is not None
        headers = {"Content-Type": row.content_type, "webhook-id": row.event_id}
        try:
            if self._signer is not None:
                headers.update(self._signer(row, int(self._clock.now())))
            async with self._session.post(
                row.url, data=row.body, headers=headers, allow_redirects=False
            ) as resp:
                status = resp.status
                retry_after = resp.headers.get("Retry-After")
        except TimeoutError:
            return _Answer(None, code=TIMEOUT, message=f"no answer within {self._timeout:g} s")
        except aiohttp.ClientError as exc:
            return _Answer(None, code=NETWORK, message=_describe(exc))
        except Exception as exc:  # a signer bug, say: a failed attempt, not a dead worker
            return _Answer(None, code=NETWORK, message=type(exc).__name__)
        if 200 <= status < 300:
            return _Answer(status)
        if status == 410:
            return _Answer(status, code=GONE, message="HTTP 410 Gone")
        if 300 <= status < 400:
            message = f"HTTP {status}; redirects are not followed"
            return _Answer(status, code=REDIRECT, message=message)
        retry_at = None
        if status in (429, 503):
            retry_at = retry_after_at(retry_after, self._clock.now())
        return _Answer(status, retry_at, HTTP_STATUS, f"HTTP {status}")

    # -- writer jobs (writer thread) --------------------------------------------------------

    def _begin(self, conn: sqlite3.Connection, row_id: int) -> _Step | None:
        row = outbox.get(conn, row_id)
        if row is None or row.state != outbox.PENDING:
            return None
        if row.next_at > self._clock.now():
            # The dispatcher looked at an older snapshot; this retry is not due yet.
            return _Step(row, _NOT_DUE)
        if row.attempts >= self.max_attempts:
            # Only after a crash between the last attempt's commit and its outcome.
            return self._finish(conn, row_id, DEAD, row.last_status, MAX_RETRIES,
                                "attempts spent before a restart", 0.0)
        row = outbox.mark_attempt(conn, row_id)
        return None if row is None else self._fire(conn, _Step(row, SENDING))

    def _finish(self, conn: sqlite3.Connection, row_id: int, event: str, status: int | None,
                code: str | None, message: str | None, next_at: float) -> _Step | None:
        now = self._clock.now()
        error = f"{code}: {message}" if code else ""
        if event == DELIVERED:
            assert status is not None
            row = outbox.mark_delivered(conn, row_id, now, status)
        elif event == RETRY:
            row = outbox.mark_retry(conn, row_id, next_at, status, error)
        else:
            row = outbox.mark_dead(conn, row_id, now, status, error)
        return None if row is None else self._fire(conn, _Step(row, event, code, message))

    def _fire(self, conn: sqlite3.Connection, step: _Step) -> _Step:
        entry = self._hooks.get(step.row.kind)
        if entry is None:
            return step
        # Its own savepoint: a failing hook loses its writes, never the outbox change.
        conn.execute("SAVEPOINT outbox_hook")
        try:
            entry[0](conn, step.row, step.event, step.code, step.message)
        except Exception:
            conn.execute("ROLLBACK TO outbox_hook")
            self.stats.hook_errors += 1
            if step.row.kind not in self._hook_failing:
                self._hook_failing.add(step.row.kind)
                log.exception("outbox hook for %s failed (%s of row %d); further failures "
                              "are only counted", step.row.kind, step.event, step.row.id)
        finally:
            conn.execute("RELEASE outbox_hook")
        return step

    async def _commit(self, job: Callable[[sqlite3.Connection], _Step | None]) -> _Step | None:
        return await self._writer.run(job, self._committed)

    # -- after commit (event loop) ------------------------------------------------------------

    def _committed(self, step: _Step | None) -> None:
        if step is None or step.event == _NOT_DUE:
            return
        row, event = step.row, step.event
        if event == DELIVERED:
            self.stats.delivered += 1
            if row.endpoint in self._down:
                self._down.discard(row.endpoint)
                log.info("deliveries to %s work again", row.endpoint)
        elif event in (RETRY, DEAD):
            if step.code != INVALID_URL:
                self.stats.failed += 1
            if event == DEAD:
                self.stats.dead += 1
                log.warning("delivery %d (%s) to %s is dead: %s %s", row.id, row.kind,
                            safe_url(row.url), step.code, step.message or "")
            elif row.endpoint not in self._down:
                self._down.add(row.endpoint)
                log.warning("deliveries to %s failing: %s (retrying on schedule)",
                            safe_url(row.url), step.message)
        entry = self._hooks.get(row.kind)
        if entry is not None and entry[1] is not None:
            try:
                entry[1]()
            except Exception:
                self.stats.hook_errors += 1
                if row.kind not in self._hook_failing:
                    self._hook_failing.add(row.kind)
                    log.exception("outbox on_commit for %s failed", row.kind)


def _heads_and_count(conn: sqlite3.Connection) -> tuple[list[OutboxRow], int]:
    return outbox.pending_heads(conn), outbox.count_pending(conn)


_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def retry_after_at(value: str | None, now: float) -> float | None:
    """When a Retry-After header (delta-seconds or HTTP-date) allows the next attempt; None if
    absent or unreadable. Capped at RETRY_AFTER_CAP from now."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return now + min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(when.timestamp(), now + RETRY_AFTER_CAP)


def safe_url(url: str) -> str:
    """The URL for logs: no credentials, query or fragment (they may carry secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _describe(exc: aiohttp.ClientError) -> str:
    # Not str(exc): some aiohttp errors quote the full URL, query string included.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc.os_error.strerror or exc.os_error}"
    return type(exc).__name__


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops loopback, link-local, unspecified and
    multicast addresses unless the host is allow-listed: netguard checks the URL's text, this
    checks where a *name* actually leads (DNS rebinding, `*.nip.io`). Literal IPs never get here
    (aiohttp connects to them directly; netguard has judged them)."""

    def __init__(self, allow: frozenset[str], inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        name = host.rstrip(".").lower()
        if name in self._allow or f"{name}:{port}" in self._allow:
            return results
        safe = [r for r in results if forbidden_reason(_literal_url(r["host"])) is None]
        if not safe:
            raise OSError(f"{name} resolves only to local or link-local addresses")
        return safe

    async def close(self) -> None:
        await self._inner.close()


def _literal_url(ip: str) -> str:
    return f"http://[{ip}]/" if ":" in ip else f"http://{ip}/"
