"""Live traffic first: while order changes are being made (one in the last `quiet` seconds),
all endpoints together send at most `busy_rate` requests per second; when the gateway is quiet
a backlog drains at full speed. Measured on the Clock's monotonic time: this shares the CPU
with the orders, so it is about elapsed time, not the wall clock."""

from __future__ import annotations

from gateway.core.ports import Clock


class Pacer:
    def __init__(self, clock: Clock, busy_rate: float | None, quiet: float) -> None:
        self._clock = clock
        self._rate = busy_rate if busy_rate is not None and busy_rate > 0 else None
        self._quiet = quiet
        self._busy_until = 0.0  # monotonic time until which order changes count as recent
        self._next_slot = 0.0  # the next free send time while busy

    def note_activity(self) -> None:
        """Live traffic now: a backlog yields to it for the next `quiet` seconds."""
        self._busy_until = self._clock.monotonic() + self._quiet

    @property
    def busy(self) -> bool:
        return self._rate is not None and self._clock.monotonic() < self._busy_until

    async def pace(self) -> None:
        """Wait for this request's slot, if live traffic is flowing."""
        if self._rate is None:
            return
        now = self._clock.monotonic()
        if now >= self._busy_until:
            return
        slot = max(self._next_slot, now)
        self._next_slot = slot + 1.0 / self._rate
        if slot > now:
            await self._clock.sleep(slot - now)
