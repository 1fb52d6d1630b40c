"""The canonical order and tracker in the table-tracker vocabulary (v2, and v1's
`stateStarted`): shared by the table-tracker routes, the other dialects' order views and the
feeds."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.models import Order, Tracker
from gateway.services.trackers.inventory import TrackerService
from web.services import Services


def local_time(ts: float, tz: ZoneInfo) -> str:
    return _local_second(int(ts // 1), tz)


@lru_cache(maxsize=8192)
def _local_second(second: int, tz: ZoneInfo) -> str:
    # Timestamps have whole-second resolution and orders cluster in time: rendering each
    # second once saves the time-zone arithmetic on nearly every response.
    return datetime.fromtimestamp(second, tz).strftime("%Y-%m-%dT%H:%M:%S")


def order_dict(o: Order, tz: ZoneInfo, now: float, *, v1: bool = False) -> dict[str, Any]:
    created = local_time(o.created, tz)
    changed = created if o.state_changed == o.created else local_time(o.state_changed, tz)
    body: dict[str, Any] = {
        "uuid": o.uuid,
        "created": created,
        "orderType": o.order_type,
        "locationName": o.location,
        "state": o.state.value,
        "stateStarted" if v1 else "stateChanged": changed,
        "name": o.name,
        "paged": o.paged,
        # Whole seconds since creation; a cleared order stops its clock when it is cleared.
        "elapsedTime": max(0, int((o.cleared_at or now) - o.created)),
    }
    return body


def history_dict(o: Order, tz: ZoneInfo, now: float, *, v1: bool = False) -> dict[str, Any]:
    body = order_dict(o, tz, now, v1=v1)
    body["tracking"] = o.tracking
    body["cleared"] = None if o.cleared_at is None else local_time(o.cleared_at, tz)
    body["clearReason"] = None if o.clear_reason is None else o.clear_reason.value
    body["timeToSit"] = o.time_to_sit
    body["deliveryTime"] = o.delivery_time
    return body


def tracker_dict(ctx: Services, svc: TrackerService, t: Tracker) -> dict[str, Any]:
    order = ctx.orders.bound_to(t.address)
    tz = ctx.config.tz
    state = "idle"
    if order is not None:
        state = order.state.value
    if not svc.online(t.address):
        state = "offline" if t.last_seen else "unseen"
    return {
        "number": t.number,
        "address": t.address,
        "battery": t.battery,
        "lastSeen": None if t.last_seen is None else local_time(t.last_seen, tz),
        "state": state,
        "order": None
        if order is None
        else {"name": order.name, "uuid": order.uuid, "state": order.state.value},
    }
