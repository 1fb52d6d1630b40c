"""Today's speed of service against a target time, in the gateway's time zone."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from gateway.core.models import Order


@dataclass(frozen=True, slots=True)
class DayStatistics:
    date: str
    target_time: int
    count: int
    located: int
    cleared: int
    average_time_to_sit: float | None
    average_delivery_time: float | None
    within_target: int
    within_target_share: float | None


def day_bounds(now: float, tz: ZoneInfo) -> tuple[str, float, float]:
    local = datetime.fromtimestamp(now, tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    # Adding a day in local wall time and re-resolving keeps DST days 23 or 25 hours long.
    end = (start + timedelta(days=1)).replace(tzinfo=None).replace(tzinfo=tz)
    return start.date().isoformat(), start.timestamp(), end.timestamp()


def summarize(orders: list[Order], date: str, target_time: int) -> DayStatistics:
    sits = [o.time_to_sit for o in orders if o.time_to_sit is not None]
    deliveries = [o.delivery_time for o in orders if o.delivery_time is not None]
    within = sum(1 for d in deliveries if d <= target_time)
    return DayStatistics(
        date=date,
        target_time=target_time,
        count=len(orders),
        located=len(sits),
        cleared=len(deliveries),
        average_time_to_sit=round(sum(sits) / len(sits), 1) if sits else None,
        average_delivery_time=round(sum(deliveries) / len(deliveries), 1) if deliveries else None,
        within_target=within,
        within_target_share=round(within / len(deliveries), 4) if deliveries else None,
    )
