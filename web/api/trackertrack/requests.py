"""The table-tracker requests as pydantic models: bodies, query parameters (one field each),
path parameters. They document the API (web.openapi)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from web.api.trackertrack.schemas import OrderType
from web.wire import DATE_OR_TIME, NUMBER, TOKEN_NAME, UUID, Number, Url
from web.wire import absent as _absent

# -- requests -----------------------------------------------------------------------------


class StartOrderRequest(BaseModel):
    """Start an order, or locate it (with `locationName`); other keys are ignored."""

    name: str = Field(
        pattern=NUMBER, description="The tracker's number: a string of digits.", examples=["66"]
    )
    orderType: OrderType
    locationName: Number | SkipJsonSchema[None] = Field(
        None,
        description="Table number: the order starts `located`.",
        json_schema_extra=_absent,
    )


class PageRequest(BaseModel):
    """`tracking`: keep paging until cancelled (default true); the query parameter of the same
    name is used when the body has none."""

    tracking: bool = True


# -- query parameters (each field is one parameter) -------------------------------------


class StartOrderQuery(BaseModel):
    dummy_tracker_address: bool = Field(
        False, description="Testing only: bind a stand-in tracker (seed 004)."
    )


class PageQuery(BaseModel):
    tracking: bool = Field(True, description="Used when the body has no `tracking`.")


class HistoryQuery(BaseModel):
    offset: int = Field(0, ge=0, le=10**9)
    limit: int = Field(25, ge=1, le=100)
    created_after: str | None = Field(
        None, pattern=DATE_OR_TIME, description="Local time, YYYY-MM-DD[THH:MM:SS]."
    )
    created_before: str | None = Field(
        None, pattern=DATE_OR_TIME, description="Local time, YYYY-MM-DD[THH:MM:SS]."
    )
    order_type: OrderType | None = Field(
        None, description="ON_PREMISE and ON_PREMISES select the same orders."
    )
    location_name: str | None = Field(None, pattern=NUMBER)


class StatisticsQuery(BaseModel):
    target_time: int | None = Field(
        None, ge=1, le=86_400, description="Seconds; default: setting `targetTimeDefault`."
    )


class GenerateQuery(BaseModel):
    name: str = Field(pattern=TOKEN_NAME)
    timeout: int | None = Field(
        None,
        ge=1,
        le=120,
        description="Wait up to this many seconds for the button (long poll); 408 after.",
    )


class MintQuery(BaseModel):
    name: str | None = Field(None, pattern=TOKEN_NAME, description="Or `name` in the body.")


class RegisterQuery(BaseModel):
    http_client: Url


class FeedQuery(BaseModel):
    since: int | None = Field(
        None, ge=0, description="Resume: the events after this `seq` instead of a snapshot."
    )
    accesstoken: str | None = Field(
        None,
        description="The token, for clients that cannot set headers (or send "
        '{"accesstoken": "..."} as the first frame).',
    )


# -- path parameters ----------------------------------------------------------------------

OrderIdent = Annotated[
    str,
    Field(
        pattern=f"^([1-9][0-9]{{0,8}}|{UUID})$",
        description="The order number, or its uuid.",
        examples=["66", "54ed91e6-286b-4912-b44c-7a7a3001d715"],
    ),
]
TokenId = Annotated[int, Field(ge=0, le=999_999_999_999, description="The token's `id`.")]
TrackerNo = Annotated[int, Field(ge=1, le=65535, description="The number printed on the puck.")]
PATH_PARAMS: dict[str, Any] = {"ident": OrderIdent, "token_id": TokenId, "number": TrackerNo}
