"""The canonical order model. Every dialect renders this one object its own way."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum


class OrderState(StrEnum):
    STARTED = "started"
    LOCATED = "located"
    CLEARED = "cleared"


class ClearReason(StrEnum):
    TRACKER = "TRACKER"
    MANAGER_OVERRIDE = "MANAGER_OVERRIDE"
    AUTOMATIC = "AUTOMATIC"


# Both spellings are valid (seed 004); the order keeps the one its client sent.
ORDER_TYPES = frozenset({"ON_PREMISE", "ON_PREMISES", "TO_GO"})
DUMMY_TRACKER_PREFIX = "dummy:"


def same_order_type(a: str, b: str) -> bool:
    return a == b or {a, b} == {"ON_PREMISE", "ON_PREMISES"}


@dataclass(frozen=True, slots=True)
class Order:
    uuid: str
    name: str
    order_type: str
    location: str
    state: OrderState
    created: float
    state_changed: float
    paged: bool = False
    tracking: bool = False
    tracker: str | None = None
    located_at: float | None = None
    cleared_at: float | None = None
    clear_reason: ClearReason | None = None

    def evolve(self, **changes: object) -> Order:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    @property
    def active(self) -> bool:
        return self.state is not OrderState.CLEARED

    @property
    def time_to_sit(self) -> int | None:
        return None if self.located_at is None else int(self.located_at - self.created)

    @property
    def delivery_time(self) -> int | None:
        return None if self.cleared_at is None else int(self.cleared_at - self.created)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    name: str
    created: float
    last_used: float | None
    ip_address: str | None


@dataclass(frozen=True, slots=True)
class WebhookClient:
    id: int
    url: str
    api_version: str
    created: float


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    offset: int = 0
    limit: int = 25
    created_after: float | None = None
    created_before: float | None = None
    order_type: Sequence[str] | None = None
    location_name: str | None = None


@dataclass(frozen=True, slots=True)
class Tracker:
    """A paired tracker: the printed number and the Bluetooth address that carries it."""

    number: int
    address: str
    paired_at: float
    battery: int | None = None
    last_seen: float | None = None


@dataclass(frozen=True, slots=True)
class TrackerReading:
    """One new reading from a tracker's advertisement, in the gateway's own terms."""

    address: str
    number: int
    table: int
    battery: int | None
    on_charger: bool = False
    on_starter: bool = False
    moving: bool = False
    button: bool = False
    vibrating: bool = False


@dataclass(frozen=True, slots=True)
class Receiver:
    """A radio receiver the gateway listens through (adapter, pad, simulator)."""

    id: str
    kind: str
    status: str
    detail: str = ""
    last_seen: float | None = None
