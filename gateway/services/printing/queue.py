"""The print queue: devices and open requests in memory, and the one write path that changes
them. `PrintService` (the API side) and each `DeviceWorker` (the printer side) share it.

Every change of a request or a device is one write job: the rows, and the automatic report
(an outbox row) when the change is one a submitter must hear about. Memory follows the commit.
"""

from __future__ import annotations

import heapq
import secrets
import sqlite3
from collections.abc import Callable, Iterable

import orjson

from gateway.core.errors import Code, ValidationFailed
from gateway.core.ports import Clock
from gateway.core.printing import (
    Device,
    DeviceStatus,
    ErrorCode,
    PrintRequest,
    ProcessStatus,
    Report,
    ReportStatus,
    RequestError,
)
from gateway.services.printing.imprimo_format import report_json
from gateway.services.printing.policy import PrintPolicy
from gateway.store import outbox
from gateway.store import printing as repo
from gateway.store.writer import Writer

REPORT_KIND = "imprimo-report"


class PrintQueue:
    def __init__(
        self,
        writer: Writer,
        clock: Clock,
        policy: PrintPolicy,
        wake_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._writer = writer
        self.clock = clock
        self.policy = policy
        self._wake_outbox = wake_outbox
        self.devices: dict[str, Device] = {}
        self.open: dict[str, PrintRequest] = {}
        # Per device: a heap of (deadline, created, id) of queued requests, checked lazily
        # against `open` (a stale entry is dropped when met), and the ids awaiting an answer.
        # Picking and status updates cost O(log n) per job, not a scan of every open request.
        self.heaps: dict[str, list[tuple[float, float, str]]] = {}
        self.waiting: dict[str, set[str]] = {}

    # -- the write path --------------------------------------------------------------------

    async def commit(
        self, requests: list[PrintRequest], devices: list[Device], *, report: bool
    ) -> None:
        """Write the changed requests and devices (and their report, if `report`) in one job;
        memory follows once it committed."""

        def job(conn: sqlite3.Connection) -> tuple[list[PrintRequest], bool]:
            return self.write(conn, requests, devices, report=report)

        def apply(result: tuple[list[PrintRequest], bool]) -> None:
            written, queued = result
            self.apply(written, devices)
            if queued:
                self._wake_outbox()

        await self._writer.run(job, apply)

    def write(
        self,
        conn: sqlite3.Connection,
        requests: list[PrintRequest],
        devices: list[Device],
        *,
        report: bool,
    ) -> tuple[list[PrintRequest], bool]:
        """Writer thread, inside a job: the rows and their reports. Returns the requests as
        written and whether an outbox row was enqueued."""
        now = self.clock.now()
        written: list[PrintRequest] = []
        by_url: dict[str, list[PrintRequest]] = {}
        for r in requests:
            url = r.report_url or self.policy.report_url
            if report and url:
                r = r.evolve(report=Report(True, 0, ReportStatus.QUEUEING, now))
                by_url.setdefault(url, []).append(r)
            repo.save_request(conn, r)
            written.append(r)
        for d in devices:
            repo.save_device(conn, d)
        if report and devices and self.policy.report_url:
            by_url.setdefault(self.policy.report_url, [])
        for url, reqs in by_url.items():
            devs = devices if url == self.policy.report_url else []
            body = orjson.dumps(report_json(devs, reqs))
            outbox.enqueue(
                conn,
                outbox.Delivery(
                    event_id=secrets.token_hex(16),
                    url=url,
                    kind=REPORT_KIND,
                    body=body,
                    ref=orjson.dumps([r.id for r in reqs]).decode(),
                ),
                now,
            )
        return written, bool(by_url)

    def apply(self, requests: list[PrintRequest], devices: list[Device]) -> None:
        """On the loop, after the commit: memory catches up."""
        for d in devices:
            self.devices[d.id] = d
        for r in requests:
            self.index(r)

    def index(self, r: PrintRequest) -> None:
        waiting = self.waiting.setdefault(r.device_id, set())
        if r.process_status is ProcessStatus.WAITING_OUTPUT:
            waiting.add(r.id)
        else:
            waiting.discard(r.id)
        if r.archived:
            self.open.pop(r.id, None)
            return
        self.open[r.id] = r
        if r.process_status is ProcessStatus.QUEUEING:
            heapq.heappush(
                self.heaps.setdefault(r.device_id, []), (r.deadline, r.date_created, r.id)
            )

    # -- what the state says ---------------------------------------------------------------

    def awaiting_answer(self, device_id: str) -> bool:
        return bool(self.waiting.get(device_id))

    def device_after(self, changed: list[PrintRequest]) -> list[Device]:
        """Devices whose waiting-order-response status the changed requests flip."""
        out: list[Device] = []
        now = self.clock.now()
        for did in {r.device_id for r in changed}:
            d = self.devices.get(did)
            if d is None or not d.is_online:
                continue
            ids = set(self.waiting.get(did, ()))
            for r in changed:
                if r.device_id == did and r.process_status is ProcessStatus.WAITING_OUTPUT:
                    ids.add(r.id)
                elif r.device_id == did:
                    ids.discard(r.id)
            if ids and d.status is DeviceStatus.IDLE:
                out.append(d.evolve(status=DeviceStatus.WAITING_ORDER_RESPONSE, status_date=now))
            elif not ids and d.status is DeviceStatus.WAITING_ORDER_RESPONSE:
                out.append(d.evolve(status=DeviceStatus.IDLE, status_date=now))
        return out

    def station_devices(self, station: str) -> list[str]:
        listed = [d for d in self.policy.stations.get(station, ()) if d in self.devices]
        own = [d.id for d in self.devices.values() if d.station == station and d.id not in listed]
        return listed + own

    def pick(self, station: str, exclude: str | None = None) -> str:
        """The first usable device of the station, else its first device."""
        candidates = self.station_devices(station)
        if not candidates:
            raise ValidationFailed(
                Code.PRINT_NO_STATION, f"No printer serves station {station[:32]!r}."
            )
        for did in candidates:
            if did != exclude and usable(self.devices[did]):
                return did
        return candidates[0]

    # -- settling --------------------------------------------------------------------------

    async def archive(
        self,
        request: PrintRequest,
        *,
        output: object = None,
        error: tuple[ErrorCode, str] | None = None,
    ) -> None:
        """Archive one request, with its output or why it failed; reported."""
        now = self.clock.now()
        if error is not None:
            done = fail(request, error[0], error[1], now)
        else:
            done = request.evolve(
                process_status=ProcessStatus.ARCHIVED,
                process_status_date=now,
                output_data=output,
                date_received=now,
            )
        await self.commit([done], self.device_after([done]), report=True)

    async def expire(self, requests: Iterable[PrintRequest], now: float) -> None:
        """Archive requests past their deadline with the reason (the sweeper and a worker that
        meets one both come here: an expired job is settled where it is found)."""
        expired: list[PrintRequest] = []
        for r in requests:
            if r.process_status is ProcessStatus.WAITING_OUTPUT:
                expired.append(fail(r, ErrorCode.DEADLINE, "No answer before the deadline.", now))
            elif r.process_status is ProcessStatus.QUEUEING:
                code, why = expiry_reason(self.devices.get(r.device_id))
                expired.append(fail(r, code, why, now))
        if expired:
            await self.commit(expired, self.device_after(expired), report=True)


def fail(r: PrintRequest, code: ErrorCode, message: str, now: float) -> PrintRequest:
    """The request archived with why."""
    return r.evolve(
        process_status=ProcessStatus.ARCHIVED,
        process_status_date=now,
        error=RequestError(r.process_status, code, message, now),
    )


def usable(d: Device) -> bool:
    return (
        d.is_online
        and d.status is not DeviceStatus.OUT_OF_PAPER
        and d.status_detail not in ("cover-open", "error")
    )


def expiry_reason(d: Device | None) -> tuple[ErrorCode, str]:
    if d is not None and not d.is_online:
        return ErrorCode.NETWORK_TIMEOUT, "The printer could not be reached before the deadline."
    if d is not None and not usable(d):
        return (
            ErrorCode.INCOMPATIBLE_DEVICE_STATE,
            f"The printer was {d.status_detail or 'out of paper'} until the deadline.",
        )
    return ErrorCode.DEADLINE, "Not printed before the deadline."
