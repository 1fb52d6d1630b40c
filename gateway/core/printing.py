"""The printing aggregate of seed 000 (Imprimo): devices and their print requests.

Names and codes are the seed's, spelling included (`attemps`). Times are Unix seconds (floats
here; the dialect renders whole seconds).
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol
from urllib.parse import urlsplit

from gateway.core.netguard import host_problem


class DeviceStatus(StrEnum):
    UNKNOWN = "unknown"
    OUT_OF_PAPER = "out-of-paper"
    IDLE = "idle"
    PRINTING = "printing"
    WAITING_ORDER_RESPONSE = "waiting-order-response"


class ProcessStatus(StrEnum):
    QUEUEING = "queueing"
    SENDING_INPUT = "sending-input"
    WAITING_ACK = "waiting-ack"
    WAITING_OUTPUT = "waiting-output"
    ARCHIVED = "archived"


class ReportStatus(StrEnum):
    QUEUEING = "queueing"
    SENDING = "sending"
    ARCHIVED = "archived"


class ErrorCode(StrEnum):
    UNKNOWN = "unknown"
    NETWORK_TIMEOUT = "network-timeout"
    INCOMPATIBLE_DEVICE_STATE = "incompatible-device-state"
    INVALID_URL = "invalid-url"
    MAX_RETRIES = "max-retries"
    DEADLINE = "deadline"


class Command(StrEnum):
    PRINT_TEXT = "print-text"
    PRINT_ORDER = "print-order"
    PRINT_RECEIPT = "print-receipt"
    OPEN_DRAWER = "open-drawer"


SERIAL_QUERY = re.compile(r"(baud=[0-9]{3,7})?")
ADDRESS_SCHEMES = ("tcp://", "serial://", "usb://", "lp://", "virtual://")


class Source(StrEnum):
    SETTINGS = "settings"
    API = "api"
    MDNS = "mdns"
    DEMO = "demo"


@dataclass(frozen=True, slots=True)
class Device:
    id: str  # at most 16 ASCII characters (seed 000, Imprimo)
    name: str
    address: str  # tcp://host:port, serial:///dev/ttyUSB0?baud=9600, usb://04b8:0202, virtual://
    station: str
    paper: str  # "80mm" | "58mm"
    source: Source
    date_created: float
    status: DeviceStatus | None = None
    status_detail: str = ""  # e.g. "cover-open", "unreachable": finer than the seed's codes
    status_date: float | None = None
    is_online: bool = False
    date_last_seen: float | None = None
    password: str | None = None
    phone_number: str | None = None
    # An mDNS announcement put this printer elsewhere without proving it is the same printer:
    # held until a manager confirms (not stored; the next announcement brings it back).
    pending_address: str | None = None

    def evolve(self, **changes: Any) -> Device:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class RequestError:
    process_status: ProcessStatus
    code: ErrorCode
    message: str | None
    date_created: float


@dataclass(frozen=True, slots=True)
class ReportError:
    code: ErrorCode
    message: str | None
    date_created: float


@dataclass(frozen=True, slots=True)
class Report:
    enabled: bool
    attempts: int = 0  # rendered as `attemps`
    status: ReportStatus = ReportStatus.ARCHIVED
    status_date: float | None = None
    error: ReportError | None = None


@dataclass(frozen=True, slots=True)
class PrintRequest:
    id: str  # 32 hex characters
    device_id: str
    date_created: float
    deadline: float
    reserved: str | None
    command: Command
    data: Any  # JSON value; its shape depends on the command (docs/api.md)
    process_status: ProcessStatus
    process_status_date: float
    report: Report
    station: str = ""  # set when the gateway routed it by station (fallback may move it)
    order_uuid: str | None = None
    report_url: str | None = None
    date_sent: float | None = None
    output_data: Any = None
    date_received: float | None = None
    error: RequestError | None = None
    attempts: int = 0  # sends to the printer so far (same id every time)
    delivered_once: bool = False  # bytes reached a printer at least once: a resend is a reprint

    def evolve(self, **changes: Any) -> PrintRequest:
        return dataclasses.replace(self, **changes)

    @property
    def archived(self) -> bool:
        return self.process_status is ProcessStatus.ARCHIVED

    @property
    def needs_answer(self) -> bool:
        if self.command is not Command.PRINT_ORDER:
            return False
        return not (isinstance(self.data, dict) and self.data.get("needsAnswer") is False)


# -- what a printer description may say ---------------------------------------------


def device_spec_problem(
    device_id: str | None, name: str, address: str, station: str, paper: str, allow: frozenset[str]
) -> str | None:
    """None when a printer description is acceptable, else why not (one line)."""
    if device_id is not None and not (
        0 < len(device_id) <= 16
        and device_id.isascii()
        and device_id.replace("-", "").replace("_", "").isalnum()
    ):
        return "id must be 1-16 ASCII letters, digits, '-' or '_'."
    if not (0 < len(name) <= 64) or not name.isprintable():
        return "name must be 1-64 printable characters."
    if len(station) > 32 or not station.isprintable():
        return "station must be at most 32 printable characters."
    if paper not in ("80mm", "58mm"):
        return "paper must be 80mm or 58mm."
    if not address.startswith(ADDRESS_SCHEMES) or len(address) > 256:
        return "address must start with tcp://, serial://, usb://, lp:// or virtual://."
    if address.startswith("tcp://"):
        try:
            host, port = tcp_host_port(address)
        except ValueError:
            return "address must be tcp://host:port."
        # A printer address is an outbound target like a webhook URL: no loopback/metadata.
        # Judged as the link will read it (tcp_host_port), in every spelling it may take.
        if why := host_problem(host, port, allow):
            return f"address refused: {why}"
    if address.startswith("serial://") and not SERIAL_QUERY.fullmatch(address.partition("?")[2]):
        # app_printing.make_link reads `baud` with int(): anything else would fail there.
        return "address must be serial:///dev/<port> with an optional ?baud=<integer>."
    return None


def tcp_host_port(address: str) -> tuple[str, int]:
    """Host and port of a tcp://host[:port] address (9100 by default), read one way for the
    check and for the connection; ValueError when it is not one."""
    parts = urlsplit(address)
    rest = address[len("tcp://") :]
    if (
        parts.scheme != "tcp"
        or not parts.hostname
        or not rest
        or "/" in rest
        or "@" in rest
        or parts.query
        or parts.fragment
    ):
        raise ValueError("not tcp://host:port")
    port = parts.port  # ValueError when out of range or not a number
    if port == 0:
        raise ValueError("port 0")
    return parts.hostname, port or 9100


# -- the hardware seam ---------------------------------------------------------------------


class Paper(StrEnum):
    OK = "ok"
    NEAR_END = "near-end"
    OUT = "out"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Health:
    """What a printer said about itself; `known=False` when it said nothing usable."""

    known: bool
    online: bool = True
    paper: Paper = Paper.UNKNOWN
    cover_open: bool = False
    error: bool = False

    @property
    def blocking(self) -> bool:
        return self.known and (
            self.paper is Paper.OUT or self.cover_open or self.error or not self.online
        )


HEALTH_UNKNOWN = Health(known=False)


class SendOutcome(StrEnum):
    PRINTED = "printed"  # the printer acknowledged having processed the whole job
    HELD = "held"  # it has the data and a blocking fault: wait, never resend
    UNCONFIRMED = "unconfirmed"  # all bytes delivered, no acknowledgement, no fault reported
    INTERRUPTED = "interrupted"  # the link broke before the acknowledgement: resend, same id
    UNREACHABLE = "unreachable"  # nothing was sent


@dataclass(slots=True)
class Attempt:
    outcome: SendOutcome
    bytes_delivered: int
    health: Health
    detail: str = ""
    # HELD / UNCONFIRMED: the job is still open on the printer; `wait` for its acknowledgement.
    pending: PendingJob | None = field(default=None)


class PendingJob(Protocol):
    async def wait(self, ack_timeout: float) -> Attempt: ...

    async def health(self) -> Health: ...

    async def close(self) -> None: ...


class PrinterLink(Protocol):
    """One physical printer, one call at a time (the worker serialises)."""

    async def print_job(self, payload: bytes, ack_timeout: float) -> Attempt: ...

    async def health(self) -> Health:
        """Raises ConnectionError when the printer cannot be reached."""
        ...

    async def close(self) -> None: ...
