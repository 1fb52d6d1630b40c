"""The table-tracker wire shapes as pydantic models.

They document the API (the OpenAPI document is generated from them, see `web.openapi`) and the
tests validate real responses against them; the request hot path does not use them. Response
models forbid extra keys so a handler that starts sending a new or renamed key fails the tests
until its model (and the committed `web/openapi.json`) follow.

v1 differs from v2 in one key of the order object (`stateStarted` for `stateChanged`) and in
the statistics envelope (flat instead of nested), so the envelopes that carry orders are generic
in the order model and have a named v1 and v2 variant each; `dialect(base)` picks the set.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from gateway.core.models import ClearReason, OrderState
from web.wire import NUMBER
from web.wire import TOKEN_NAME as TOKEN_NAME  # re-exported: tests and routes read `sc.` names
from web.wire import Envelope as Envelope
from web.wire import LocalTime as LocalTime
from web.wire import Message as Message
from web.wire import Url as Url
from web.wire import Wire as Wire
from web.wire import absent as _absent


class OrderType(StrEnum):
    """ON_PREMISE and ON_PREMISES are both valid; an order keeps the one its client sent."""

    ON_PREMISE = "ON_PREMISE"
    ON_PREMISES = "ON_PREMISES"
    TO_GO = "TO_GO"


class NewOrderEventType(StrEnum):
    """What the WebSocket feed calls a new order (the commercial firmware says ORDER_CREATED)."""

    NEW_ORDER = "NEW_ORDER"
    ORDER_CREATED = "ORDER_CREATED"


# -- orders -------------------------------------------------------------------------------


class _OrderFields(Wire):
    uuid: str = Field(
        pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$",
        examples=["54ed91e6-286b-4912-b44c-7a7a3001d715"],
    )
    created: LocalTime
    orderType: OrderType
    locationName: str = Field(
        pattern=r"^([1-9][0-9]{0,8})?$", description='Table number; "" until located.'
    )
    state: OrderState
    name: str = Field(pattern=NUMBER, description="The number on the tracker.")
    paged: bool
    elapsedTime: int = Field(
        ge=0, description="Whole seconds since `created`; a cleared order's clock stops."
    )


class ActiveOrder(_OrderFields):
    """An order (v2)."""

    stateChanged: LocalTime


class ActiveOrderV1(_OrderFields):
    """An order as v1 names it: `stateStarted` instead of `stateChanged`."""

    stateStarted: LocalTime


class _HistoryFields(Wire):
    tracking: bool
    cleared: LocalTime | None
    clearReason: ClearReason | None
    timeToSit: int | None = Field(
        description="Seconds from start to located; null if never located."
    )
    deliveryTime: int | None = Field(
        description="Seconds from start to cleared; null while active."
    )


class HistoryOrder(ActiveOrder, _HistoryFields):
    """An order in the history (v2), active or cleared."""


class HistoryOrderV1(ActiveOrderV1, _HistoryFields):
    """An order in the history (v1)."""


OrderT = TypeVar("OrderT", bound=BaseModel)


class _OrderResponse(Envelope, Generic[OrderT]):
    warning: str | SkipJsonSchema[None] = Field(
        default=None,
        description="Present when no tracker is bound to the order (it cannot be paged).",
        examples=["Tracker not assigned with order."],
        json_schema_extra=_absent,
    )
    activeorder: OrderT


class OrderResponse(_OrderResponse[ActiveOrder]):
    """One order: created (201) or modified (200) with returnCode 5, or read (returnCode 6)."""


class OrderResponseV1(_OrderResponse[ActiveOrderV1]):
    """One order (v1)."""


class _OrderAction(Message, Generic[OrderT]):
    activeorder: OrderT


class OrderAction(_OrderAction[ActiveOrder]):
    """An action on one order (cleared 1000, paged 1014, paging cancelled 1002) and the order
    after it."""


class OrderActionV1(_OrderAction[ActiveOrderV1]):
    """An action on one order (v1)."""


class _OrderList(Envelope, Generic[OrderT]):
    count: int = Field(ge=0)
    items: list[OrderT]


class OrderList(_OrderList[ActiveOrder]):
    """All active orders (returnCode 5)."""


class OrderListV1(_OrderList[ActiveOrderV1]):
    """All active orders (v1)."""


class ClearedAll(Message):
    """Every active order cleared (returnCode 1000)."""

    count: int = Field(ge=0, description="How many orders were cleared.")


class _History(Envelope, Generic[OrderT]):
    count: int = Field(ge=0, description="Items in this page.")
    total: int = Field(ge=0, description="Orders matching the filters.")
    offset: int = Field(ge=0)
    limit: int = Field(ge=1, le=100)
    items: list[OrderT]


class History(_History[HistoryOrder]):
    """A page of the order history, newest first (returnCode 5)."""


class HistoryV1(_History[HistoryOrderV1]):
    """A page of the order history (v1)."""


class DayStatistics(Wire):
    """Today's speed of service, in the gateway's time zone."""

    date: str = Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
    timezone: str
    targetTime: int = Field(ge=1, le=86_400)
    count: int = Field(ge=0, description="Orders created today.")
    located: int = Field(ge=0)
    cleared: int = Field(ge=0)
    averageTimeToSit: float | None
    averageDeliveryTime: float | None
    withinTarget: int = Field(ge=0)
    withinTargetShare: float | None = Field(ge=0, le=1)


class Statistics(Envelope):
    """Today's statistics (returnCode 14); v2 nests them under `statistics`."""

    statistics: DayStatistics


class StatisticsV1(Envelope, DayStatistics):
    """Today's statistics (v1): flat in the envelope."""


# -- gateway ------------------------------------------------------------------------------


class Health(Message):
    """Liveness (returnCode 1) and facts about the gateway."""

    gatewayId: str
    version: str
    apiVersion: Literal["v1", "v2"]
    demo: bool
    time: LocalTime
    uptime: int = Field(ge=0, description="Seconds since start.")
    activeOrders: int = Field(ge=0)
    journalSeq: int = Field(ge=0, description="The feed's last `seq`.")


class Settings(Wire):
    """Settings a manager changes at runtime."""

    zigbeePreset: int = Field(ge=0, le=255, description="Kept for old clients; unused.")
    targetTimeDefault: int = Field(ge=1, le=86_400, description="Seconds.")
    timezone: str = Field(description="IANA time zone name.", examples=["Europe/Paris"])
    newOrderEventType: NewOrderEventType


class SettingsUpdate(Wire):
    """Any subset of the settings; an unknown key is refused (-20)."""

    zigbeePreset: Annotated[int, Field(ge=0, le=255)] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=_absent
    )
    targetTimeDefault: Annotated[int, Field(ge=1, le=86_400)] | SkipJsonSchema[None] = Field(
        None, json_schema_extra=_absent
    )
    timezone: str | SkipJsonSchema[None] = Field(
        None, examples=["Europe/Paris"], json_schema_extra=_absent
    )
    newOrderEventType: NewOrderEventType | SkipJsonSchema[None] = Field(
        None, json_schema_extra=_absent
    )


class SettingsResponse(Envelope):
    """The settings (returnCode 13)."""

    settings: Settings


class SettingsChanged(Message):
    """Settings changed (returnCode 1004): all of them after the change."""

    settings: Settings


# -- webhook clients ----------------------------------------------------------------------


class Register(BaseModel):
    """A webhook client: the gateway POSTs the order object to this URL on every change."""

    http_client: Url


class WebhookClient(Wire):
    http_client: str
    apiVersion: Literal["v1", "v2"]


class ClientRegistered(Message):
    """Client registered (returnCode 1005)."""

    client: WebhookClient


class ClientList(Envelope):
    """Registered webhook clients (returnCode 4)."""

    count: int = Field(ge=0)
    items: list[WebhookClient]


# -- tokens -------------------------------------------------------------------------------


class Token(Wire):
    """A token without its secret."""

    id: int = Field(ge=1)
    name: str
    creation_date: LocalTime
    last_used: LocalTime | None
    ip_address: str | None


class NewToken(Token):
    """A token with its secret, shown this once."""

    token: str = Field(pattern=r"^[0-9a-f]{48}$")


class TokenCreated(Message):
    """Token created (201, returnCode 2)."""

    token: NewToken


class TokenList(Envelope):
    """Tokens, without secrets (returnCode 3)."""

    count: int = Field(ge=0)
    items: list[Token]


class TokenName(BaseModel):
    """The new token's name (the query parameter `name` wins)."""

    name: str = Field(pattern=TOKEN_NAME)


# -- the two dialects ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    order: type[Wire]
    order_response: type[Envelope]
    order_action: type[Message]
    order_list: type[Envelope]
    history: type[Envelope]
    statistics: type[Envelope]


V2 = Dialect(ActiveOrder, OrderResponse, OrderAction, OrderList, History, Statistics)
V1 = Dialect(ActiveOrderV1, OrderResponseV1, OrderActionV1, OrderListV1, HistoryV1, StatisticsV1)


def dialect(base: str) -> Dialect:
    return V1 if base.startswith("/api/v1") else V2
