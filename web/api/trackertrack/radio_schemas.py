"""Wire shapes of the tracker and repeater routes (documentation and tests only)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from web.wire import Envelope, Message, Wire

TrackerNumber = Annotated[int, Field(ge=1, le=65535, description="The number on the puck.")]
Address = Annotated[
    str, Field(pattern=r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$", examples=["C0:FF:EE:00:00:42"])
]


class BoundOrder(Wire):
    name: str
    uuid: str
    state: Literal["started", "located"]


class TrackerOut(Wire):
    number: int
    address: str
    battery: int | None = Field(description="Percent, null when not reported yet.")
    lastSeen: str | None
    state: Literal["idle", "started", "located", "offline", "unseen"]
    order: BoundOrder | None


class TrackerList(Envelope):
    """The inventory (returnCode 16)."""

    count: int = Field(ge=0)
    items: list[TrackerOut]


class TrackerDetail(Envelope):
    """One tracker (returnCode 17)."""

    tracker: TrackerOut


class TrackerChanged(Message):
    """Paired (1016) or renamed (1017)."""

    tracker: TrackerOut


class InventoryCleared(Message):
    """Inventory cleared (returnCode 1007)."""

    count: int = Field(ge=0)


class PairRequest(BaseModel):
    number: TrackerNumber
    address: Address


class RenameRequest(BaseModel):
    number: TrackerNumber


class Repeater(Wire):
    id: str
    type: str = Field(description="local-adapter, pad, simulator")
    status: str
    detail: str
    lastSeen: str | None


class RepeaterList(Envelope):
    """Radio receivers (returnCode 15)."""

    repeaters: list[Repeater]
    pairing: bool = Field(description="Whether the pairing window is open.")


class PairingRequest(BaseModel):
    timeout: int = Field(60, ge=0, le=254, description="Seconds; 0 = until endPairing.")


class PairingStarted(Message):
    """Pairing on (returnCode 1012)."""

    timeout: int
