"""The Print API dialect's wire shapes (seed 003): the order status and the webhook
subscriptions. They document the API (web.openapi); the tests validate answers against them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.core.models import ItemStatus
from gateway.services.integrations.order_status import PrintStatus
from web import wire as sc
from web.api.order_status import handlers as pa

TAG = "printapi"
DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{7}$"
Optional = SkipJsonSchema[None]


def _absent(schema: dict[str, Any]) -> None:
    """A key that is either present (never null) or left out: no `default: null`."""
    schema.pop("default", None)


# The path parameter of `/v1/orders/{order_id}` (documentation).
OrderId = Annotated[
    int,
    Field(
        ge=1,
        le=pa.MAX_ID - 1,
        description="The order's numeric id (Print API `id`, the `orderId` of a webhook).",
    ),
]


class PrintApiItem(sc.Wire):
    id: str = Field(description="`<order id>-<position>`.")
    productId: str = Field(description="The product code, or an empty string.")
    title: str
    quantity: int = Field(ge=1)
    price: float | None = Field(description="In major units (e.g. 4.5), or null.")
    status: ItemStatus = Field(description="The item's kitchen status (canonical).")


class PrintApiOrder(sc.Wire):
    """Seed 003's order: `id`, `status`, `dateTime` and the order's data. Not enveloped."""

    id: str = Field(pattern=r"^[1-9][0-9]*$", examples=["83432183"])
    status: PrintStatus = Field(
        description="Created: started, nothing in production yet. "
        "Processing: located at a table or an item in production. "
        "Shipped: handed over (cleared). Cancelled: cancelled."
    )
    dateTime: str = Field(
        pattern=DATE_TIME,
        description="When it was created, gateway local time.",
        examples=["2015-10-21T12:53:06.9931422"],
    )
    name: str = Field(description="The number on the tracker or ticket.")
    orderType: str
    locationName: str = Field(description="The table, or an empty string.")
    items: list[PrintApiItem]


class NewWebhook(BaseModel):
    """A receiver of the thin status webhooks (`orderId=<id>`, form-encoded)."""

    url: sc.Url
    kind: Literal["printapi"] | Optional = Field(
        None, description="Only `printapi` here.", json_schema_extra=_absent
    )
    signingSecret: (
        Annotated[str, Field(pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$", max_length=200)] | Optional
    ) = Field(
        None,
        description="Sign every call the Standard Webhooks way (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`): `whsec_` and the "
        "base64 of 24 to 64 random bytes.",
        json_schema_extra=_absent,
    )


class Webhook(sc.Wire):
    """A receiver (its signing secret is never shown again)."""

    id: int = Field(ge=1)
    kind: Literal["printapi"]
    url: str
    signed: bool
    creation_date: sc.LocalTime
    disabled: sc.LocalTime | None = Field(description="Set when the receiver answered 410.")
    disabled_reason: str | None


class WebhookSubscribed(sc.Message):
    """Subscription added (201) or its secret replaced and enabled again (200); returnCode
    130."""

    subscription: Webhook


class WebhookList(sc.Envelope):
    """Print API receivers (returnCode 131)."""

    count: int = Field(ge=0)
    items: list[Webhook]


class IdQuery(BaseModel):
    id: int = Field(ge=1, le=999_999_999_999, description="The `id` from the listing.")
