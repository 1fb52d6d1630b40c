"""The canonical order in the Imprinted vocabulary (seed 001): field names exactly as the seed
writes them, values as its examples show them (ids, quantities and amounts as strings,
`deleted` as "true"/"false", times ISO 8601 with the gateway's offset)."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.models import Item, Order
from gateway.services.integrations.imprinted.orders import order_status
from web.api.imprinted.parse import ADDRESS_KEYS, format_money


def iso(ts: float, tz: ZoneInfo) -> str:
    return datetime.fromtimestamp(int(ts // 1), tz).isoformat()


def _money(minor: int | None) -> str | None:
    return None if minor is None else format_money(minor)


def item_dict(item: Item, brand: str) -> dict[str, Any]:
    extra = item.extra
    price = _money(item.price)
    return {
        "pn": item.product_code,
        "title": item.title,
        "price": price,  # no discounts at the gateway: the price is the retail price
        "retailPrice": price,
        "quantity": str(item.quantity),
        "description": item.notes,
        "brandName": extra.get("brandName") or brand,
        "label": extra.get("label"),
        "designs": extra.get("designs") or {},
        "mockups": extra.get("mockups") or {},
    }


def summary(order: Order) -> dict[str, Any]:
    given = order.extra.get("summary")
    if isinstance(given, dict) and given:
        return {
            k: given.get(k)
            for k in ("currency", "subtotalPrice", "shippingPrice", "total", "totalTax")
        }
    live = [i for i in order.items if i.status.value != "canceled"]
    subtotal = (
        None
        if any(i.price is None for i in live)
        else sum((i.price or 0) * i.quantity for i in live)
    )
    return {
        "currency": None,  # the gateway knows no currency unless the integrator sent one
        "subtotalPrice": _money(subtotal),
        "shippingPrice": "0.00",
        "total": _money(subtotal),
        "totalTax": "0.00",
    }


def order_dict(order: Order, tz: ZoneInfo) -> dict[str, Any]:
    extra = order.extra
    brand = extra.get("brand") or ""
    given_shipping = extra.get("shipping")
    shipping: dict[str, Any] = given_shipping if isinstance(given_shipping, dict) else {}
    handed_over = order.cleared_at is not None and not order.cancelled
    payment = extra.get("payment")
    address = extra.get("shipping_address")
    return {
        "id": str(order.number),
        "external_id": order.external_id,
        "created_at": iso(order.created, tz),
        "type": "order",
        "status": order_status(order),
        "deleted": "true" if order.cancelled else "false",
        "brand": brand,
        "comment": extra.get("comment") or "",
        "billing_address": None,  # the gateway has no account profile to take it from
        "shipping_address": (
            {k: address[k] for k in ADDRESS_KEYS if k in address}
            if isinstance(address, dict)
            else None
        ),
        "items": [item_dict(i, brand) for i in order.items],
        "summary": summary(order),
        "shipping": {
            "shippingMethod": shipping.get("shippingMethod"),
            "trackingNumber": None,
            # Handed over (cleared, not cancelled): the seed's fulfilment time.
            "shiped_at": iso(order.cleared_at, tz) if handed_over and order.cleared_at else None,
        },
        "payment": None
        if not isinstance(payment, dict)
        else {
            "methodMethod": payment.get("methodMethod"),
            "paid_at": payment.get("paid_at"),
        },
    }
