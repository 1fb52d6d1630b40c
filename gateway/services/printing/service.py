"""Print devices and their requests (seed 000, the Imprimo print API): submit, answer, list;
durable and reported.

The state and its write path are the `PrintQueue` (shared with the printer workers); this
service is the API side of it. Open requests live in memory (the queue); archived ones are read
from SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Protocol

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
    ReportStatus,
    Source,
    device_spec_problem,
)
from gateway.services.outbox.policy import HookEvent
from gateway.services.printing.commands import check_data
from gateway.services.printing.policy import DeviceSpec, PrintPolicy
from gateway.services.printing.queue import REPORT_KIND, PrintQueue, fail
from gateway.services.printing.reports import ReportTracker
from gateway.services.printing.worker import DeviceWorker
from gateway.store import printing as repo
from gateway.store.reader import Reader
from gateway.store.writer import Writer

log = logging.getLogger(__name__)

MAX_RESERVED = 60
__all__ = ["REPORT_KIND", "DeviceSpec", "PrintPolicy", "PrintService", "Renderer"]


class Renderer(Protocol):
    """Turns a request into the bytes its printer needs (the printers library, via app.py)."""

    def render(
        self, request: PrintRequest, device: Device, order: Order | None, reprint: bool
    ) -> bytes: ...


LinkFactory = Callable[[Device], PrinterLink]


class PrintService:
    def __init__(
        self,
        writer: Writer,
        reader: Reader,
        clock: Clock,
        find_order: Callable[[str], Order | None],
        links: LinkFactory,
        renderer: Renderer,
        policy: PrintPolicy,
        wake_outbox: Callable[[], None] = lambda: None,
    ) -> None:
        self._writer = writer
        self._reader = reader
        self.clock = clock
        self.find_order = find_order
        self._links = links
        self.renderer = renderer
        self.policy = policy
        self.queue = PrintQueue(writer, clock, policy, wake_outbox)
        self._workers: dict[str, DeviceWorker] = {}
        self._stash: dict[str, list[PrintRequest]] = {}  # written by the order hook, unseen
        self._sweeper: asyncio.Task[None] | None = None
        self._started = False
        self._reports = ReportTracker(self.queue, clock)

    @property
    def devices(self) -> dict[str, Device]:
        return self.queue.devices

    @property
    def open(self) -> dict[str, PrintRequest]:
        return self.queue.open

    # -- lifecycle -------------------------------------------------------------------------

    async def load(self, configured: Iterable[DeviceSpec] = ()) -> None:
        def read(conn: sqlite3.Connection) -> tuple[list[Device], list[PrintRequest]]:
            return repo.load_devices(conn), repo.load_open_requests(conn)

        devices, requests = await self._writer.run(read)
        self.queue.devices.update((d.id, d) for d in devices)
        now = self.clock.now()
        recovered: list[PrintRequest] = []
        for r in requests:
            if r.process_status in (ProcessStatus.SENDING_INPUT, ProcessStatus.WAITING_ACK):
                # Stopped mid-send: the printer may have it. Send again (same id) marked as a
                # reprint rather than lose a ticket.
                r = r.evolve(
                    process_status=ProcessStatus.QUEUEING,
                    process_status_date=now,
                    delivered_once=True,
                )
                recovered.append(r)
            self.queue.index(r)
        for spec in configured:
            await self.add_device(spec, Source.SETTINGS, replace=True)
        if recovered:
            await self.queue.commit(recovered, [], report=False)
        log.info("printing: %d devices, %d open requests", len(self.devices), len(self.open))

    async def start(self) -> None:
        self._started = True
        # Jobs that expired while the gateway was down are settled before any worker runs.
        await self.sweep()
        for device_id in self.devices:
            self._spawn(device_id)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="print-sweeper")

    def _spawn(self, device_id: str) -> None:
        if not self._started or device_id in self._workers:
            return
        worker = DeviceWorker(
            self.queue,
            device_id,
            self._links(self.devices[device_id]),
            render=self._render,
            wake=self.wake,
        )
        self._workers[device_id] = worker
        worker.start()

    def _render(self, request: PrintRequest, device: Device) -> bytes:
        order = self.find_order(request.order_uuid) if request.order_uuid else None
        return self.renderer.render(request, device, order, request.delivered_once)

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
        return all_[offset : offset + limit], len(all_)

    def check_spec(self, spec: DeviceSpec) -> None:
        bad = device_spec_problem(
            spec.id, spec.name, spec.address, spec.station, spec.paper, self.policy.allow
        )
        if bad:
            raise ValidationFailed(Code.PRINT_BAD_DEVICE, bad)

    async def add_device(
        self, spec: DeviceSpec, source: Source, *, replace: bool = False
    ) -> Device:
        self.check_spec(spec)
        did = spec.id or secrets.token_hex(8)
        now = self.clock.now()
        old = self.devices.get(did)
        if old is not None and not replace:
            raise Conflict(Code.PRINT_DEVICE_EXISTS, f"Device {did!r} already exists.")
        device = Device(
            did,
            spec.name,
            spec.address,
            spec.station,
            spec.paper,
            source,
            old.date_created if old else now,
            status=DeviceStatus.UNKNOWN,
            status_date=now,
        )
        if old is not None and (old.address, old.name, old.station, old.paper, old.source) == (
            device.address,
            device.name,
            device.station,
            device.paper,
            device.source,
        ):
            return old
        await self.queue.commit([], [device], report=False)
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
            raise Conflict(
                Code.PRINT_DEVICE_CONFIGURED,
                f"Device {device_id!r} is configured in the settings file; change it there.",
            )
        spec = DeviceSpec(d.name, address, d.station, d.paper, d.id)
        moved = await self.add_device(spec, d.source, replace=True)
        self.hold_move(device_id, None)
        return self.devices.get(device_id, moved)

    async def remove_device(self, device_id: str) -> None:
        if self.device(device_id).source is Source.SETTINGS:
            # It would come back at the next start: say where it is managed instead.
            raise Conflict(
                Code.PRINT_DEVICE_CONFIGURED,
                f"Device {device_id!r} is configured in the settings file; remove it there.",
            )
        now = self.clock.now()
        dropped = [
            fail(r, ErrorCode.INCOMPATIBLE_DEVICE_STATE, "The device was removed.", now)
            for r in self.open.values()
            if r.device_id == device_id
        ]

        def job(conn: sqlite3.Connection) -> None:
            self.queue.write(conn, dropped, [], report=True)
            repo.remove_device(conn, device_id, now)

        def apply(_: None) -> None:
            self.queue.apply(dropped, [])
            self.devices.pop(device_id, None)

        await self._writer.run(job, apply)
        if (worker := self._workers.pop(device_id, None)) is not None:
            await worker.stop()

    # -- requests --------------------------------------------------------------------------

    async def submit(
        self,
        device_id: str,
        command: Command,
        data: object,
        *,
        deadline: float | None = None,
        reserved: str | None = None,
        report_url: str | None = None,
        station: str = "",
        order_uuid: str | None = None,
    ) -> PrintRequest:
        self.device(device_id)
        request = self.new_request(
            device_id,
            command,
            data,
            deadline=deadline,
            reserved=reserved,
            report_url=report_url,
            station=station,
            order_uuid=order_uuid,
        )
        await self.queue.commit([request], [], report=False)
        self.wake(device_id)
        return self.open.get(request.id, request)

    async def submit_to_station(
        self, station: str, command: Command, data: object, **kwargs: Any
    ) -> PrintRequest:
        return await self.submit(self.pick(station), command, data, station=station, **kwargs)

    def new_request(
        self,
        device_id: str,
        command: Command,
        data: object,
        *,
        deadline: float | None = None,
        reserved: str | None = None,
        report_url: str | None = None,
        station: str = "",
        order_uuid: str | None = None,
    ) -> PrintRequest:
        now = self.clock.now()
        if deadline is None:
            deadline = now + self.policy.default_deadline
        elif deadline <= now:
            raise ValidationFailed(Code.PRINT_BAD_DEADLINE, "deadline is in the past.")
        elif deadline > now + self.policy.max_deadline:
            raise ValidationFailed(Code.PRINT_BAD_DEADLINE, "deadline is more than 7 days away.")
        if reserved is not None and (len(reserved) > MAX_RESERVED or not reserved.isascii()):
            raise ValidationFailed(
                Code.PRINT_BAD_RESERVED, "reserved must be at most 60 ASCII characters."
            )
        if report_url is not None and (why := forbidden_reason(report_url, self.policy.allow)):
            raise ValidationFailed(Code.PRINT_BAD_REPORT_URL, f"reportUrl refused: {why}")
        data = check_data(command, data, lambda oid: self.find_order(oid) is not None)
        if order_uuid is None and isinstance(data, dict) and data.get("orderId"):
            order = self.find_order(data["orderId"])
            order_uuid = order.uuid if order else None
        enabled = bool(report_url or self.policy.report_url)
        return PrintRequest(
            secrets.token_hex(16),
            device_id,
            now,
            deadline,
            reserved,
            command,
            data,
            ProcessStatus.QUEUEING,
            now,
            Report(enabled, 0, ReportStatus.ARCHIVED, None),
            station,
            order_uuid,
            report_url,
        )

    async def request(self, device_id: str, request_id: str) -> PrintRequest:
        self.device(device_id)
        if (r := self.open.get(request_id)) is not None and r.device_id == device_id:
            return r
        found = await self._reader.run(lambda c: repo.load_request(c, device_id, request_id))
        if found is None:
            raise NotFound(
                Code.PRINT_REQUEST_NOT_FOUND,
                f"Request {request_id[:40]!r} not found on device {device_id!r}.",
            )
        return self.open.get(found.id, found)

    async def list_requests(
        self, device_id: str, limit: int, offset: int
    ) -> tuple[list[PrintRequest], int]:
        self.device(device_id)
        rows, total = await self._reader.run(
            lambda c: repo.page_requests(c, device_id, limit, offset)
        )
        # Memory is ahead of the file by the in-flight step (waiting-ack) only.
        return [self.open.get(r.id, r) for r in rows], total

    async def respond(
        self, device_id: str, request_id: str, accepted: object, minutes: object
    ) -> PrintRequest:
        """A worker's answer to an order ticket: output.data {accepted, time}."""
        if not isinstance(accepted, bool):
            raise ValidationFailed(Code.PRINT_BAD_RESPONSE, "accepted must be true or false.")
        if minutes is not None and (
            not isinstance(minutes, int) or isinstance(minutes, bool) or not 0 <= minutes <= 1440
        ):
            raise ValidationFailed(
                Code.PRINT_BAD_RESPONSE, "time must be an integer number of minutes from 0 to 1440."
            )
        if accepted and minutes is None:
            raise ValidationFailed(
                Code.PRINT_BAD_RESPONSE, "time (minutes) is required when accepting."
            )
        current = await self.request(device_id, request_id)
        if current.process_status is not ProcessStatus.WAITING_OUTPUT:
            raise Conflict(
                Code.PRINT_NOT_AWAITING,
                f"Request is {current.process_status.value}, not waiting for an answer.",
            )
        now = self.clock.now()
        done = current.evolve(
            process_status=ProcessStatus.ARCHIVED,
            process_status_date=now,
            output_data={"accepted": accepted, "time": minutes if accepted else None},
            date_received=now,
        )
        await self.queue.commit([done], self.queue.device_after([done]), report=True)
        return self.open.get(done.id, done)

    # -- stations --------------------------------------------------------------------------

    def station_devices(self, station: str) -> list[str]:
        return self.queue.station_devices(station)

    def pick(self, station: str, exclude: str | None = None) -> str:
        """The first usable device of the station, else its first device."""
        return self.queue.pick(station, exclude)

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
            station = (
                item.station if item.station and self.station_devices(item.station) else kitchen
            )
            groups.setdefault(station, []).append(
                {"title": item.title, "quantity": item.quantity, "notes": item.notes, "station": ""}
            )
        for station, items in (groups or {kitchen: []}).items():
            try:
                device_id = self.pick(station)
            except ValidationFailed:
                continue
            data = {
                "orderId": order.uuid,
                "number": order.name,
                "table": order.location,
                "type": order.order_type,
                "items": items,
                "needsAnswer": self.policy.kitchen_needs_answer,
            }
            request = self._ticket(device_id, data, station, order.uuid)
            self.queue.write(conn, [request], [], report=False)
            self._stash.setdefault(order.uuid, []).append(request)

    def _ticket(
        self, device_id: str, data: dict[str, Any], station: str, order_uuid: str
    ) -> PrintRequest:
        now = self.clock.now()
        return PrintRequest(
            secrets.token_hex(16),
            device_id,
            now,
            now + self.policy.default_deadline,
            None,
            Command.PRINT_ORDER,
            data,
            ProcessStatus.QUEUEING,
            now,
            Report(bool(self.policy.report_url), 0, ReportStatus.ARCHIVED, None),
            station,
            order_uuid,
        )

    def on_event(self, event: Event) -> None:
        """After the order committed: its ticket joins the queue."""
        if isinstance(event, OrderEvent) and (found := self._stash.pop(event.order.uuid, None)):
            for r in found:
                self.queue.index(r)
                self.wake(r.device_id)

    # -- reports (called by the outbox, on the writer thread) ------------------------------

    def report_hook(
        self,
        conn: sqlite3.Connection,
        ref: str,
        event: HookEvent,
        code: str | None,
        message: str | None,
        attempts: int,
    ) -> None:
        self._reports.hook(conn, ref, event, code, message, attempts)

    def apply_report_updates(self) -> None:
        self._reports.apply()

    # -- the workers ------------------------------------------------------------------------

    def wake(self, device_id: str) -> None:
        if (worker := self._workers.get(device_id)) is not None:
            worker.wake()

    async def _sweep_forever(self) -> None:
        while True:
            await self.clock.sleep(self.policy.sweep_interval)
            try:
                await self.sweep()
            except Exception:
                log.exception("print deadline sweep failed")

    async def sweep(self) -> None:
        """Requests past their deadline that no worker holds: archived with why."""
        now = self.clock.now()
        busy = {w.current for w in self._workers.values()}
        await self.queue.expire(
            [r for r in self.open.values() if r.deadline <= now and r.id not in busy], now
        )
