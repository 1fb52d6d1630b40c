"""Seams the services reach the outside world through (time, hardware)."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Wall-clock seconds since the epoch (what timestamps are made of)."""
        ...


class SystemClock:
    def now(self) -> float:
        return time.time()


class Pager(Protocol):
    """Makes a tracker vibrate. The radio issue supplies the real one."""

    def available(self) -> bool: ...

    def page(self, tracker: str, tracking: bool) -> None: ...

    def cancel(self, tracker: str) -> None: ...
