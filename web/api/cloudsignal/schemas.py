"""The CloudSignal dialect's wire shapes (seed 002): they document the API (web.openapi) and
the tests validate answers against them."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.services.integrations.cloudsignal import SignalType
from web import wire as sc
from web.api.cloudsignal import handlers as cs

TAG = "cloudsignal"
DATETIME = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?"
    r"( ?(GMT|UTC|Z|[+-][0-9]{2}:?[0-9]{2}))?$"
)
Optional = SkipJsonSchema[None]


def _absent(schema: dict[str, Any]) -> None:
    """A key that is either present (never null) or left out: no `default: null`."""
    schema.pop("default", None)


Ref = Annotated[str, Field(min_length=1, max_length=cs.MAX_REF)]


class CloudSignal(BaseModel):
    """A CloudSignal v1.1 signal (seed 002). A missing or invalid parameter is 400, checked
    first; then `apikey`: without it the answer is 401, with a wrong one 403. Other keys are
    ignored."""

    apikey: str = Field(
        min_length=1,
        max_length=256,
        description="The api access key.",
        examples=["13b37bb1ed6d3403e158abe719b4f6d0"],
    )
    type: SignalType = Field(
        description="OrderRegistered is acknowledged and changes "
        "nothing; each Item* signal moves the item."
    )
    order: Ref = Field(
        description="The full order id: the gateway's order number (or the order's uuid).",
        examples=["123"],
    )
    item: Ref | Optional = Field(
        None,
        description="The full item id (`<order>-<position>`; "
        "the position alone is accepted). Required by every Item* "
        "signal.",
        examples=["123-1"],
        json_schema_extra=_absent,
    )
    tracking: Annotated[str, Field(max_length=cs.MAX_TRACKING)] | Optional = Field(
        None,
        description="ItemShipped: required (the seed's tracking code; kept as is).",
        json_schema_extra=_absent,
    )
    cause: Annotated[str, Field(max_length=cs.MAX_CAUSE)] | Optional = Field(
        None, description="ItemError / ItemCanceled: why.", json_schema_extra=_absent
    )
    delay: Annotated[str, Field(pattern=r"^[0-9]{1,4}(\.[0-9]{1,3})?$")] | Optional = Field(
        None,
        description="ItemError / ItemCanceled: the expected delay in hours.",
        examples=["24"],
        json_schema_extra=_absent,
    )
    message: Annotated[str, Field(max_length=cs.MAX_MESSAGE)] | Optional = Field(
        None, description="ItemCanceled: free text.", json_schema_extra=_absent
    )
    datetime: str = Field(
        pattern=DATETIME,
        description="When it happened, `YYYY-MM-DD HH:MM:SS GMT`.",
        examples=["2016-01-20 13:00:00 GMT"],
    )


class KeyName(BaseModel):
    name: str = Field(pattern=sc.TOKEN_NAME, description="Who the key is for.")


class Key(sc.Wire):
    """A CloudSignal apikey without its secret."""

    id: int = Field(ge=1)
    name: str
    keyId: str = Field(description="The key's public id, to tell keys apart.")
    creation_date: sc.LocalTime


class NewKey(Key):
    apikey: str = Field(pattern=r"^[0-9a-f]{32}$", description="Shown this once.")


class KeyCreated(sc.Message):
    """Apikey created (201, returnCode 120)."""

    key: NewKey


class KeyList(sc.Envelope):
    """CloudSignal apikeys, without secrets (returnCode 121)."""

    count: int = Field(ge=0)
    items: list[Key]


class NewSubscription(BaseModel):
    """A receiver of the gateway's signals, and the apikey to put in each signal's body."""

    url: sc.Url
    apikey: str = Field(min_length=1, max_length=256)


class Subscription(sc.Wire):
    """A receiver (its apikey is never shown again)."""

    id: int = Field(ge=1)
    url: str
    creation_date: sc.LocalTime
    disabled: sc.LocalTime | None = Field(description="Set when the receiver answered 410.")
    disabled_reason: str | None


class Subscribed(sc.Message):
    """Subscription added (201) or its apikey replaced (200); returnCode 122."""

    subscription: Subscription


class SubscriptionList(sc.Envelope):
    """CloudSignal receivers (returnCode 123)."""

    count: int = Field(ge=0)
    items: list[Subscription]


class IdQuery(BaseModel):
    id: int = Field(ge=1, le=999_999_999_999, description="The `id` from the listing.")
