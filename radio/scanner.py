"""The tracker scanner: every advertisement, from bleak or injected, goes through one entry point.

Model: habluetooth's `scanner_bleak.py` (one entry point, a silence watchdog that restarts the
scanner). bleak is imported only when a scanner starts, so demo mode and tests that inject
advertisements do not pay for it.

A missing adapter is not a failed start: `start()` reports it in `status` and `problem` and
keeps trying in the background (a USB dongle plugged in later, bluetoothd starting late), with
the same backoff (radio.backoff) as a restart after silence.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from radio.advert import COMPANY_ID, TrackerAdvert, decode
from radio.backoff import Backoff

if TYPE_CHECKING:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

_LOGGER = logging.getLogger(__name__)

AdvertHandler = Callable[[str, TrackerAdvert, int | None], None]
DetectionCallback = Callable[["BLEDevice", "AdvertisementData"], None]
Status = Literal["stopped", "running", "restarting", "no-adapter"]

# Between attempts to (re)start scanning. A probe is one D-Bus call, so an adapter that appears
# is picked up within a minute at worst.
BACKOFF_MIN = 1.0
BACKOFF_MAX = 60.0
_START_TIMEOUT = 15.0  # bleak's own D-Bus calls have no deadline; a wedged bluetoothd would hang
_STOP_TIMEOUT = 5.0
_CHECKS_PER_TIMEOUT = 4  # silence is noticed between 1 and 1.25 timeouts after the last advert


class NoAdapterError(RuntimeError):
    """No usable Bluetooth adapter, or BlueZ cannot be reached over D-Bus."""


class ScannerBackend(Protocol):
    """What the scanner needs from `bleak.BleakScanner` (tests inject fakes)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


ScannerFactory = Callable[[DetectionCallback, "str | None"], ScannerBackend]


class MonotonicClock(Protocol):
    """The watchdog's time (tests step a fake one instead of sleeping)."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> Awaitable[None]: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> Awaitable[None]:
        return asyncio.sleep(seconds)


def bleak_scanner(callback: DetectionCallback, adapter: str | None) -> ScannerBackend:
    # Active scanning is bleak's default and needs nothing from BlueZ; passive scanning would
    # need bluetoothd --experimental and or_patterns.
    from bleak import BleakScanner

    return BleakScanner(detection_callback=callback, bluez={"adapter": adapter} if adapter else {})


@dataclass(slots=True)
class ScannerStats:
    received: int = 0  # every call of on_advertisement
    decoded: int = 0  # tracker adverts that decoded, repeats included
    repeats: int = 0
    ignored: int = 0  # no data under our company id (other devices)
    rejected: Counter[str] = field(default_factory=Counter)  # garbled, by cause
    restarts: int = 0
    handler_errors: int = 0


class _Seen:
    """Per tracker: its address as handed out, the last counter (so a repeat costs nothing), and
    the BLEDevice bleak last reported for it (what paging connects to)."""

    __slots__ = ("address", "counter", "device")

    def __init__(self, address: str) -> None:
        self.address = address
        self.counter = -1
        self.device: BLEDevice | None = None


# AdvertError carries only a message; its first words name the cause, the rest are the values.
_CAUSES = (
    ("empty", "empty"),
    ("unknown layout version", "version"),
    ("payload of", "short"),
    ("tracker number 0", "tracker-0"),
    ("battery", "battery"),
    ("reserved flag", "flags"),
)


def rejection_cause(error: Exception) -> str:
    message = str(error)
    for prefix, cause in _CAUSES:
        if message.startswith(prefix):
            return cause
    return "other"


class TrackerScanner:
    def __init__(
        self,
        on_advert: AdvertHandler,
        *,
        adapter: str | None = None,
        silence_timeout: float = 60.0,
        repeat_filter: bool = True,
        factory: ScannerFactory = bleak_scanner,
        clock: MonotonicClock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._on_advert = on_advert
        self._adapter = adapter
        self._silence_timeout = silence_timeout
        self._repeat_filter = repeat_filter
        self._factory = factory
        self._clock = clock or SystemClock()
        self.stats = ScannerStats()
        self.status: Status = "stopped"
        self.problem: NoAdapterError | None = None  # why the status is "no-adapter"
        self._seen: dict[str, _Seen] = {}  # by the address as reported (the hot path)
        self._trackers: dict[str, _Seen] = {}  # the same records by upper-case address
        self._backend: ScannerBackend | None = None
        self._backoff = Backoff(BACKOFF_MIN, BACKOFF_MAX, rng=rng)
        # Waits for the adapter if it was missing at start, then watches for silence.
        self._task: asyncio.Task[None] | None = None
        self._logged_causes: set[str] = set()

    # -- the entry point ------------------------------------------------------------------------

    def on_advertisement(
        self, address: str, manufacturer_data: Mapping[int, bytes], rssi: int | None
    ) -> None:
        stats = self.stats
        stats.received += 1
        payload = manufacturer_data.get(COMPANY_ID)
        if payload is None:
            stats.ignored += 1
            return
        try:
            advert = decode(payload)
        except (ValueError, TypeError) as err:  # AdvertError is a ValueError; TypeError: not bytes
            self._reject(address, err)
            return
        stats.decoded += 1
        seen = self._seen.get(address)
        if seen is None:
            upper = address.upper()
            seen = self._seen[address] = self._trackers[upper] = _Seen(upper)
        elif self._repeat_filter and seen.counter == advert.counter:
            stats.repeats += 1
            return
        seen.counter = advert.counter
        try:
            self._on_advert(seen.address, advert, rssi)
        except Exception:
            # The handler is the gateway's; its bug must not stop the radio (or bleak's D-Bus
            # reader, which calls us).
            stats.handler_errors += 1
            if stats.handler_errors == 1:
                _LOGGER.exception("tracker advert handler failed (later failures at DEBUG)")
            else:
                _LOGGER.debug("tracker advert handler failed", exc_info=True)

    def detection_callback(self, device: BLEDevice, advertisement: AdvertisementData) -> None:
        """bleak's detection callback: keeps the BLEDevice of trackers for paging."""
        self.on_advertisement(device.address, advertisement.manufacturer_data, advertisement.rssi)
        # only trackers that sent a valid advert have a record, so other devices are not kept
        if (seen := self._seen.get(device.address)) is not None:
            seen.device = device

    def device(self, address: str) -> BLEDevice | None:
        """The last BLEDevice seen for a tracker address (what GattPager connects to)."""
        seen = self._trackers.get(address.upper())
        return None if seen is None else seen.device

    def is_running(self) -> bool:
        return self.status == "running"

    def _reject(self, address: str, err: Exception) -> None:
        cause = rejection_cause(err)
        self.stats.rejected[cause] += 1
        if cause in self._logged_causes:
            _LOGGER.debug("garbled tracker advert from %s: %s", address, err)
            return
        self._logged_causes.add(cause)
        _LOGGER.warning(
            "ignoring garbled tracker adverts (%s), e.g. from %s: %s; "
            "further ones are only counted",
            cause,
            address,
            err,
        )

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start scanning; without a usable adapter, keep trying in the background.

        Returns after the first attempt: `status` is then "running", or "no-adapter" with the
        reason in `problem` (logged once as a WARNING; INFO when the adapter appears)."""
        if self._task is not None:
            return
        try:
            self._backend = await self._start_backend()
        except NoAdapterError as exc:
            self.status, self.problem = "no-adapter", exc
            _LOGGER.warning(
                "no Bluetooth: %s; trackers are not heard until an adapter appears "
                "(retrying every %.3g..%.3g s)",
                exc,
                self._backoff.shortest,
                self._backoff.longest,
            )
            self._task = asyncio.create_task(self._wait_then_watch(), name="radio-scanner")
            return
        self.status = "running"
        self._task = asyncio.create_task(self._watch(), name="radio-scanner")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                if (current := asyncio.current_task()) is not None and current.cancelling():
                    raise
        await self._stop_backend()
        self.status = "stopped"

    async def _start_backend(self) -> ScannerBackend:
        from bleak.exc import BleakBluetoothNotAvailableError, BleakDBusError, BleakError

        try:
            backend = self._factory(self.detection_callback, self._adapter)
            async with asyncio.timeout(_START_TIMEOUT):
                await backend.start()
        except BleakBluetoothNotAvailableError as exc:
            raise NoAdapterError(self._no_adapter_message(exc)) from exc
        except BleakDBusError as exc:
            if exc.dbus_error.startswith("org.freedesktop.DBus.Error."):  # nobody owns org.bluez
                raise NoAdapterError(self._unreachable_message(exc)) from exc
            raise NoAdapterError(self._cannot_scan_message(exc)) from exc
        except BleakError as exc:
            if "adapter" in str(exc) and "not found" in str(exc):
                raise NoAdapterError(self._no_adapter_message(exc)) from exc
            raise NoAdapterError(self._cannot_scan_message(exc)) from exc
        except (OSError, TimeoutError) as exc:  # no system bus socket, or a wedged bluetoothd
            raise NoAdapterError(self._unreachable_message(exc)) from exc
        return backend

    def _no_adapter_message(self, exc: Exception) -> str:
        # BleakBluetoothNotAvailableError's str() is the repr of (message, reason)
        detail = exc.args[0] if exc.args else repr(exc)
        return (
            f"no Bluetooth adapter ({self._adapter or 'hciN'}) available: {detail} "
            "(check `bluetoothctl list`, rfkill, and that bluetoothd is running)"
        )

    def _cannot_scan_message(self, exc: Exception) -> str:
        return f"the Bluetooth adapter ({self._adapter or 'default'}) cannot scan: {exc}"

    @staticmethod
    def _unreachable_message(exc: Exception) -> str:
        bus = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "unix:path=/run/dbus/system_bus_socket")
        detail = str(exc) or type(exc).__name__
        return (
            f"BlueZ not reachable over D-Bus at {bus}: {detail} (is dbus running, and bluetoothd?)"
        )

    async def _stop_backend(self) -> None:
        backend, self._backend = self._backend, None
        if backend is None:
            return
        try:
            async with asyncio.timeout(_STOP_TIMEOUT):
                await backend.stop()
        except Exception as exc:
            # A scanner that cannot stop (adapter unplugged, bluetoothd gone) is replaced anyway.
            _LOGGER.debug("stopping the BLE scanner failed: %r", exc)

    # -- the silence watchdog ---------------------------------------------------------------------

    async def _watch(self) -> None:
        clock = self._clock
        interval = self._silence_timeout / _CHECKS_PER_TIMEOUT
        seen = self.stats.received
        last_activity = clock.monotonic()
        silent_episode = False
        while True:
            await clock.sleep(interval)
            if self.stats.received != seen:
                seen = self.stats.received
                last_activity = clock.monotonic()
                if silent_episode:
                    silent_episode = False
                    _LOGGER.info("BLE advertisements are arriving again")
                continue
            if clock.monotonic() - last_activity < self._silence_timeout:
                continue
            if silent_episode:
                _LOGGER.debug("still no BLE advertisement; restarting the scanner again")
            else:
                silent_episode = True
                _LOGGER.warning(
                    "no BLE advertisement for %.0f s; restarting the scanner", self._silence_timeout
                )
            await self._restart()
            seen = self.stats.received
            last_activity = clock.monotonic()

    async def _restart(self) -> None:
        self.status = "restarting"
        if await self._start_with_backoff(failed_once=False):
            _LOGGER.info("BLE scanner restarted")
        self.stats.restarts += 1

    async def _wait_then_watch(self) -> None:
        await self._start_with_backoff(failed_once=True)
        _LOGGER.info("Bluetooth adapter found; scanning for trackers")
        await self._watch()

    async def _start_with_backoff(self, *, failed_once: bool) -> bool:
        """(Re)start the backend until it runs, waiting the radio's backoff after each failure.

        Returns whether any attempt failed. `failed_once`: start() has just failed and logged
        why, so wait before the first try here and log no second WARNING."""
        backoff = self._backoff
        backoff.reset()  # a new episode: the last one ended with a running scanner
        failed = logged = failed_once
        while True:
            if failed:
                await self._clock.sleep(backoff.next())
            await self._stop_backend()
            try:
                self._backend = await self._start_backend()
            except Exception as exc:
                failed = True
                if isinstance(exc, NoAdapterError):
                    self.status, self.problem = "no-adapter", exc
                else:
                    self.status = "restarting"
                if not logged:
                    logged = True
                    _LOGGER.warning(
                        "restarting the BLE scanner failed, retrying with backoff: %s", exc
                    )
                else:
                    _LOGGER.debug("starting the BLE scanner failed again: %s", exc)
                continue
            self.status, self.problem = "running", None
            return backoff.attempts > 0
