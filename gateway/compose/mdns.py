"""Compose step: the mDNS advertisement, registered only once the port answers (so a client
that resolves us can connect) and said goodbye to first at stop (§7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gateway import __version__
from gateway.settings import Settings

if TYPE_CHECKING:  # zeroconf is imported only when mDNS is enabled (start time, memory)
    from gateway.discovery import Advertiser

log = logging.getLogger(__name__)


async def mdns(settings: Settings, gateway_id: str, stop: asyncio.Event) -> AsyncIterator[None]:
    advertiser = None
    if settings.mdns_enabled and not stop.is_set():
        advertiser = await _advertise(settings, gateway_id, stop)
    yield
    if advertiser is not None:
        await advertiser.stop()


async def _advertise(settings: Settings, gateway_id: str, stop: asyncio.Event) -> Advertiser | None:
    from gateway.discovery import Advertiser

    try:
        advertiser = Advertiser(
            port=settings.port,
            gateway_id=gateway_id,
            version=__version__,
            instance_name=settings.instance_name,
            interfaces=settings.mdns_interfaces,
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
