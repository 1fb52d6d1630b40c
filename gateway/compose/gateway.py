"""What `gateway.app.build` returns: the Core, the web app over it, and the Supervisor that
owns every step's teardown. The shortcuts are for tests and benchmarks."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from gateway.compose.core import Core
from gateway.core.ports import Pager
from gateway.lifecycle import Supervisor
from gateway.services.access.tokens import TokenService
from gateway.services.outbox.service import DeliveryService
from gateway.services.printing.service import PrintService
from gateway.services.trackers.inventory import TrackerService
from gateway.services.trackers.paging import PagingDriver
from gateway.settings import Settings
from gateway.store.guard import DatabaseGuard
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from web.services import Services


@dataclass(frozen=True)
class Gateway:
    core: Core
    ctx: Services
    app: web.Application
    supervisor: Supervisor
    base_listeners: int  # the services' own bus listeners (the rest are feed clients)

    @property
    def settings(self) -> Settings:
        return self.core.settings

    @property
    def writer(self) -> Writer:
        return self.core.writer

    @property
    def reader(self) -> Reader:
        return self.core.reader

    @property
    def tokens(self) -> TokenService:
        return self.core.tokens

    @property
    def trackers(self) -> TrackerService:
        return self.core.trackers

    @property
    def paging(self) -> PagingDriver:
        return self.core.paging

    @property
    def pager(self) -> Pager:
        return self.core.pager

    @property
    def printing(self) -> PrintService:
        return self.core.printing

    @property
    def deliveries(self) -> DeliveryService:
        return self.core.deliveries

    @property
    def guard(self) -> DatabaseGuard:
        return self.core.guard
