"""The Imprinted (seed 001) wire shapes as pydantic models: they document the dialect in the
OpenAPI document and the tests validate real JSON answers against them (`extra="forbid"`).
XML answers carry the same fields as elements (see docs/api/imprinted.md). The handlers do not
use these models."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from web import wire as sc

Money = Annotated[str, Field(pattern=r"^[0-9]{1,8}\.[0-9]{2}$", examples=["20.00"])]
IsoTime = Annotated[
    str,
    Field(
        description="ISO 8601 with the gateway's offset (setting `timezone`).",
        examples=["2016-10-17T15:07:08+01:00"],
    ),
]
AppIdParam = Annotated[
    str,
    Field(pattern=r"^APP-[0-9A-F]{8}$", examples=["APP-1A2B3C4D"], description="The app's AppId."),
]


class Status(StrEnum):
    RECEIVED = "received"
    IN_PROGRESS = "in progress"
    PAID = "paid"
    STOCK_ALLOCATION = "stock allocation"
    PRINTING = "printing"
    QUALITY_CONTROL = "quality control"
    REFUNDED = "refunded"
    INTERNAL_ORDER_QUERY = "internal order query"


class Format(StrEnum):
    JSON = "json"
    XML = "xml"
    JSN = "JSN"  # the seed's spelling of the default


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImprintedAddress(_Wire):
    firstName: str | None = None
    lastName: str | None = None
    company: str | None = None
    address1: str | None = None
    address2: str | None = None
    city: str | None = None
    county: str | None = None
    postcode: str | None = None
    country: str | None = None
    phone1: str | None = None
    phone2: str | None = None
    phone3: str | None = None
    vatNumber: str | None = None


class ImprintedItem(_Wire):
    pn: str = Field(description="The product code.")
    title: str
    price: Money | None = Field(description="The price with discounts (= retailPrice).")
    retailPrice: Money | None
    quantity: Annotated[str, Field(pattern=r"^[1-9][0-9]{0,3}$")]
    description: str
    brandName: str
    label: dict[str, str | int | float] | None
    designs: dict[str, str]
    mockups: dict[str, str]


class ImprintedSummary(_Wire):
    currency: str | None
    subtotalPrice: Money | None
    shippingPrice: Money | None
    total: Money | None
    totalTax: Money | None


class ImprintedShipping(_Wire):
    shippingMethod: str | None
    trackingNumber: str | None
    shiped_at: IsoTime | None = Field(description="When the order was handed over.")


class ImprintedPayment(_Wire):
    methodMethod: Any = None
    paid_at: Any = None


class ImprintedOrder(_Wire):
    id: Annotated[str, Field(pattern=r"^[1-9][0-9]*$", examples=["23941"])]
    external_id: str
    created_at: IsoTime
    type: str = Field(pattern="^order$")
    status: Status
    deleted: str = Field(pattern="^(true|false)$", description='"true" once cancelled.')
    brand: str
    comment: str
    billing_address: ImprintedAddress | None = Field(
        description="Always null: the gateway has no account profile."
    )
    shipping_address: ImprintedAddress | None
    items: list[ImprintedItem]
    summary: ImprintedSummary
    shipping: ImprintedShipping
    payment: ImprintedPayment | None


class ImprintedOrderResponse(_Wire):
    order: ImprintedOrder


class ImprintedOrderList(_Wire):
    orders: list[ImprintedOrder]


class ImprintedCount(_Wire):
    count: int = Field(ge=0)


class ImprintedErrorBody(_Wire):
    code: str = Field(examples=["bad_order"])
    message: str


class ImprintedError(_Wire):
    """JSON errors; in XML `<error><code/><message/></error>`."""

    error: ImprintedErrorBody


# -- requests ---------------------------------------------------------------------------

_SIGNATURE = (
    "hex SHA1 of (the query string without Signature, or the POST body) + secret; "
    "or leave it out and send X-Imprinted-Timestamp + X-Imprinted-Signature "
    "(HMAC-SHA256), see docs/api/imprinted.md."
)


class _Signed(BaseModel):
    AppId: str = Field(pattern=r"^APP-[0-9A-F]{8}$", description="The app's AppId.")
    Signature: str | None = Field(None, pattern=r"^[0-9a-fA-F]{40}$", description=_SIGNATURE)
    format: Format | None = Field(None, description="Answer format (default json).")


class ImprintedListQuery(_Signed):
    ids: str | None = Field(
        None,
        pattern=r"^[0-9]{1,12}(,[0-9]{1,12}){0,249}$",
        description="Comma-separated order ids.",
    )
    limit: int = Field(50, ge=1, le=250)
    page: int = Field(1, ge=1, le=1_000_000)
    since_id: str | None = Field(
        None, pattern=r"^[0-9]{1,12}$", description="Only orders with a greater id."
    )
    created_at_min: str | None = Field(
        None, description="ISO 8601, e.g. 2014-04-25T16:15:47-04:00 (inclusive)."
    )
    created_at_max: str | None = Field(None, description="ISO 8601 (inclusive, to the second).")
    status: Status | None = None


class ImprintedOneQuery(_Signed):
    id: str = Field(pattern=r"^[0-9]{1,12}$", description="The order id.")


class ImprintedPostQuery(BaseModel):
    AppId: str = Field(pattern=r"^APP-[0-9A-F]{8}$", description="The app's AppId.")
    Signature: str | None = Field(None, pattern=r"^[0-9a-fA-F]{40}$", description=_SIGNATURE)


class ImprintedNewItem(BaseModel):
    pn: str = Field(min_length=1, max_length=64)
    title: str | None = Field(None, max_length=200, description="Default: pn.")
    quantity: int | str = Field(1, description="1 to 9999.")
    retailPrice: float | str | None = Field(None, description="Up to 2 decimals.")
    description: str | None = Field(None, max_length=1000)
    brandName: str | None = Field(None, max_length=100)
    label: dict[str, str | int | float] | None = None
    designs: dict[str, str] | None = Field(None, description="Side -> URL.")
    mockups: dict[str, str] | None = Field(None, description="Side -> URL.")


class ImprintedNewOrder(BaseModel):
    """JSON (application/json) or the same fields as XML (application/xml, root <order>,
    items as <items><item>…</item></items>)."""

    external_id: str | None = Field(
        None, max_length=64, description="Idempotency: a retry returns the same order."
    )
    brand: str | None = Field(None, max_length=100)
    brandName: str | None = Field(None, max_length=100, description="Same as brand.")
    comment: str | None = Field(None, max_length=1000)
    shipping_address: ImprintedAddress | None = None
    shipping: dict[str, str] | None = Field(
        None, description="shippingMethod: regular, recorded, courier or collection."
    )
    summary: dict[str, str | float] | None = None
    items: list[ImprintedNewItem] = Field(min_length=1, max_length=500)


# -- app management (table-tracker envelope, Bearer token) ------------------------------


class ImprintedAppName(BaseModel):
    name: str = Field(pattern=sc.TOKEN_NAME)


class ImprintedApp(sc.Wire):
    appId: str
    name: str
    created: sc.LocalTime


class ImprintedNewApp(ImprintedApp):
    secret: str = Field(description="Shown this once.")


class ImprintedAppCreated(sc.Message):
    """App created (201, returnCode 2)."""

    app: ImprintedNewApp


class ImprintedAppList(sc.Envelope):
    """Apps, without secrets (returnCode 3)."""

    count: int = Field(ge=0)
    items: list[ImprintedApp]
