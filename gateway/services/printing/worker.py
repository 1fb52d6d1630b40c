"""One worker per printer: earliest deadline first, one job at a time, every outcome recorded.

A send is committed as `sending-input` (attempt counted) before its first byte leaves, so after
a crash the gateway knows the printer may have it and marks the resend as a reprint. A job the
printer holds (paper out) is waited for, never resent: the printer prints it when the roll is
changed. A broken link mid-job is resent with the same request id, up to `max_retries` sends.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Callable

from gateway.core.errors import Code, Unavailable
from gateway.core.printing import (
    Attempt,
    Command,
    Device,
    DeviceStatus,
    ErrorCode,
    Health,
    Paper,
    PendingJob,
    PrinterLink,
    PrintRequest,
    ProcessStatus,
    SendOutcome,
)
from gateway.services.printing.queue import PrintQueue, usable

log = logging.getLogger(__name__)
UNREACHABLE = Health(known=True, online=False)


def device_state(health: Health, reachable: bool) -> tuple[DeviceStatus, bool, str]:
    """(status, isOnline, statusDetail) for what the printer said about itself."""
    if not reachable:
        return DeviceStatus.UNKNOWN, False, "unreachable"
    if not health.known:
        return DeviceStatus.UNKNOWN, True, "no-status"
    if health.paper is Paper.OUT:
        return DeviceStatus.OUT_OF_PAPER, True, "paper-out"
    if health.cover_open:
        return DeviceStatus.UNKNOWN, True, "cover-open"
    if health.error:
        return DeviceStatus.UNKNOWN, True, "error"
    if not health.online:
        return DeviceStatus.UNKNOWN, True, "printer-offline"
    return DeviceStatus.IDLE, True, "paper-near-end" if health.paper is Paper.NEAR_END else ""


class DeviceWorker:
    """Drives one printer from the shared queue. `render` turns a request into the printer's
    bytes; `wake(device_id)` nudges another device's worker (after a reroute)."""

    def __init__(
        self,
        queue: PrintQueue,
        device_id: str,
        link: PrinterLink,
        *,
        render: Callable[[PrintRequest, Device], bytes],
        wake: Callable[[str], None],
    ) -> None:
        self.queue = queue
        self.device_id = device_id
        self.link = link
        self._render = render
        self._wake_device = wake
        self.current: str | None = None  # the request being sent or held
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._retry_at: dict[str, float] = {}
        self._next_poll = 0.0
        self._blocked = False
        self._stopping = False

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"printer-{self.device_id}")

    def wake(self) -> None:
        self._wake.set()

    async def stop(self) -> None:
        # The flag as well as the cancel: on Python 3.11 asyncio.wait_for can swallow a
        # cancellation that lands as its inner wait completes, and the loop would go on.
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(Exception):
            await self.link.close()

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._step()
            except asyncio.CancelledError:
                raise
            except Unavailable as exc:
                if exc.code is Code.API_UNAVAILABLE:  # the store is closing: so are we
                    return
                log.warning("printer %s: %s; retrying in 1 s", self.device_id, exc)
                await self.queue.clock.sleep(1.0)
            except Exception:
                log.exception("printer %s: worker step failed; retrying in 1 s", self.device_id)
                await self.queue.clock.sleep(1.0)
            # A floor under every path: whatever a step did (or failed to do), the loop gets
            # the CPU back before the next one, so one printer can never starve the gateway.
            # (A yield to the event loop, not a wait: not the Clock's business.)
            await asyncio.sleep(0)

    async def _step(self) -> None:
        now = self.queue.clock.now()
        if now >= self._next_poll:
            await self.poll()
        if self._blocked:
            await self._idle()
            return
        expired, request = self._next(now)
        if expired:
            await self.queue.expire(expired, now)
        if request is not None:
            await self._process(request)
        elif not expired:
            await self._idle()

    def _next(self, now: float) -> tuple[list[PrintRequest], PrintRequest | None]:
        """Earliest deadline first among this device's queued requests that are due; those
        whose deadline has passed are taken off the queue and returned to be archived."""
        heap = self.queue.heaps.get(self.device_id, [])
        deferred: list[tuple[float, float, str]] = []
        expired: list[PrintRequest] = []
        best: PrintRequest | None = None
        while heap:
            deadline, created, rid = heap[0]
            r = self.queue.open.get(rid)
            if (
                r is None
                or r.device_id != self.device_id
                or r.process_status is not ProcessStatus.QUEUEING
                or (r.deadline, r.date_created) != (deadline, created)
            ):
                heapq.heappop(heap)  # stale: sent, archived or moved since it was queued
                continue
            if r.deadline <= now:
                heapq.heappop(heap)
                expired.append(r)
                continue
            if self._retry_at.get(rid, 0.0) > now:
                deferred.append(heapq.heappop(heap))  # backing off: not yet
                continue
            best = r
            break
        for entry in deferred:
            heapq.heappush(heap, entry)
        return expired, best

    async def _idle(self) -> None:
        now = self.queue.clock.now()
        wait = self._next_poll - now
        # Forget back-offs of requests that left this queue (archived, moved to a fallback):
        # a stale one in the past would wake this loop every few ms for nothing.
        for rid in [rid for rid in self._retry_at if not self._queued_here(rid)]:
            del self._retry_at[rid]
        if self._retry_at:
            wait = min(wait, *(t - now for t in self._retry_at.values()))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), max(wait, 0.01))

    def _queued_here(self, rid: str) -> bool:
        r = self.queue.open.get(rid)
        return (
            r is not None
            and r.device_id == self.device_id
            and r.process_status is ProcessStatus.QUEUEING
        )

    async def poll(self) -> None:
        """Ask the printer how it is (not while a job is on it: one connection at a time)."""
        policy = self.queue.policy
        try:
            health = await self.link.health()
        except (ConnectionError, OSError, TimeoutError):
            await self._observe(UNREACHABLE, reachable=False)
        else:
            await self._observe(health, reachable=True)
        interval = policy.hold_poll if self._blocked else policy.status_interval
        self._next_poll = self.queue.clock.now() + interval

    # -- one request -----------------------------------------------------------------------

    async def _process(self, request: PrintRequest) -> None:
        q, now = self.queue, self.queue.clock.now()
        if request.deadline <= now:
            await q.expire([request], now)
            return
        device = q.devices[self.device_id]
        self.current = request.id
        try:
            try:
                payload = self._render(request, device)
            except Exception as exc:  # a bad ticket must not stop the printer
                log.warning(
                    "printer %s: cannot render request %s: %s", self.device_id, request.id, exc
                )
                await self._archive(request, error=(ErrorCode.UNKNOWN, f"Cannot render: {exc}"))
                return
            sending = request.evolve(
                process_status=ProcessStatus.SENDING_INPUT,
                process_status_date=now,
                date_sent=now,
                attempts=request.attempts + 1,
            )
            await q.commit([sending], [], report=False)
            self._retry_at.pop(request.id, None)
            self._show(DeviceStatus.PRINTING)
            timeout = max(min(q.policy.ack_timeout, sending.deadline - q.clock.now()), 0.1)
            attempt = await self.link.print_job(payload, timeout)
            await self._settle(sending, attempt)
        finally:
            self.current = None
            self._show(DeviceStatus.IDLE)

    async def _settle(self, request: PrintRequest, attempt: Attempt) -> None:
        match attempt.outcome:
            case SendOutcome.PRINTED:
                await self._observe(attempt.health, reachable=True)
                await self._printed(request)
            case SendOutcome.HELD | SendOutcome.UNCONFIRMED:
                await self._wait_held(request, attempt)
            case SendOutcome.INTERRUPTED:
                await self._retry(request, attempt)
            case SendOutcome.UNREACHABLE:
                await self._observe(UNREACHABLE, reachable=False)
                # Nothing was sent: the attempt does not count, and only the deadline bounds it.
                await self._requeue(request.evolve(attempts=request.attempts - 1))

    async def _wait_held(self, request: PrintRequest, attempt: Attempt) -> None:
        """The printer has the data: wait for it, never resend (paper-out holds the job)."""
        q = self.queue
        pending: PendingJob | None = attempt.pending
        held = request.evolve(
            process_status=ProcessStatus.WAITING_ACK,
            process_status_date=q.clock.now(),
            delivered_once=True,
        )
        await q.commit([held], [], report=False)
        if attempt.outcome is SendOutcome.HELD:
            await self._observe(attempt.health, reachable=True)
        silent_until = q.clock.now() + q.policy.ack_timeout
        try:
            while pending is not None:
                now = q.clock.now()
                if now >= held.deadline:
                    await self._archive(
                        held,
                        error=(
                            ErrorCode.INCOMPATIBLE_DEVICE_STATE,
                            "The printer held the job past its deadline (paper out or cover open); "
                            "it may still print it when the fault is cleared.",
                        ),
                    )
                    return
                if attempt.outcome is SendOutcome.UNCONFIRMED and now >= silent_until:
                    await self._archive(
                        held,
                        error=(
                            ErrorCode.UNKNOWN,
                            "Delivered, but the printer never confirmed printing it; not resent, "
                            "so it is not printed twice.",
                        ),
                    )
                    return
                attempt = await pending.wait(min(q.policy.hold_poll, held.deadline - now))
                if attempt.outcome is SendOutcome.PRINTED:
                    await self._observe(attempt.health, reachable=True)
                    await self._printed(held)
                    pending = None
                elif attempt.outcome is SendOutcome.INTERRUPTED:
                    pending = None
                    await self._retry(held, attempt)
                else:
                    await self._observe(await pending.health(), reachable=True)
        finally:
            if pending is not None:
                await pending.close()

    async def _printed(self, request: PrintRequest) -> None:
        q, now = self.queue, self.queue.clock.now()
        if request.needs_answer:
            waiting = request.evolve(
                process_status=ProcessStatus.WAITING_OUTPUT,
                process_status_date=now,
                delivered_once=True,
            )
            await q.commit([waiting], q.device_after([waiting]), report=True)
            return
        output = {"opened": True} if request.command is Command.OPEN_DRAWER else {"printed": True}
        await self._archive(request, output=output)

    async def _retry(self, request: PrintRequest, attempt: Attempt) -> None:
        policy = self.queue.policy
        delivered = request.delivered_once or attempt.bytes_delivered > 0
        log.info(
            "printer %s: link broke during request %s (%s); send %d of %d",
            self.device_id,
            request.id,
            attempt.detail,
            request.attempts,
            policy.max_retries,
        )
        if request.attempts >= policy.max_retries:
            await self._archive(
                request.evolve(delivered_once=delivered),
                error=(
                    ErrorCode.MAX_RETRIES,
                    f"The link to the printer broke {request.attempts} times.",
                ),
            )
            return
        backoff = policy.backoff[min(request.attempts, len(policy.backoff)) - 1]
        self._retry_at[request.id] = self.queue.clock.now() + backoff
        self._next_poll = 0.0  # look at the printer before the resend
        await self._requeue(request.evolve(delivered_once=delivered))

    async def _requeue(self, request: PrintRequest) -> None:
        if request.id not in self._retry_at:
            self._retry_at[request.id] = self.queue.clock.now() + self.queue.policy.backoff[0]
        queued = request.evolve(
            process_status=ProcessStatus.QUEUEING, process_status_date=self.queue.clock.now()
        )
        await self.queue.commit([queued], [], report=False)

    async def _archive(
        self,
        request: PrintRequest,
        *,
        output: object = None,
        error: tuple[ErrorCode, str] | None = None,
    ) -> None:
        self._retry_at.pop(request.id, None)
        await self.queue.archive(request, output=output, error=error)

    # -- the device's own state ------------------------------------------------------------

    def _show(self, status: DeviceStatus) -> None:
        """printing <-> idle flips stay in memory: a report per ticket would be noise."""
        d = self.queue.devices.get(self.device_id)
        if (
            d is not None
            and d.status in (DeviceStatus.IDLE, DeviceStatus.PRINTING)
            and d.status is not status
        ):
            self.queue.devices[self.device_id] = d.evolve(status=status)

    async def _observe(self, health: Health, *, reachable: bool) -> None:
        q, now = self.queue, self.queue.clock.now()
        d = q.devices.get(self.device_id)
        if d is None:
            return
        status, online, detail = device_state(health, reachable)
        if status is DeviceStatus.IDLE and q.awaiting_answer(d.id):
            status = DeviceStatus.WAITING_ORDER_RESPONSE
        seen = now if reachable else d.date_last_seen
        self._blocked = reachable and health.blocking
        quiet = {DeviceStatus.IDLE, DeviceStatus.PRINTING}
        same = (d.is_online, d.status_detail) == (online, detail) and (
            d.status is status or {d.status, status} <= quiet
        )
        if same:
            q.devices[self.device_id] = d.evolve(date_last_seen=seen)
            return
        changed = d.evolve(
            status=status,
            status_detail=detail,
            is_online=online,
            status_date=now,
            date_last_seen=seen,
        )
        _log_transition(d, changed)
        await q.commit([], [changed], report=True)
        if not online or self._blocked:
            await self._reroute()

    async def _reroute(self) -> None:
        """Station tickets waiting here move to a working printer of the same station."""
        q = self.queue
        moved: list[PrintRequest] = []
        for r in list(q.open.values()):
            if (
                r.device_id != self.device_id
                or not r.station
                or r.id == self.current
                or r.process_status is not ProcessStatus.QUEUEING
            ):
                continue
            alt = q.pick(r.station, exclude=self.device_id)
            if alt != self.device_id and usable(q.devices[alt]):
                moved.append(r.evolve(device_id=alt, process_status_date=q.clock.now()))
        if moved:
            log.warning(
                "printer %s unavailable: %d station tickets moved to a fallback",
                self.device_id,
                len(moved),
            )
            await q.commit(moved, [], report=True)
            for did in {r.device_id for r in moved}:
                self._wake_device(did)


def _log_transition(old: Device, new: Device) -> None:
    # Once per change of state, not per poll: a flapping printer logs each flip only.
    if not new.is_online:
        log.warning("printer %s (%s) unreachable", new.id, new.name)
    elif new.status_detail and new.status_detail != "paper-near-end":
        log.warning("printer %s (%s): %s", new.id, new.name, new.status_detail)
    elif not old.is_online or old.status_detail:
        log.info("printer %s (%s) ready", new.id, new.name)
