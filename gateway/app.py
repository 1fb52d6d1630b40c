"""The composition root: the only module that wires store, services, web (and later radio and
printers) together, and the process lifecycle around them."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from gateway import __version__
from gateway.app_printing import TicketRenderer, make_link
from gateway.core.events import Bus
from gateway.core.hostnames import mdns_host_name
from gateway.core.models import Receiver, TrackerReading
from gateway.core.netguard import ConnectGuard
from gateway.core.ports import Pager, SystemClock
from gateway.core.printing import Source
from gateway.demo import DemoKitchen, simulator_may_start, started_by
from gateway.loop_health import LoopWatch, StopSignals
from gateway.services.access.config import ConfigService
from gateway.services.access.tokens import TokenService
from gateway.services.alarms import DATABASE_MISSING, Alarms
from gateway.services.orders.book import NoRadio, OrderService
from gateway.services.orders.intake import OrderIntake
from gateway.services.outbox.service import DeliveryService
from gateway.services.printing.service import REPORT_KIND, DeviceSpec, PrintPolicy, PrintService
from gateway.services.trackers.inventory import RadioPolicy, TrackerService
from gateway.services.trackers.paging import PagingDriver
from gateway.settings import Settings
from gateway.startup import StartRefused, check_database_present, gateway_id, write_durably
from gateway.store.guard import DatabaseGuard
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from gateway.wiring.cloudsignal import wire as wire_cloudsignal
from gateway.wiring.imprinted import wire as wire_imprinted
from gateway.wiring.printapi import outbox_policy, outbox_uplink
from gateway.wiring.printapi import wire as wire_printapi
from printers import render as escpos_render
from radio.advert import Flags, TrackerAdvert
from radio.line import PadMessage, PairingMode, TrackerPresent
from radio.pager import GattPager
from radio.scanner import TrackerScanner
from radio.serial_link import PadLink
from radio.simulator import Simulator
from web.access_log import RedactingAccessLogger
from web.protocol import GatewayRunner
from web.server import build_web_app
from web.services import Services, WsLimits

if TYPE_CHECKING:  # zeroconf is imported only when mDNS is enabled (start time, memory)
    from gateway.discovery import Advertiser
    from printers.virtual import VirtualPrinter

log = logging.getLogger(__name__)
USAGE_FLUSH_SECONDS = 30.0


def write_admin_cookie(path: Path) -> str:
    """A fresh secret per start, readable only by the gateway's user: whoever can read it is
    on the box, which is what pressing the button proves."""
    cookie = secrets.token_hex(32)
    write_durably(path, cookie, 0o600)
    return cookie


@dataclass
class Gateway:
    settings: Settings
    app: web.Application
    ctx: Services
    writer: Writer
    reader: Reader
    tokens: TokenService
    trackers: TrackerService
    paging: PagingDriver
    pager: Pager
    printing: PrintService
    deliveries: DeliveryService
    guard: DatabaseGuard
    virtual: dict[str, tuple[str, int]] = field(default_factory=dict)
    virtual_printers: dict[str, VirtualPrinter] = field(default_factory=dict)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    base_listeners: int = 0  # the services' own bus listeners (the rest are feed clients)
    closers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def build(settings: Settings, *, pager: Pager | None = None) -> Gateway:
    started = time.time()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    check_database_present(settings.db_path, new_database=settings.new_database)
    writer = Writer(settings.db_path, synchronous=settings.synchronous)
    await writer.open()
    reader = Reader(settings.db_path)
    await reader.open()
    bus, clock = Bus(), SystemClock()
    alarms = Alarms(bus, clock)
    pager = pager or RadioPager()
    orders = OrderService(writer, reader, bus, clock, pager)
    trackers = TrackerService(writer, bus, clock, orders, RadioPolicy(
        debounce_readings=settings.debounce_readings,
        debounce_seconds=settings.debounce_seconds,
        offline_after=settings.tracker_offline_after,
        battery_low=settings.battery_low_percent,
        auto_clear_after=settings.auto_clear_after or None,
    ))
    paging = PagingDriver(bus, pager, duration_s=settings.page_duration, clock=clock)
    tokens = TokenService(
        writer, clock, settings.token_window_seconds,
        per_name=settings.token_window_per_name,
        max_tokens=settings.token_window_max_tokens,
        max_waiting=settings.token_window_max_waiting,
    )
    config = ConfigService(
        writer,
        clock,
        {
            "targetTimeDefault": settings.target_time_default,
            "timezone": settings.timezone,
            "zigbeePreset": 0,
            "newOrderEventType": settings.new_order_event_type,
        },
        frozenset(settings.outbound_allow),
    )
    await orders.load()
    await tokens.load()
    await config.load()
    await trackers.load()
    allow = frozenset(settings.outbound_allow)
    deliveries = DeliveryService(writer, reader, clock, outbox_policy(settings),
                                 uplink=outbox_uplink(settings, clock))
    virtual: dict[str, tuple[str, int]] = {}
    with contextlib.suppress(escpos_render.RenderError):
        # Once per process: a second gateway in the same process (tests) keeps the first dir.
        escpos_render.configure(settings.data_dir / "cache" / "escpos")
        # Off the loop, before any printer worker renders: ~250 ms of imports and tables
        # that would otherwise block every request when the first ticket prints.
        await asyncio.to_thread(escpos_render.warm_up)
    stations = {k: tuple(v) for k, v in settings.print_stations.items()}
    kitchen = settings.print_kitchen_station
    if settings.demo:
        kitchen = kitchen or "kitchen"
    printing = PrintService(
        writer, reader, clock,
        find_order=lambda ref: orders.lookup(ref),
        links=lambda device: make_link(device, virtual, ConnectGuard(allow)),
        renderer=TicketRenderer(config.tz, _logo(settings)),
        policy=PrintPolicy(
            default_deadline=settings.print_default_deadline,
            max_retries=settings.print_max_retries,
            ack_timeout=settings.print_ack_timeout,
            status_interval=settings.print_status_interval,
            report_url=settings.print_report_url,
            stations=stations,
            kitchen_station=kitchen,
            kitchen_needs_answer=settings.print_kitchen_needs_answer,
            allow=allow | {"127.0.0.1"} if settings.demo else allow,
        ),
        wake_outbox=deliveries.wake,
    )
    deliveries.register_hook(REPORT_KIND, lambda conn, row, event, code, message:
                             printing.report_hook(conn, row.ref, event, code, message,
                                                  row.attempts),
                             on_commit=printing.apply_report_updates)
    orders.add_tx_hook(printing.order_hook)
    bus.subscribe(printing.on_event)
    # Once for every dialect: after COMMIT, the outbox wakes for the rows an event's
    # transaction enqueued (and notes live traffic for its pacing).
    bus.subscribe(deliveries.on_event)
    await printing.load(DeviceSpec(p.name, p.address, p.station, p.paper, p.id)
                        for p in settings.printers)
    box_id = gateway_id(settings.data_dir)
    admin_cookie = write_admin_cookie(settings.admin_cookie_path)
    intake = OrderIntake(orders, reader, clock)
    guard = _guard(settings, writer, reader, alarms, box_id, admin_cookie)
    # The integration dialects' services, in the order their tx hooks run.
    imprinted = await wire_imprinted(writer, reader, clock)
    cloudsignal = await wire_cloudsignal(settings, writer, reader, clock, orders, intake,
                                         deliveries)
    order_status = await wire_printapi(settings, writer, reader, clock, orders, config,
                                       deliveries)
    ctx = Services(
        orders=orders,
        tokens=tokens,
        config=config,
        bus=bus,
        clock=clock,
        trackers=trackers,
        printing=printing,
        intake=intake,
        alarms=alarms,
        deliveries=deliveries,
        cloudsignal=cloudsignal,
        order_status=order_status,
        imprinted=imprinted,
        admin_cookie=admin_cookie,
        gateway_id=box_id,
        version=__version__,
        storage_check=guard.check,
        demo=settings.demo,
        started=started,
        ws=WsLimits(
            queue_size=settings.ws_queue_size,
            queue_bytes=settings.ws_queue_bytes,
            socket_buffer=settings.ws_socket_buffer,
            heartbeat=settings.ws_heartbeat,
            auth_timeout=settings.ws_auth_timeout,
            send_timeout=settings.ws_send_timeout,
            max_frame_bytes=settings.ws_max_frame_bytes,
        ),
        allowed_origins=frozenset(settings.allowed_origins),
        allowed_hosts=frozenset(settings.allowed_hosts) | {mdns_host_name(box_id)},
    )
    app = build_web_app(ctx, max_body_bytes=settings.max_body_bytes,
                        body_read_timeout=settings.body_read_timeout)
    gw = Gateway(settings, app, ctx, writer, reader, tokens, trackers, paging, pager, printing,
                 deliveries, guard, virtual)
    gw.base_listeners = bus.listener_count
    app.on_startup.append(lambda _app: _start_printing(gw))
    app.on_shutdown.append(lambda _app: _stop_printing(gw))
    app.on_cleanup.append(lambda _app: _close_store(gw))
    if settings.demo:
        tokens.open_window()
    return gw


def _guard(settings: Settings, writer: Writer, reader: Reader, alarms: Alarms, box_id: str,
           admin_cookie: str) -> DatabaseGuard:

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
            write_durably(settings.admin_cookie_path, admin_cookie, 0o600)

    return DatabaseGuard(writer, reader, interval=settings.db_check_interval,
                         on_alarm=on_alarm, on_restored=restored)


def _logo(settings: Settings) -> bytes | None:
    if settings.print_logo is None:
        return None
    try:
        return settings.print_logo.read_bytes()
    except OSError as exc:
        log.warning("print_logo %s unreadable (%s); tickets print without it",
                    settings.print_logo, exc)
        return None


async def _start_printing(gw: Gateway) -> None:
    """Printer workers and the outbox start with the app (ARCHITECTURE.md §7)."""
    gw.guard.start()
    if gw.settings.demo and "kitchen" not in gw.virtual:
        from printers.virtual import VirtualPrinter

        printer = VirtualPrinter()
        await printer.start()
        gw.virtual_printers["kitchen"] = printer
        gw.virtual["kitchen"] = (printer.host, printer.port)
        if "demo-kitchen" not in gw.printing.devices:
            await gw.printing.add_device(
                DeviceSpec("Demo kitchen printer", "virtual://kitchen", "kitchen",
                           id="demo-kitchen"),
                Source.DEMO)
        gw.ctx.previews["demo-kitchen"] = lambda: [
            (t.received_at, t.text, t.png) for t in printer.tickets]
    await gw.printing.start()
    await gw.deliveries.start()
    if gw.settings.printer_discovery:
        from gateway.app_discovery import discover_printers

        await discover_printers(gw)


async def _stop_printing(gw: Gateway) -> None:
    # Queued jobs and deliveries stay in SQLite for the next start.
    for close in gw.closers:
        with contextlib.suppress(Exception):
            await close()
    await gw.printing.close()
    await gw.deliveries.close()
    for printer in gw.virtual_printers.values():
        await printer.close()


async def _flush_usage_forever(tokens: TokenService) -> None:
    while True:
        await asyncio.sleep(USAGE_FLUSH_SECONDS)
        try:
            await tokens.flush_usage()
        except Exception:
            log.exception("could not persist token usage")


async def _close_store(gw: Gateway) -> None:
    for task in gw.tasks:
        task.cancel()
    for task in gw.tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await gw.paging.close()
    with contextlib.suppress(Exception):
        await gw.trackers.drain()
        await gw.trackers.flush()
    with contextlib.suppress(Exception):
        await gw.tokens.flush_usage()
    await gw.guard.close()
    await gw.reader.close()
    await gw.writer.close()


class RadioPager:
    """The pager the services see; the radio plugs the real one in once it has started."""

    def __init__(self) -> None:
        self.delegate: Pager = NoRadio()

    def available(self) -> bool:
        return self.delegate.available()

    async def page(self, address: str, duration_s: int) -> None:
        await self.delegate.page(address, duration_s)

    async def stop(self, address: str) -> None:
        await self.delegate.stop(address)


class SimulatorPager:
    """Demo mode: a page makes the simulated tracker vibrate."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator

    def available(self) -> bool:
        return True

    async def page(self, address: str, duration_s: int) -> None:
        self._simulator.page(address, duration_s)

    async def stop(self, address: str) -> None:
        self._simulator.stop_paging(address)


@dataclass
class Radio:
    scanner: TrackerScanner
    links: list[PadLink] = field(default_factory=list)
    simulator: Simulator | None = None

    def receivers(self) -> list[Receiver]:
        found = [Receiver("bluetooth", "local-adapter", self.scanner.status,
                          f"{self.scanner.stats.decoded} adverts decoded")]
        if self.simulator is not None:
            found.append(Receiver("simulator", "simulator", "running",
                                  f"{len(self.simulator.trackers)} simulated trackers"))
        wall = time.time() - time.monotonic()
        for link in self.links:
            role = link.role.value if link.role else "unknown role"
            heard = None if link.last_heard is None else wall + link.last_heard
            found.append(Receiver(link.port, "pad", link.state.value.lower(), role, heard))
        return found

    async def stop(self) -> None:
        for link in self.links:
            await link.stop()
        if self.simulator is not None:
            await self.simulator.stop()
        await self.scanner.stop()


ON_CHARGER, ON_STARTER, MOVING, BUTTON, VIBRATING = (
    int(Flags.ON_CHARGER), int(Flags.ON_STARTER), int(Flags.MOVING), int(Flags.BUTTON),
    int(Flags.VIBRATING),
)


def _reading(trackers: TrackerService) -> Callable[[str, TrackerAdvert, int | None], None]:
    def on_advert(address: str, advert: TrackerAdvert, rssi: int | None) -> None:
        f = int(advert.flags)  # plain int tests: this runs for every advertisement
        trackers.on_reading(TrackerReading(
            address, advert.tracker, advert.table, advert.battery,
            bool(f & ON_CHARGER), bool(f & ON_STARTER), bool(f & MOVING), bool(f & BUTTON),
            bool(f & VIBRATING),
        ))

    return on_advert


def _pad_message(trackers: TrackerService) -> Callable[[PadLink, PadMessage], None]:
    def on_message(link: PadLink, message: PadMessage) -> None:
        if isinstance(message, TrackerPresent):
            role = link.role.value if link.role else ""
            trackers.on_pad(link.port, role, message.tracker, message.address)
        elif isinstance(message, PairingMode):
            trackers.set_pad_pairing(link.port, message.on)

    return on_message


def demo_kitchen(gw: Gateway, radio: Radio, delay: tuple[float, float] = (8, 20)) -> DemoKitchen:
    assert radio.simulator is not None  # demo mode always simulates
    ours = started_by(radio.simulator.started)
    return DemoKitchen(gw.ctx.bus, gw.ctx.orders, ours=ours, delay=delay)


async def start_radio(settings: Settings, gw: Gateway) -> Radio:
    # Repeats pass through: they are what confirms a steady table (debouncing).
    scanner = TrackerScanner(_reading(gw.trackers), adapter=settings.bluetooth_adapter,
                             repeat_filter=False)
    radio = Radio(scanner)
    simulate = settings.simulator or settings.demo
    if settings.bluetooth and not simulate:
        if isinstance(gw.pager, RadioPager):
            gw.pager.delegate = GattPager(scanner.device, is_available=scanner.is_running)
        await scanner.start()  # without an adapter it says so and keeps looking for one
    ports = list(settings.pads)
    if simulate:
        radio.simulator = Simulator(scanner.on_advertisement, order_interval=6.0,
                                    speed=settings.simulator_speed, seed=settings.simulator_seed,
                                    may_start=simulator_may_start(gw.ctx.orders))
        await radio.simulator.start()
        if isinstance(gw.pager, RadioPager):
            gw.pager.delegate = SimulatorPager(radio.simulator)
        ports += [pad.path for pad in radio.simulator.pads.values()]
        if not gw.trackers.list():  # a demo restaurant comes with its trackers paired
            for t in radio.simulator.trackers:
                await gw.trackers.pair(t.number, t.address)
        log.info("demo: simulating %d trackers, %d pads; orders start every few seconds",
                 len(radio.simulator.trackers), len(radio.simulator.pads))
    on_message = _pad_message(gw.trackers)
    for port in ports:
        link = PadLink(port, on_message)
        await link.start()
        radio.links.append(link)
    gw.ctx.receivers.attach(radio.receivers)
    return radio


def make_runner(app: web.Application) -> web.AppRunner:
    """The server as production runs it (tests that need its exact behaviour use this too)."""
    return GatewayRunner(
        app,
        handle_signals=False,
        shutdown_timeout=5.0,
        access_log_class=RedactingAccessLogger,
        # aiohttp keeps an idle keep-alive connection for an hour by default; POS terminals
        # poll every few seconds, so a minute is plenty and idle sockets do not pile up.
        keepalive_timeout=75.0,
    )


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Start in the order of ARCHITECTURE.md §7, run until SIGTERM/SIGINT, stop in reverse."""
    t0 = time.monotonic()
    # Signals first: a SIGTERM during start-up must still stop in order (mDNS goodbye).
    stop = asyncio.Event()
    # Watching before anything else runs: a block during start-up is named too.
    watch = LoopWatch(threshold=settings.loop_block_threshold)
    signals = StopSignals(stop, settings.stop_timeout, watch)
    signals.install()
    await watch.start()
    try:
        await _serve(settings, t0, stop, ready)
    finally:
        await watch.stop()
        signals.done()


async def _serve(settings: Settings, t0: float, stop: asyncio.Event,
                 ready: asyncio.Event | None) -> None:
    gw = await build(settings)
    radio = await start_radio(settings, gw)
    kitchen = demo_kitchen(gw, radio) if settings.demo else None

    async def stop_radio(_: web.Application) -> None:
        # After the feeds closed, before the store closes (ARCHITECTURE.md §7).
        if kitchen is not None:
            await kitchen.close()
        await radio.stop()

    gw.app.on_shutdown.append(stop_radio)
    runner = make_runner(gw.app)
    await runner.setup()
    advertiser: Advertiser | None = None
    try:
        site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            raise StartRefused(f"cannot serve on {settings.host}:{settings.port}: {exc}",
                               exit_code=1) from exc
        gw.tasks.append(asyncio.create_task(_flush_usage_forever(gw.tokens), name="token-usage"))
        gw.tasks.append(asyncio.create_task(gw.trackers.run_health_forever(),
                                            name="tracker-health"))
        log.info(
            "tablegate %s ready on http://%s:%d in %.0f ms%s",
            __version__,
            settings.host,
            settings.port,
            (time.monotonic() - t0) * 1000,
            " (demo mode: the token window is open for the first two minutes)"
            if settings.demo
            else "",
        )
        if ready is not None:
            ready.set()
        # Start-up objects (modules, settings, the loaded book) never die: keep them out of
        # every collection, and collect the young generation less often. The request path
        # makes few cycles, so this trims the GC pauses that set the latency tail
        # (p99 of durable creation at c=50: ~23 -> ~19 ms on the 2-core machine).
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        if settings.mdns_enabled and not stop.is_set():
            # Registered only once the port answers, so a client that resolves us can connect.
            listening = [str(sockname[0]) for sockname in runner.addresses]
            advertiser = await _advertise(settings, gw.ctx.gateway_id, stop, listening)
        await stop.wait()
    finally:
        log.info("stopping")
        if advertiser is not None:
            await advertiser.stop()
        await runner.cleanup()
        log.info("stopped")


async def _advertise(settings: Settings, gateway_id: str, stop: asyncio.Event,
                     listening: list[str]) -> Advertiser | None:
    from gateway.discovery import Advertiser, advertised_addresses

    addresses = advertised_addresses(listening, settings.mdns_interfaces)
    if not addresses:
        # Records naming addresses where nothing listens would send clients nowhere.
        log.info("mDNS: not advertising: the API listens only on %s, %s", ", ".join(listening),
                 f"outside mdns_interfaces {settings.mdns_interfaces}" if settings.mdns_interfaces
                 else "loopback: no other machine could connect")
        return None
    wildcard = any(ipaddress.ip_address(a.partition("%")[0]).is_unspecified for a in listening)
    try:
        advertiser = Advertiser(
            port=settings.port,
            gateway_id=gateway_id,
            version=__version__,
            instance_name=settings.instance_name,
            # Bound to one address: speak mDNS only where that address lives.
            interfaces=settings.mdns_interfaces or (None if wildcard else addresses),
            host_addresses=addresses,
        )
    except ValueError as exc:
        log.warning("mDNS disabled: %s", exc)
        return None
    registering = asyncio.create_task(advertiser.start(), name="mdns-register")
    stopping = asyncio.create_task(stop.wait(), name="mdns-stop-watch")
    await asyncio.wait((registering, stopping), return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not registering.done():
        registering.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await registering
        await advertiser.stop()
        return None
    if (failure := registering.exception()) is not None:
        # The API works without mDNS; clients can still be pointed at the address.
        log.warning("mDNS registration failed: %s", failure)
        return None
    return advertiser
