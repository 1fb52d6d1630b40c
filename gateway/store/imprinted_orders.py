"""The Imprinted (seed 001) order queries: one app's orders, filtered, counted and paged in SQL.

The order's Imprinted `status` is derived from the canonical model (items, location, payment);
`STATUS_SQL` is the same rule as
`gateway.services.integrations.imprinted.orders.order_status`, written in SQL so that a status
filter, the count and the paging stay in the database. A property test keeps the two equal.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from gateway.core.models import Order
from gateway.store import orders as repo

_ITEM = "SELECT 1 FROM order_items i WHERE i.order_uuid = o.uuid"


def _stamp(key: str) -> str:
    path = f"'$.payment.{key}'"
    return f"(json_type(o.extra, {path}) = 'text' AND json_extract(o.extra, {path}) != '')"


STATUS_SQL = f"""CASE
    WHEN {_stamp("refunded_at")} THEN 'refunded'
    WHEN EXISTS ({_ITEM} AND i.status != 'canceled')
         AND NOT EXISTS ({_ITEM} AND i.status IN ('registered', 'producing', 'error'))
        THEN 'quality control'
    WHEN EXISTS ({_ITEM} AND i.status = 'producing') THEN 'printing'
    WHEN {_stamp("paid_at")} THEN 'paid'
    WHEN o.located_at IS NOT NULL
         OR EXISTS ({_ITEM} AND i.status NOT IN ('registered', 'canceled'))
        THEN 'in progress'
    ELSE 'received'
END"""

_COLUMNS = ", ".join(f"o.{c}" for c in repo.COLUMN_NAMES)


@dataclass(frozen=True, slots=True)
class Filters:
    source: str
    ids: tuple[int, ...] | None = None
    since_id: int | None = None
    created_min: float | None = None  # inclusive
    created_max: float | None = None  # exclusive
    status: str | None = None


def _where(f: Filters) -> tuple[str, list[Any]]:
    where = ["o.source = ?"]
    args: list[Any] = [f.source]
    if f.ids is not None:
        where.append(f"o.number IN ({','.join('?' * len(f.ids))})")
        args.extend(f.ids)
    if f.since_id is not None:
        where.append("o.number > ?")
        args.append(f.since_id)
    if f.created_min is not None:
        where.append("o.created >= ?")
        args.append(f.created_min)
    if f.created_max is not None:
        where.append("o.created < ?")
        args.append(f.created_max)
    if f.status is not None:
        where.append(f"({STATUS_SQL}) = ?")
        args.append(f.status)
    return " AND ".join(where), args


def page(conn: sqlite3.Connection, f: Filters, limit: int, offset: int) -> list[Order]:
    where, args = _where(f)
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM orders o WHERE {where} ORDER BY o.number LIMIT ? OFFSET ?",
        [*args, limit, offset],
    ).fetchall()
    return repo.with_items(conn, [repo.order_from_row(r) for r in rows])


def count(conn: sqlite3.Connection, f: Filters) -> int:
    where, args = _where(f)
    (n,) = conn.execute(f"SELECT COUNT(*) FROM orders o WHERE {where}", args).fetchone()
    return int(n)


def one(conn: sqlite3.Connection, source: str, number: int) -> Order | None:
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM orders o WHERE o.number = ? AND o.source = ?", (number, source)
    ).fetchone()
    return None if row is None else repo.with_items(conn, [repo.order_from_row(row)])[0]


def status_of(conn: sqlite3.Connection, uuid: str) -> str | None:
    """The SQL rule applied to one order (tests compare it with the Python rule)."""
    row = conn.execute(f"SELECT {STATUS_SQL} FROM orders o WHERE o.uuid = ?", (uuid,)).fetchone()
    return None if row is None else str(row[0])
