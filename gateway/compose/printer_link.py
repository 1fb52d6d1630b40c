"""The printing step's adapter: plugs the `printers` library into the printing service.

Addresses name the transport: tcp://host:9100, serial:///dev/ttyUSB0?baud=9600,
usb:///dev/usb/lp0 (the kernel's usblp device; lp:// is the same), virtual://<name> (the
in-process demo printer, reached over real TCP like any network printer).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Protocol
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

from gateway.core.models import Order
from gateway.core.netguard import ConnectGuard
from gateway.core.printing import (
    Attempt,
    Command,
    Device,
    Health,
    Paper,
    PrinterLink,
    PrintRequest,
    SendOutcome,
    tcp_host_port,
)
from printers.render import PAPER_58MM, PAPER_80MM
from printers.status import PrinterState, PrinterStatus
from printers.tickets import (
    Item,
    KitchenTicket,
    Receipt,
    ReceiptLine,
    Total,
    open_drawer_bytes,
    render_kitchen_ticket,
    render_receipt,
    render_text,
)
from printers.transport import (
    JobOutcome,
    JobResult,
    PendingAck,
    PrinterUnreachable,
    Resolve,
    TcpPrinter,
)

log = logging.getLogger(__name__)


def to_health(status: PrinterStatus) -> Health:
    if status.state is PrinterState.UNKNOWN:
        return Health(known=False)
    paper = (
        Paper.OUT
        if status.paper_out
        else (
            Paper.NEAR_END
            if status.paper_near_end
            else (
                Paper.OK
                if status.paper_out is not None or status.paper_near_end is not None
                else Paper.UNKNOWN
            )
        )
    )
    if status.state is PrinterState.PAPER_OUT:
        paper = Paper.OUT
    return Health(
        known=True,
        online=status.online is not False,
        paper=paper,
        cover_open=bool(status.cover_open),
        error=bool(status.error),
    )


class _Pending:
    def __init__(self, pending: PendingAck) -> None:
        self._pending = pending

    async def wait(self, ack_timeout: float) -> Attempt:
        return to_attempt(await self._pending.wait(ack_timeout))

    async def health(self) -> Health:
        return to_health(await self._pending.query_status())

    async def close(self) -> None:
        await self._pending.close()


def to_attempt(result: JobResult) -> Attempt:
    pending = _Pending(result.pending) if result.pending is not None else None
    return Attempt(
        SendOutcome(result.outcome.value),
        result.bytes_delivered,
        to_health(result.status),
        result.detail,
        pending,
    )


class _Printer(Protocol):
    async def print_job(self, data: bytes, *, ack_timeout: float = ...) -> JobResult: ...

    async def query_status(self) -> PrinterStatus: ...


class Link:
    """A printers-library transport seen through the service's PrinterLink port."""

    def __init__(self, printer: _Printer) -> None:
        self.printer = printer

    async def print_job(self, payload: bytes, ack_timeout: float) -> Attempt:
        return to_attempt(await self.printer.print_job(payload, ack_timeout=ack_timeout))

    async def health(self) -> Health:
        try:
            return to_health(await self.printer.query_status())
        except PrinterUnreachable as exc:
            raise ConnectionError(str(exc)) from exc

    async def close(self) -> None:
        return None


class _Unusable:
    """A device whose address cannot be served here (e.g. a serial port library missing)."""

    def __init__(self, why: str) -> None:
        self.why = why

    async def print_job(self, payload: bytes, ack_timeout: float) -> Attempt:
        return Attempt(SendOutcome.UNREACHABLE, 0, Health(known=False), self.why)

    async def health(self) -> Health:
        raise ConnectionError(self.why)

    async def close(self) -> None:
        return None


def make_link(device: Device, virtual: dict[str, tuple[str, int]], resolve: Resolve) -> PrinterLink:
    """`resolve` judges where a tcp:// printer's name leads at every connect (netguard's
    ConnectGuard: the policy webhooks get); virtual printers are ours and dialled directly."""
    parts = urlsplit(device.address)
    if parts.scheme == "tcp":
        try:
            host, port = tcp_host_port(device.address)
        except ValueError as exc:
            return _Unusable(f"unusable address {device.address!r}: {exc}")
        return Link(TcpPrinter(host, port, resolve=resolve))
    if parts.scheme == "virtual":
        name = parts.netloc or parts.path.strip("/")
        if name not in virtual:
            return _Unusable(f"no virtual printer named {name!r} runs here")
        host, port = virtual[name]
        return Link(TcpPrinter(host, port))
    if parts.scheme == "serial":
        from printers.serial_transport import SerialPrinter

        baud = int(parse_qs(parts.query).get("baud", ["9600"])[0])
        return Link(SerialPrinter(parts.path, baud))
    if parts.scheme in ("usb", "lp"):
        from printers.serial_transport import LpPrinter

        return Link(LpPrinter(parts.path))
    return _Unusable(f"unsupported address {device.address!r}")


class PrinterLinks:
    """The printing service's `links`: a device address to a transport. The printing step
    registers its demo printers in `virtual` (name -> host, port) before workers start."""

    def __init__(self, allow: frozenset[str]) -> None:
        self.allow = allow
        self.virtual: dict[str, tuple[str, int]] = {}

    def link(self, device: Device) -> PrinterLink:
        return make_link(device, self.virtual, ConnectGuard(self.allow))


class TicketRenderer:
    """Requests into ESC/POS with the printers library's layouts."""

    def __init__(self, tz: ZoneInfo, logo: bytes | None = None) -> None:
        self.tz = tz
        self.logo = logo

    def render(
        self, request: PrintRequest, device: Device, order: Order | None, reprint: bool
    ) -> bytes:
        paper = PAPER_58MM if device.paper == "58mm" else PAPER_80MM
        banner = "REPRINT" if reprint else ""
        data = request.data
        if request.command is Command.PRINT_TEXT:
            return render_text(str(data), paper, banner)
        if request.command is Command.OPEN_DRAWER:
            pin = data.get("pin", 2) if isinstance(data, dict) else 2
            return open_drawer_bytes(paper, pin)
        if request.command is Command.PRINT_RECEIPT:
            return render_receipt(
                Receipt(
                    order_number=data.get("number") or "",
                    lines=[
                        ReceiptLine(x["title"], x["quantity"], x["unitPrice"])
                        for x in data["lines"]
                    ],
                    totals=[Total(t["label"], t["amount"], t["emphasis"]) for t in data["totals"]],
                    currency=data["currency"],
                    footer=data["footer"],
                    minor_digits=data["minorDigits"],
                    banner=banner,
                ),
                paper,
            )
        if isinstance(data, str):
            ref = (
                f"\n\nRef {request.id[-6:]}: accept or refuse on the tablet."
                if request.needs_answer
                else ""
            )
            return render_text(data + ref, paper, banner)
        created = dt.datetime.fromtimestamp(
            order.created if order else request.date_created, self.tz
        ).strftime("%H:%M")
        table = (order.location if order and order.location else data.get("table")) or "-"
        kind = _kind(order.order_type if order else data.get("type", ""))
        if request.needs_answer:
            kind += f"  ref {request.id[-6:]}"
        return render_kitchen_ticket(
            KitchenTicket(
                order_number=(order.name if order else data.get("number")) or "?",
                table=table,
                order_type=kind,
                created=created,
                items=[
                    Item(i["title"], i["quantity"], i["notes"], i["station"])
                    for i in data.get("items", [])
                ],
                order_id=data.get("orderId", ""),
                logo=self.logo,
                banner=banner,
            ),
            paper,
        )


def _kind(order_type: str) -> str:
    return {"TO_GO": "takeaway", "ON_PREMISES": "dine-in", "ON_PREMISE": "dine-in"}.get(
        order_type, order_type.lower()
    )


__all__ = [
    "JobOutcome",
    "Link",
    "PrinterLinks",
    "TicketRenderer",
    "make_link",
    "to_attempt",
    "to_health",
]
