"""Facts the gateway publishes after they are committed, and the bus that fans them out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.models import Order, Tracker

log = logging.getLogger(__name__)


class OrderEventType(StrEnum):
    NEW_ORDER = "NEW_ORDER"
    ORDER_MODIFIED = "ORDER_MODIFIED"
    ORDER_PAGED = "ORDER_PAGED"
    ORDER_CLEARED = "ORDER_CLEARED"
    ITEM_STATUS = "ITEM_STATUS"  # an item moved; the table-tracker feed shows ORDER_MODIFIED


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One journal entry: `seq` is gap-free and increasing across the gateway's life."""

    seq: int
    type: OrderEventType
    ts: float
    order: Order


class TrackerEventType(StrEnum):
    TRACKER_PAIRED = "TRACKER_PAIRED"
    TRACKER_RENAMED = "TRACKER_RENAMED"
    TRACKER_FORGOTTEN = "TRACKER_FORGOTTEN"
    TRACKER_INVENTORY_CLEARED = "TRACKER_INVENTORY_CLEARED"
    TRACKER_BATTERY_LOW = "TRACKER_BATTERY_LOW"
    TRACKER_OFFLINE = "TRACKER_OFFLINE"
    TRACKER_ONLINE = "TRACKER_ONLINE"
    TRACKER_UNKNOWN = "TRACKER_UNKNOWN"
    PAIRING_STARTED = "PAIRING_STARTED"
    PAIRING_ENDED = "PAIRING_ENDED"


@dataclass(frozen=True, slots=True)
class TrackerEvent:
    """A radio fact. Not journaled: it describes hardware now, not an order's history."""

    type: TrackerEventType
    ts: float
    tracker: Tracker | None = None
    detail: str = ""


class AlarmEventType(StrEnum):
    GATEWAY_ALARM = "GATEWAY_ALARM"
    GATEWAY_ALARM_CLEARED = "GATEWAY_ALARM_CLEARED"


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    """The gateway itself needs a person (e.g. its database file vanished). Not journaled."""

    type: AlarmEventType
    ts: float
    alarm: str  # a stable name, e.g. "database-missing"
    detail: str = ""


Event = OrderEvent | TrackerEvent | AlarmEvent
Listener = Callable[[Event], None]


class Bus:
    """Synchronous fan-out. Listeners must not block; slow work belongs in a task."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self.last_seq = 0

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @property
    def listener_count(self) -> int:
        return len(self._listeners)

    def publish(self, event: Event) -> None:
        if isinstance(event, OrderEvent):
            self.last_seq = event.seq
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on %s", listener, event.type)
