"""ESC/POS status bytes: `DLE EOT n`, Automatic Status Back (`GS a`) and `GS r 1`.

Pure: bytes in, `PrinterStatus` out. The transport never trusts a reply it cannot classify, so
every parser either returns a value or raises `StatusParseError`; `ReplyDecoder` never raises.
Bit layouts follow Epson's ESC/POS reference; each reply kind carries fixed bits, which is what
tells a status byte apart from a stale or garbage one on a shared byte stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class PrinterError(Exception):
    """Root of the errors raised by the `printers` library."""


class StatusParseError(PrinterError, ValueError):
    """A status reply does not have the shape its command defines."""


def dle_eot(n: int) -> bytes:
    """`DLE EOT n`: a real-time status request, answered even while printing is stopped."""
    if n not in (1, 2, 3, 4):
        raise ValueError(f"DLE EOT n must be 1..4, not {n}")
    return bytes((0x10, 0x04, n))


# Sent together: the replies come back in order, one byte each.
DLE_EOT_ALL = b"".join(dle_eot(n) for n in (1, 2, 3, 4))
# Processed in order with print data, so its answer proves everything before it was processed.
GS_R_PAPER = b"\x1d\x72\x01"
ASB_PACKET_LEN = 4

# Fixed-bit masks: (byte & mask) == value identifies the reply kind.
_DLE_EOT_MASK, _DLE_EOT_VALUE = 0x93, 0x12  # 0xx1xx10
_ASB_HEAD_MASK, _ASB_HEAD_VALUE = 0x93, 0x10  # 0xx1xx00
_PLAIN_MASK = 0x90  # 0xx0xxxx: GS r replies and ASB bytes 2-4


class PrinterState(StrEnum):
    READY = "ready"
    PAPER_NEAR_END = "paper-near-end"
    PAPER_OUT = "paper-out"
    COVER_OPEN = "cover-open"
    OFFLINE = "offline"
    ERROR = "error"
    UNKNOWN = "unknown"


# States in which a printer holds print data instead of printing it.
BLOCKING_STATES = frozenset(
    {PrinterState.PAPER_OUT, PrinterState.COVER_OPEN, PrinterState.OFFLINE, PrinterState.ERROR}
)


@dataclass(frozen=True, slots=True)
class PrinterStatus:
    """What the printer reported. `None` fields were not reported (UNKNOWN, or GS r only)."""

    state: PrinterState
    online: bool | None = None
    cover_open: bool | None = None
    paper_near_end: bool | None = None
    paper_out: bool | None = None
    error: bool | None = None
    raw: bytes = b""

    @property
    def blocking(self) -> bool:
        return self.state in BLOCKING_STATES


UNKNOWN = PrinterStatus(PrinterState.UNKNOWN)


def _state(
    *, online: bool, cover_open: bool, near_end: bool, paper_out: bool, error: bool
) -> PrinterState:
    # The fault a person must fix first wins: a cover left open also reports paper and offline.
    if error:
        return PrinterState.ERROR
    if cover_open:
        return PrinterState.COVER_OPEN
    if paper_out:
        return PrinterState.PAPER_OUT
    if not online:
        return PrinterState.OFFLINE
    if near_end:
        return PrinterState.PAPER_NEAR_END
    return PrinterState.READY


def _status(
    raw: bytes, *, online: bool, cover_open: bool, near_end: bool, paper_out: bool, error: bool
) -> PrinterStatus:
    state = _state(
        online=online, cover_open=cover_open, near_end=near_end, paper_out=paper_out, error=error
    )
    return PrinterStatus(state, online, cover_open, near_end, paper_out, error, raw)


def is_dle_eot_reply(byte: int) -> bool:
    return byte & _DLE_EOT_MASK == _DLE_EOT_VALUE


def parse_dle_eot(replies: bytes) -> PrinterStatus:
    """The four one-byte replies to `DLE EOT 1`..`DLE EOT 4`, in that order."""
    if len(replies) != 4:
        raise StatusParseError(f"DLE EOT 1..4 needs 4 reply bytes, got {len(replies)}")
    if not all(is_dle_eot_reply(b) for b in replies):
        raise StatusParseError(f"not DLE EOT replies: {replies.hex(' ')}")
    printer, offline_cause, error_cause, paper = replies
    return _status(
        replies,
        online=not printer & 0x08,
        cover_open=bool(offline_cause & 0x04),
        near_end=bool(paper & 0x0C),
        paper_out=bool(paper & 0x60),
        # n=2 bit 6 (error occurred) and every n=3 cause: recoverable, cutter, unrecoverable,
        # auto-recoverable.
        error=bool(offline_cause & 0x40) or bool(error_cause & 0x6C),
    )


def is_asb_head(byte: int) -> bool:
    return byte & _ASB_HEAD_MASK == _ASB_HEAD_VALUE


def parse_asb(packet: bytes) -> PrinterStatus:
    """One 4-byte Automatic Status Back packet."""
    if len(packet) != ASB_PACKET_LEN:
        raise StatusParseError(f"ASB packets are 4 bytes, got {len(packet)}")
    first, second, third, fourth = packet
    if not is_asb_head(first) or any(b & _PLAIN_MASK for b in (second, third, fourth)):
        raise StatusParseError(f"not an ASB packet: {packet.hex(' ')}")
    return _status(
        packet,
        online=not first & 0x08,
        cover_open=bool(first & 0x20),
        near_end=bool(third & 0x03),
        paper_out=bool(third & 0x0C),
        error=bool(second & 0x6C),
    )


@dataclass(frozen=True, slots=True)
class PaperStatus:
    """The reply to `GS r 1`."""

    near_end: bool
    paper_out: bool

    def as_status(self) -> PrinterStatus:
        """Status after an acknowledged job: the printer was online and printing then."""
        return _status(
            bytes((self.raw_byte,)),
            online=True,
            cover_open=False,
            near_end=self.near_end,
            paper_out=self.paper_out,
            error=False,
        )

    @property
    def raw_byte(self) -> int:
        return (0x03 if self.near_end else 0) | (0x0C if self.paper_out else 0)


def is_gs_r_reply(byte: int) -> bool:
    return not byte & _PLAIN_MASK


def parse_gs_r1(reply: bytes) -> PaperStatus:
    if len(reply) != 1 or not is_gs_r_reply(reply[0]):
        raise StatusParseError(f"not a GS r 1 reply: {reply.hex(' ')}")
    return PaperStatus(near_end=bool(reply[0] & 0x03), paper_out=bool(reply[0] & 0x0C))


# --- splitting the byte stream a printer sends back --------------------------------------


@dataclass(frozen=True, slots=True)
class AsbReply:
    status: PrinterStatus


@dataclass(frozen=True, slots=True)
class DleEotReply:
    byte: int


@dataclass(frozen=True, slots=True)
class GsRReply:
    paper: PaperStatus


@dataclass(frozen=True, slots=True)
class Garbage:
    data: bytes


Reply = AsbReply | DleEotReply | GsRReply | Garbage


class ReplyDecoder:
    """Classifies the printer's byte stream by fixed bits; never raises.

    ASB packets arrive unasked, and their last three bytes look like `GS r` replies, so a packet
    head claims the next three bytes. A torn packet (a head followed by a byte that cannot belong
    to it) is reported as garbage and decoding restarts at the offending byte.
    """

    def __init__(self) -> None:
        self._asb = bytearray()

    def feed(self, data: bytes) -> list[Reply]:
        out: list[Reply] = []
        for byte in data:
            if self._asb:
                if byte & _PLAIN_MASK:
                    out.append(Garbage(bytes(self._asb)))
                    self._asb.clear()
                else:
                    self._asb.append(byte)
                    if len(self._asb) == ASB_PACKET_LEN:
                        out.append(AsbReply(parse_asb(bytes(self._asb))))
                        self._asb.clear()
                    continue
            if is_asb_head(byte):
                self._asb.append(byte)
            elif is_dle_eot_reply(byte):
                out.append(DleEotReply(byte))
            elif is_gs_r_reply(byte):
                out.append(GsRReply(parse_gs_r1(bytes((byte,)))))
            else:
                out.append(Garbage(bytes((byte,))))
        return out
