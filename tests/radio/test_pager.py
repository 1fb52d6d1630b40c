"""GattPager: the write, retries with capped backoff, one page per tracker at a time, cleanup."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from bleak.backends.device import BLEDevice
from bleak.exc import BleakError

from radio.advert import PAGE_CHARACTERISTIC_UUID, AdvertError, Pattern, page_command
from radio.backoff import JITTER, Backoff
from radio.pager import GattPager, PagingError

ADDR = "C0:FF:EE:00:00:42"


class FakeClient:
    """What establish_connection hands back: records writes and disconnects."""

    def __init__(self, radio: FakeRadio, address: str) -> None:
        self.radio = radio
        self.address = address
        self.connected = True

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool) -> None:
        self.radio.writes.append((self.address, uuid, bytes(data), response))
        if self.radio.write_failures:
            raise self.radio.write_failures.pop(0)
        await asyncio.sleep(self.radio.write_delay)

    async def disconnect(self) -> None:
        self.connected = False
        self.radio.disconnects += 1


class FakeRadio:
    """Stands in for bleak_retry_connector.establish_connection."""

    def __init__(self, *connect_failures: Exception) -> None:
        self.connect_failures = list(connect_failures)
        self.write_failures: list[Exception] = []
        self.write_delay = 0.0
        self.connect_delay = 0.0
        self.writes: list[tuple[str, str, bytes, bool]] = []
        self.clients: list[FakeClient] = []
        self.disconnects = 0
        self.active = 0
        self.max_active = 0
        self.calls: list[dict[str, Any]] = []

    async def __call__(
        self, client_class: type, device: BLEDevice, name: str, **kwargs: Any
    ) -> FakeClient:
        self.calls.append({"client_class": client_class, "device": device, "name": name, **kwargs})
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            await asyncio.sleep(self.connect_delay)
            if self.connect_failures:
                raise self.connect_failures.pop(0)
        finally:
            self.active -= 1
        client = FakeClient(self, device.address)
        self.clients.append(client)
        return client


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def devices(*addresses: str) -> dict[str, BLEDevice]:
    return {a: BLEDevice(a, "tracker", {}) for a in addresses}


def waits_within(waits: list[float], steps: list[float]) -> bool:
    return len(waits) == len(steps) and all(
        step * (1 - JITTER) <= wait <= step for wait, step in zip(waits, steps, strict=True)
    )


def make_pager(
    radio: FakeRadio, known: dict[str, BLEDevice] | None = None, **kw: Any
) -> tuple[GattPager, Sleeps]:
    table = devices(ADDR) if known is None else known
    sleeps = Sleeps()
    pager = GattPager(
        table.get,
        is_available=lambda: True,
        connect=radio,
        client_class=FakeClient,
        sleep=sleeps,
        **kw,
    )  # type: ignore[arg-type]
    return pager, sleeps


async def test_page_writes_the_command_with_response_and_disconnects() -> None:
    radio = FakeRadio()
    pager, sleeps = make_pager(radio)
    await pager.page(ADDR.lower(), duration_s=30, pattern=Pattern.LONG_PULSES)
    assert radio.writes == [(ADDR, PAGE_CHARACTERISTIC_UUID, bytes([1, 2, 30]), True)]
    assert radio.writes[0][2] == page_command(Pattern.LONG_PULSES, 30)
    assert radio.calls[0]["max_attempts"] == 1 and radio.calls[0]["name"] == ADDR
    assert radio.disconnects == 1 and not radio.clients[0].connected
    assert sleeps.calls == []


async def test_stop_writes_the_stop_command() -> None:
    radio = FakeRadio()
    pager, _ = make_pager(radio)
    await pager.stop(ADDR)
    assert radio.writes[0][2] == bytes([0, 0, 0]) == page_command(stop=True)
    assert radio.disconnects == 1


async def test_defaults_page_for_a_minute_with_short_pulses() -> None:
    radio = FakeRadio()
    pager, _ = make_pager(radio)
    await pager.page(ADDR)
    assert radio.writes[0][2] == bytes([1, 1, 60])


async def test_bad_arguments_fail_before_any_radio_traffic() -> None:
    radio = FakeRadio()
    pager, _ = make_pager(radio)
    with pytest.raises(AdvertError):
        await pager.page(ADDR, duration_s=300)
    with pytest.raises(AdvertError):
        await pager.page(ADDR, pattern=7)
    assert radio.calls == []


async def test_connect_failures_are_retried_with_backoff() -> None:
    radio = FakeRadio(BleakError("le-connection-abort-by-local"), TimeoutError())
    pager, sleeps = make_pager(radio, attempts=3)
    await pager.page(ADDR)
    assert len(radio.calls) == 3 and len(radio.writes) == 1
    assert waits_within(sleeps.calls, [1.0, 2.0])


async def test_retries_wait_by_the_radio_policy_and_are_jittered() -> None:
    # Two pages failing together on one busy adapter must not retry in step.
    waits: list[list[float]] = []
    for seed in (1, 2):
        radio = FakeRadio(*[BleakError("busy")] * 4)
        pager, sleeps = make_pager(
            radio, attempts=5, backoff=0.5, max_backoff=2.0, rng=random.Random(seed)
        )
        await pager.page(ADDR)
        twin = Backoff(0.5, 2.0, rng=random.Random(seed))
        assert sleeps.calls == [twin.next() for _ in range(4)]
        assert waits_within(sleeps.calls, [0.5, 1.0, 2.0, 2.0])
        waits.append(sleeps.calls)
    assert waits[0] != waits[1]


def test_nonsense_backoff_is_refused_at_construction() -> None:
    for first, cap in [(0.0, 1.0), (2.0, 1.0)]:
        with pytest.raises(ValueError):
            GattPager(devices(ADDR).get, is_available=lambda: True, backoff=first, max_backoff=cap)


async def test_all_attempts_failing_raise_paging_error_with_the_cause() -> None:
    last = BleakError("org.bluez.Error.Failed: le-connection-abort-by-local")
    radio = FakeRadio(BleakError("first"), OSError("broken pipe"), EOFError(), TimeoutError(), last)
    pager, sleeps = make_pager(radio, attempts=5, backoff=1.0, max_backoff=3.0)
    with pytest.raises(
        PagingError,
        match=r"could not page tracker C0:FF:EE:00:00:42 after 5 "
        r"attempts: BleakError: .*le-connection-abort",
    ) as info:
        await pager.page(ADDR)
    assert info.value.__cause__ is last
    assert waits_within(sleeps.calls, [1.0, 2.0, 3.0, 3.0])  # capped
    assert radio.writes == []


async def test_a_failed_write_still_disconnects_and_is_retried() -> None:
    radio = FakeRadio()
    radio.write_failures = [BleakError("[org.bluez.Error.Failed] Not connected")] * 3
    pager, _ = make_pager(radio, attempts=3)
    with pytest.raises(PagingError, match="Not connected"):
        await pager.stop(ADDR)
    assert len(radio.writes) == 3
    assert radio.disconnects == 3 and not any(c.connected for c in radio.clients)


async def test_an_unknown_tracker_is_looked_up_again_on_each_attempt() -> None:
    radio = FakeRadio()
    known: dict[str, BLEDevice] = {}
    lookups: list[str] = []

    def lookup(address: str) -> BLEDevice | None:
        lookups.append(address)
        if len(lookups) == 2:  # the scanner hears it between attempts
            known.update(devices(ADDR))
        return known.get(address)

    pager = GattPager(
        lookup,
        is_available=lambda: True,
        connect=radio,  # type: ignore[arg-type]
        client_class=FakeClient,
        sleep=Sleeps(),
    )  # type: ignore[arg-type]
    await pager.page(ADDR)
    assert lookups == [ADDR, ADDR] and len(radio.writes) == 1

    never, _ = make_pager(FakeRadio(), known={}, attempts=2)
    with pytest.raises(PagingError, match="the scanner has not seen this tracker") as info:
        await never.page(ADDR)
    assert info.value.__cause__ is None


async def test_one_page_at_a_time_per_tracker() -> None:
    other = "C0:FF:EE:00:00:43"
    radio = FakeRadio()
    radio.connect_delay = radio.write_delay = 0.02
    pager, _ = make_pager(radio, known=devices(ADDR, other))
    await asyncio.gather(pager.page(ADDR), pager.stop(ADDR.lower()), pager.page(ADDR))
    assert radio.max_active == 1 and len(radio.writes) == 3
    radio.max_active = 0
    await asyncio.gather(pager.page(ADDR), pager.page(other))
    assert radio.max_active == 2  # different trackers do not wait for each other


async def test_connections_are_capped_across_trackers() -> None:
    many = [f"C0:FF:EE:00:01:{i:02X}" for i in range(6)]
    radio = FakeRadio()
    radio.connect_delay = 0.02
    pager, _ = make_pager(radio, known=devices(*many), max_connections=2)
    await asyncio.gather(*(pager.page(a) for a in many))
    assert radio.max_active == 2 and len(radio.writes) == 6


async def test_a_hanging_attempt_times_out() -> None:
    radio = FakeRadio()
    radio.connect_delay = 10
    pager, sleeps = make_pager(radio, attempts=2, attempt_timeout=0.05)
    async with asyncio.timeout(5):
        with pytest.raises(PagingError, match="TimeoutError"):
            await pager.page(ADDR)
    assert len(sleeps.calls) == 1 and radio.disconnects == 0


async def test_cancelling_a_page_mid_write_still_disconnects() -> None:
    radio = FakeRadio()
    radio.write_delay = 10
    pager, _ = make_pager(radio)
    task = asyncio.create_task(pager.page(ADDR))
    async with asyncio.timeout(5):
        while not radio.writes:
            await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert radio.disconnects == 1 and not radio.clients[0].connected


async def test_available_asks_the_scanner() -> None:
    running = [False]
    pager = GattPager(lambda _: None, is_available=lambda: running[0])
    assert not pager.available()
    running[0] = True
    assert pager.available()
    with pytest.raises(ValueError):
        GattPager(lambda _: None, is_available=lambda: True, attempts=0)


# -- with the real bleak_retry_connector.establish_connection and a fake BleakClient ------------


class FakeBleakClient:
    """Shaped like BleakClient as establish_connection builds and drives it."""

    instances: list[FakeBleakClient] = []
    connect_errors: list[Exception] = []

    def __init__(self, device: BLEDevice, disconnected_callback: Any = None, **kwargs: Any) -> None:
        self.device = device
        self.kwargs = kwargs
        self.connected = False
        self.written: list[tuple[str, bytes, bool]] = []
        FakeBleakClient.instances.append(self)

    async def connect(self, **kwargs: Any) -> None:
        if FakeBleakClient.connect_errors:
            raise FakeBleakClient.connect_errors.pop(0)
        self.connected = True

    async def write_gatt_char(self, uuid: str, data: bytes, response: bool) -> None:
        self.written.append((uuid, bytes(data), response))

    async def disconnect(self) -> None:
        self.connected = False


async def test_through_the_real_retry_connector() -> None:
    FakeBleakClient.instances = []
    FakeBleakClient.connect_errors = [BleakError("org.bluez.Error.Failed")]
    sleeps = Sleeps()
    pager = GattPager(
        devices(ADDR).get, is_available=lambda: True, client_class=FakeBleakClient, sleep=sleeps
    )  # type: ignore[arg-type]
    await pager.page(ADDR, duration_s=5)
    client = FakeBleakClient.instances[-1]
    assert client.kwargs.get("_is_retry_client") is True
    assert client.written == [(PAGE_CHARACTERISTIC_UUID, bytes([1, 1, 5]), True)]
    assert not client.connected
    assert waits_within(sleeps.calls, [1.0])  # the first round failed inside establish_connection

    FakeBleakClient.connect_errors = [BleakError("org.bluez.Error.Failed")] * 2
    with pytest.raises(PagingError, match=r"BleakConnectionError: .*Failed to connect after 1"):
        await GattPager(
            devices(ADDR).get,
            is_available=lambda: True,
            attempts=2,
            client_class=FakeBleakClient,
            sleep=sleeps,
        ).page(ADDR)  # type: ignore[arg-type]
