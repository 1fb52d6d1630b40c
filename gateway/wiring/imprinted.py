"""Part of the composition root: wires the imprinted dialect (services, hooks, app keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.services.integrations.imprinted.auth import ImprintedAuth
from gateway.services.integrations.imprinted.orders import ImprintedOrders
from web.api.imprinted.handlers import IMPRINTED, Imprinted

if TYPE_CHECKING:
    from gateway.app import Gateway


async def wire(gw: Gateway) -> None:
    """Called by gateway.app.build once the core services are loaded."""
    # Its own failed-auth throttle (S5): an integration with a wrong secret behind the same
    # address (a NAT, a proxy) must not lock the POS terminals out of the table-tracker API.
    auth = ImprintedAuth(gw.writer, gw.ctx.clock)
    await auth.load()
    gw.app[IMPRINTED] = Imprinted(auth, ImprintedOrders(gw.reader))
