"""Finds raw-socket printers (`_pdl-datastream._tcp`, the port 9100 kind) announced over mDNS.

A printer is reported gone only after `misses` checks in a row without it: Odoo dropped a
printer after one missed scan, and users, seeing it vanish, printed again (printing.md lesson 6).
A check counts a printer present when the browser still lists it and it resolves. Resolution may
answer from zeroconf's cache, so a printer unplugged without a goodbye starts missing only once
its address records expire (two minutes with zeroconf's TTLs); a goodbye is seen at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from zeroconf import InterfaceChoice, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

__all__ = ["PDL_DATASTREAM", "FoundPrinter", "PrinterBrowser", "printer_id"]

log = logging.getLogger(__name__)

PDL_DATASTREAM = "_pdl-datastream._tcp.local."
# TXT keys that name one physical printer (the Bonjour printing spec's UUID; some vendors
# announce a serial number). Model names (ty, usb_MDL) are shared by every printer of a kind.
IDENTITY_KEYS = ("uuid", "serial", "serialnumber", "sn")
_CLOSE_TIMEOUT = 3.0


def printer_id(service_name: str) -> str:
    """16 hex characters, stable for a service name (DNS names ignore case)."""
    return hashlib.sha1(service_name.lower().encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class FoundPrinter:
    name: str  # the full service name, e.g. "EPSON TM-T20III._pdl-datastream._tcp.local."
    host: str  # an address to connect to (IPv4 preferred)
    port: int
    txt: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def id(self) -> str:
        return printer_id(self.name)

    @property
    def identity(self) -> str | None:
        """What tells this printer from another under the same name, if it announces it."""
        lowered = {k.lower(): v.strip() for k, v in self.txt.items()}
        for key in IDENTITY_KEYS:
            if value := lowered.get(key):
                return f"{key}={value.lower()}"
        return None

    @property
    def label(self) -> str:
        """The instance name people gave the printer."""
        return self.name.split("._", 1)[0]


@dataclass(slots=True)
class _Entry:
    printer: FoundPrinter
    misses: int = 0
    flapped: bool = False  # logged once that it came back, so a flaky printer does not spam


OnChange = Callable[[dict[str, FoundPrinter]], None]


def _is_ipv4(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).version == 4
    except ValueError:
        return False


class PrinterBrowser:
    """Keeps `found` (printer id -> FoundPrinter) and calls `on_change` whenever it changes."""

    def __init__(
        self,
        *,
        interfaces: list[str] | None = None,
        on_change: OnChange | None = None,
        misses: int = 3,
        interval: float = 30.0,
        resolve_timeout: float = 3.0,
        service_type: str = PDL_DATASTREAM,
        zeroconf: AsyncZeroconf | None = None,
    ) -> None:
        if misses < 1 or interval <= 0:
            raise ValueError("misses must be >= 1 and interval > 0")
        self._interfaces = interfaces
        self.on_change = on_change
        self.misses = misses
        self.interval = interval
        self.resolve_timeout = resolve_timeout
        self.service_type = service_type
        self.checks = 0  # completed check rounds; for diagnostics and tests
        self._shared = zeroconf  # a caller's instance is used, never closed
        self._aiozc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._listed: dict[str, str] = {}  # names the browser lists now, by lower-case name
        self._entries: dict[str, _Entry] = {}  # by lower-case name, once resolved
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def found(self) -> dict[str, FoundPrinter]:
        return {e.printer.id: e.printer for e in self._entries.values()}

    def missed_checks(self, printer: str) -> int:
        """Checks in a row that went without this printer id (0 when present or unknown)."""
        return next((e.misses for e in self._entries.values() if e.printer.id == printer), 0)

    async def start(self) -> None:
        if self._aiozc is not None:
            raise RuntimeError("PrinterBrowser already started")
        if self._shared is not None:
            self._aiozc = self._shared
        else:
            interfaces = self._interfaces if self._interfaces is not None else InterfaceChoice.All
            v4 = bool(self._interfaces) and all(_is_ipv4(a) for a in self._interfaces or ())
            self._aiozc = AsyncZeroconf(
                interfaces=interfaces, ip_version=IPVersion.V4Only if v4 else None
            )
        self._browser = AsyncServiceBrowser(
            self._aiozc.zeroconf, self.service_type, handlers=[self._on_state_change]
        )
        self._spawn(self._check_forever())

    async def close(self) -> None:
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        browser, self._browser = self._browser, None
        try:
            if browser is not None:
                await asyncio.wait_for(browser.async_cancel(), _CLOSE_TIMEOUT)
            if aiozc is not self._shared:
                await asyncio.wait_for(aiozc.async_close(), _CLOSE_TIMEOUT)
        except Exception:
            # Shutdown goes on whatever the network does.
            log.warning("mDNS printer browser did not close cleanly", exc_info=True)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_state_change(
        self, zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        # Runs on the event loop (AsyncServiceBrowser). A removal is only noted here: the
        # checks decide, after `misses` of them, whether the printer is really gone.
        key = name.lower()
        if state_change is ServiceStateChange.Removed:
            self._listed.pop(key, None)
            log.debug("mDNS printer %s said goodbye or expired", name)
            return
        self._listed[key] = name
        self._spawn(self._refresh(name))

    async def _refresh(self, name: str) -> None:
        printer = await self._resolve(name)
        if printer is not None and self._seen(printer):
            self._notify()

    async def _resolve(self, name: str) -> FoundPrinter | None:
        aiozc = self._aiozc
        if aiozc is None:
            return None
        info = AsyncServiceInfo(self.service_type, name)
        try:
            if not await info.async_request(aiozc.zeroconf, self.resolve_timeout * 1000):
                return None
        except Exception as exc:  # a malformed record or a closing zeroconf: not resolvable
            log.debug("resolving %s failed: %r", name, exc)
            return None
        addresses = info.parsed_addresses(IPVersion.V4Only) or info.parsed_addresses()
        if not addresses or info.port is None:
            return None
        txt = {k: v or "" for k, v in info.decoded_properties.items()}
        return FoundPrinter(info.name, addresses[0], info.port, txt)

    def _seen(self, printer: FoundPrinter) -> bool:
        """Record a sighting; True when `found` changed."""
        key = printer.name.lower()
        entry = self._entries.get(key)
        if entry is None:
            self._entries[key] = _Entry(printer)
            log.info("found printer %s at %s:%d", printer.label, printer.host, printer.port)
            return True
        if entry.misses:
            level = logging.DEBUG if entry.flapped else logging.INFO
            log.log(level, "printer %s is back after %d missed checks", printer.label, entry.misses)
            entry.flapped = True
        entry.misses = 0
        if entry.printer == printer:
            return False
        entry.printer = printer
        return True

    def _missed(self, key: str) -> bool:
        """Record a check without this printer; True when it is now removed."""
        entry = self._entries[key]
        entry.misses += 1
        if entry.misses < self.misses:
            log.debug(
                "printer %s missed %d of %d checks", entry.printer.label, entry.misses, self.misses
            )
            return False
        del self._entries[key]
        log.info("printer %s is gone (%d checks without it)", entry.printer.label, entry.misses)
        return True

    async def check(self) -> None:
        """One round: resolve every listed or known printer and count who is missing."""
        names = {key: e.printer.name for key, e in self._entries.items()}
        names.update({k: n for k, n in self._listed.items() if k not in names})
        wanted = [(key, name) for key, name in names.items() if key in self._listed]
        resolved = await asyncio.gather(*(self._resolve(name) for _, name in wanted))
        present = {key: p for (key, _), p in zip(wanted, resolved, strict=True) if p is not None}
        self.checks += 1
        changed = False
        for key in names:
            if key in present:
                changed |= self._seen(present[key])
            elif key in self._entries:
                changed |= self._missed(key)
        if changed:
            self._notify()

    async def _check_forever(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("printer discovery check failed")

    def _notify(self) -> None:
        if self.on_change is None:
            return
        try:
            self.on_change(self.found)
        except Exception:
            log.exception("printer discovery on_change callback failed")
