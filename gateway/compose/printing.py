"""Compose steps for what leaves the box: the outbox worker, and the printer workers (with the
demo's virtual printer and mDNS printer discovery). Both start with the app and stop after the
feeds closed; queued jobs and deliveries stay in SQLite for the next start (§7)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from gateway.compose.core import Core
from gateway.compose.printer_discovery import discover_printers
from gateway.core.printing import Source
from gateway.services.printing.service import DeviceSpec

if TYPE_CHECKING:  # the demo's only: not imported otherwise
    from printers.virtual import VirtualPrinter

DEMO_PRINTER = "demo-kitchen"


async def outbox(core: Core) -> AsyncIterator[None]:
    await core.deliveries.start()
    yield
    await core.deliveries.close()


async def printing(core: Core) -> AsyncIterator[None]:
    virtual: list[VirtualPrinter] = []
    if core.settings.demo and "kitchen" not in core.printer_links.virtual:
        from printers.virtual import VirtualPrinter

        printer = VirtualPrinter()
        await printer.start()
        virtual.append(printer)
        core.printer_links.virtual["kitchen"] = (printer.host, printer.port)
        if DEMO_PRINTER not in core.printing.devices:
            spec = DeviceSpec(
                "Demo kitchen printer", "virtual://kitchen", "kitchen", id=DEMO_PRINTER
            )
            await core.printing.add_device(spec, Source.DEMO)
        core.previews[DEMO_PRINTER] = lambda: [
            (t.received_at, t.text, t.png) for t in printer.tickets
        ]
    await core.printing.start()
    adding: set[asyncio.Task[None]] = set()
    close_browser = None
    if core.settings.printer_discovery:
        close_browser = await discover_printers(
            core.printing, core.settings.mdns_interfaces, adding
        )
    yield
    if close_browser is not None:
        with contextlib.suppress(Exception):
            await close_browser()
    for task in list(adding):
        task.cancel()
    await core.printing.close()
    for printer in virtual:
        await printer.close()
