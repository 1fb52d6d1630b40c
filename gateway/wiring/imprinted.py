"""Part of the composition root: the imprinted dialect's services."""

from __future__ import annotations

from gateway.core.ports import Clock
from gateway.services.integrations.imprinted.auth import ImprintedAuth
from gateway.services.integrations.imprinted.orders import ImprintedOrders
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from web.services import Imprinted


async def wire(writer: Writer, reader: Reader, clock: Clock) -> Imprinted:
    """Called by gateway.app.build once the core services are loaded."""
    # Its own failed-auth throttle (S5): an integration with a wrong secret behind the same
    # address (a NAT, a proxy) must not lock the POS terminals out of the table-tracker API.
    auth = ImprintedAuth(writer, clock)
    await auth.load()
    return Imprinted(auth, ImprintedOrders(reader))
