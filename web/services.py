"""What the composition root hands the web layer: one typed, frozen Services object.

Every service a handler may call is a required field (no Optional to assert, no AppKey beside
it): the composition root builds them all before the application. Two things only exist once
the app runs (demo printers' previews, the radio's receivers); they are providers the root
fills later, never fields it patches.
"""

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
from gateway.services.integrations.cloudsignal import CloudSignalService
from gateway.services.integrations.imprinted.auth import ImprintedAuth
from gateway.services.integrations.imprinted.orders import ImprintedOrders
from gateway.services.integrations.order_status import PrintApiService
from gateway.services.orders.book import OrderService
from gateway.services.orders.intake import OrderIntake
from gateway.services.outbox.service import DeliveryService
from gateway.services.printing.service import PrintService
from gateway.services.trackers.inventory import TrackerService

# A demo virtual printer's latest tickets: (received at, text, PNG of it).
Tickets = Callable[[], list[tuple[float, str, Callable[[], bytes]]]]


@dataclass(slots=True)
class WsLimits:
    queue_size: int = 4096
    queue_bytes: int = 4 * 1024 * 1024
    socket_buffer: int = 128 * 1024  # SO_SNDBUF of a feed socket; 0 = the kernel's choice
    heartbeat: float = 20.0
    auth_timeout: float = 10.0
    max_frame_bytes: int = 64 * 1024
    send_timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class Imprinted:
    """The Imprinted dialect's services: its signature check and its view of the orders."""

    auth: ImprintedAuth
    orders: ImprintedOrders


class Receivers:
    """The radio's receivers, once the radio runs (it starts with the app); none before."""

    __slots__ = ("_source",)

    def __init__(self) -> None:
        self._source: Callable[[], list[Receiver]] = list

    def attach(self, source: Callable[[], list[Receiver]]) -> None:
        self._source = source

    def __call__(self) -> list[Receiver]:
        return self._source()


@dataclass(frozen=True, slots=True)
class Services:
    orders: OrderService
    tokens: TokenService
    config: ConfigService
    bus: Bus
    clock: Clock
    trackers: TrackerService
    printing: PrintService
    intake: OrderIntake
    alarms: Alarms
    deliveries: DeliveryService
    cloudsignal: CloudSignalService
    order_status: PrintApiService
    imprinted: Imprinted
    admin_cookie: str
    gateway_id: str
    version: str
    # Asked before health says healthy: True when the database file is the one being written.
    storage_check: Callable[[], bool]
    # Demo virtual printers by device id (filled when they start): their tickets, for preview.
    previews: dict[str, Tickets] = field(default_factory=dict)
    receivers: Receivers = field(default_factory=Receivers)
    demo: bool = False
    started: float = 0.0
    ws: WsLimits = field(default_factory=WsLimits)
    allowed_origins: frozenset[str] = frozenset()
    # Host names served besides IP literals, localhost and the host name ("*": no check).
    allowed_hosts: frozenset[str] = frozenset()


SERVICES = web.AppKey("services", Services)
