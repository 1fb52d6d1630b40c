"""mDNS advertisement of the gateway's HTTP API (zeroconf)."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable

import ifaddr  # zeroconf's own dependency; the stdlib cannot list interface addresses
from zeroconf import InterfaceChoice, IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from gateway.core.hostnames import mdns_host_name

_LOGGER = logging.getLogger(__name__)

# zeroconf renames a taken instance to "<name>-2", "-3", ... and raises if that pushes the
# label past the 63-byte DNS limit, so the configured name leaves room for the suffix.
_MAX_INSTANCE_BYTES = 63 - 4
_MAX_TXT_ENTRY_BYTES = 255
_STOP_STEP_TIMEOUT = 3.0


def _truncate_utf8(text: str, limit: int) -> str:
    # Cut on a character boundary: half a multi-byte sequence is not a valid label.
    return text.encode()[:limit].decode(errors="ignore").strip()


def _ip_version(address: str) -> int | None:
    try:
        return ipaddress.ip_address(address).version
    except ValueError:
        return None


def _host_ipv4_addresses() -> list[str]:
    found = {
        ip.ip
        for adapter in ifaddr.get_adapters()
        for ip in adapter.ips
        if isinstance(ip.ip, str) and not ipaddress.ip_address(ip.ip).is_loopback
    }
    # A box with no network yet still answers local queries rather than announcing nothing.
    return sorted(found) or ["127.0.0.1"]


def advertised_addresses(
    listening: list[str],
    interfaces: list[str] | None,
    host_addresses: Callable[[], list[str]] | None = None,
) -> list[str]:
    """The addresses to put in the mDNS records: only ones the API listens on.

    `listening`: the addresses the HTTP server is bound to. A wildcard (0.0.0.0, ::) listens on
    every interface: the box's addresses (or the ones `interfaces` names). A specific address
    is advertised alone. A loopback address is advertised only when `interfaces` names it
    (mDNS then stays on lo, as in local tests); otherwise no other machine could connect.
    """
    named = [a for a in interfaces or [] if _ip_version(a)]
    found: list[str] = []
    for address in listening:
        try:
            ip = ipaddress.ip_address(address.partition("%")[0])
        except ValueError:
            continue
        if ip.is_unspecified:
            candidates = named or (host_addresses or _host_ipv4_addresses)()
        else:
            # A LAN address outside the named interfaces, or loopback not asked for: no.
            asked = address in named if (named or ip.is_loopback) else True
            candidates = [address] if asked else []
        for candidate in candidates:  # each once, even when named twice
            unspecified = ipaddress.ip_address(candidate.partition("%")[0]).is_unspecified
            if candidate not in found and not unspecified:
                found.append(candidate)
    return found


class Advertiser:
    """Announces the HTTP API under each service type; start only once the port listens."""

    def __init__(
        self,
        *,
        port: int,
        gateway_id: str,
        version: str,
        instance_name: str = "Tablegate",
        interfaces: list[str] | None = None,
        service_types: tuple[str, ...] = ("_tracker-http._tcp.local.", "_http._tcp.local."),
        host_addresses: list[str] | None = None,
    ) -> None:
        self._port = port
        self._interfaces = interfaces
        self._service_types = service_types
        self._instance = _truncate_utf8(instance_name, _MAX_INSTANCE_BYTES) or "Tablegate"
        self._txt = {"api": "v2", "path": "/api/v2", "id": gateway_id, "version": version}
        for key, value in self._txt.items():
            if len(f"{key}={value}".encode()) > _MAX_TXT_ENTRY_BYTES:
                raise ValueError(f"mDNS TXT entry {key!r} exceeds {_MAX_TXT_ENTRY_BYTES} bytes")
        if host_addresses:
            self._addresses = list(host_addresses)
        elif interfaces and (ips := [a for a in interfaces if _ip_version(a)]):
            self._addresses = ips
        else:
            self._addresses = _host_ipv4_addresses()
        self._server = mdns_host_name(gateway_id) + "."
        self._aiozc: AsyncZeroconf | None = None
        self._infos: dict[str, ServiceInfo] = {}

    @property
    def registered(self) -> list[str]:
        return [self._infos[t].name for t in self._service_types if t in self._infos]

    async def start(self) -> None:
        if self._aiozc is not None:
            raise RuntimeError("Advertiser already started")
        interfaces = self._interfaces if self._interfaces is not None else InterfaceChoice.All
        ip_version = (
            IPVersion.V4Only
            if self._interfaces and all(_ip_version(a) == 4 for a in self._interfaces)
            else None
        )
        aiozc = self._aiozc = AsyncZeroconf(interfaces=interfaces, ip_version=ip_version)
        # Probing takes about a second per name; the types are separate name spaces, so probe
        # them together rather than doubling the time before the box reports ready.
        tasks = [asyncio.ensure_future(self._register(aiozc, t)) for t in self._service_types]
        try:
            announcements = await asyncio.gather(*tasks)
            await asyncio.gather(*announcements)
        except BaseException:
            # The caller may carry on without mDNS: leave no sockets or half-done probes behind.
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.stop()
            raise

    async def _register(self, aiozc: AsyncZeroconf, service_type: str) -> Awaitable[object]:
        wanted = f"{self._instance}.{service_type}"
        info = ServiceInfo(
            service_type,
            wanted,
            port=self._port,
            properties=self._txt,
            server=self._server,
            parsed_addresses=self._addresses,
        )
        announced = await aiozc.async_register_service(info, allow_name_change=True)
        self._infos[service_type] = info
        if info.name != wanted:
            _LOGGER.info("mDNS name %s is taken on the network; registered %s", wanted, info.name)
        return announced

    async def stop(self) -> None:
        aiozc, self._aiozc = self._aiozc, None
        if aiozc is None:
            return
        self._infos.clear()
        # Goodbyes first: without them clients keep showing the gateway until the TTL runs out.
        steps: tuple[tuple[str, Callable[[], Awaitable[None]]], ...] = (
            ("goodbye", aiozc.async_unregister_all_services),
            ("close", aiozc.async_close),
        )
        for step, call in steps:
            try:
                await asyncio.wait_for(call(), _STOP_STEP_TIMEOUT)
            except TimeoutError:
                _LOGGER.warning("mDNS %s did not finish within %.1f s", step, _STOP_STEP_TIMEOUT)
            except Exception:
                # Shutdown must go on to the next stage whatever the network does.
                _LOGGER.warning("mDNS %s failed", step, exc_info=True)
