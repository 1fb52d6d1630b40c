"""Facts the gateway publishes after they are committed, and the bus that fans them out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from gateway.core.models import Order

log = logging.getLogger(__name__)


class OrderEventType(StrEnum):
    NEW_ORDER = "NEW_ORDER"
    ORDER_MODIFIED = "ORDER_MODIFIED"
    ORDER_PAGED = "ORDER_PAGED"
    ORDER_CLEARED = "ORDER_CLEARED"


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One journal entry: `seq` is gap-free and increasing across the gateway's life."""

    seq: int
    type: OrderEventType
    ts: float
    order: Order


Listener = Callable[[OrderEvent], None]


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

    def publish(self, event: OrderEvent) -> None:
        self.last_seq = event.seq
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener %r failed on seq %d", listener, event.seq)
