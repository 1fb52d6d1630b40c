"""The real bleak BlueZ backend over a real (private) system bus, against dbusmock's bluetoothd.

No kernel Bluetooth here: the mock plays the radio by setting Device1 properties, which is what
bluetoothd does when an advertisement arrives, and answers GATT calls as a tracker would.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from radio.advert import Flags, Pattern, TrackerAdvert, encode
from radio.pager import GattPager
from radio.scanner import NoAdapterError, TrackerScanner
from tests.radio.bluez_mock import WAIT, BluezMock, private_system_bus, require_peers

pytestmark = pytest.mark.slow

TRACKER = "C0:FF:EE:00:00:42"
Seen = list[tuple[str, TrackerAdvert, int | None]]


@pytest.fixture
def system_bus() -> Iterator[str]:
    require_peers()
    with private_system_bus() as address:
        yield address


@pytest.fixture
def bluez(system_bus: str, tmp_path: Path) -> Iterator[BluezMock]:
    mock = BluezMock(system_bus, tmp_path / "bluez-mock.log")
    yield mock
    mock.close()


@pytest.fixture
async def scanners() -> AsyncIterator[list[TrackerScanner]]:
    """Scanners the test started, stopped before the mock and the bus go away."""
    started: list[TrackerScanner] = []
    yield started
    for scanner in started:
        await scanner.stop()
    await _drop_bleak_bus()


async def _drop_bleak_bus() -> None:
    # bleak keeps one BlueZ manager (and its D-Bus connection) per event loop; close it while
    # the loop still runs so its watcher task ends here rather than in the next test.
    from bleak.backends.bluezdbus import manager as bluez_manager

    instance = bluez_manager._global_instances.pop(asyncio.get_running_loop(), None)
    if instance is None or instance._bus is None:
        return
    watcher = instance._bus_watcher_task
    if watcher is not None:  # else it warns that the connection to BlueZ was lost
        watcher.cancel()
        await asyncio.wait({watcher}, timeout=WAIT)
    instance._bus.disconnect()
    await asyncio.sleep(0)


async def wait_for(condition: Callable[[], bool], what: str, log: Callable[[], str]) -> None:
    try:
        async with asyncio.timeout(WAIT):
            while not condition():
                await asyncio.sleep(0.02)
    except TimeoutError:
        pytest.fail(f"timed out waiting for {what}; mock log:\n{log()[-3000:]}")


async def test_no_adapter(bluez: BluezMock, scanners: list[TrackerScanner]) -> None:
    scanner = TrackerScanner(lambda *_: None)
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    assert scanner.status == "no-adapter"
    assert re.match(
        r"no Bluetooth adapter \(hciN\) available: No Bluetooth adapters found",
        str(scanner.problem),
    )


async def test_named_adapter_missing(bluez: BluezMock, scanners: list[TrackerScanner]) -> None:
    bluez.add_adapter("hci0")
    scanner = TrackerScanner(lambda *_: None, adapter="hci1")
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    assert scanner.status == "no-adapter"
    assert re.search(r"\(hci1\) available: adapter 'hci1' not found", str(scanner.problem))


async def test_bus_without_bluez(system_bus: str, scanners: list[TrackerScanner]) -> None:
    scanner = TrackerScanner(lambda *_: None)
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    assert isinstance(scanner.problem, NoAdapterError)
    assert re.match(
        r"BlueZ not reachable over D-Bus at unix:path=.*ServiceUnknown", str(scanner.problem)
    )


async def test_an_adapter_plugged_in_later_is_picked_up(
    bluez: BluezMock, scanners: list[TrackerScanner]
) -> None:
    seen: Seen = []
    scanner = TrackerScanner(lambda a, ad, rssi: seen.append((a, ad, rssi)))
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    assert scanner.status == "no-adapter"
    adapter = bluez.add_adapter("hci0")  # the USB dongle arrives
    device = bluez.add_device(TRACKER, "tracker-66")
    # the scanner's own retries find it: its first waits are about 1, 2 and 4 s
    await wait_for(scanner.is_running, "the scanner to find the adapter", bluez.log)
    assert scanner.problem is None and len(bluez.calls(adapter, "StartDiscovery")) == 1
    bluez.advertise(device, encode(TrackerAdvert(66, 12, 90, Flags.NONE, counter=1)), rssi=-50)
    await wait_for(lambda: bool(seen), "the advert", bluez.log)


async def test_the_gateway_picks_up_an_adapter_plugged_in_after_start(
    bluez: BluezMock,
    scanners: list[TrackerScanner],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway.app import build
    from gateway.compose.radio import start_radio
    from tests.conftest import make_settings

    caplog.set_level(logging.INFO, logger="radio.scanner")
    settings = make_settings(tmp_path / "gw")
    gw = await build(settings)
    try:
        async with asyncio.timeout(WAIT):
            radio = await start_radio(gw.core, gw.supervisor)
        scanners.append(radio.scanner)
        try:
            assert [r.status for r in gw.ctx.receivers()] == ["no-adapter"]
            assert "no Bluetooth: no Bluetooth adapter (hciN) available" in caplog.text
            assert gw.pager.available() is False
            bluez.add_adapter("hci0")
            await wait_for(
                lambda: gw.ctx.receivers()[0].status == "running",
                "the gateway's scanner to find the adapter",
                bluez.log,
            )
            assert gw.pager.available() is True
            assert "Bluetooth adapter found; scanning for trackers" in caplog.text
        finally:
            await radio.stop()
    finally:
        await gw.writer.close()
        await gw.reader.close()


async def test_advertisement_reaches_the_handler(
    bluez: BluezMock, scanners: list[TrackerScanner]
) -> None:
    bluez.add_adapter("hci0")
    device = bluez.add_device(TRACKER, "tracker-66")
    seen: Seen = []
    scanner = TrackerScanner(lambda a, ad, rssi: seen.append((a, ad, rssi)))
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    assert scanner.status == "running"

    payload = encode(TrackerAdvert(66, 12, battery=77, flags=Flags.ON_STARTER, counter=3))
    bluez.advertise(device, payload, rssi=-52)
    await wait_for(lambda: bool(seen), "the advert", bluez.log)
    address, advert, rssi = seen[0]
    assert (address, advert.tracker, advert.table, advert.battery) == (TRACKER, 66, 12, 77)
    assert rssi == -52
    assert advert.flags == Flags.ON_STARTER
    assert scanner.device(TRACKER) is not None

    # the same reading again (bluetoothd reports an RSSI change) is a repeat; a new counter is not
    bluez.advertise(device, payload, rssi=-60)
    bluez.advertise(device, encode(TrackerAdvert(66, 14, 77, Flags.NONE, counter=4)), rssi=-61)
    await wait_for(lambda: len(seen) == 2, "the second reading", bluez.log)
    assert seen[1][1].table == 14 and scanner.stats.repeats >= 1


async def test_paging_writes_the_command_to_the_characteristic(
    bluez: BluezMock, scanners: list[TrackerScanner]
) -> None:
    bluez.add_adapter("hci0")
    device = bluez.add_device(TRACKER, "tracker-66")
    scanner = TrackerScanner(lambda *_: None)
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    char = bluez.add_paging_service(device)  # announced to bleak with InterfacesAdded
    bluez.advertise(device, encode(TrackerAdvert(66, 12, 90, Flags.NONE, counter=1)), rssi=-50)
    await wait_for(lambda: scanner.device(TRACKER) is not None, "the tracker", bluez.log)

    pager = GattPager(
        scanner.device, is_available=scanner.is_running, attempts=2, attempt_timeout=WAIT
    )
    assert pager.available()
    async with asyncio.timeout(2 * WAIT):
        await pager.page(TRACKER.lower(), duration_s=45, pattern=Pattern.LONG_PULSES)
        await pager.stop(TRACKER)

    writes = bluez.calls(char, "WriteValue")
    assert [bytes(value) for value, _ in writes] == [bytes([1, 2, 45]), bytes([0, 0, 0])]
    assert all(str(options["type"]) == "request" for _, options in writes)  # with response
    assert len(bluez.calls(device, "Connect")) == 2
    assert len(bluez.calls(device, "Disconnect")) == 2  # no connection left open


async def test_silence_restarts_the_real_scanner(
    bluez: BluezMock, scanners: list[TrackerScanner]
) -> None:
    adapter = bluez.add_adapter("hci0")
    device = bluez.add_device(TRACKER, "tracker-66")
    seen: Seen = []
    scanner = TrackerScanner(lambda a, ad, rssi: seen.append((a, ad, rssi)), silence_timeout=0.4)
    scanners.append(scanner)
    async with asyncio.timeout(WAIT):
        await scanner.start()
    await wait_for(lambda: scanner.stats.restarts >= 1, "a restart", bluez.log)
    assert len(bluez.calls(adapter, "StopDiscovery")) >= 1
    assert len(bluez.calls(adapter, "StartDiscovery")) >= 2
    # the new scanner hears the tracker
    await wait_for(scanner.is_running, "the scanner running again", bluez.log)
    async with asyncio.timeout(WAIT):  # a reading can fall into a later restart's gap: resend
        for counter in range(9, 200):
            bluez.advertise(device, encode(TrackerAdvert(66, 12, 50, Flags.NONE, counter)), -70)
            await asyncio.sleep(0.05)
            if seen:
                break
    assert seen and seen[0][1].tracker == 66


async def test_advertisement_locates_the_order_through_the_gateway(
    bluez: BluezMock, scanners: list[TrackerScanner], tmp_path: Path
) -> None:
    """The whole path on the box: bluetoothd (mocked) -> bleak -> scanner -> tracker service ->
    order located, wired exactly as gateway.compose.radio.start_radio wires it."""
    from gateway.app import build
    from gateway.compose.radio import reading
    from tests.conftest import make_settings

    gw = await build(make_settings(tmp_path / "gw", debounce_seconds=0))
    try:
        await gw.trackers.pair(66, TRACKER)
        gw.trackers.on_pad("pad", "STARTER_DINE_IN", 66, TRACKER)
        await gw.trackers.drain()
        bluez.add_adapter("hci0")
        device = bluez.add_device(TRACKER, "tracker-66")
        scanner = TrackerScanner(reading(gw.trackers), repeat_filter=False)
        scanners.append(scanner)
        async with asyncio.timeout(WAIT):
            await scanner.start()
        payload = encode(TrackerAdvert(66, 12, battery=77, flags=Flags.NONE, counter=9))
        for rssi in (-50, -51, -52, -53):  # the beacon repeating its reading
            bluez.advertise(device, payload, rssi=rssi)

        def located() -> bool:
            orders = gw.ctx.orders.active()
            return bool(orders) and orders[0].location == "12"

        await wait_for(located, "order 66 located at table 12", bluez.log)
        assert gw.ctx.orders.active()[0].state.value == "located"
    finally:
        await gw.trackers.drain()
        await gw.writer.close()
        await gw.reader.close()
