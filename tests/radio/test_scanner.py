"""TrackerScanner: injected advertisements, bleak's callback shape, the silence watchdog."""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import (
    BleakBluetoothNotAvailableError,
    BleakBluetoothNotAvailableReason,
    BleakDBusError,
    BleakError,
)

from radio.advert import COMPANY_ID, Flags, TrackerAdvert, encode
from radio.backoff import JITTER, Backoff
from radio.scanner import BACKOFF_MAX, BACKOFF_MIN, NoAdapterError, TrackerScanner

ADDR = "c0:ff:ee:00:00:42"
Seen = list[tuple[str, TrackerAdvert, int | None]]


def advert(tracker: int = 66, table: int = 12, counter: int = 1, **kw: Any) -> bytes:
    fields: dict[str, Any] = {"battery": 80, "flags": Flags.NONE, **kw}
    return encode(TrackerAdvert(tracker=tracker, table=table, counter=counter, **fields))


def collecting(**kw: Any) -> tuple[TrackerScanner, Seen]:
    seen: Seen = []
    return TrackerScanner(lambda a, ad, rssi: seen.append((a, ad, rssi)), **kw), seen


# -- injection through on_advertisement ------------------------------------------------------------


def test_valid_advert_reaches_the_handler_with_its_fields() -> None:
    scanner, seen = collecting()
    payload = advert(66, 12, counter=7, battery=None, flags=Flags.MOVING | Flags.BUTTON)
    scanner.on_advertisement(ADDR, {COMPANY_ID: payload + b"\x99later-layout"}, -61)
    assert len(seen) == 1
    address, got, rssi = seen[0]
    assert address == ADDR.upper()
    assert (got.tracker, got.table, got.battery, got.counter) == (66, 12, None, 7)
    assert got.flags == Flags.MOVING | Flags.BUTTON
    assert rssi == -61
    assert (scanner.stats.received, scanner.stats.decoded) == (1, 1)


def test_repeats_are_dropped_and_new_counters_pass() -> None:
    scanner, seen = collecting()
    for counter in (1, 1, 1, 2, 2, 3, 1):
        scanner.on_advertisement(ADDR, {COMPANY_ID: advert(counter=counter)}, -70)
    assert [ad.counter for _, ad, _ in seen] == [1, 2, 3, 1]
    assert scanner.stats.repeats == 3
    # the same counter from another tracker is not a repeat
    scanner.on_advertisement("AA:00:00:00:00:01", {COMPANY_ID: advert(67, counter=1)}, None)
    assert seen[-1][0] == "AA:00:00:00:00:01" and seen[-1][2] is None


def test_repeat_filter_can_be_turned_off() -> None:
    scanner, seen = collecting(repeat_filter=False)
    for _ in range(3):
        scanner.on_advertisement(ADDR, {COMPANY_ID: advert(counter=5)}, -70)
    assert len(seen) == 3 and scanner.stats.repeats == 0


def test_other_company_ids_and_no_data_are_ignored() -> None:
    scanner, seen = collecting()
    scanner.on_advertisement(ADDR, {0x004C: b"\x02\x15apple"}, -50)
    scanner.on_advertisement(ADDR, {}, -50)
    assert seen == []
    assert scanner.stats.ignored == 2
    assert not scanner.stats.rejected


GARBLED = {
    "short": b"\x01\x42\x00\x0c",
    "version": b"\x02" + advert()[1:],
    "tracker-0": bytes([1, 0, 0, 12, 0, 80, 0, 1]),
    "battery": bytes([1, 66, 0, 12, 0, 150, 0, 1]),
    "flags": bytes([1, 66, 0, 12, 0, 80, 0x20, 1]),
    "empty": b"",
}


def test_each_garbled_kind_is_counted_by_cause_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    scanner, seen = collecting()
    with caplog.at_level(logging.DEBUG, logger="radio.scanner"):
        for _ in range(100):
            for payload in GARBLED.values():
                scanner.on_advertisement(ADDR, {COMPANY_ID: payload}, -70)
    assert seen == []
    assert scanner.stats.rejected == {cause: 100 for cause in GARBLED}
    loud = [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len(loud) == len(GARBLED)
    for cause, record in zip(GARBLED, loud, strict=True):
        assert f"({cause})" in record.getMessage() and ADDR in record.getMessage()
    assert sum(r.levelno == logging.DEBUG for r in caplog.records) == 99 * len(GARBLED)


def test_garbled_data_of_the_wrong_type_never_raises() -> None:
    scanner, _ = collecting()
    scanner.on_advertisement(ADDR, {COMPANY_ID: 42}, -70)  # type: ignore[dict-item]
    assert scanner.stats.rejected == {"other": 1}


@pytest.mark.allow_logged_errors
def test_a_failing_handler_is_logged_once_and_does_not_escape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: Any) -> None:
        raise RuntimeError("handler bug")

    scanner = TrackerScanner(broken)
    for counter in range(5):
        scanner.on_advertisement(ADDR, {COMPANY_ID: advert(counter=counter)}, -70)
    assert scanner.stats.handler_errors == 5
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_twenty_thousand_adverts_per_second_fit_easily() -> None:
    scanner, seen = collecting()
    payloads = [{COMPANY_ID: advert(tracker=1 + i % 50, counter=i % 256)} for i in range(20_000)]
    addresses = [f"AA:BB:CC:DD:EE:{i % 50:02X}" for i in range(20_000)]
    started = time.perf_counter()
    for address, data in zip(addresses, payloads, strict=True):
        scanner.on_advertisement(address, data, -70)
    elapsed = time.perf_counter() - started
    assert len(seen) == 20_000
    assert elapsed < 1.0, f"20,000 adverts took {elapsed:.3f} s"


# -- bleak's callback shape ------------------------------------------------------------------------


def bleak_advert(manufacturer_data: dict[int, bytes], rssi: int = -65) -> AdvertisementData:
    # bleak 3.1's AdvertisementData is a 7-field NamedTuple; all of them, as BlueZ fills them
    return AdvertisementData(
        local_name="tracker-66",
        manufacturer_data=manufacturer_data,
        service_data={},
        service_uuids=[],
        tx_power=None,
        rssi=rssi,
        platform_data=("/org/bluez/hci0/dev_C0_FF_EE_00_00_42", {}),
    )


def test_detection_callback_as_bleak_calls_it() -> None:
    assert len(AdvertisementData._fields) == 7
    scanner, seen = collecting()
    path = "/org/bluez/hci0/dev_C0_FF_EE_00_00_42"
    device = BLEDevice(ADDR.upper(), "tracker-66", {"path": path})
    scanner.detection_callback(device, bleak_advert({COMPANY_ID: advert(66, 12)}, rssi=-58))
    assert [(a, ad.tracker, ad.table, r) for a, ad, r in seen] == [(ADDR.upper(), 66, 12, -58)]
    # the pager connects to what the scanner saw, whatever case the address is asked in
    assert scanner.device(ADDR) is device


def test_detection_callback_keeps_devices_of_trackers_only() -> None:
    scanner, seen = collecting()
    phone = BLEDevice("11:22:33:44:55:66", "phone", {})
    scanner.detection_callback(phone, bleak_advert({0x004C: b"\x10\x05"}))
    assert scanner.device("11:22:33:44:55:66") is None
    assert seen == [] and scanner.stats.ignored == 1


# -- start, stop, no adapter -----------------------------------------------------------------------


class FakeBackend:
    def __init__(self, callback: Callable[..., None], adapter: str | None) -> None:
        self.callback = callback
        self.adapter = adapter
        self.running = False
        self.stops = 0

    async def start(self) -> None:
        self.running = True

    async def stop(self) -> None:
        self.running = False
        self.stops += 1


class Factory:
    """Makes FakeBackends; `failures` are raised, one per call, before it succeeds again."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.made: list[FakeBackend] = []
        self.calls = 0

    def __call__(self, callback: Callable[..., None], adapter: str | None) -> FakeBackend:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        backend = FakeBackend(callback, adapter)
        self.made.append(backend)
        return backend


class SteppedClock:
    """Monotonic time that moves only when the test says so; sleepers wake in deadline order."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> asyncio.Future[None]:
        self.sleeps.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + seconds, future))
        return future

    async def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while True:
            await _settle()
            self._sleepers = [(t, f) for t, f in self._sleepers if not f.done()]
            due = [t for t, _ in self._sleepers if t <= target]
            if not due:
                break
            self.now = max(self.now, min(due))
            for deadline, future in self._sleepers:
                if deadline <= self.now:
                    future.set_result(None)
        self.now = target
        await _settle()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_start_stop_with_a_fake_backend() -> None:
    factory = Factory()
    scanner = TrackerScanner(lambda *_: None, adapter="hci1", factory=factory)
    assert scanner.status == "stopped" and not scanner.is_running()
    await scanner.start()
    await scanner.start()  # idempotent
    assert scanner.status == "running" and scanner.is_running()
    assert factory.calls == 1
    backend = factory.made[0]
    assert backend.running and backend.adapter == "hci1"
    # bleak would call the detection callback it was given
    backend.callback(BLEDevice(ADDR, None, {}), bleak_advert({COMPANY_ID: advert()}))
    assert scanner.stats.decoded == 1
    await scanner.stop()
    assert scanner.status == "stopped" and not backend.running


@pytest.mark.parametrize(
    "error",
    [
        BleakBluetoothNotAvailableError(
            "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
        ),
        BleakError("adapter 'hci1' not found"),
    ],
)
async def test_no_adapter(error: Exception, caplog: pytest.LogCaptureFixture) -> None:
    scanner = TrackerScanner(lambda *_: None, adapter="hci1", factory=Factory(error))
    await scanner.start()  # not an error: reported, and retried in the background
    assert scanner.status == "no-adapter" and not scanner.is_running()
    assert isinstance(scanner.problem, NoAdapterError) and scanner.problem.__cause__ is error
    message = str(scanner.problem)
    assert message.startswith(f"no Bluetooth adapter (hci1) available: {error.args[0]} (")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and message in warnings[0].getMessage()
    assert "retrying every 0.75..60 s" in warnings[0].getMessage()
    await scanner.stop()
    assert scanner.status == "stopped"


async def test_no_system_bus_with_the_real_bleak_backend(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    bus = f"unix:path={tmp_path}/no-such-bus"
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", bus)
    scanner = TrackerScanner(lambda *_: None)
    await scanner.start()
    try:
        assert str(scanner.problem).startswith(f"BlueZ not reachable over D-Bus at {bus}: ")
        assert scanner.status == "no-adapter"
    finally:
        await scanner.stop()


async def test_an_adapter_that_cannot_scan() -> None:
    not_ready = BleakDBusError("org.bluez.Error.NotReady", ["Resource Not Ready"])
    scanner = TrackerScanner(lambda *_: None, factory=Factory(not_ready))
    await scanner.start()
    try:
        assert scanner.status == "no-adapter"
        assert re.match(
            r"the Bluetooth adapter \(default\) cannot scan: .*NotReady", str(scanner.problem)
        )
    finally:
        await scanner.stop()


def within(delays: list[float], steps: list[float]) -> bool:
    return len(delays) == len(steps) and all(
        step * (1 - JITTER) <= delay <= step for delay, step in zip(delays, steps, strict=True)
    )


async def test_a_missing_adapter_is_picked_up_when_it_appears(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="radio.scanner")
    unplugged = BleakBluetoothNotAvailableError(
        "No Bluetooth adapters found.", BleakBluetoothNotAvailableReason.NO_BLUETOOTH
    )
    clock, factory = SteppedClock(), Factory(*[unplugged] * 4)
    seen: Seen = []
    scanner = TrackerScanner(
        lambda a, ad, rssi: seen.append((a, ad, rssi)),
        silence_timeout=60,
        factory=factory,
        clock=clock,
        rng=random.Random(4),
    )
    await scanner.start()
    try:
        assert scanner.status == "no-adapter" and factory.calls == 1
        await clock.advance(1 + 2 + 4)  # the waits never exceed their step
        assert factory.calls == 4 and scanner.status == "no-adapter"
        await clock.advance(8)
        assert factory.calls == 5 and scanner.status == "running" and scanner.problem is None
        twin = Backoff(BACKOFF_MIN, BACKOFF_MAX, rng=random.Random(4))
        waits = clock.sleeps[:4]  # then the watchdog's first check
        assert waits == [twin.next() for _ in range(4)]  # exactly the radio's policy
        assert within(waits, [1, 2, 4, 8]) and clock.sleeps[4:] == [15.0]
        assert scanner.stats.restarts == 0
        messages = [(r.levelno, r.getMessage()) for r in caplog.records]
        warnings = [m for level, m in messages if level >= logging.WARNING]
        assert len(warnings) == 1
        assert warnings[0].startswith("no Bluetooth: no Bluetooth adapter (hciN) available")
        assert (logging.INFO, "Bluetooth adapter found; scanning for trackers") in messages
        factory.made[-1].callback(BLEDevice(ADDR, None, {}), bleak_advert({COMPANY_ID: advert()}))
        assert len(seen) == 1
        await clock.advance(75)  # and the watchdog has taken over
        assert scanner.stats.restarts == 1 and factory.calls == 6
    finally:
        await scanner.stop()
    assert scanner.status == "stopped" and factory.made[-1].stops == 1


async def test_stop_ends_the_wait_for_an_adapter() -> None:
    clock = SteppedClock()
    factory = Factory(*[BleakError("adapter 'hci0' not found")] * 100)
    scanner = TrackerScanner(lambda *_: None, factory=factory, clock=clock)
    await scanner.start()
    await clock.advance(100)
    calls = factory.calls
    assert calls > 3
    await scanner.stop()
    await clock.advance(1000)
    assert factory.calls == calls and scanner.status == "stopped"
    assert not [t for t in asyncio.all_tasks() if t.get_name() == "radio-scanner"]


# -- the silence watchdog --------------------------------------------------------------------------


async def test_silence_restarts_the_scanner_and_logs_once_per_episode(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="radio.scanner")
    clock, factory = SteppedClock(), Factory()
    scanner = TrackerScanner(lambda *_: None, silence_timeout=60, factory=factory, clock=clock)
    await scanner.start()
    try:
        await clock.advance(50)
        scanner.on_advertisement(ADDR, {COMPANY_ID: advert()}, -70)
        await clock.advance(50)  # 100 s since start, but only 50 s of silence
        assert scanner.stats.restarts == 0
        await clock.advance(30)
        assert scanner.stats.restarts == 1
        assert factory.calls == 2 and factory.made[0].stops == 1 and factory.made[1].running
        assert scanner.status == "running"
        await clock.advance(76)  # still silent: same episode, restarted again but not logged
        assert scanner.stats.restarts == 2
        warnings = [r for r in caplog.records if "no BLE advertisement" in r.getMessage()]
        assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
        scanner.on_advertisement(ADDR, {COMPANY_ID: advert(counter=2)}, -70)
        await clock.advance(16)
        assert any("arriving again" in r.getMessage() for r in caplog.records)
    finally:
        await scanner.stop()
    assert factory.made[-1].stops == 1


async def test_a_failing_restart_backs_off_and_recovers(caplog: pytest.LogCaptureFixture) -> None:
    clock, factory = SteppedClock(), Factory()
    scanner = TrackerScanner(lambda *_: None, silence_timeout=8, factory=factory, clock=clock)
    await scanner.start()
    factory.failures = [
        BleakBluetoothNotAvailableError("unplugged", BleakBluetoothNotAvailableReason.NO_BLUETOOTH),
        RuntimeError("unexpected"),
        BleakError("boom"),
    ]
    try:
        await clock.advance(8)  # silence noticed; the first restart fails
        assert scanner.status == "no-adapter"
        await clock.advance(1)
        assert scanner.status == "restarting"  # not an adapter problem, still retried
        await clock.advance(2)
        assert scanner.status == "no-adapter"
        await clock.advance(4)
        assert scanner.status == "running" and scanner.stats.restarts == 1
        assert within(clock.sleeps[4:7], [1.0, 2.0, 4.0])  # after four watchdog checks: backoff
        failures = [r for r in caplog.records if "scanner failed" in r.getMessage()]
        assert len(failures) == 1  # the others went to DEBUG
    finally:
        await scanner.stop()
    assert factory.made[-1].stops == 1


async def test_backoff_is_capped() -> None:
    clock, factory = SteppedClock(), Factory()
    scanner = TrackerScanner(lambda *_: None, silence_timeout=2, factory=factory, clock=clock)
    await scanner.start()
    factory.failures = [BleakError("down")] * 100
    try:
        await clock.advance(2000)
        backoffs = clock.sleeps[4:]  # after four watchdog checks of 0.5 s
        assert len(backoffs) > 10 and max(backoffs) <= BACKOFF_MAX
        assert within(backoffs[:10], [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0, 60.0])
        assert len(set(backoffs[6:])) == len(backoffs[6:])  # spread even at the cap
        assert scanner.stats.restarts == 0 and scanner.status == "no-adapter"
    finally:
        await scanner.stop()
    assert scanner.status == "stopped"


async def test_watchdog_with_real_time_and_a_small_timeout() -> None:
    factory = Factory()
    scanner = TrackerScanner(lambda *_: None, silence_timeout=0.2, factory=factory)
    await scanner.start()
    try:
        async with asyncio.timeout(5):
            while scanner.stats.restarts < 1:
                await asyncio.sleep(0.02)
    finally:
        await scanner.stop()
    assert factory.calls >= 2
