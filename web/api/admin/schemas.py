"""The outbox's admin API models (documentation and tests; the handlers do not use them)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from web import wire as sc
from web.api.admin import deliveries as da
from web.wire import absent as _absent

Optional = SkipJsonSchema[None]
DeliveryId = Annotated[
    int, Field(ge=1, le=999_999_999_999, description="The delivery's `id` in the dead-letter list.")
]


class DeadQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=da.MAX_LIMIT)] | Optional = Field(
        None, description="Default 25.", json_schema_extra=_absent
    )
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] | Optional = Field(
        None, description="Default 0.", json_schema_extra=_absent
    )


class DeadDelivery(sc.Wire):
    id: int = Field(ge=1)
    eventId: str = Field(description="Sent as `webhook-id` on every attempt.")
    kind: str = Field(description="printapi, cloudsignal, trackertrack-webhook, imprimo-report...")
    url: str = Field(description="Without query string or credentials.")
    attempts: int = Field(ge=0, le=10)
    lastStatus: int | None
    lastError: str | None
    created: sc.LocalTime
    finished: sc.LocalTime | None


class DeadList(sc.Envelope):
    """Dead deliveries, most recently failed first (returnCode 141)."""

    total: int = Field(ge=0)
    items: list[DeadDelivery]


class Overview(sc.Envelope):
    """The outbox now (returnCode 140); counters since the gateway started."""

    pending: int = Field(ge=0)
    dead: int = Field(ge=0)
    uplink: Literal["off", "unknown", "up", "down"] = Field(
        description="The connectivity check: attempts are not spent while it is down."
    )
    sent: int = Field(ge=0)
    delivered: int = Field(ge=0)
    failed: int = Field(ge=0)
    offline: int = Field(ge=0, description="Attempts given back: the gateway was offline.")


class TokenWindow(sc.Message):
    """The button window is open (returnCode 1015)."""

    seconds: int = Field(ge=0)
