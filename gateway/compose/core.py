"""Compose step 1: the store and the services, made once and frozen into a Core.

The few things other steps fill in later are small registries handed to the services at
construction (never attributes patched afterwards): the pager slot (the radio step plugs the
real pager in), the receiver board (the radio step says what it hears with), the printer
previews and the virtual printers (the printing step's demo printer).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from gateway.compose.printer_link import PrinterLinks, TicketRenderer
from gateway.core.events import Bus
from gateway.core.ports import Clock, Pager, SystemClock
from gateway.lifecycle import Supervisor
from gateway.services.access.config import ConfigService
from gateway.services.access.tokens import TokenService
from gateway.services.alarms import DATABASE_MISSING, Alarms
from gateway.services.orders.book import NoRadio, OrderService
from gateway.services.orders.intake import OrderIntake
from gateway.services.outbox.policy import DAY, OutboxPolicy
from gateway.services.outbox.service import DeliveryService
from gateway.services.outbox.uplink import TcpProbe, Uplink
from gateway.services.printing.service import REPORT_KIND, DeviceSpec, PrintPolicy, PrintService
from gateway.services.trackers.inventory import RadioPolicy, TrackerService
from gateway.services.trackers.paging import PagingDriver
from gateway.settings import Settings
from gateway.startup import check_database_present, gateway_id, write_durably
from gateway.store.guard import DatabaseGuard
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from printers import render as escpos_render
from web.services import Receivers, Tickets

log = logging.getLogger(__name__)
USAGE_FLUSH_SECONDS = 30.0
TRACKER_HEALTH_SECONDS = 5.0


class PagerSlot:
    """The pager the services see: nothing until the radio step plugs one in."""

    def __init__(self) -> None:
        self._pager: Pager = NoRadio()

    def plug(self, pager: Pager) -> None:
        self._pager = pager

    def available(self) -> bool:
        return self._pager.available()

    async def page(self, address: str, duration_s: int) -> None:
        await self._pager.page(address, duration_s)

    async def stop(self, address: str) -> None:
        await self._pager.stop(address)


@dataclass(frozen=True)
class Core:
    settings: Settings
    writer: Writer
    reader: Reader
    bus: Bus
    clock: Clock
    alarms: Alarms
    orders: OrderService
    intake: OrderIntake
    trackers: TrackerService
    paging: PagingDriver
    pager: Pager
    tokens: TokenService
    config: ConfigService
    deliveries: DeliveryService
    printing: PrintService
    guard: DatabaseGuard
    gateway_id: str
    admin_cookie: str
    started: float
    printer_links: PrinterLinks
    receivers: Receivers = field(default_factory=Receivers)
    previews: dict[str, Tickets] = field(default_factory=dict)


async def core(settings: Settings, pager: Pager | None = None) -> AsyncIterator[Core]:
    """Open the store, load the services; at the end flush what is held in memory and close
    the store last (ARCHITECTURE.md §7)."""
    made = await _open(settings, pager)
    yield made
    await made.paging.close()
    with contextlib.suppress(Exception):
        await made.trackers.drain()
        await made.trackers.flush()
    with contextlib.suppress(Exception):
        await made.tokens.flush_usage()
    await made.guard.close()
    await made.reader.close()
    await made.writer.close()


async def upkeep(made: Core, supervisor: Supervisor, *, serving: bool) -> AsyncIterator[None]:
    """The core's own loops: the database file watch always; when serving, the token-usage
    flush and the tracker health check (tests that build a gateway step these by hand)."""
    supervisor.spawn("db-guard", made.guard.watch_forever)
    if serving:
        supervisor.spawn("token-usage", lambda: _flush_usage_forever(made.tokens))
        supervisor.spawn(
            "tracker-health", lambda: made.trackers.run_health_forever(TRACKER_HEALTH_SECONDS)
        )
    yield


async def _open(settings: Settings, pager: Pager | None) -> Core:
    started = time.time()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_database_present(settings.db_path, new_database=settings.new_database)
    writer = Writer(settings.db_path, synchronous=settings.synchronous)
    await writer.open()
    reader = Reader(settings.db_path)
    await reader.open()
    bus, clock = Bus(), SystemClock()
    alarms = Alarms(bus, clock)
    pager = pager or PagerSlot()
    orders = OrderService(writer, reader, bus, clock, pager)
    trackers = TrackerService(
        writer,
        bus,
        clock,
        orders,
        RadioPolicy(
            debounce_readings=settings.debounce_readings,
            debounce_seconds=settings.debounce_seconds,
            offline_after=settings.tracker_offline_after,
            battery_low=settings.battery_low_percent,
            auto_clear_after=settings.auto_clear_after or None,
        ),
    )
    paging = PagingDriver(bus, pager, duration_s=settings.page_duration, clock=clock)
    tokens = TokenService(
        writer,
        clock,
        settings.token_window_seconds,
        per_name=settings.token_window_per_name,
        max_tokens=settings.token_window_max_tokens,
        max_waiting=settings.token_window_max_waiting,
    )
    allow = frozenset(settings.outbound_allow)
    config = ConfigService(
        writer,
        clock,
        {
            "targetTimeDefault": settings.target_time_default,
            "timezone": settings.timezone,
            "zigbeePreset": 0,
            "newOrderEventType": settings.new_order_event_type,
        },
        allow,
    )
    await orders.load()
    await tokens.load()
    await config.load()
    await trackers.load()
    deliveries = DeliveryService(
        writer, reader, clock, outbox_policy(settings), uplink=outbox_uplink(settings, clock)
    )
    with contextlib.suppress(escpos_render.RenderError):
        # Once per process: a second gateway in the same process (tests) keeps the first dir.
        escpos_render.configure(settings.data_dir / "cache" / "escpos")
        # Off the loop, before any printer worker renders: ~250 ms of imports and tables
        # that would otherwise block every request when the first ticket prints.
        await asyncio.to_thread(escpos_render.warm_up)
    links = PrinterLinks(allow)
    printing = _printing(settings, writer, reader, clock, orders, config, deliveries, links)
    bus.subscribe(printing.on_event)
    # Once for every dialect: after COMMIT, the outbox wakes for the rows an event's
    # transaction enqueued (and notes live traffic for its pacing).
    bus.subscribe(deliveries.on_event)
    await printing.load(
        DeviceSpec(p.name, p.address, p.station, p.paper, p.id) for p in settings.printers
    )
    box_id = gateway_id(settings.data_dir)
    cookie = write_admin_cookie(settings.admin_cookie_path)
    guard = _guard(settings, writer, reader, alarms, box_id, cookie)
    return Core(
        settings,
        writer,
        reader,
        bus,
        clock,
        alarms,
        orders,
        OrderIntake(orders, reader, clock),
        trackers,
        paging,
        pager,
        tokens,
        config,
        deliveries,
        printing,
        guard,
        box_id,
        cookie,
        started,
        links,
    )


def _printing(
    settings: Settings,
    writer: Writer,
    reader: Reader,
    clock: Clock,
    orders: OrderService,
    config: ConfigService,
    deliveries: DeliveryService,
    links: PrinterLinks,
) -> PrintService:
    allow = frozenset(settings.outbound_allow)
    kitchen = settings.print_kitchen_station
    if settings.demo:
        kitchen = kitchen or "kitchen"
    printing = PrintService(
        writer,
        reader,
        clock,
        find_order=lambda ref: orders.lookup(ref),
        links=links.link,
        renderer=TicketRenderer(config.tz, _logo(settings)),
        policy=PrintPolicy(
            default_deadline=settings.print_default_deadline,
            max_retries=settings.print_max_retries,
            ack_timeout=settings.print_ack_timeout,
            status_interval=settings.print_status_interval,
            report_url=settings.print_report_url,
            stations={k: tuple(v) for k, v in settings.print_stations.items()},
            kitchen_station=kitchen,
            kitchen_needs_answer=settings.print_kitchen_needs_answer,
            allow=allow | {"127.0.0.1"} if settings.demo else allow,
        ),
        wake_outbox=deliveries.wake,
    )
    deliveries.register_hook(
        REPORT_KIND,
        lambda conn, row, event, code, message: printing.report_hook(
            conn, row.ref, event, code, message, row.attempts
        ),
        on_commit=printing.apply_report_updates,
    )
    orders.add_tx_hook(printing.order_hook)
    return printing


def outbox_policy(settings: Settings) -> OutboxPolicy:
    return OutboxPolicy(
        allow=frozenset(settings.outbound_allow),
        busy_rate=settings.deliveries_busy_rate or None,
        quiet=settings.deliveries_quiet,
        prune_every=settings.deliveries_prune_every or None,
        keep_delivered=settings.deliveries_keep_days * DAY,
        keep_dead=settings.deliveries_dead_keep_days * DAY,
    )


def outbox_uplink(settings: Settings, clock: Clock) -> Uplink | None:
    """The check that the box itself is online (reliability gate W4: no attempts are spent
    while it is not); an empty `uplink_probe` turns it off."""
    targets = list(settings.uplink_probe)
    if not targets:
        return None
    return Uplink(
        TcpProbe(targets),
        clock,
        interval=settings.uplink_probe_interval,
        describe=", ".join(targets),
    )


def write_admin_cookie(path: Path) -> str:
    """A fresh secret per start, readable only by the gateway's user: whoever can read it is
    on the box, which is what pressing the button proves."""
    cookie = secrets.token_hex(32)
    write_durably(path, cookie, 0o600)
    return cookie


def _guard(
    settings: Settings, writer: Writer, reader: Reader, alarms: Alarms, box_id: str, cookie: str
) -> DatabaseGuard:
    def on_alarm(problem: str | None) -> None:
        if problem is None:
            alarms.clear(DATABASE_MISSING)
        else:
            alarms.raise_alarm(DATABASE_MISSING, problem)

    def restored() -> None:
        # Files that went with the database (rm -r of the data dir): the next start needs
        # the id to know this box had data, and the CLI needs the cookie.
        if not (settings.data_dir / "gateway-id").exists():
            write_durably(settings.data_dir / "gateway-id", box_id + "\n", 0o644)
        if not settings.admin_cookie_path.exists():
            write_durably(settings.admin_cookie_path, cookie, 0o600)

    return DatabaseGuard(
        writer, reader, interval=settings.db_check_interval, on_alarm=on_alarm, on_restored=restored
    )


def _logo(settings: Settings) -> bytes | None:
    if settings.print_logo is None:
        return None
    try:
        return settings.print_logo.read_bytes()
    except OSError as exc:
        log.warning(
            "print_logo %s unreadable (%s); tickets print without it", settings.print_logo, exc
        )
        return None


async def _flush_usage_forever(tokens: TokenService) -> None:
    while True:
        await asyncio.sleep(USAGE_FLUSH_SECONDS)
        try:
            await tokens.flush_usage()
        except Exception:
            log.exception("could not persist token usage")
