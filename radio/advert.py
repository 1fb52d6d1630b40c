"""The open tracker advertisement (docs/protocols.md, "Tracker BLE profile"): a pure codec.

A tracker puts 8 bytes (layout version 1) in its manufacturer-specific data under company id
0xFFFF, the id the Bluetooth SIG reserves for tests and unassigned use, until the project has one
of its own. Bytes appended after the version-1 layout are ignored, so later layouts can grow.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum, IntFlag

COMPANY_ID = 0xFFFF
LAYOUT_VERSION = 1
_V1 = struct.Struct("<BHHBBB")  # version, tracker, table, battery, flags, counter
V1_LENGTH = _V1.size  # 8
BATTERY_UNKNOWN = 255


class AdvertError(ValueError):
    """Bytes that are not a tracker advertisement we understand (the cause says why)."""


class Flags(IntFlag):
    NONE = 0
    ON_CHARGER = 0x01
    ON_STARTER = 0x02
    MOVING = 0x04
    BUTTON = 0x08
    VIBRATING = 0x10


KNOWN_FLAGS = Flags.ON_CHARGER | Flags.ON_STARTER | Flags.MOVING | Flags.BUTTON | Flags.VIBRATING
# Building an IntFlag costs more than the rest of decode: look the 32 valid values up instead.
_FLAG_VALUES = tuple(Flags(v) for v in range(int(KNOWN_FLAGS) + 1))


@dataclass(frozen=True, slots=True)
class TrackerAdvert:
    tracker: int  # the number printed on the puck, 1..65535
    table: int  # the table tag under it, 0 = none
    battery: int | None  # percent, None when the tracker does not know
    flags: Flags
    counter: int  # rolling 0..255: a new value means a new reading, the same value a repeat

    @property
    def on_charger(self) -> bool:
        return Flags.ON_CHARGER in self.flags


def decode(payload: bytes) -> TrackerAdvert:
    """Decode the manufacturer data *after* the company id (bleak's dict value)."""
    if len(payload) < 1:
        raise AdvertError("empty payload")
    if payload[0] != LAYOUT_VERSION:
        raise AdvertError(f"unknown layout version {payload[0]}")
    if len(payload) < V1_LENGTH:
        raise AdvertError(f"payload of {len(payload)} bytes, layout 1 needs {V1_LENGTH}")
    _, tracker, table, battery, flags, counter = _V1.unpack_from(payload)
    if tracker == 0:
        raise AdvertError("tracker number 0")
    if battery > 100 and battery != BATTERY_UNKNOWN:
        raise AdvertError(f"battery {battery} % out of range")
    if flags & ~int(KNOWN_FLAGS):
        raise AdvertError(f"reserved flag bits set: 0x{flags:02x}")
    return TrackerAdvert(
        tracker=tracker,
        table=table,
        battery=None if battery == BATTERY_UNKNOWN else battery,
        flags=_FLAG_VALUES[flags],
        counter=counter,
    )


def encode(advert: TrackerAdvert) -> bytes:
    """What a tracker (or the simulator) sends; the inverse of `decode`."""
    if not 1 <= advert.tracker <= 0xFFFF or not 0 <= advert.table <= 0xFFFF:
        raise AdvertError("tracker must be 1..65535 and table 0..65535")
    if int(advert.flags) & ~int(KNOWN_FLAGS):
        raise AdvertError(f"reserved flag bits set: 0x{int(advert.flags):02x}")
    battery = BATTERY_UNKNOWN if advert.battery is None else advert.battery
    if not 0 <= battery <= 100 and battery != BATTERY_UNKNOWN:
        raise AdvertError("battery must be 0..100 or unknown")
    return _V1.pack(
        LAYOUT_VERSION,
        advert.tracker,
        advert.table,
        battery,
        int(advert.flags),
        advert.counter & 0xFF,
    )


# GATT paging (docs/protocols.md, "Paging"): one service, one write characteristic.
PAGING_SERVICE_UUID = "7a6b0001-5467-4f70-656e-547261636b72"
PAGE_CHARACTERISTIC_UUID = "7a6b0002-5467-4f70-656e-547261636b72"


class Pattern(IntEnum):
    CONTINUOUS = 0
    SHORT_PULSES = 1
    LONG_PULSES = 2


def page_command(
    pattern: int = Pattern.SHORT_PULSES, duration_s: int = 60, stop: bool = False
) -> bytes:
    """The 3-byte write: command (1 page, 0 stop), pattern, duration in seconds (0 = until
    stopped)."""
    if not 0 <= duration_s <= 255 or not 0 <= int(pattern) <= 2:
        raise AdvertError("duration 0..255 s, pattern 0..2")
    return bytes((0 if stop else 1, 0 if stop else int(pattern), 0 if stop else duration_s))
