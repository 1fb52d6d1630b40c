"""Compose step: the radio (BLE scanner, serial pads, or the simulator in demo mode) feeding
the tracker service, the pager plugged into the services' slot, and the demo kitchen."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from gateway.compose.core import Core, PagerSlot
from gateway.core.models import Receiver, TrackerReading
from gateway.demo import DemoKitchen, simulator_may_start, started_by
from gateway.lifecycle import Supervisor
from gateway.services.trackers.inventory import TrackerService
from radio.advert import Flags, TrackerAdvert
from radio.line import PadMessage, PairingMode, TrackerPresent
from radio.pager import GattPager
from radio.scanner import TrackerScanner
from radio.serial_link import PadLink
from radio.simulator import Simulator

log = logging.getLogger(__name__)


async def radio(core: Core, supervisor: Supervisor) -> AsyncIterator[Radio]:
    """Started after the printer workers, stopped after the feeds closed (§7)."""
    started = await start_radio(core, supervisor)
    kitchen = demo_kitchen(core, started) if core.settings.demo else None
    yield started
    if kitchen is not None:
        await kitchen.close()
    await started.stop()


def demo_kitchen(core: Core, radio: Radio, delay: tuple[float, float] = (8, 20)) -> DemoKitchen:
    """The demo's kitchen pages only orders the simulated restaurant started itself."""
    assert radio.simulator is not None  # demo mode always simulates
    ours = started_by(radio.simulator.started)
    return DemoKitchen(core.bus, core.orders, ours=ours, delay=delay)


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
        found = [
            Receiver(
                "bluetooth",
                "local-adapter",
                self.scanner.status,
                f"{self.scanner.stats.decoded} adverts decoded",
            )
        ]
        if self.simulator is not None:
            found.append(
                Receiver(
                    "simulator",
                    "simulator",
                    "running",
                    f"{len(self.simulator.trackers)} simulated trackers",
                )
            )
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
    int(Flags.ON_CHARGER),
    int(Flags.ON_STARTER),
    int(Flags.MOVING),
    int(Flags.BUTTON),
    int(Flags.VIBRATING),
)


def reading(trackers: TrackerService) -> Callable[[str, TrackerAdvert, int | None], None]:
    def on_advert(address: str, advert: TrackerAdvert, rssi: int | None) -> None:
        f = int(advert.flags)  # plain int tests: this runs for every advertisement
        trackers.on_reading(
            TrackerReading(
                address,
                advert.tracker,
                advert.table,
                advert.battery,
                bool(f & ON_CHARGER),
                bool(f & ON_STARTER),
                bool(f & MOVING),
                bool(f & BUTTON),
                bool(f & VIBRATING),
            )
        )

    return on_advert


def _pad_message(trackers: TrackerService) -> Callable[[PadLink, PadMessage], None]:
    def on_message(link: PadLink, message: PadMessage) -> None:
        if isinstance(message, TrackerPresent):
            role = link.role.value if link.role else ""
            trackers.on_pad(link.port, role, message.tracker, message.address)
        elif isinstance(message, PairingMode):
            trackers.set_pad_pairing(link.port, message.on)

    return on_message


async def start_radio(core: Core, supervisor: Supervisor) -> Radio:
    """The radio's set-up: plugs its pager into the services' slot (when they were built with
    the slot) and shows its receivers on the board; a missing adapter is waited for by a
    supervised task owned by the step being entered."""
    settings, trackers = core.settings, core.trackers
    # Repeats pass through: they are what confirms a steady table (debouncing).
    scanner = TrackerScanner(
        reading(trackers), adapter=settings.bluetooth_adapter, repeat_filter=False
    )
    found = Radio(scanner)
    slot = core.pager if isinstance(core.pager, PagerSlot) else None
    simulate = settings.simulator or settings.demo
    if settings.bluetooth and not simulate:
        if slot is not None:
            slot.plug(GattPager(scanner.device, is_available=scanner.is_running))
        await scanner.start()  # without an adapter it says so and keeps looking for one
    ports = list(settings.pads)
    if simulate:
        found.simulator = Simulator(
            scanner.on_advertisement,
            order_interval=6.0,
            speed=settings.simulator_speed,
            seed=settings.simulator_seed,
            may_start=simulator_may_start(core.orders),
        )
        await found.simulator.start()
        if slot is not None:
            slot.plug(SimulatorPager(found.simulator))
        ports += [pad.path for pad in found.simulator.pads.values()]
        if not trackers.list():  # a demo restaurant comes with its trackers paired
            for t in found.simulator.trackers:
                await trackers.pair(t.number, t.address)
        log.info(
            "demo: simulating %d trackers, %d pads; orders start every few seconds",
            len(found.simulator.trackers),
            len(found.simulator.pads),
        )
    on_message = _pad_message(trackers)
    for port in ports:
        link = PadLink(port, on_message)
        await link.start()
        found.links.append(link)
    core.receivers.attach(found.receivers)
    return found
