"""Part of the composition root: wires the cloudsignal dialect (services, hooks, app keys)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.app import Gateway


async def wire(gw: Gateway) -> None:
    """Called by gateway.app.build once the core services are loaded."""
    return None
