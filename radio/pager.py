"""Paging: make a tracker vibrate with one GATT write (docs/protocols.md, "Paging").

Each page is connect, write with response, disconnect: an adapter has only a handful of
connection slots and a restaurant has dozens of trackers, so none is held between pages, and at
most `max_connections` are open at once.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from radio.advert import PAGE_CHARACTERISTIC_UUID, Pattern, page_command
from radio.backoff import Backoff

if TYPE_CHECKING:
    from bleak import BleakClient
    from bleak.backends.device import BLEDevice

_LOGGER = logging.getLogger(__name__)

DeviceLookup = Callable[[str], "BLEDevice | None"]
# bleak_retry_connector.establish_connection's shape, so tests can stand in for the radio.
Connector = Callable[..., Awaitable["BleakClient"]]

_DISCONNECT_TIMEOUT = 10.0


class PagingError(RuntimeError):
    """Every attempt to page (or stop paging) a tracker failed; the message says why."""


class GattPager:
    def __init__(
        self,
        device_lookup: DeviceLookup,
        *,
        is_available: Callable[[], bool],
        attempts: int = 3,
        backoff: float = 1.0,
        max_backoff: float = 8.0,
        attempt_timeout: float = 20.0,
        max_connections: int = 2,
        connect: Connector | None = None,
        client_class: type[BleakClient] | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        Backoff(backoff, max_backoff)  # refuses nonsense bounds here, not at the first page
        self._device_lookup = device_lookup
        self._is_available = is_available
        self._attempts = attempts
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._rng = rng
        self._attempt_timeout = attempt_timeout
        self._connect = connect
        self._client_class = client_class
        self._sleep = sleep
        self._locks: dict[str, asyncio.Lock] = {}
        self._slots = asyncio.Semaphore(max_connections)
        self._disconnects: set[asyncio.Task[None]] = set()

    def available(self) -> bool:
        return self._is_available()

    async def page(
        self, address: str, duration_s: int = 60, pattern: int = Pattern.SHORT_PULSES
    ) -> None:
        # Bad arguments fail here (AdvertError), before any radio traffic.
        await self._send(address, page_command(pattern, duration_s), "page")

    async def stop(self, address: str) -> None:
        await self._send(address, page_command(stop=True), "stop paging")

    async def _send(self, address: str, command: bytes, what: str) -> None:
        address = address.upper()
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            # Jittered: two pages failing on the same busy adapter must not retry together.
            backoff = Backoff(self._backoff, self._max_backoff, rng=self._rng)
            cause = "no attempt"
            last_exc: BaseException | None = None
            for attempt in range(1, self._attempts + 1):
                device = self._device_lookup(address)
                if device is None:
                    cause, last_exc = "the scanner has not seen this tracker", None
                else:
                    try:
                        async with self._slots:
                            await self._write_once(device, address, command)
                    except (TimeoutError, OSError, EOFError, _bleak_error()) as exc:
                        cause, last_exc = f"{type(exc).__name__}: {exc}", exc
                    else:
                        return
                _LOGGER.debug("%s %s: attempt %d failed: %s", what, address, attempt, cause)
                if attempt < self._attempts:
                    await self._sleep(backoff.next())
            raise PagingError(
                f"could not {what} tracker {address} after {self._attempts} attempts: {cause}"
            ) from last_exc

    async def _write_once(self, device: BLEDevice, address: str, command: bytes) -> None:
        connect, client_class = self._connect, self._client_class
        if connect is None or client_class is None:
            from bleak_retry_connector import BleakClientWithServiceCache, establish_connection

            connect = connect or establish_connection
            client_class = client_class or BleakClientWithServiceCache
        client: BleakClient | None = None
        try:
            async with asyncio.timeout(self._attempt_timeout):
                # max_attempts=1: our loop owns the retries and the backoff between them
                # (bleak-retry-connector still retries its transient errors within the attempt).
                client = await connect(client_class, device, address, max_attempts=1)
                await client.write_gatt_char(PAGE_CHARACTERISTIC_UUID, command, response=True)
        finally:
            if client is not None:
                await self._disconnect(client, address)

    async def _disconnect(self, client: BleakClient, address: str) -> None:
        # Shielded: a caller that cancels the page must not leave the tracker connected.
        task = asyncio.create_task(self._disconnect_now(client, address))
        self._disconnects.add(task)
        task.add_done_callback(self._disconnects.discard)
        await asyncio.shield(task)

    @staticmethod
    async def _disconnect_now(client: BleakClient, address: str) -> None:
        try:
            async with asyncio.timeout(_DISCONNECT_TIMEOUT):
                await client.disconnect()
        except Exception as exc:
            _LOGGER.warning("could not disconnect from tracker %s: %r", address, exc)


def _bleak_error() -> type[Exception]:
    # Imported on first use: bleak costs ~50 ms at import and demo mode never pages by radio.
    from bleak.exc import BleakError

    return BleakError
