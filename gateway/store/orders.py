"""Order rows and the event journal (sync functions run on the writer or a reader thread)."""

from __future__ import annotations

import sqlite3
from typing import Any

import orjson

from gateway.core.events import OrderEvent, OrderEventType
from gateway.core.models import ClearReason, HistoryQuery, Item, ItemStatus, Order, OrderState

COLUMNS = (
    "uuid, name, order_type, location, state, created, state_changed, paged, tracking, "
    "tracker, located_at, cleared_at, clear_reason, number, source, external_id, cancelled, extra"
)
ITEM_COLUMNS = (
    "order_uuid, position, id, title, quantity, product_code, price, notes, station, "
    "status, status_changed, cause, delay, message, extra"
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
        number=row[13] or 0,
        source=row[14],
        external_id=row[15],
        cancelled=bool(row[16]),
        extra=orjson.loads(row[17]) if isinstance(row[17], str) else (row[17] or {}),
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
        o.number or None,
        o.source,
        o.external_id,
        int(o.cancelled),
        orjson.dumps(o.extra).decode(),
    )


COLUMN_NAMES = tuple(COLUMNS.split(", "))
_JSON_DEFAULTS: dict[str, Any] = {
    "number": 0,
    "source": "",
    "external_id": "",
    "cancelled": 0,
    "extra": "{}",
}


def _item(row: tuple[Any, ...]) -> Item:
    (
        _,
        position,
        iid,
        title,
        quantity,
        code,
        price,
        notes,
        station,
        status,
        changed,
        cause,
        delay,
        message,
        extra,
    ) = row
    return Item(
        iid,
        position,
        title,
        quantity,
        code,
        price,
        notes,
        station,
        ItemStatus(status),
        changed,
        cause,
        delay,
        message,
        orjson.loads(extra) if extra else {},
    )


def _item_values(uuid: str, i: Item) -> tuple[Any, ...]:
    return (
        uuid,
        i.position,
        i.id,
        i.title,
        i.quantity,
        i.product_code,
        i.price,
        i.notes,
        i.station,
        i.status.value,
        i.status_changed,
        i.cause,
        i.delay,
        i.message,
        orjson.dumps(i.extra).decode(),
    )


def _item_dict(i: Item) -> dict[str, Any]:
    return dict(zip(ITEM_COLUMNS.split(", ")[1:], _item_values("", i)[1:], strict=True))


def order_to_json(o: Order) -> str:
    data: dict[str, Any] = dict(zip(COLUMN_NAMES, _values(o), strict=True))
    if o.items:
        data["items"] = [_item_dict(i) for i in o.items]
    return orjson.dumps(data).decode()


def order_from_json(text: str) -> Order:
    # Journal rows written before a column existed lack it: they read as its default.
    data = orjson.loads(text)
    order = order_from_row(tuple(data.get(c, _JSON_DEFAULTS.get(c)) for c in COLUMN_NAMES))
    if items := data.get("items"):
        order = order.evolve(
            items=tuple(_item(("", *(d[c] for c in ITEM_COLUMNS.split(", ")[1:]))) for d in items)
        )
    return order


def with_items(conn: sqlite3.Connection, orders: list[Order]) -> list[Order]:
    """The orders with their items loaded (one query for the lot)."""
    if not orders:
        return orders
    found: dict[str, list[Item]] = {}
    uuids = [o.uuid for o in orders]
    for start in range(0, len(uuids), 500):
        chunk = uuids[start : start + 500]
        rows = conn.execute(
            f"SELECT {ITEM_COLUMNS} FROM order_items WHERE order_uuid IN "
            f"({','.join('?' * len(chunk))}) ORDER BY order_uuid, position",
            chunk,
        )
        for r in rows:
            found.setdefault(r[0], []).append(_item(r))
    return [o.evolve(items=tuple(found[o.uuid])) if o.uuid in found else o for o in orders]


def _one(conn: sqlite3.Connection, row: tuple[Any, ...] | None) -> Order | None:
    return None if row is None else with_items(conn, [order_from_row(row)])[0]


def next_number(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT COALESCE(MAX(number), 0) + 1 FROM orders").fetchone()
    return int(n)


def by_number(conn: sqlite3.Connection, number: int) -> Order | None:
    return _one(
        conn, conn.execute(f"SELECT {COLUMNS} FROM orders WHERE number = ?", (number,)).fetchone()
    )


def by_uuid(conn: sqlite3.Connection, uuid: str) -> Order | None:
    return _one(
        conn, conn.execute(f"SELECT {COLUMNS} FROM orders WHERE uuid = ?", (uuid,)).fetchone()
    )


def by_external_id(conn: sqlite3.Connection, source: str, external_id: str) -> Order | None:
    return _one(
        conn,
        conn.execute(
            f"SELECT {COLUMNS} FROM orders WHERE source = ? AND external_id = ?",
            (source, external_id),
        ).fetchone(),
    )


def active_by_name(conn: sqlite3.Connection, name: str) -> Order | None:
    return _one(
        conn,
        conn.execute(
            f"SELECT {COLUMNS} FROM orders WHERE name = ? AND state != 'cleared'", (name,)
        ).fetchone(),
    )


def active_by_uuid(conn: sqlite3.Connection, uuid: str) -> Order | None:
    return _one(
        conn,
        conn.execute(
            f"SELECT {COLUMNS} FROM orders WHERE uuid = ? AND state != 'cleared'", (uuid,)
        ).fetchone(),
    )


def active_by_tracker(conn: sqlite3.Connection, address: str) -> Order | None:
    return _one(
        conn,
        conn.execute(
            f"SELECT {COLUMNS} FROM orders WHERE tracker = ? AND state != 'cleared'", (address,)
        ).fetchone(),
    )


def active_created_before(conn: sqlite3.Connection, cutoff: float) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE state != 'cleared' AND created < ?", (cutoff,)
    ).fetchall()
    return with_items(conn, [order_from_row(r) for r in rows])


def all_active(conn: sqlite3.Connection) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE state != 'cleared' ORDER BY created"
    ).fetchall()
    return with_items(conn, [order_from_row(r) for r in rows])


_INSERT = f"INSERT OR REPLACE INTO orders ({COLUMNS}) VALUES ({','.join('?' * len(COLUMN_NAMES))})"
_INSERT_ITEM = (
    f"INSERT OR REPLACE INTO order_items ({ITEM_COLUMNS}) "
    f"VALUES ({','.join('?' * len(ITEM_COLUMNS.split(', ')))})"
)


def save(conn: sqlite3.Connection, order: Order) -> None:
    conn.execute(_INSERT, _values(order))
    # An order never loses its items, so an order without any costs no item write.
    if order.items:
        conn.executemany(_INSERT_ITEM, [_item_values(order.uuid, i) for i in order.items])


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
        f"SELECT {COLUMNS} FROM orders {clause} ORDER BY created DESC, rowid DESC LIMIT ? OFFSET ?",
        [*args, q.limit, q.offset],
    ).fetchall()
    return int(total), with_items(conn, [order_from_row(r) for r in rows])


def created_between(conn: sqlite3.Connection, start: float, end: float) -> list[Order]:
    rows = conn.execute(
        f"SELECT {COLUMNS} FROM orders WHERE created >= ? AND created < ?", (start, end)
    ).fetchall()
    return [order_from_row(r) for r in rows]
