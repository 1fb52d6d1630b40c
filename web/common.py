"""Parsing shared by the table-tracker routes: bodies, booleans, order ids and credentials."""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from typing import Any

import orjson
from aiohttp import web

from gateway.core.errors import AuthFailed, Code, ValidationFailed
from gateway.core.models import TokenInfo
from gateway.services.orders.book import OrderRef
from web.services import SERVICES

DIGITS = re.compile(r"[0-9]{1,12}")
UUIDISH = re.compile(r"[0-9A-Fa-f-]{8,}")


async def read_json(request: web.Request, *, optional: bool = False) -> dict[str, Any]:
    """The body as a JSON object, or -31. aiohttp's client_max_size turns an oversized body
    into 413 before we get here."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return {}
        raise ValidationFailed(Code.BAD_JSON, "Invalid JSON body: the body is empty.")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        # orjson refuses nesting past 1024 levels itself (stdlib json would raise
        # RecursionError, a 500 unless caught); the message names the cause.
        reason = str(exc).split(":")[0]
        raise ValidationFailed(Code.BAD_JSON, f"Invalid JSON body: {reason}.") from None
    if not isinstance(data, dict):
        raise ValidationFailed(Code.BAD_JSON, "Invalid JSON body: expected an object.")
    return data


def parse_bool(value: Any) -> bool:
    """Lenient as real clients need: true/false, "true"/"false", 1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        v = value.strip().lower()
        if v in ("true", "1", "yes", "on"):
            return True
        if v in ("false", "0", "no", "off"):
            return False
    raise ValidationFailed(Code.BAD_BOOLEAN)


def positive_number(value: Any) -> str | None:
    """Canonical digits of a positive integer given as a digit string or an integer."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return str(value) if 0 < value < 10**9 else None
    if isinstance(value, str) and DIGITS.fullmatch(value) and 0 < int(value) < 10**9:
        return str(int(value))
    return None


def parse_ident(ident: str) -> OrderRef:
    if DIGITS.fullmatch(ident):
        name = positive_number(ident)
        if name is None:
            raise ValidationFailed(Code.BAD_ORDER_ID)
        return OrderRef(name=name)
    if UUIDISH.fullmatch(ident):
        try:
            return OrderRef(uuid=str(uuid.UUID(ident)))
        except ValueError:
            raise ValidationFailed(Code.BAD_UUID) from None
    raise ValidationFailed(Code.BAD_ORDER_ID)


def bearer_secret(header: str) -> str:
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret or len(secret) > 256:
        raise AuthFailed(Code.AUTH_MALFORMED)
    return secret


def basic_secret(header: str) -> str:
    """v1 convention: the token is the username and the password is empty."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip() or len(encoded) > 512:
        raise AuthFailed(Code.AUTH_MALFORMED)
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise AuthFailed(Code.AUTH_MALFORMED) from None
    user, sep, _password = decoded.partition(":")
    if not sep or not user:
        raise AuthFailed(Code.AUTH_MALFORMED)
    return user


def authenticate(request: web.Request, *, allow_basic: bool = False) -> TokenInfo:
    header = request.headers.get("Authorization")
    if header is None:
        raise AuthFailed(Code.AUTH_MALFORMED, "Missing Authorization header.")
    if allow_basic and header[:6].lower() == "basic ":
        secret = basic_secret(header)
    else:
        secret = bearer_secret(header)
    return request.app[SERVICES].tokens.authenticate(secret, request.remote)
