"""What the composition root hands the web layer: services and a few facts about the box."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.core.events import Bus
from gateway.core.models import Receiver
from gateway.core.ports import Clock
from gateway.services.access.config import ConfigService
from gateway.services.access.tokens import TokenService
from gateway.services.alarms import Alarms
from gateway.services.orders.book import OrderService
from gateway.services.orders.intake import OrderIntake
from gateway.services.printing.service import PrintService
from gateway.services.trackers.inventory import TrackerService


@dataclass(slots=True)
class WsLimits:
    queue_size: int = 4096
    queue_bytes: int = 4 * 1024 * 1024
    socket_buffer: int = 128 * 1024  # SO_SNDBUF of a feed socket; 0 = the kernel's choice
    heartbeat: float = 20.0
    auth_timeout: float = 10.0
    max_frame_bytes: int = 64 * 1024
    send_timeout: float = 10.0


@dataclass(slots=True)
class Context:
    orders: OrderService
    tokens: TokenService
    config: ConfigService
    bus: Bus
    clock: Clock
    admin_cookie: str
    gateway_id: str
    version: str
    demo: bool = False
    started: float = 0.0
    ws: WsLimits = field(default_factory=WsLimits)
    allowed_origins: frozenset[str] = frozenset()
    # Host names served besides IP literals, localhost and the host name ("*": no check).
    allowed_hosts: frozenset[str] = frozenset()
    trackers: TrackerService | None = None
    printing: PrintService | None = None
    intake: OrderIntake | None = None
    # Demo virtual printers by device id: (latest tickets as text, PNG of one) for the preview.
    previews: dict[str, Callable[[], list[tuple[float, str, Callable[[], bytes]]]]] = field(
        default_factory=dict)
    receivers: Callable[[], list[Receiver]] = field(default=lambda: [])
    alarms: Alarms | None = None
    # Asked before health says healthy: True when the database file is the one being written.
    storage_check: Callable[[], bool] = field(default=lambda: True)


CTX = web.AppKey("tablegate_context", Context)
