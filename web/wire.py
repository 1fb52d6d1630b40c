"""Wire shapes every dialect shares: the gateway's JSON envelope and a few field types.

The dialects' own models live beside their handlers (web/api/<dialect>/schemas.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

LOCAL_TIME = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}$"
LocalTime = Annotated[
    str,
    Field(
        pattern=LOCAL_TIME,
        description="Gateway local time (setting `timezone`), YYYY-MM-DDTHH:MM:SS.",
        examples=["2014-08-25T08:09:42"],
    ),
]
# Digits of a positive integer as the gateway renders them (no leading zeros). Requests may
# carry leading zeros; the gateway strips them.
NUMBER = r"^[1-9][0-9]{0,8}$"
TOKEN_NAME = r"^[A-Za-z0-9 _.@:+-]{1,64}$"
DATE_OR_TIME = (
    r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9])?$"
)
UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
URL = r"^https?://[^\s/?#@]+([/?#]\S*)?$"
Number = Annotated[str, Field(pattern=NUMBER)]
Url = Annotated[
    str,
    Field(
        pattern=URL,
        max_length=2048,
        description="An http(s) URL; loopback, link-local and metadata hosts are refused "
        "unless the operator allow-listed them.",
        examples=["http://pos.example/tablegate-hook"],
    ),
]


def absent(schema: dict[str, Any]) -> None:
    """For a key that is either present (never null) or left out: no `default: null`."""
    schema.pop("default", None)


class Wire(BaseModel):
    """A response shape: every key the gateway sends, and no other."""

    model_config = ConfigDict(extra="forbid")


class Envelope(Wire):
    status: int = Field(ge=100, le=599, description="The HTTP status, repeated.")
    returnCode: int = Field(
        description="Below 0: error. 1 to 999: data. 1000 and up: action acknowledged."
    )


class Message(Envelope):
    """An acknowledged action (returnCode 1000 and up) or an error (returnCode below 0)."""

    message: str
