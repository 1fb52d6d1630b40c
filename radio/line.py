"""The starter/clearer line protocol (docs/protocols.md, "Pads"): a pure codec.

One message per line: `BODY*XX\\r\\n`, where BODY is printable ASCII, fields separated by commas,
and XX the two upper-case hex digits of the XOR of BODY's bytes (as NMEA does). Lines longer
than MAX_LINE are refused, so a pad that babbles cannot grow a buffer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

MAX_LINE = 120
ADDRESS = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
_FIELD = re.compile(r"[\x20-\x7e]*")


class LineError(ValueError):
    """A line that is not a valid message (the cause says why)."""


class Role(Enum):
    STARTER_DINE_IN = "STARTER_DINE_IN"
    STARTER_TO_GO = "STARTER_TO_GO"
    CLEARER = "CLEARER"


@dataclass(frozen=True, slots=True)
class Hello:
    role: Role
    firmware: str
    serial: str


@dataclass(frozen=True, slots=True)
class TrackerPresent:
    tracker: int
    address: str  # the tracker's Bluetooth address, upper case AA:BB:CC:DD:EE:FF


@dataclass(frozen=True, slots=True)
class Heartbeat:
    uptime_s: int


@dataclass(frozen=True, slots=True)
class PairingMode:
    on: bool  # the pad's own switch was toggled


@dataclass(frozen=True, slots=True)
class Ack:
    command: str


PadMessage = Hello | TrackerPresent | Heartbeat | PairingMode | Ack


def checksum(body: str) -> str:
    x = 0
    for b in body.encode("ascii"):
        x ^= b
    return f"{x:02X}"


def frame(body: str) -> bytes:
    if not _FIELD.fullmatch(body) or "*" in body or len(body) + 5 > MAX_LINE:
        raise LineError("body must be printable ASCII without '*' and fit a line")
    return f"{body}*{checksum(body)}\r\n".encode("ascii")


def _int(text: str, lo: int, hi: int, what: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or not lo <= int(text) <= hi:
        raise LineError(f"{what} must be an integer {lo}..{hi}")
    return int(text)


def parse(line: bytes) -> PadMessage:
    """Parse one line (with or without its CR LF) from a pad."""
    raw = line.rstrip(b"\r\n")
    if len(raw) > MAX_LINE:
        raise LineError(f"line of {len(raw)} bytes (max {MAX_LINE})")
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise LineError("not ASCII") from None
    body, star, given = text.rpartition("*")
    if not star:
        raise LineError("no checksum")
    if "*" in body:
        raise LineError("'*' inside the body")
    if not _FIELD.fullmatch(body):
        raise LineError("control characters in line")
    if given.upper() != checksum(body) or len(given) != 2:
        raise LineError("checksum mismatch")
    kind, *fields = body.split(",")
    if kind == "HELLO" and len(fields) == 3:
        try:
            role = Role(fields[0])
        except ValueError:
            raise LineError(f"unknown role {fields[0][:20]!r}") from None
        return Hello(role, fields[1][:32], fields[2][:32])
    if kind == "TRK" and len(fields) == 2:
        address = fields[1].upper()
        if not ADDRESS.fullmatch(address):
            raise LineError("bad tracker address")
        return TrackerPresent(_int(fields[0], 1, 0xFFFF, "tracker"), address)
    if kind == "HB" and len(fields) == 1:
        return Heartbeat(_int(fields[0], 0, 2**32 - 1, "uptime"))
    if kind == "PAIR" and len(fields) == 1 and fields[0] in ("0", "1"):
        return PairingMode(fields[0] == "1")
    if kind == "ACK" and len(fields) == 1:
        return Ack(fields[0][:16])
    raise LineError(f"unknown message {kind[:16]!r} with {len(fields)} fields")


# Gateway -> pad commands.
def pairing_command(on: bool) -> bytes:
    return frame(f"PAIRMODE,{int(on)}")


def ping_command() -> bytes:
    return frame("PING")


def encode(message: PadMessage) -> bytes:
    """What a pad (or the simulator) sends; the inverse of `parse`."""
    if isinstance(message, Hello):
        return frame(f"HELLO,{message.role.value},{message.firmware},{message.serial}")
    if isinstance(message, TrackerPresent):
        return frame(f"TRK,{message.tracker},{message.address}")
    if isinstance(message, Heartbeat):
        return frame(f"HB,{message.uptime_s}")
    if isinstance(message, PairingMode):
        return frame(f"PAIR,{int(message.on)}")
    return frame(f"ACK,{message.command}")
