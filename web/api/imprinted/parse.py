"""Parsing for the Imprinted dialect (seed 001): query parameters, and an order body (JSON or
XML, already turned into plain values) into what `OrderIntake.create` takes.

Every refusal is a ValidationFailed whose message names the field and what it must be, so
the integrator can fix the request from the 400 alone. Nothing here touches state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

from gateway.core.errors import Code, ValidationFailed
from gateway.services.integrations.imprinted.orders import STATUSES, Filters
from gateway.services.orders.intake import MAX_ITEMS, NewItem
from web.api.imprinted.xml import XML_ILLEGAL, XML_NAME

MAX_LIMIT = 250
DEFAULT_LIMIT = 50
MAX_PAGE = 1_000_000
MAX_IDS = 250
MAX_QUANTITY = 9999
MAX_PRICE = Decimal(10_000_000)
ADDRESS_KEYS = (
    "firstName",
    "lastName",
    "company",
    "address1",
    "address2",
    "city",
    "county",
    "postcode",
    "country",
    "phone1",
    "phone2",
    "phone3",
    "vatNumber",
)
SHIPPING_METHODS = ("regular", "recorded", "courier", "collection")
SUMMARY_MONEY = ("subtotalPrice", "shippingPrice", "total", "totalTax")
# Read-only properties of the seed: a client that sends back what it read is not refused;
# the values are ignored.
READ_ONLY = frozenset(
    {"id", "created_at", "type", "status", "deleted", "billing_address", "payment"}
)
ITEM_READ_ONLY = frozenset({"price"})
DIGITS = re.compile(r"[0-9]{1,12}")
MONEY = re.compile(r"[0-9]{1,8}(\.[0-9]{1,2})?")
CURRENCY = re.compile(r"[A-Z]{3}")
ISO = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    r"(Z|[+-][0-9]{2}:?[0-9]{2})?"
)
FORMATS = {"json": "json", "jsn": "json", "xml": "xml"}

LIST_PARAMS = frozenset(
    {
        "AppId",
        "ids",
        "limit",
        "page",
        "since_id",
        "created_at_min",
        "created_at_max",
        "status",
        "format",
    }
)
ONE_PARAMS = frozenset({"AppId", "id", "format"})
POST_PARAMS = frozenset({"AppId", "format"})


def bad(message: str, code: Code = Code.BAD_ORDER) -> ValidationFailed:
    return ValidationFailed(code, message)


# -- query ------------------------------------------------------------------------------


def query_params(signed_query: str, allowed: frozenset[str]) -> dict[str, str]:
    """The query (without Signature) as one value per name; unknown or repeated names are
    refused: a typo (`sinceid`) must not silently list everything."""
    try:
        pairs = parse_qsl(
            signed_query,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=len(allowed) + 1,
        )
    except (ValueError, UnicodeDecodeError):
        raise bad(
            "The query string is not valid (too many parameters, or not UTF-8).", Code.BAD_PARAMETER
        ) from None
    out: dict[str, str] = {}
    for name, value in pairs:
        if name not in allowed:
            raise bad(
                f"Unknown parameter {name[:40]!r}. Accepted: {', '.join(sorted(allowed))}.",
                Code.BAD_PARAMETER,
            )
        if name in out:
            raise bad(f"Parameter {name!r} is given more than once.", Code.BAD_PARAMETER)
        out[name] = value
    return out


def response_format(value: str | None) -> str:
    if value is None or value == "":
        return "json"
    fmt = FORMATS.get(value.strip().lower())
    if fmt is None:
        raise bad("format must be json or xml.", Code.BAD_PARAMETER)
    return fmt


def _int(
    params: dict[str, str],
    name: str,
    default: int | None,
    lo: int,
    hi: int,
    code: Code = Code.BAD_PARAMETER,
) -> int | None:
    raw = params.get(name)
    if raw is None:
        return default
    raw = raw.strip()
    if not (raw.isascii() and DIGITS.fullmatch(raw)) or not lo <= int(raw) <= hi:
        raise bad(f"{name} must be an integer from {lo} to {hi}.", code)
    return int(raw)


def order_id(params: dict[str, str]) -> int:
    raw = params.get("id")
    if raw is None or not (raw.isascii() and DIGITS.fullmatch(raw.strip())) or int(raw) < 1:
        raise bad("id must be an order id (a positive integer).", Code.BAD_ORDER_ID)
    return int(raw)


def _time(params: dict[str, str], name: str, tz: ZoneInfo) -> float | None:
    raw = params.get(name)
    if raw is None:
        return None
    text = raw.strip()
    if " " in text:  # an unencoded '+' of the offset arrives as a space: "…T16:15:47 01:00"
        text = "+".join(text.rsplit(" ", 1))
    if not ISO.fullmatch(text):
        raise bad(
            f"{name} must be an ISO 8601 date and time with an offset, e.g. "
            "2014-04-25T16:15:47-04:00.",
            Code.BAD_DATE,
        )
    try:
        when = datetime.fromisoformat(text)
        if when.tzinfo is None:  # no offset: the gateway's own time zone
            when = when.replace(tzinfo=tz)
        return float(math.floor(when.timestamp()))
    except (ValueError, OverflowError):
        raise bad(f"{name} is not a valid date and time.", Code.BAD_DATE) from None


@dataclass(frozen=True, slots=True)
class Listing:
    filters: Filters
    limit: int
    offset: int


def listing(params: dict[str, str], source: str, tz: ZoneInfo) -> Listing:
    limit = _int(params, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT, Code.BAD_LIMIT)
    page = _int(params, "page", 1, 1, MAX_PAGE)
    since_id = _int(params, "since_id", None, 0, 10**12 - 1)
    created_min = _time(params, "created_at_min", tz)
    created_max = _time(params, "created_at_max", tz)
    ids: tuple[int, ...] | None = None
    if "ids" in params:
        parts = [p.strip() for p in params["ids"].split(",")]
        if len(parts) > MAX_IDS or not all(p.isascii() and DIGITS.fullmatch(p) for p in parts):
            raise bad(
                f"ids must be a comma-separated list of up to {MAX_IDS} order ids.",
                Code.BAD_ORDER_ID,
            )
        ids = tuple(sorted({int(p) for p in parts}))
    status = params.get("status")
    if status is not None:
        status = " ".join(status.split()).lower()
        if status not in STATUSES:
            raise bad(
                f"Unknown status {status[:40]!r}. Use one of: {', '.join(STATUSES)}.",
                Code.BAD_STATUS_FILTER,
            )
    assert limit is not None and page is not None
    return Listing(
        Filters(
            source,
            ids,
            since_id,
            created_min,
            None if created_max is None else created_max + 1,
            status,
        ),
        limit,
        (page - 1) * limit,
    )


# -- the order body -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OrderSpec:
    external_id: str
    items: list[NewItem]
    extra: dict[str, Any]


def _text(value: Any, where: str, max_len: int, *, allow_number: bool = False) -> str:
    if allow_number and isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise bad(f"{where} must be a string.")
    if len(value) > max_len:
        raise bad(f"{where} must be at most {max_len} characters.")
    if XML_ILLEGAL.search(value):
        raise bad(f"{where} contains a control character.")
    return value


def money(value: Any, where: str) -> int:
    """A decimal amount (number, or string like "20" or "25.00") in minor units."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad(f'{where} must be an amount such as 20 or "25.00".')
    if isinstance(value, str):
        if not MONEY.fullmatch(value.strip()):
            raise bad(f'{where} must be an amount such as "25.00" (digits, at most 2 decimals).')
        amount = Decimal(value.strip())
    else:
        try:
            amount = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        except InvalidOperation:
            raise bad(f"{where} must be a finite amount.") from None
    if not amount.is_finite() or amount < 0 or amount >= MAX_PRICE:
        raise bad(f"{where} must be from 0 to {MAX_PRICE - 1}.")
    minor = amount * 100
    if minor != minor.to_integral_value():
        raise bad(f"{where} has more than 2 decimals.")
    return int(minor)


def format_money(minor: int) -> str:
    return f"{minor // 100}.{minor % 100:02d}"


def _quantity(value: Any, where: str) -> int:
    if isinstance(value, str) and value.strip().isascii() and DIGITS.fullmatch(value.strip()):
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_QUANTITY:
        raise bad(f"{where} must be an integer from 1 to {MAX_QUANTITY}.")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    """An object without its null fields (a null field is a field left out)."""
    if value == "":  # XML cannot tell an empty object from an empty string
        return {}
    if not isinstance(value, dict):
        raise bad(f"{where} must be an object.")
    return {k: v for k, v in value.items() if v is not None}


def _names(value: dict[str, Any], where: str, max_keys: int = 20) -> None:
    if len(value) > max_keys:
        raise bad(f"{where} has more than {max_keys} fields.")
    for key in value:
        if not XML_NAME.fullmatch(key):
            raise bad(
                f"{where}: field names must be letters, digits, _ . or - and start "
                f"with a letter ({key[:40]!r})."
            )


def _strings(value: Any, where: str, max_len: int) -> dict[str, str]:
    """An object of named strings (designs, mockups: side -> URL)."""
    obj = _object(value, where)
    _names(obj, where)
    return {k: _text(v, f"{where}.{k}", max_len) for k, v in obj.items()}


def _scalars(value: Any, where: str) -> dict[str, Any]:
    """An object of named strings or numbers (label)."""
    obj = _object(value, where)
    _names(obj, where)
    out: dict[str, Any] = {}
    for k, v in obj.items():
        if isinstance(v, float) and not math.isfinite(v):
            raise bad(f"{where}.{k} must be a finite number.")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = v
        else:
            out[k] = _text(v, f"{where}.{k}", 200)
    return out


def _address(value: Any, where: str) -> dict[str, str]:
    obj = _object(value, where)
    for key in obj:
        if key not in ADDRESS_KEYS:
            raise bad(f"Unknown field {where}.{key[:40]}. Use: {', '.join(ADDRESS_KEYS)}.")
    return {k: _text(v, f"{where}.{k}", 200, allow_number=True) for k, v in obj.items()}


def _shipping(value: Any) -> dict[str, str]:
    obj = _object(value, "shipping")
    out: dict[str, str] = {}
    for key, v in obj.items():
        if key in ("trackingNumber", "shiped_at"):
            continue  # read-only
        if key != "shippingMethod":
            raise bad(f"Unknown field shipping.{key[:40]}. Use: shippingMethod.")
        if v not in SHIPPING_METHODS:
            raise bad(f"shipping.shippingMethod must be one of {', '.join(SHIPPING_METHODS)}.")
        out[key] = v
    return out


def _summary(value: Any) -> dict[str, str]:
    obj = _object(value, "summary")
    out: dict[str, str] = {}
    for key, v in obj.items():
        if key == "currency":
            if not isinstance(v, str) or not CURRENCY.fullmatch(v):
                raise bad("summary.currency must be a three-letter ISO 4217 code, e.g. GBP.")
            out[key] = v
        elif key in SUMMARY_MONEY:
            out[key] = format_money(money(v, f"summary.{key}"))
        else:
            raise bad(
                f"Unknown field summary.{key[:40]}. Use: currency, {', '.join(SUMMARY_MONEY)}."
            )
    return out


ITEM_KEYS = (
    "pn",
    "title",
    "quantity",
    "retailPrice",
    "description",
    "brandName",
    "label",
    "designs",
    "mockups",
)


def _item(value: Any, where: str, brand: str | None) -> NewItem:
    if not isinstance(value, dict):
        raise bad(f"{where} must be an object.")
    obj = _object(value, where)
    if "mockup" in obj and "mockups" not in obj:  # the seed's prose says "mockup"
        obj = {("mockups" if k == "mockup" else k): v for k, v in obj.items()}
    for key in obj:
        if key not in ITEM_KEYS and key not in ITEM_READ_ONLY:
            raise bad(f"Unknown field {where}.{key[:40]}. Use: {', '.join(ITEM_KEYS)}.")
    if "pn" not in obj:
        raise bad(f"{where}.pn (the product code) is required.")
    pn = _text(obj["pn"], f"{where}.pn", 64, allow_number=True).strip()
    if not pn:
        raise bad(f"{where}.pn must not be empty.")
    title = _text(obj.get("title", ""), f"{where}.title", 200).strip() or pn
    quantity = _quantity(obj.get("quantity", 1), f"{where}.quantity")
    price = (
        None
        if obj.get("retailPrice") in (None, "")
        else money(obj["retailPrice"], f"{where}.retailPrice")
    )
    notes = _text(obj.get("description", ""), f"{where}.description", 1000)
    extra: dict[str, Any] = {}
    item_brand = obj.get("brandName")
    if item_brand not in (None, ""):
        extra["brandName"] = _text(item_brand, f"{where}.brandName", 100)
    elif brand:
        extra["brandName"] = brand
    if obj.get("label") not in (None, ""):
        extra["label"] = _scalars(obj["label"], f"{where}.label")
    for key in ("designs", "mockups"):
        if obj.get(key) not in (None, ""):
            extra[key] = _strings(obj[key], f"{where}.{key}", 2048)
    return NewItem(
        title=title, quantity=quantity, product_code=pn, price=price, notes=notes, extra=extra
    )


ORDER_KEYS = (
    "external_id",
    "brand",
    "brandName",
    "comment",
    "shipping_address",
    "shipping",
    "items",
    "summary",
)


def order_spec(body: Any) -> OrderSpec:
    """The seed's order properties → items and extras for `OrderIntake.create`."""
    if isinstance(body, dict) and set(body) == {"order"} and isinstance(body["order"], dict):
        body = body["order"]  # {"order": {...}} as the endpoint table names the parameter
    if not isinstance(body, dict):
        raise bad("The body must be an order object.")
    body = _object(body, "order")
    for key in body:
        if key not in ORDER_KEYS and key not in READ_ONLY:
            raise bad(
                f"Unknown field {key[:40]!r}. Writable order properties: {', '.join(ORDER_KEYS)}."
            )
    external_id = body.get("external_id")
    external = (
        ""
        if external_id in (None, "")
        else _text(external_id, "external_id", 64, allow_number=True).strip()
    )
    extra: dict[str, Any] = {}
    brand: str | None = None
    for key in ("brand", "brandName"):
        if body.get(key) not in (None, ""):
            brand = _text(body[key], key, 100)
            break
    if brand is not None:
        extra["brand"] = brand
    if body.get("comment") not in (None, ""):
        extra["comment"] = _text(body["comment"], "comment", 1000)
    if body.get("shipping_address") not in (None, ""):
        extra["shipping_address"] = _address(body["shipping_address"], "shipping_address")
    if body.get("shipping") not in (None, ""):
        extra["shipping"] = _shipping(body["shipping"])
    if body.get("summary") not in (None, ""):
        extra["summary"] = _summary(body["summary"])
    raw_items = body.get("items")
    if not isinstance(raw_items, list) or not 1 <= len(raw_items) <= MAX_ITEMS:
        raise bad(f"items must be a list of 1 to {MAX_ITEMS} items.")
    items = [_item(v, f"items[{n}]", brand) for n, v in enumerate(raw_items)]
    return OrderSpec(external, items, extra)
