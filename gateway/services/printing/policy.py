"""How the print queue behaves (deadlines, retries, polling, stations) and what a printer is
configured as: both come from settings, via app.py."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class PrintPolicy:
    default_deadline: float = 300.0
    max_deadline: float = 7 * 86_400.0
    max_retries: int = 10  # sends of one request (the same id each time)
    ack_timeout: float = 10.0  # an impact printer takes ~8 s for a ticket
    backoff: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
    status_interval: float = 15.0  # health poll of an idle printer
    hold_poll: float = 2.0  # health poll while a job is held (paper out)
    sweep_interval: float = 1.0
    report_url: str | None = None
    stations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    kitchen_station: str = ""  # "" = no automatic kitchen tickets
    kitchen_needs_answer: bool = False
    allow: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A printer as settings, the API or discovery describe it."""

    name: str
    address: str
    station: str = ""
    paper: str = "80mm"
    id: str | None = None
