"""What each print command accepts as `data`, checked before anything is stored.

`data` shapes (docs/api.md has them with examples):
- print-text:    a string (1..32768 characters).
- print-order:   a string (the order text, as Imprimo's own order printers take it), or an object
                 {orderId?, number?, table?, type?, items?: [{title, quantity?, notes?}],
                 needsAnswer?: bool (default true)}; orderId names an active gateway order.
- print-receipt: {number?, lines: [{title, quantity?, unitPrice}], totals?: [{label, amount,
                 emphasis?}], currency?: "EUR", minorDigits?: 2, footer?}; money in minor units.
- open-drawer:   null or {pin?: 2 | 5}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.core.errors import Code, ValidationFailed
from gateway.core.printing import Command

MAX_TEXT = 32_768
MAX_ITEMS = 200
ALIASES = {"print": Command.PRINT_TEXT}  # the seed's own example model says "print"


def parse_command(value: object) -> Command:
    if value is None:
        return Command.PRINT_TEXT
    if isinstance(value, str):
        if value in ALIASES:
            return ALIASES[value]
        try:
            return Command(value)
        except ValueError:
            pass
    known = ", ".join(c.value for c in Command)
    raise ValidationFailed(
        Code.PRINT_BAD_COMMAND, f"Unknown command {str(value)[:40]!r}; use one of: {known}."
    )


def _bad(message: str) -> ValidationFailed:
    return ValidationFailed(Code.PRINT_BAD_DATA, message)


def _text(value: object, name: str, limit: int, *, required: bool = False) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise _bad(
            f"{name} must be a non-empty string." if required else f"{name} must be a string."
        )
    if len(value) > limit:
        raise _bad(f"{name} is longer than {limit} characters.")
    return value


def _int(value: object, name: str, lo: int, hi: int, default: int | None = None) -> int:
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise _bad(f"{name} must be an integer from {lo} to {hi}.")
    return value


def _object(value: object, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{name} must be an object.")
    return value


def _list(
    value: object, name: str, each: Callable[[object, str], dict[str, Any]], *, required: bool
) -> list[dict[str, Any]]:
    if value is None and not required:
        return []
    if not isinstance(value, list) or (required and not value):
        raise _bad(
            f"{name} must be a non-empty array." if required else f"{name} must be an array."
        )
    if len(value) > MAX_ITEMS:
        raise _bad(f"{name} has more than {MAX_ITEMS} entries.")
    return [each(v, f"{name}[{i}]") for i, v in enumerate(value)]


def _unknown_keys(obj: dict[str, Any], allowed: set[str], name: str) -> None:
    if extra := sorted(set(obj) - allowed):
        raise _bad(f"{name} has unknown properties: {', '.join(extra)[:200]}.")


def _item(value: object, name: str) -> dict[str, Any]:
    obj = _object(value, name)
    _unknown_keys(obj, {"title", "quantity", "notes", "station"}, name)
    return {
        "title": _text(obj.get("title"), f"{name}.title", 200, required=True),
        "quantity": _int(obj.get("quantity"), f"{name}.quantity", 1, 9999, 1),
        "notes": _text(obj.get("notes"), f"{name}.notes", 500),
        "station": _text(obj.get("station"), f"{name}.station", 32),
    }


def _line(value: object, name: str) -> dict[str, Any]:
    obj = _object(value, name)
    _unknown_keys(obj, {"title", "quantity", "unitPrice"}, name)
    return {
        "title": _text(obj.get("title"), f"{name}.title", 200, required=True),
        "quantity": _int(obj.get("quantity"), f"{name}.quantity", 1, 9999, 1),
        "unitPrice": _int(obj.get("unitPrice"), f"{name}.unitPrice", -(10**9), 10**9),
    }


def _total(value: object, name: str) -> dict[str, Any]:
    obj = _object(value, name)
    _unknown_keys(obj, {"label", "amount", "emphasis"}, name)
    emphasis = obj.get("emphasis", False)
    if not isinstance(emphasis, bool):
        raise _bad(f"{name}.emphasis must be true or false.")
    return {
        "label": _text(obj.get("label"), f"{name}.label", 60, required=True),
        "amount": _int(obj.get("amount"), f"{name}.amount", -(10**10), 10**10),
        "emphasis": emphasis,
    }


def _order(data: object, order_exists: Callable[[str], bool]) -> Any:
    if isinstance(data, str):
        return _text(data, "data", MAX_TEXT, required=True)
    obj = _object(data, "data (print-order)")
    _unknown_keys(obj, {"orderId", "number", "table", "type", "items", "needsAnswer"}, "data")
    out: dict[str, Any] = {}
    if (oid := obj.get("orderId")) is not None:
        out["orderId"] = _text(oid, "data.orderId", 64, required=True)
        if not order_exists(out["orderId"]):
            raise _bad(f"data.orderId {out['orderId']!r} is not an active order.")
    for key, limit in (("number", 32), ("table", 32), ("type", 32)):
        if obj.get(key) is not None:
            out[key] = _text(obj[key], f"data.{key}", limit)
    if "orderId" not in out and not out.get("number"):
        raise _bad("data (print-order) needs orderId or number.")
    out["items"] = _list(obj.get("items"), "data.items", _item, required=False)
    answer = obj.get("needsAnswer", True)
    if not isinstance(answer, bool):
        raise _bad("data.needsAnswer must be true or false.")
    out["needsAnswer"] = answer
    return out


def _receipt(data: object) -> dict[str, Any]:
    obj = _object(data, "data (print-receipt)")
    _unknown_keys(obj, {"number", "lines", "totals", "currency", "minorDigits", "footer"}, "data")
    currency = _text(obj.get("currency", "EUR"), "data.currency", 3, required=True)
    if not (len(currency) == 3 and currency.isascii() and currency.isalpha()):
        raise _bad("data.currency must be a 3-letter ISO 4217 code.")
    return {
        "number": _text(obj.get("number"), "data.number", 32),
        "lines": _list(obj.get("lines"), "data.lines", _line, required=True),
        "totals": _list(obj.get("totals"), "data.totals", _total, required=False),
        "currency": currency.upper(),
        "minorDigits": _int(obj.get("minorDigits"), "data.minorDigits", 0, 3, 2),
        "footer": _text(obj.get("footer"), "data.footer", 500),
    }


def _drawer(data: object) -> Any:
    if data is None:
        return None
    obj = _object(data, "data (open-drawer)")
    _unknown_keys(obj, {"pin"}, "data")
    pin = _int(obj.get("pin"), "data.pin", 2, 5, 2)
    if pin not in (2, 5):
        raise _bad("data.pin must be 2 or 5.")
    return {"pin": pin}


def check_data(command: Command, data: object, order_exists: Callable[[str], bool]) -> Any:
    """The normalised `data` for `command`, or ValidationFailed with a precise message."""
    if command is Command.PRINT_TEXT:
        return _text(data, "data (print-text)", MAX_TEXT, required=True)
    if command is Command.PRINT_ORDER:
        return _order(data, order_exists)
    if command is Command.PRINT_RECEIPT:
        return _receipt(data)
    return _drawer(data)
