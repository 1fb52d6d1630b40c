"""How the outbox behaves (`OutboxPolicy`, from settings via the composition root) and the
events its hooks hear (`HookEvent`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

# Seed 003 (webhook delivery): "after ± 2 minutes, after ± 5 minutes, then after ± 60 minutes,
# up to 7 times".
SCHEDULE: tuple[float, ...] = (120.0, 300.0) + (3600.0,) * 7
POLL_SECONDS = 30.0  # safety net for rows enqueued without wake() and for clock jumps
BATCH = 32  # rows whose attempts one commit counts (a backlog costs ~1/BATCH commit per row)
BUSY_RATE = 50.0  # requests/s while order changes are being made (None: no limit)
QUIET = 0.5  # seconds without an order change before a backlog drains at full speed
DAY = 86_400.0


class HookEvent(StrEnum):
    """What happened to an outbox row, as a hook hears it (the hook runs in that change's
    transaction)."""

    SENDING = "sending"  # an attempt was counted; the request is about to leave
    DELIVERED = "delivered"  # the receiver answered 2xx
    RETRY = "retry"  # failed (or given back): the row waits for its next attempt
    DEAD = "dead"  # no more attempts: gone (410), max-retries or a refused URL


@dataclass(frozen=True, slots=True)
class OutboxPolicy:
    """Everything that tunes `DeliveryService`; the defaults are the shipped behaviour."""

    allow: frozenset[str] = frozenset()  # outbound hosts allowed despite `core.netguard`
    schedule: tuple[float, ...] = SCHEDULE  # delay after failed attempt n: schedule[n-1]
    jitter: float = 0.2  # each delay ± this fraction, in [0, 1)
    timeout: float = 10.0  # seconds for one request, answer included
    max_inflight_endpoints: int = 8  # endpoints served at once
    poll: float = POLL_SECONDS  # look at the outbox at least this often (safety net)
    batch: int = BATCH
    busy_rate: float | None = BUSY_RATE  # requests/s while orders change; None: no limit
    quiet: float = QUIET
    prune_every: float | None = None  # seconds between prunes of finished rows; None: never
    keep_delivered: float = 7 * DAY
    keep_dead: float = 30 * DAY

    def __post_init__(self) -> None:
        if not 0.0 <= self.jitter < 1.0:
            raise ValueError("jitter must be in [0, 1)")

    @property
    def max_attempts(self) -> int:
        return len(self.schedule) + 1
