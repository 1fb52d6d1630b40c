"""Seams the services reach the outside world through (time, hardware)."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from gateway.core.models import Receiver


class Clock(Protocol):
    """Time as the services see it: tests pass a fake that moves when they say so."""

    def now(self) -> float:
        """Wall-clock seconds since the epoch (what timestamps are made of)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps (what intervals and windows are measured on)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` of this clock's time."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Pager(Protocol):
    """Makes a tracker vibrate (a GATT write on the box, the simulator in demo mode)."""

    def available(self) -> bool: ...

    async def page(self, address: str, duration_s: int) -> None: ...

    async def stop(self, address: str) -> None: ...


class Receivers(Protocol):
    """What the radio side can say about its receivers, for /api/v2/repeaters."""

    def receivers(self) -> list[Receiver]: ...
