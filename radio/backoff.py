"""The one retry policy of the radio: capped exponential backoff with jitter.

Every retry loop in `radio/` waits `next()` seconds between attempts and calls `reset()` once
what it retries works again: the scanner restarting after silence or waiting for an adapter,
a pad's serial link reconnecting, a page retried over GATT.

The contract, for the n-th call of `next()` since the last `reset()` (n = 0, 1, 2, ...):

    base(n) = min(cap, first * factor ** n)
    next()  lies in [base(n) * (1 - jitter), base(n)], drawn uniformly

so every delay lies in [`shortest`, `longest`] = [first * (1 - jitter), cap], and with
jitter = 0 the delays are exactly first, first * factor, ..., cap, cap, ...

Jitter only shortens a wait, for two reasons. The cap is a promise: a log line saying
"retrying every 0.375..30 s" holds, and an operator who plugs a device back in waits at most
`cap`. And the spread survives at the cap: jitter both ways and a clamp at the cap would put
half the draws on exactly `cap`, bringing pads unplugged together (one USB hub) back into
lockstep just when they have been down longest.

Learnt from aioesphomeapi's reconnect logic (capped exponential growth, randomised waits, the
count of tries reset once a connection is established); the formula here is our own.
"""

from __future__ import annotations

import math
import random

__all__ = ["JITTER", "Backoff"]

JITTER = 0.25  # the radio's default: waits between 75 % and 100 % of the exponential step

# One generator for every policy that is not given its own: seeded from the OS, so two
# gateways (or two pads) do not draw the same waits.
_SHARED = random.Random()


class Backoff:
    """Capped, jittered, exponential delays; see the module docstring for the exact contract."""

    __slots__ = ("_base", "_rng", "attempts", "cap", "factor", "first", "jitter")

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        factor: float = 2.0,
        jitter: float = JITTER,
        rng: random.Random | None = None,
    ) -> None:
        if not (math.isfinite(first) and math.isfinite(cap) and 0 < first <= cap):
            raise ValueError(f"backoff needs 0 < first <= cap (finite), got {first!r}, {cap!r}")
        if not (math.isfinite(factor) and factor >= 1):
            raise ValueError(f"backoff factor must be at least 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {jitter!r}")
        self.first = first
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or _SHARED
        self.attempts = 0  # calls of next() since the last reset
        self._base = first

    @property
    def shortest(self) -> float:
        """No delay is shorter than this."""
        return self.first * (1.0 - self.jitter)

    @property
    def longest(self) -> float:
        """No delay is longer than this (the cap)."""
        return self.cap

    def next(self) -> float:
        """The delay before the next attempt, in seconds; each call is one more failure."""
        base = self._base
        # Grown step by step, never as factor ** n: no overflow however long a pad stays away.
        self._base = min(self.cap, base * self.factor)
        self.attempts += 1
        # random() < 1, so the factor stays within [1 - jitter, 1] in floating point as well.
        return base * (1.0 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Back to `first`: what was retried works again."""
        self._base = self.first
        self.attempts = 0

    def __repr__(self) -> str:
        return (
            f"Backoff(first={self.first!r}, cap={self.cap!r}, factor={self.factor!r}, "
            f"jitter={self.jitter!r}, attempts={self.attempts})"
        )
