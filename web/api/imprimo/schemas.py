"""Wire shapes of the Imprimo dialect (seed 000) under /api/dev/ (documentation and tests only).

Names are the seed's, spelling included (`attemps`); times are whole Unix seconds. The
handlers render with `gateway.services.printing.imprimo_format`, the same functions the automatic
reports use; these models describe that output and forbid any key they do not name.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.core.printing import Command, DeviceStatus, ErrorCode, ProcessStatus, ReportStatus
from web.wire import Url, Wire

UnixTime = Annotated[int, Field(description="Unix time, whole seconds.", examples=[1478979511])]


def _absent(schema: dict[str, Any]) -> None:
    """Present (never null) or left out: no `default: null` in the document."""
    schema.pop("default", None)


DEVICE_ID = r"^[A-Za-z0-9_-]{1,16}$"
ADDRESS = (
    r"^(tcp://[^/\s]+(:[0-9]{1,5})?|virtual://[A-Za-z0-9_-]+"
    r"|serial:///dev/((ttyS|ttyUSB|ttyACM|ttyAMA|rfcomm)[0-9]{1,3}"
    r"|serial/by-(id|path)/[A-Za-z0-9][A-Za-z0-9:._+-]{0,200})(\?baud=[0-9]{3,7})?"
    r"|(usb|lp):///dev/(usb/lp|lp)[0-9]{1,3})$"
)


class Success(Wire):
    success: Literal[True]


class ImprimoError(Wire):
    """Every failure: an HTTP status of 400 or more and this body."""

    success: Literal[False]
    error: str = Field(description="What was wrong, precisely (names the property).")


# -- devices ----------------------------------------------------------------------------------


class ImprimoDevice(Wire):
    """A printer (seed 000 `Device`) plus three extensions: name, station, statusDetail."""

    id: str = Field(description="At most 16 ASCII characters.")
    dateCreated: UnixTime
    status: DeviceStatus | None = Field(description="null if unknown.")
    statusDate: int | None = Field(description="Unix time of the last status change.")
    isOnline: bool
    dateLastSeen: int | None = Field(description="Unix time the printer last answered.")
    password: str | None
    phoneNumber: str | None
    name: str = Field(description="Extension: the printer's name.")
    station: str = Field(description='Extension: the station it serves ("" = none).')
    statusDetail: str | None = Field(
        description="Extension: finer than `status`, e.g. cover-open, unreachable."
    )
    pendingAddress: str | SkipJsonSchema[None] = Field(
        None,
        json_schema_extra=_absent,
        description="Extension, present only when set: an address mDNS announced this printer "
        "at without the printer identity it was found with. The printer stays at its address "
        "until a manager confirms with POST .../address.",
    )


class DevicePage(Wire):
    next: str | None = Field(
        description="Path and query of the next page; null on the last page.",
        examples=["/api/dev/devices/?limit=100&offset=100"],
    )
    count: int = Field(ge=0, description="Devices in this page.")
    total: int = Field(ge=0, description="Extension: all devices.")
    items: list[ImprimoDevice]


class DeviceList(Success):
    devices: DevicePage


class DeviceResponse(Success):
    device: ImprimoDevice


class Deleted(Success):
    """Done; nothing else to say."""


class NewDevice(BaseModel):
    """Extension: register a printer. Loopback and link-local tcp hosts are refused unless
    the operator allow-listed them (`outbound_allow`)."""

    model_config = ConfigDict(extra="forbid")
    id: Annotated[str, Field(pattern=DEVICE_ID)] | SkipJsonSchema[None] = Field(
        None, description="Default: 16 random hex characters.", json_schema_extra=_absent
    )
    name: str = Field(min_length=1, max_length=64, examples=["Kitchen"])
    address: str = Field(
        pattern=ADDRESS,
        max_length=256,
        description="tcp://host:port (raw, port 9100 by default), "
        "serial:///dev/ttyUSB0?baud=9600 (also ttyS, ttyACM, ttyAMA, rfcomm and "
        "/dev/serial/by-id/...), usb:///dev/usb/lp0 (lp:// is the same; also /dev/lp0) or "
        "virtual://name (demo). Other device files are refused.",
        examples=["tcp://192.168.1.50:9100"],
    )
    station: str = Field("", max_length=32, description='The station it serves ("" = none).')
    paper: Literal["80mm", "58mm"] = "80mm"


class DeviceAddress(BaseModel):
    """Extension: the printer is now at this address (a manager confirms an mDNS move)."""

    model_config = ConfigDict(extra="forbid")
    address: str = Field(pattern=ADDRESS, max_length=256, examples=["tcp://192.168.1.51:9100"])


# -- print requests ---------------------------------------------------------------------------


class Process(Wire):
    status: ProcessStatus
    statusDate: UnixTime


class Input(Wire):
    command: Command
    data: Any = Field(description="As submitted, normalised (see `SubmitRequest.data`).")
    dateSent: int | None = Field(description="When the input was sent to the printer.")


class Output(Wire):
    data: Any = Field(
        description="print-order with an answer: {accepted, time (minutes)}; otherwise null."
    )
    dateReceived: int | None


class RequestFailure(Wire):
    processStatus: ProcessStatus = Field(description="The status when the error happened.")
    code: ErrorCode
    message: str | None
    dateCreated: UnixTime


class ReportFailure(Wire):
    code: ErrorCode
    message: str | None
    dateCreated: UnixTime


class ReportState(Wire):
    enabled: bool
    attemps: int = Field(ge=0, description="Sic (seed 000): report attempts so far.")
    status: ReportStatus
    statusDate: int | None
    error: ReportFailure | None


class ImprimoRequest(Wire):
    """A print request (seed 000 `Device Request`)."""

    id: str = Field(pattern=r"^[0-9a-f]{32}$")
    dateCreated: UnixTime
    deadline: UnixTime
    reserved: str | None
    process: Process
    input: Input
    output: Output
    error: RequestFailure | None
    report: ReportState


class RequestPage(Wire):
    next: str | None = Field(description="Path and query of the next page; null on the last.")
    count: int = Field(ge=0, description="Requests in this page.")
    total: int = Field(ge=0, description="Extension: all requests of the device.")
    items: list[ImprimoRequest]


class RequestList(Success):
    requests: RequestPage


class RequestResponse(Success):
    request: ImprimoRequest


DATA = """Depends on `command`:
- print-text (default): a non-empty string (at most 32768 characters).
- print-order: a string, or {orderId?, number?, table?, type?, items?: [{title, quantity?, \
notes?, station?}], needsAnswer?: bool (default true)}; orderId (an active gateway order) or \
number is required.
- print-receipt: {number?, lines: [{title, quantity?, unitPrice}], totals?: [{label, amount, \
emphasis?}], currency? (default EUR), minorDigits? (default 2), footer?}; money in minor units.
- open-drawer: null or {pin?: 2 | 5}."""


class SubmitRequest(BaseModel):
    """A print request. Other properties are refused (400)."""

    model_config = ConfigDict(extra="forbid")
    command: Command | Literal["print"] = Field(
        Command.PRINT_TEXT, description='Default "print-text"; "print" is the same.'
    )
    data: Any = Field(None, description=DATA, examples=["Text to print"])
    deadline: float | None = Field(
        None,
        description="Unix time (seconds, a number; not a string). Default: 5 minutes "
        "after creation; at most 7 days ahead. A request not done by then is archived with "
        "error `deadline`.",
        examples=[1478979898],
    )
    reserved: Annotated[str, Field(max_length=60, pattern=r"^[\x00-\x7f]*$")] | None = Field(
        None, description="At most 60 ASCII characters, kept for you."
    )
    reportUrl: Url | None = Field(
        None,
        description="Extension: where this request's automatic reports are POSTed "
        "(besides the gateway's `print_report_url`).",
    )


class OrderAnswer(BaseModel):
    """Extension: the restaurant worker's answer to an order ticket (a tablet sends it)."""

    model_config = ConfigDict(extra="forbid")
    accepted: bool
    time: Annotated[int, Field(ge=0, le=1440)] | None = Field(
        None, description="Minutes until ready; required when accepting."
    )


# -- preview (demo virtual printers) ----------------------------------------------------------


class Ticket(Wire):
    receivedAt: UnixTime
    text: str = Field(description="The ticket as plain text.")


class Preview(Success):
    """Extension: what a demo virtual printer printed, oldest first."""

    tickets: list[Ticket]


# -- parameters -------------------------------------------------------------------------------


class PageQuery(BaseModel):
    limit: int = Field(100, ge=1, description="Larger values are capped at 100.")
    offset: int = Field(0, ge=0, le=10**9)


DeviceId = Annotated[
    str, Field(min_length=1, description="The device's `id`.", examples=["abc12345"])
]
RequestId = Annotated[
    str,
    Field(
        min_length=1,
        description="The request's `id`.",
        examples=["90021daaa90f11e6956760e327002198"],
    ),
]
PATH_PARAMS: dict[str, Any] = {"device_id": DeviceId, "request_id": RequestId}
