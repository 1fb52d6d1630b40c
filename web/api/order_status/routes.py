"""Routes of the printapi dialect, appended to web.routes.ROUTES (one table, auth, OpenAPI):
Print API's order status (seed 003), its webhook subscriptions, and the outbox's admin API.

The models below document the wire shapes (web.openapi); the handlers do not use them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.core.models import ItemStatus
from gateway.services.integrations.order_status import PrintStatus
from web import schemas as sc
from web.api.admin import deliveries as da
from web.api.order_status import handlers as pa
from web.routes import Auth, Route

TAG = "printapi"
ADMIN_TAG = "deliveries"
DATE_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{7}$"
Optional = SkipJsonSchema[None]


def _absent(schema: dict[str, Any]) -> None:
    """A key that is either present (never null) or left out: no `default: null`."""
    schema.pop("default", None)


# The path parameters these routes name (web.openapi documents every path parameter from
# `web.schemas.PATH_PARAMS`).
OrderId = Annotated[int, Field(ge=1, le=pa.MAX_ID - 1, description="The order's numeric id "
                               "(Print API `id`, the `orderId` of a webhook).")]
DeliveryId = Annotated[int, Field(ge=1, le=999_999_999_999,
                                  description="The delivery's `id` in the dead-letter list.")]
sc.PATH_PARAMS.setdefault("order_id", OrderId)
sc.PATH_PARAMS.setdefault("delivery_id", DeliveryId)


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
    status: PrintStatus = Field(description="Created: started, nothing in production yet. "
                                "Processing: located at a table or an item in production. "
                                "Shipped: handed over (cleared). Cancelled: cancelled.")
    dateTime: str = Field(pattern=DATE_TIME, description="When it was created, gateway local "
                          "time.", examples=["2015-10-21T12:53:06.9931422"])
    name: str = Field(description="The number on the tracker or ticket.")
    orderType: str
    locationName: str = Field(description="The table, or an empty string.")
    items: list[PrintApiItem]


class NewWebhook(BaseModel):
    """A receiver of the thin status webhooks (`orderId=<id>`, form-encoded)."""

    url: sc.Url
    kind: Literal["printapi"] | Optional = Field(None, description="Only `printapi` here.",
                                                 json_schema_extra=_absent)
    signingSecret: Annotated[str, Field(pattern=r"^whsec_[A-Za-z0-9+/]+={0,2}$",
                                        max_length=200)] | Optional = Field(
        None, description="Sign every call the Standard Webhooks way (`webhook-id`, "
        "`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>`): `whsec_` and the "
        "base64 of 24 to 64 random bytes.", json_schema_extra=_absent)


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


class DeadQuery(BaseModel):
    limit: Annotated[int, Field(ge=1, le=da.MAX_LIMIT)] | Optional = Field(
        None, description="Default 25.", json_schema_extra=_absent)
    offset: Annotated[int, Field(ge=0, le=1_000_000_000)] | Optional = Field(
        None, description="Default 0.", json_schema_extra=_absent)


class DeadDelivery(sc.Wire):
    id: int = Field(ge=1)
    eventId: str = Field(description="Sent as `webhook-id` on every attempt.")
    kind: str = Field(description="printapi, cloudsignal, trackertrack-webhook, "
                      "imprimo-report...")
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
        description="The connectivity check: attempts are not spent while it is down.")
    sent: int = Field(ge=0)
    delivered: int = Field(ge=0)
    failed: int = Field(ge=0)
    offline: int = Field(ge=0, description="Attempts given back: the gateway was offline.")


def routes() -> list[Route]:
    hooks = "/api/integrations/webhooks"
    admin = "/api/admin/deliveries"
    return [
        Route("GET", "/v1/orders/{order_id}", pa.get_order, Auth.TOKEN,
              "Print API: an order's status and data", TAG,
              responses={200: PrintApiOrder}, errors=(404,)),
        Route("POST", hooks, pa.subscribe, Auth.TOKEN,
              "Send Print API status webhooks to a URL", TAG, body=NewWebhook,
              responses={201: WebhookSubscribed, 200: WebhookSubscribed}, errors=(503,)),
        Route("GET", hooks, pa.list_subscriptions, Auth.TOKEN, "Print API webhook receivers",
              TAG, responses={200: WebhookList}),
        Route("DELETE", hooks, pa.unsubscribe, Auth.TOKEN,
              "Stop sending Print API webhooks to a receiver", TAG, query=IdQuery,
              responses={200: sc.Message}, errors=(404, 503)),
        Route("GET", admin, da.overview, Auth.TOKEN, "The outbox: pending, dead, uplink",
              ADMIN_TAG, responses={200: Overview}),
        Route("GET", f"{admin}/dead", da.dead_letters, Auth.TOKEN,
              "Dead deliveries (the dead-letter list)", ADMIN_TAG, query=DeadQuery,
              responses={200: DeadList}),
        Route("POST", f"{admin}/{{delivery_id}}/replay", da.replay, Auth.TOKEN,
              "Send a dead delivery again", ADMIN_TAG, responses={200: sc.Message},
              errors=(404, 503)),
    ]
