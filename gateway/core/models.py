"""The canonical order model. Every dialect renders this one object its own way."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


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


class ItemStatus(StrEnum):
    """A dish's way through the kitchen (ARCHITECTURE.md §3 maps it to each dialect)."""

    REGISTERED = "registered"
    PRODUCING = "producing"
    PRODUCED = "produced"
    PACKED = "packed"
    SHIPPED = "shipped"
    ERROR = "error"
    CANCELED = "canceled"


# Forward only, except that an item in error can be produced again (its delay passed).
ITEM_RANK = {
    ItemStatus.REGISTERED: 0,
    ItemStatus.PRODUCING: 1,
    ItemStatus.PRODUCED: 2,
    ItemStatus.PACKED: 3,
    ItemStatus.SHIPPED: 4,
}
ITEM_FINAL = frozenset({ItemStatus.SHIPPED, ItemStatus.CANCELED})


@dataclass(frozen=True, slots=True)
class Item:
    """One line of an order. `price` is in minor units (cents): no float rounding on money."""

    id: str  # stable reference for signals: "<order number>-<position>"
    position: int
    title: str
    quantity: int = 1
    product_code: str = ""
    price: int | None = None
    notes: str = ""
    station: str = ""
    status: ItemStatus = ItemStatus.REGISTERED
    status_changed: float = 0.0
    cause: str = ""  # error / canceled: why
    delay: int | None = None  # error: expected delay in minutes
    message: str = ""  # canceled: free text
    extra: dict[str, Any] = field(default_factory=dict, hash=False)  # dialect-only, verbatim

    def evolve(self, **changes: object) -> Item:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def can_move_to(self, status: ItemStatus) -> bool:
        if self.status in ITEM_FINAL:
            return False
        if status in (ItemStatus.ERROR, ItemStatus.CANCELED):
            return True
        if self.status is ItemStatus.ERROR:
            return status is not ItemStatus.REGISTERED
        return ITEM_RANK[status] > ITEM_RANK[self.status]


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
    # Below: what integrations add. `number` is the gateway-wide numeric id (Imprinted `id`,
    # Print API `id`), given at creation; `name` stays the number on the tracker/ticket.
    number: int = 0
    items: tuple[Item, ...] = ()
    source: str = ""  # who created it: "pos", "tracker", "imprinted:<AppId>", ...
    external_id: str = ""
    cancelled: bool = False  # cleared because it was cancelled, not served
    extra: dict[str, Any] = field(default_factory=dict, hash=False)  # dialect-only, verbatim

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
