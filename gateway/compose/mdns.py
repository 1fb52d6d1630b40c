"""Compose step: the mDNS advertisement, registered only once the port answers (so a client
that resolves us can connect) and said goodbye to first at stop (§7)."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.settings import Settings

if TYPE_CHECKING:  # zeroconf is imported only when mDNS is enabled (start time, memory)
    from gateway.discovery import Advertiser

log = logging.getLogger(__name__)


async def mdns(
    settings: Settings, gateway_id: str, stop: asyncio.Event, listening: list[str]
) -> AsyncIterator[None]:
    """`listening`: the addresses the API is bound to (the server's sockets)."""
    advertiser = None
    if settings.mdns_enabled and not stop.is_set():
        advertiser = await _advertise(settings, gateway_id, stop, listening)
    yield
    if advertiser is not None:
        await advertiser.stop()


async def _advertise(
    settings: Settings, gateway_id: str, stop: asyncio.Event, listening: list[str]
) -> Advertiser | None:
    from gateway.discovery import Advertiser, advertised_addresses

    addresses = advertised_addresses(listening, settings.mdns_interfaces)
    if not addresses:
        # Records naming addresses where nothing listens would send clients nowhere.
        log.info(
            "mDNS: not advertising: the API listens only on %s, %s",
            ", ".join(listening),
            f"outside mdns_interfaces {settings.mdns_interfaces}"
            if settings.mdns_interfaces
            else "loopback: no other machine could connect",
        )
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
    # A SIGTERM while probing (a second or two) stops the registration, not the stop.
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
