"""Order rows and the event journal (sync functions run on the writer or a reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ClearReason, HistoryQuery, Order, OrderState

COLUMNS = (
    "uuid, name, order_type, location, state, created, state_changed, paged, tracking, "
    "tracker, located_at, cleared_at, clear_reason"
)


def order_from_row(row: tuple[Any, ...]) -> Order:
    return Order(
        uuid=row[0],
        name=row[1],
        order_type=row[2],
        location=row[3],
        state=OrderState(row[4]),
        created=row[5],
        state_changed=row[6],
        paged=bool(row[7]),
        tracking=bool(row[8]),
        tracker=row[9],
        located_at=row[10],
        cleared_at=row[11],
        clear_reason=None if row[12] is None else ClearReason(row[12]),
    )


def _values(o: Order) -> tuple[Any, ...]:
    return (
        o.uuid,
        o.name,
        o.order_type,
        o.location,
        o.state.value,
        o.created,
        o.state_changed,
        int(o.paged),
        int(o.tracking),
        o.tracker,
        o.located_at,
        o.cleared_at,
        None if o.clear_reason is None else o.clear_reason.value,
    )


COLUMN_NAMES = tuple(COLUMNS.split(", "))


def order_to_json(o: Order) -> str:
    return orjson.dumps(dict(zip(COLUMN_NAMES, _values(o), strict=True))).decode()


def order_from_json(text: str) -> Order:
    data = orjson.loads(text)
    return order_from_row(tuple(data[c] for c in COLUMN_NAMES))


def active_by_name(conn: sqlite3.Connection, name: str) -> Order | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE name = ? AND state != 'cleared'", (name,)
    ).fetchone()
    return None if row is None else order_from_row(row)


def active_by_uuid(conn: sqlite3.Connection, uuid: str) -> Order | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE uuid = ? AND state != 'cleared'", (uuid,)
    ).fetchone()
    return None if row is None else order_from_row(row)


def active_by_tracker(conn: sqlite3.Connection, address: str) -> Order | None:
    row = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE tracker = ? AND state != 'cleared'", (address,)
    ).fetchone()
    return None if row is None else order_from_row(row)


def active_created_before(conn: sqlite3.Connection, cutoff: float) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE state != 'cleared' AND created < ?", (cutoff,)
    ).fetchall()
    return [order_from_row(r) for r in rows]


def all_active(conn: sqlite3.Connection) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE state != 'cleared' ORDER BY created"
    ).fetchall()
    return [order_from_row(r) for r in rows]


def save(conn: sqlite3.Connection, order: Order) -> None:
    conn.execute(f"INSERT OR REPLACE INTO orders ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                 _values(order))


def append_event(
    conn: sqlite3.Connection, type_: OrderEventType, ts: float, order: Order
) -> OrderEvent:
    # INTEGER PRIMARY KEY without AUTOINCREMENT takes max(seq)+1 and a rolled-back insert
    # leaves no hole: the journal stays gap-free under savepoint rollbacks.
    cur = conn.execute(
        "INSERT INTO journal (ts, type, order_uuid, payload) VALUES (?, ?, ?, ?)",
        (ts, type_.value, order.uuid, order_to_json(order)),
    )
    seq = cur.lastrowid
    assert seq is not None
    return OrderEvent(seq=seq, type=type_, ts=ts, order=order)


def last_seq(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM journal").fetchone()
    return int(seq)


def first_seq(conn: sqlite3.Connection) -> int:
    (seq,) = conn.execute("SELECT COALESCE(MIN(seq), 0) FROM journal").fetchone()
    return int(seq)


def events_between(conn: sqlite3.Connection, after: int, upto: int) -> list[OrderEvent]:
    rows = conn.execute(
        "SELECT seq, type, ts, payload FROM journal WHERE seq > ? AND seq <= ? ORDER BY seq",
        (after, upto),
    ).fetchall()
    return [
        OrderEvent(seq=r[0], type=OrderEventType(r[1]), ts=r[2], order=order_from_json(r[3]))
        for r in rows
    ]


def history(conn: sqlite3.Connection, q: HistoryQuery) -> tuple[int, list[Order]]:
    where: list[str] = []
    args: list[Any] = []
    if q.created_after is not None:
        where.append("created >= ?")
        args.append(q.created_after)
    if q.created_before is not None:
        where.append("created < ?")
        args.append(q.created_before)
    if q.order_type is not None:
        types = list(q.order_type)
        where.append(f"order_type IN ({','.join('?' * len(types))})")
        args.extend(types)
    if q.location_name is not None:
        where.append("location = ?")
        args.append(q.location_name)
    clause = f"WHERE {' AND '.join(where)}" if where else ""
    (total,) = conn.execute(f"SELECT COUNT(*) FROM orders {clause}", args).fetchone()
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders {clause} ORDER BY created DESC, rowid DESC "
        "LIMIT ? OFFSET ?",
        [*args, q.limit, q.offset],
    ).fetchall()
    return int(total), [order_from_row(r) for r in rows]


def created_between(conn: sqlite3.Connection, start: float, end: float) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE created >= ? AND created < ?", (start, end)
    ).fetchall()
    return [order_from_row(r) for r in rows]
