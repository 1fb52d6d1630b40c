"""Alarms the gateway raises about itself: kept while active, published when raised/cleared."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.core.events import AlarmEvent, AlarmEventType, Bus
from gateway.core.ports import Clock

DATABASE_MISSING = "database-missing"


@dataclass(frozen=True, slots=True)
class Alarm:
    name: str
    since: float
    detail: str


class Alarms:
    def __init__(self, bus: Bus, clock: Clock) -> None:
        self._bus = bus
        self._clock = clock
        self._active: dict[str, Alarm] = {}

    def raise_alarm(self, name: str, detail: str) -> None:
        if name in self._active:
            return
        now = self._clock.now()
        self._active[name] = Alarm(name, now, detail)
        self._bus.publish(AlarmEvent(AlarmEventType.GATEWAY_ALARM, now, name, detail))

    def clear(self, name: str) -> None:
        alarm = self._active.pop(name, None)
        if alarm is not None:
            self._bus.publish(
                AlarmEvent(
                    AlarmEventType.GATEWAY_ALARM_CLEARED, self._clock.now(), name, alarm.detail
                )
            )

    def active(self) -> list[Alarm]:
        return list(self._active.values())
