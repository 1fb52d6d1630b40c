"""Print devices and their requests (seed 000): submit, answer, list; durable and reported.

Every change of a request or a device is one write job: the rows, and the automatic report
(an outbox row) when the change is one a submitter must hear about. Memory follows the commit.
Open requests live in memory (the workers' queues); archived ones are read from SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from gateway.core.errors import Code, Conflict, NotFound, ValidationFailed
from gateway.core.events import Event, OrderEvent, OrderEventType
from gateway.core.models import Order
from gateway.core.netguard import forbidden_reason
from gateway.core.ports import Clock
from gateway.core.printing import (
    Command,
    Device,
    DeviceStatus,
    ErrorCode,
    PrinterLink,
    PrintRequest,
    ProcessStatus,
    Report,
    ReportError,
    ReportStatus,
    RequestError,
    Source,
    device_spec_problem,
)
from gateway.services.printing.commands import check_data
from gateway.services.printing.imprimo_format import report_json
from gateway.store import outbox
from gateway.store import printing as repo
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

REPORT_KIND = "imprimo-report"
MAX_RESERVED = 60


class Renderer(Protocol):
    """Turns a request into the bytes its printer needs (the printers library, via app.py)."""

    def render(self, request: PrintRequest, device: Device, order: Order | None,
               reprint: bool) -> bytes: ...


LinkFactory = Callable[[Device], PrinterLink]


@dataclass(frozen=True, slots=True)
class PrintPolicy:
    default_deadline: float = 300.0
    max_deadline: float = 7 * 86_400.0
    max_retries: int = 10  # sends of one request (the same id each time)
    ack_timeout: float = 10.0  # an impact printer takes ~8 s for a ticket
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    status_interval: float = 15.0  # health poll of an idle printer
    hold_poll: float = 2.0  # health poll while a job is held (paper out)
    sweep_interval: float = 1.0
    report_url: str | None = None
    stations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kitchen_station: str = ""  # "" = no automatic kitchen tickets
    kitchen_needs_answer: bool = False
    allow: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A printer as settings, the API or discovery describe it."""

    name: str
    address: str
    station: str = ""
    paper: str = "80mm"
    id: str | None = None


class PrintService:
    def __init__(self, writer: Writer, reader: Reader, clock: Clock,
                 find_order: Callable[[str], Order | None], links: LinkFactory,
                 renderer: Renderer, policy: PrintPolicy,
                 wake_outbox: Callable[[], None] = lambda: None) -> None:
        self._writer = writer
        self._reader = reader
        self.clock = clock
        self.find_order = find_order
        self._links = links
        self.renderer = renderer
        self.policy = policy
        self._wake_outbox = wake_outbox
        self.devices: dict[str, Device] = {}
        self.open: dict[str, PrintRequest] = {}
        # Per device: a heap of (deadline, created, id) of queued requests, checked lazily
        # against `open` (a stale entry is dropped when met), and the ids awaiting an answer.
        # Picking and status updates cost O(log n) per job, not a scan of every open request.
        self.queues: dict[str, list[tuple[float, float, str]]] = {}
        self.waiting: dict[str, set[str]] = {}
        self._workers: dict[str, Any] = {}  # device id -> DeviceWorker
        self._stash: dict[str, list[PrintRequest]] = {}  # written by the order hook, unseen
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._report_updates: list[tuple[str, Report]] = []  # filled on the writer thread

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self, configured: Iterable[DeviceSpec] = ()) -> None:
        def read(conn: sqlite3.Connection) -> tuple[list[Device], list[PrintRequest]]:
            return repo.load_devices(conn), repo.load_open_requests(conn)

        devices, requests = await self._writer.run(read)
        self.devices = {d.id: d for d in devices}
        now = self.clock.now()
        recovered: list[PrintRequest] = []
        for r in requests:
            if r.process_status in (ProcessStatus.SENDING_INPUT, ProcessStatus.WAITING_ACK):
                # Stopped mid-send: the printer may have it. Send again (same id) marked as a
                # reprint rather than lose a ticket.
                r = r.evolve(process_status=ProcessStatus.QUEUEING, process_status_date=now,
                             delivered_once=True)
                recovered.append(r)
            self._index(r)
        for spec in configured:
            await self.add_device(spec, Source.SETTINGS, replace=True)
        if recovered:
            await self._commit(recovered, [], report=False)
        log.info("printing: %d devices, %d open requests", len(self.devices), len(self.open))

    async def start(self) -> None:
        from gateway.services.printing.worker import DeviceWorker

        self._worker_type = DeviceWorker
        self._started = True
        # Jobs that expired while the gateway was down are settled before any worker runs.
        await self.sweep()
        for device_id in self.devices:
            self._spawn(device_id)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="print-sweeper")

    def _spawn(self, device_id: str) -> None:
        if not self._started or device_id in self._workers:
            return
        worker = self._worker_type(self, device_id, self._links(self.devices[device_id]))
        self._workers[device_id] = worker
        worker.start()

    async def close(self) -> None:
        """Stop the workers; queued requests stay queued in SQLite for the next start."""
        self._started = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        workers, self._workers = list(self._workers.values()), {}
        await asyncio.gather(*(w.stop() for w in workers), return_exceptions=True)

    # -- devices ---------------------------------------------------------------------------

    def device(self, device_id: str) -> Device:
        if (d := self.devices.get(device_id)) is None:
            raise NotFound(Code.PRINT_DEVICE_NOT_FOUND, f"Device {device_id[:40]!r} not found.")
        return d

    def list_devices(self, limit: int, offset: int) -> tuple[list[Device], int]:
        all_ = list(self.devices.values())
        return all_[offset:offset + limit], len(all_)

    def check_spec(self, spec: DeviceSpec) -> None:
        bad = device_spec_problem(spec.id, spec.name, spec.address, spec.station, spec.paper,
                                  self.policy.allow)
        if bad:
            raise ValidationFailed(Code.PRINT_BAD_DEVICE, bad)

    async def add_device(self, spec: DeviceSpec, source: Source, *,
                         replace: bool = False) -> Device:
        self.check_spec(spec)
        did = spec.id or secrets.token_hex(8)
        now = self.clock.now()
        old = self.devices.get(did)
        if old is not None and not replace:
            raise Conflict(Code.PRINT_DEVICE_EXISTS, f"Device {did!r} already exists.")
        device = Device(did, spec.name, spec.address, spec.station, spec.paper, source,
                        old.date_created if old else now, status=DeviceStatus.UNKNOWN,
                        status_date=now)
        if old is not None and (old.address, old.name, old.station, old.paper, old.source) == (
                device.address, device.name, device.station, device.paper, device.source):
            return old
        await self._commit([], [device], report=False)
        if old is not None and old.address != device.address and did in self._workers:
            await self._workers.pop(did).stop()
        self._spawn(did)
        return self.devices[did]

    def hold_move(self, device_id: str, address: str | None) -> None:
        """Show (or, with None, drop) an address the device was announced at, unconfirmed."""
        d = self.devices.get(device_id)
        if d is not None and d.pending_address != address:
            self.devices[device_id] = d.evolve(pending_address=address)

    async def move_device(self, device_id: str, address: str) -> Device:
        """A manager's word: the printer is now at `address` (confirms a held mDNS move)."""
        d = self.device(device_id)
        if d.source is Source.SETTINGS:
            raise Conflict(Code.PRINT_DEVICE_CONFIGURED, f"Device {device_id!r} is configured "
                                                         "in the settings file; change it there.")
        spec = DeviceSpec(d.name, address, d.station, d.paper, d.id)
        moved = await self.add_device(spec, d.source, replace=True)
        self.hold_move(device_id, None)
        return self.devices.get(device_id, moved)

    async def remove_device(self, device_id: str) -> None:
        if self.device(device_id).source is Source.SETTINGS:
            # It would come back at the next start: say where it is managed instead.
            raise Conflict(Code.PRINT_DEVICE_CONFIGURED, f"Device {device_id!r} is configured "
                                                         "in the settings file; remove it there.")
        now = self.clock.now()
        dropped = [self._fail(r, ErrorCode.INCOMPATIBLE_DEVICE_STATE, "The device was removed.",
                              now) for r in self.open.values() if r.device_id == device_id]

        def job(conn: sqlite3.Connection) -> None:
            self._write(conn, dropped, [], report=True)
            repo.remove_device(conn, device_id, now)

        def apply(_: None) -> None:
            self._apply(dropped, [])
            self.devices.pop(device_id, None)

        await self._writer.run(job, apply)
        if (worker := self._workers.pop(device_id, None)) is not None:
            await worker.stop()

    # -- requests --------------------------------------------------------------------------

    async def submit(self, device_id: str, command: Command, data: object, *,
                     deadline: float | None = None, reserved: str | None = None,
                     report_url: str | None = None, station: str = "",
                     order_uuid: str | None = None) -> PrintRequest:
        self.device(device_id)
        request = self.new_request(device_id, command, data, deadline=deadline,
                                   reserved=reserved, report_url=report_url, station=station,
                                   order_uuid=order_uuid)
        await self._commit([request], [], report=False)
        self.wake(device_id)
        return self.open.get(request.id, request)

    async def submit_to_station(self, station: str, command: Command, data: object,
                                **kwargs: Any) -> PrintRequest:
        return await self.submit(self.pick(station), command, data, station=station, **kwargs)

    def new_request(self, device_id: str, command: Command, data: object, *,
                    deadline: float | None = None, reserved: str | None = None,
                    report_url: str | None = None, station: str = "",
                    order_uuid: str | None = None) -> PrintRequest:
        now = self.clock.now()
        if deadline is None:
            deadline = now + self.policy.default_deadline
        elif deadline <= now:
            raise ValidationFailed(Code.PRINT_BAD_DEADLINE, "deadline is in the past.")
        elif deadline > now + self.policy.max_deadline:
            raise ValidationFailed(Code.PRINT_BAD_DEADLINE,
                                   "deadline is more than 7 days away.")
        if reserved is not None and (len(reserved) > MAX_RESERVED or not reserved.isascii()):
            raise ValidationFailed(Code.PRINT_BAD_RESERVED,
                                   "reserved must be at most 60 ASCII characters.")
        if report_url is not None and (why := forbidden_reason(report_url, self.policy.allow)):
            raise ValidationFailed(Code.PRINT_BAD_REPORT_URL, f"reportUrl refused: {why}")
        data = check_data(command, data, lambda oid: self.find_order(oid) is not None)
        if order_uuid is None and isinstance(data, dict) and data.get("orderId"):
            order = self.find_order(data["orderId"])
            order_uuid = order.uuid if order else None
        enabled = bool(report_url or self.policy.report_url)
        return PrintRequest(
            secrets.token_hex(16), device_id, now, deadline, reserved, command, data,
            ProcessStatus.QUEUEING, now, Report(enabled, 0, ReportStatus.ARCHIVED, None),
            station, order_uuid, report_url)

    async def request(self, device_id: str, request_id: str) -> PrintRequest:
        self.device(device_id)
        if (r := self.open.get(request_id)) is not None and r.device_id == device_id:
            return r
        found = await self._reader.run(lambda c: repo.load_request(c, device_id, request_id))
        if found is None:
            raise NotFound(Code.PRINT_REQUEST_NOT_FOUND,
                           f"Request {request_id[:40]!r} not found on device {device_id!r}.")
        return self.open.get(found.id, found)

    async def list_requests(self, device_id: str, limit: int,
                            offset: int) -> tuple[list[PrintRequest], int]:
        self.device(device_id)
        rows, total = await self._reader.run(
            lambda c: repo.page_requests(c, device_id, limit, offset))
        # Memory is ahead of the file by the in-flight step (waiting-ack) only.
        return [self.open.get(r.id, r) for r in rows], total

    async def respond(self, device_id: str, request_id: str, accepted: object,
                      minutes: object) -> PrintRequest:
        """A worker's answer to an order ticket: output.data {accepted, time}."""
        if not isinstance(accepted, bool):
            raise ValidationFailed(Code.PRINT_BAD_RESPONSE, "accepted must be true or false.")
        if minutes is not None and (not isinstance(minutes, int) or isinstance(minutes, bool)
                                    or not 0 <= minutes <= 1440):
            raise ValidationFailed(Code.PRINT_BAD_RESPONSE,
                                   "time must be an integer number of minutes from 0 to 1440.")
        if accepted and minutes is None:
            raise ValidationFailed(Code.PRINT_BAD_RESPONSE,
                                   "time (minutes) is required when accepting.")
        current = await self.request(device_id, request_id)
        if current.process_status is not ProcessStatus.WAITING_OUTPUT:
            raise Conflict(Code.PRINT_NOT_AWAITING,
                           f"Request is {current.process_status.value}, not waiting for an "
                           "answer.")
        now = self.clock.now()
        done = current.evolve(process_status=ProcessStatus.ARCHIVED, process_status_date=now,
                              output_data={"accepted": accepted,
                                           "time": minutes if accepted else None},
                              date_received=now)
        await self._commit([done], self._device_after([done]), report=True)
        return self.open.get(done.id, done)

    # -- stations --------------------------------------------------------------------------

    def station_devices(self, station: str) -> list[str]:
        listed = [d for d in self.policy.stations.get(station, ()) if d in self.devices]
        own = [d.id for d in self.devices.values() if d.station == station and d.id not in listed]
        return listed + own

    def pick(self, station: str, exclude: str | None = None) -> str:
        """The first usable device of the station, else its first device."""
        candidates = self.station_devices(station)
        if not candidates:
            raise ValidationFailed(Code.PRINT_NO_STATION, f"No printer serves station "
                                                          f"{station[:32]!r}.")
        for did in candidates:
            if did != exclude and usable(self.devices[did]):
                return did
        return candidates[0]

    # -- kitchen tickets from orders -------------------------------------------------------

    def order_hook(self, conn: sqlite3.Connection, event: OrderEvent) -> None:
        """In the order's transaction: its kitchen tickets commit with it or not at all.

        Items that name a station with printers go to that station's ticket; the rest (and an
        order without items) to the kitchen station."""
        kitchen = self.policy.kitchen_station
        if event.type is not OrderEventType.NEW_ORDER or not kitchen:
            return
        order = event.order
        groups: dict[str, list[dict[str, Any]]] = {}
        for item in order.items:
            station = item.station if item.station and self.station_devices(item.station) \
                else kitchen
            groups.setdefault(station, []).append(
                {"title": item.title, "quantity": item.quantity, "notes": item.notes,
                 "station": ""})
        for station, items in (groups or {kitchen: []}).items():
            try:
                device_id = self.pick(station)
            except ValidationFailed:
                continue
            data = {"orderId": order.uuid, "number": order.name, "table": order.location,
                    "type": order.order_type, "items": items,
                    "needsAnswer": self.policy.kitchen_needs_answer}
            request = self._ticket(device_id, data, station, order.uuid)
            self._write(conn, [request], [], report=False)
            self._stash.setdefault(order.uuid, []).append(request)

    def _ticket(self, device_id: str, data: dict[str, Any], station: str,
                order_uuid: str) -> PrintRequest:
        now = self.clock.now()
        return PrintRequest(
            secrets.token_hex(16), device_id, now, now + self.policy.default_deadline, None,
            Command.PRINT_ORDER, data, ProcessStatus.QUEUEING, now,
            Report(bool(self.policy.report_url), 0, ReportStatus.ARCHIVED, None), station,
            order_uuid)

    def on_event(self, event: Event) -> None:
        """After the order committed: its ticket joins the queue."""
        if isinstance(event, OrderEvent) and (found := self._stash.pop(event.order.uuid, None)):
            for r in found:
                self._index(r)
                self.wake(r.device_id)

    # -- reports (called by the outbox, on the writer thread) ------------------------------

    def report_hook(self, conn: sqlite3.Connection, ref: str, event: str,
                    code: str | None, message: str | None, attempts: int) -> None:
        now = self.clock.now()
        updates: list[tuple[str, Report]] = []
        for rid in orjson.loads(ref or "[]"):
            current = repo.load_request_by_id(conn, rid)
            if current is None:
                continue
            rep = current.report
            error = None if code is None else ReportError(_error_code(code), message, now)
            if event == "sending":
                rep = Report(rep.enabled, attempts, ReportStatus.SENDING, now, rep.error)
            elif event == "delivered":
                rep = Report(rep.enabled, attempts, ReportStatus.ARCHIVED, now, None)
            elif event == "retry":
                rep = Report(rep.enabled, attempts, ReportStatus.QUEUEING, now, error)
            else:  # dead
                rep = Report(rep.enabled, attempts, ReportStatus.ARCHIVED, now, error)
            repo.save_report(conn, rid, rep)
            updates.append((rid, rep))
        self._report_updates.extend(updates)  # only once every write above succeeded

    def apply_report_updates(self) -> None:
        """On the loop after the outbox's commit: memory catches up with the report blocks."""
        updates, self._report_updates[:] = list(self._report_updates), []
        for rid, rep in updates:
            if (r := self.open.get(rid)) is not None:
                self.open[rid] = r.evolve(report=rep)

    # -- the write path (also used by the workers) -----------------------------------------

    def wake(self, device_id: str) -> None:
        if (worker := self._workers.get(device_id)) is not None:
            worker.wake()

    async def _commit(self, requests: list[PrintRequest], devices: list[Device], *,
                      report: bool) -> None:
        def job(conn: sqlite3.Connection) -> tuple[list[PrintRequest], bool]:
            return self._write(conn, requests, devices, report=report)

        def apply(result: tuple[list[PrintRequest], bool]) -> None:
            written, queued = result
            self._apply(written, devices)
            if queued:
                self._wake_outbox()

        await self._writer.run(job, apply)

    def _write(self, conn: sqlite3.Connection, requests: list[PrintRequest],
               devices: list[Device], *, report: bool) -> tuple[list[PrintRequest], bool]:
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
            outbox.enqueue(conn, outbox.Delivery(
                event_id=secrets.token_hex(16), url=url, kind=REPORT_KIND, body=body,
                ref=orjson.dumps([r.id for r in reqs]).decode()), now)
        return written, bool(by_url)

    def _apply(self, requests: list[PrintRequest], devices: list[Device]) -> None:
        for d in devices:
            self.devices[d.id] = d
        for r in requests:
            self._index(r)

    def _index(self, r: PrintRequest) -> None:
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
            heapq.heappush(self.queues.setdefault(r.device_id, []),
                           (r.deadline, r.date_created, r.id))

    def awaiting_answer(self, device_id: str) -> bool:
        return bool(self.waiting.get(device_id))

    def _fail(self, r: PrintRequest, code: ErrorCode, message: str,
              now: float) -> PrintRequest:
        return r.evolve(process_status=ProcessStatus.ARCHIVED, process_status_date=now,
                        error=RequestError(r.process_status, code, message, now))

    def _device_after(self, changed: list[PrintRequest]) -> list[Device]:
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

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.policy.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("print deadline sweep failed")

    async def sweep(self) -> None:
        """Requests past their deadline that no worker holds: archived with why."""
        now = self.clock.now()
        busy = {w.current for w in self._workers.values()}
        await self.expire([r for r in self.open.values()
                           if r.deadline <= now and r.id not in busy], now)

    async def expire(self, requests: Iterable[PrintRequest], now: float) -> None:
        """Archive requests past their deadline with the reason (the sweeper and a worker that
        meets one both come here: an expired job is settled where it is found)."""
        expired: list[PrintRequest] = []
        for r in requests:
            if r.process_status is ProcessStatus.WAITING_OUTPUT:
                expired.append(self._fail(r, ErrorCode.DEADLINE,
                                          "No answer before the deadline.", now))
            elif r.process_status is ProcessStatus.QUEUEING:
                code, why = expiry_reason(self.devices.get(r.device_id))
                expired.append(self._fail(r, code, why, now))
        if expired:
            await self._commit(expired, self._device_after(expired), report=True)


def usable(d: Device) -> bool:
    return d.is_online and d.status is not DeviceStatus.OUT_OF_PAPER \
        and d.status_detail not in ("cover-open", "error")


def expiry_reason(d: Device | None) -> tuple[ErrorCode, str]:
    if d is not None and not d.is_online:
        return ErrorCode.NETWORK_TIMEOUT, "The printer could not be reached before the deadline."
    if d is not None and not usable(d):
        return (ErrorCode.INCOMPATIBLE_DEVICE_STATE,
                f"The printer was {d.status_detail or 'out of paper'} until the deadline.")
    return ErrorCode.DEADLINE, "Not printed before the deadline."


def _error_code(code: str) -> ErrorCode:
    try:
        return ErrorCode(code)
    except ValueError:
        return ErrorCode.UNKNOWN
