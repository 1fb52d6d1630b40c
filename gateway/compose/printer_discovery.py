"""The printing step's discovery: printers found by mDNS join the printing service.

Anyone on the LAN can announce a service under a printer's name. A discovered printer is
therefore moved to a new address only when the announcement carries the printer identity
(TXT `UUID` or serial) it was found with at its current address; otherwise the move is held:
the device keeps its address, the new one is shown as `pendingAddress`, and a manager confirms
with `POST /api/dev/devices/{id}/address` (issue 9 item 7c).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable

from gateway.core.errors import GatewayError
from gateway.core.printing import Device, Source
from gateway.services.printing.service import DeviceSpec, PrintService

log = logging.getLogger(__name__)


class Move(enum.Enum):
    NOTHING = "nothing"
    ADD = "add"  # a new printer, or a proven move
    HOLD = "hold"  # another address without proof: keep the old one, show the new one
    SETTLED = "settled"  # announced where it is: any held move is void


class PrinterMoves:
    """Remembers each discovered printer's identity (as announced at the address in use)."""

    def __init__(self) -> None:
        self.identities: dict[str, str | None] = {}
        # device id -> (address, identity) of the held move, logged once
        self._held: dict[str, tuple[str, str | None]] = {}

    def decide(
        self, known: Device | None, device_id: str, address: str, identity: str | None
    ) -> Move:
        if known is None:
            self.identities[device_id] = identity
            return Move.ADD
        if known.source is not Source.MDNS:
            return Move.NOTHING  # configured or added by hand: discovery does not touch it
        if known.address == address:
            # Announced where we print: whatever it says it is, is what is there.
            self.identities[device_id] = identity
            self._held.pop(device_id, None)
            return Move.SETTLED
        held = self._held.get(device_id)
        if held is not None and held[0] == known.address:
            # A manager confirmed the held address: the printer there is the one to follow.
            self.identities[device_id] = held[1]
            del self._held[device_id]
            held = None
        recorded = self.identities.get(device_id)
        if recorded is not None and identity == recorded:
            self._held.pop(device_id, None)
            return Move.ADD
        if held != (address, identity):
            self._held[device_id] = (address, identity)
            log.warning(
                "printer %s announced at %s without the identity it was found with "
                "(%s, now %s); it stays at %s until a manager confirms the move",
                device_id,
                address,
                recorded or "none known",
                identity or "none",
                known.address,
            )
        return Move.HOLD


async def discover_printers(
    printing: PrintService, interfaces: list[str] | None, adding: set[asyncio.Task[None]]
) -> Callable[[], Awaitable[None]] | None:
    """Network printers announced by mDNS join as devices; one that stops answering is marked
    offline by its worker, and is only dropped from discovery after several missed scans.
    Returns the browser's close (None when discovery could not start); the additions in
    flight are kept in `adding` for the caller to cancel at stop."""
    from printers.discovery import FoundPrinter, PrinterBrowser

    moves = PrinterMoves()

    def on_change(found: dict[str, FoundPrinter]) -> None:
        for fp in found.values():
            known = printing.devices.get(fp.id)
            address = f"tcp://{fp.host}:{fp.port}"
            decision = moves.decide(known, fp.id, address, fp.identity)
            if decision is Move.HOLD:
                printing.hold_move(fp.id, address)
            elif decision is Move.SETTLED:
                printing.hold_move(fp.id, None)
            elif decision is Move.ADD:
                spec = DeviceSpec(fp.label[:64] or fp.id, address, id=fp.id)
                task = asyncio.create_task(
                    _add_found(printing, spec), name=f"printer-found-{fp.id}"
                )
                adding.add(task)
                task.add_done_callback(adding.discard)

    browser = PrinterBrowser(interfaces=interfaces, on_change=on_change)
    try:
        await browser.start()
    except Exception as exc:  # the gateway prints without discovery
        log.warning("printer discovery disabled: %s", exc)
        return None
    return browser.close


async def _add_found(printing: PrintService, spec: DeviceSpec) -> None:
    try:
        await printing.add_device(spec, Source.MDNS, replace=True)
        log.info("printer %s found by mDNS at %s", spec.id, spec.address)
    except GatewayError as exc:
        log.warning("printer %s found by mDNS not added: %s", spec.id, exc)
