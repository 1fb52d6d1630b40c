"""Outbox rows: notifications written in the transaction of the change they report.

`enqueue` runs inside another service's writer job, so the row commits or rolls back together
with the change it announces: no change without its notification, and no notification of a
change that never happened. `services.deliveries` sends the rows; the functions below are the
few statements it needs, each a function of a connection like the rest of `gateway.store`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

PENDING = "pending"
DELIVERED = "delivered"
DEAD = "dead"

_COLUMNS = (
    "id, event_id, endpoint, url, kind, ref, content_type, body, created, next_at, attempts, "
    "state, last_status, last_error, finished"
)
_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_of(url: str) -> str:
    """`scheme://host:port` of `url`: deliveries are ordered per endpoint. A URL that does not
    parse is its own endpoint (it goes dead as invalid-url without blocking anybody else)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return url
    host = (parts.hostname or "").rstrip(".").lower()
    scheme = parts.scheme.lower()
    if not host:
        return url
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{scheme}://{host}:{port or _DEFAULT_PORTS.get(scheme, 0)}"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One notification to send. `event_id` is unique and sent as `webhook-id` on every
    attempt, so a receiver can drop the duplicates that at-least-once delivery produces."""

    event_id: str
    url: str
    kind: str
    body: bytes
    content_type: str = "application/json"
    ref: str = ""
    endpoint: str = ""

    def __post_init__(self) -> None:
        if not self.endpoint:
            object.__setattr__(self, "endpoint", endpoint_of(self.url))


@dataclass(frozen=True, slots=True)
class OutboxRow:
    id: int
    event_id: str
    endpoint: str
    url: str
    kind: str
    ref: str
    content_type: str
    body: bytes
    created: float
    next_at: float
    attempts: int
    state: str  # PENDING | DELIVERED | DEAD
    last_status: int | None
    last_error: str | None
    finished: float | None


def _row(r: Any) -> OutboxRow:  # a result tuple in _COLUMNS order
    return OutboxRow(
        id=int(r[0]),
        event_id=str(r[1]),
        endpoint=str(r[2]),
        url=str(r[3]),
        kind=str(r[4]),
        ref=str(r[5]),
        content_type=str(r[6]),
        body=bytes(r[7]),
        created=float(r[8]),
        next_at=float(r[9]),
        attempts=int(r[10]),
        state=str(r[11]),
        last_status=None if r[12] is None else int(r[12]),
        last_error=None if r[13] is None else str(r[13]),
        finished=None if r[14] is None else float(r[14]),
    )


def enqueue(conn: sqlite3.Connection, delivery: Delivery, now: float) -> int:
    """Insert a pending row, due at once; returns its id. Run it inside the writer job of the
    change it reports, then call `DeliveryService.wake()` after that job's commit. A repeated
    `event_id` raises `sqlite3.IntegrityError` (and so fails the caller's job): event ids are
    meant to be unique, and a silent duplicate would hide the bug."""
    cur = conn.execute(
        "INSERT INTO outbox (event_id, endpoint, url, kind, ref, content_type, body, created, "
        "next_at, attempts, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0, 'pending')",
        (
            delivery.event_id,
            delivery.endpoint,
            delivery.url,
            delivery.kind,
            delivery.ref,
            delivery.content_type,
            delivery.body,
            now,
            now,
        ),
    )
    assert cur.lastrowid is not None
    return cur.lastrowid


def get(conn: sqlite3.Connection, row_id: int) -> OutboxRow | None:
    r = conn.execute(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?", (row_id,)).fetchone()
    return None if r is None else _row(r)


def pending_heads(conn: sqlite3.Connection) -> list[OutboxRow]:
    """The oldest pending row of every endpoint (only heads may be sent: FIFO per endpoint).

    A skip-scan over the partial index `outbox_pending (endpoint, id)`: one indexed lookup per
    endpoint, so a backlog of 50,000 rows costs no more than a backlog of one per endpoint."""
    heads: list[OutboxRow] = []
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' ORDER BY endpoint, id LIMIT 1"
    ).fetchone()
    while r is not None:
        head = _row(r)
        heads.append(head)
        r = conn.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND endpoint > ? "
            "ORDER BY endpoint, id LIMIT 1",
            (head.endpoint,),
        ).fetchone()
    return heads


def next_pending(conn: sqlite3.Connection, endpoint: str) -> OutboxRow | None:
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND endpoint = ? "
        "ORDER BY id LIMIT 1",
        (endpoint,),
    ).fetchone()
    return None if r is None else _row(r)


def count_pending(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT count(*) FROM outbox WHERE state = 'pending'").fetchone()
    return int(n)


def _update(conn: sqlite3.Connection, sql: str, params: tuple[object, ...]) -> OutboxRow | None:
    # Only pending rows move: a row that finished (or was never there) is left alone.
    r = conn.execute(
        f"UPDATE outbox SET {sql} WHERE id = ? AND state = 'pending' RETURNING {_COLUMNS}", params
    ).fetchone()
    return None if r is None else _row(r)


def mark_attempt(conn: sqlite3.Connection, row_id: int) -> OutboxRow | None:
    """Count an attempt. Committed before the request leaves, so a crash never loses it."""
    return _update(conn, "attempts = attempts + 1", (row_id,))


def mark_delivered(
    conn: sqlite3.Connection, row_id: int, now: float, status: int
) -> OutboxRow | None:
    return _update(
        conn,
        "state = 'delivered', last_status = ?, last_error = NULL, finished = ?",
        (status, now, row_id),
    )


def mark_retry(
    conn: sqlite3.Connection, row_id: int, next_at: float, status: int | None, error: str
) -> OutboxRow | None:
    return _update(
        conn, "next_at = ?, last_status = ?, last_error = ?", (next_at, status, error, row_id)
    )


def mark_dead(
    conn: sqlite3.Connection, row_id: int, now: float, status: int | None, error: str
) -> OutboxRow | None:
    return _update(
        conn,
        "state = 'dead', last_status = ?, last_error = ?, finished = ?",
        (status, error, now, row_id),
    )


def dead_letters(conn: sqlite3.Connection, limit: int, offset: int = 0) -> list[OutboxRow]:
    """Dead rows, most recently finished first."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'dead' "
        "ORDER BY finished DESC, id DESC LIMIT ? OFFSET ?",
        (limit, offset),
    ).fetchall()
    return [_row(r) for r in rows]


def replay(conn: sqlite3.Connection, row_id: int, now: float) -> bool:
    """Make a dead row pending again with a fresh attempt budget; False if it is not dead. It
    keeps its id, so it is sent before any younger row of its endpoint (FIFO by id)."""
    cur = conn.execute(
        "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, last_status = NULL, "
        "last_error = NULL, finished = NULL WHERE id = ? AND state = 'dead'",
        (now, row_id),
    )
    return cur.rowcount == 1


def refund_attempt(conn: sqlite3.Connection, row_id: int, error: str | None) -> OutboxRow | None:
    """Give back the attempt counted by `mark_attempt`: the request never left (a batch
    stopped before it) or could not have reached the receiver (the gateway itself was
    offline). The row stays due: its schedule does not move. `error` None keeps the last."""
    return _update(
        conn,
        "attempts = max(attempts - 1, 0), last_error = COALESCE(?, last_error)",
        (error, row_id),
    )


def kill_pending(
    conn: sqlite3.Connection, endpoint: str, kind: str, url: str, now: float, error: str
) -> int:
    """Every pending row of (`kind`, `url`) dies: its subscription is gone. Scans only the
    endpoint's pending rows (the partial index)."""
    cur = conn.execute(
        "UPDATE outbox SET state = 'dead', last_error = ?, finished = ? "
        "WHERE state = 'pending' AND endpoint = ? AND kind = ? AND url = ?",
        (error, now, endpoint, kind, url),
    )
    return cur.rowcount


def count_dead(conn: sqlite3.Connection) -> int:
    (n,) = conn.execute("SELECT count(*) FROM outbox WHERE state = 'dead'").fetchone()
    return int(n)


def first_id_created_since(conn: sqlite3.Connection, cutoff: float) -> int | None:
    """The oldest row created at or after `cutoff`, by id (ids grow with `created`): rows below
    it are the only candidates for pruning. Scans from the oldest row (run it on a reader)."""
    r = conn.execute(
        "SELECT id FROM outbox WHERE created >= ? ORDER BY id LIMIT 1", (cutoff,)
    ).fetchone()
    return None if r is None else int(r[0])


def prune(
    conn: sqlite3.Connection,
    *,
    after_id: int,
    below_id: int,
    delivered_before: float,
    dead_before: float,
    window: int = 1000,
) -> tuple[int, int]:
    """Delete the finished rows among ids `after_id < id <= after_id + window` (and below
    `below_id`): delivered ones that finished before `delivered_before`, dead ones before
    `dead_before`. Returns (deleted, last id of the window): the caller continues from there.
    A chunk is a short rowid range, never a long write transaction that would hold up order
    commits; pending rows in the range are left alone."""
    upto = min(after_id + window, below_id - 1)
    if upto <= after_id:
        return 0, after_id
    cur = conn.execute(
        "DELETE FROM outbox WHERE id > ? AND id <= ? AND ("
        "(state = 'delivered' AND finished < ?) OR (state = 'dead' AND finished < ?))",
        (after_id, upto, delivered_before, dead_before),
    )
    return cur.rowcount, upto


def id_range(conn: sqlite3.Connection) -> tuple[int, int]:
    """(lowest, highest) row id, (0, 0) when empty: both are rowid lookups."""
    lo, hi = conn.execute(
        "SELECT COALESCE(min(id), 0), COALESCE(max(id), 0) FROM outbox"
    ).fetchone()
    return int(lo), int(hi)


def pending_run(conn: sqlite3.Connection, endpoint: str, limit: int) -> list[OutboxRow]:
    """The endpoint's oldest `limit` pending rows, in order (what one batch may send)."""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND endpoint = ? "
        "ORDER BY id LIMIT ?",
        (endpoint, limit),
    ).fetchall()
    return [_row(r) for r in rows]


def mark_attempts(conn: sqlite3.Connection, row_ids: list[int]) -> list[OutboxRow]:
    """`mark_attempt` for a batch, in one statement; the rows in id order."""
    if not row_ids:
        return []
    marks = ",".join("?" * len(row_ids))
    rows = conn.execute(
        f"UPDATE outbox SET attempts = attempts + 1 WHERE id IN ({marks}) "
        f"AND state = 'pending' RETURNING {_COLUMNS}",
        row_ids,
    ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda r: r.id)


def mark_delivered_many(
    conn: sqlite3.Connection, row_ids: list[int], now: float, status: int
) -> list[OutboxRow]:
    """`mark_delivered` for the rows of a batch that got the same status, in one statement."""
    if not row_ids:
        return []
    marks = ",".join("?" * len(row_ids))
    rows = conn.execute(
        "UPDATE outbox SET state = 'delivered', last_status = ?, last_error = NULL, "
        f"finished = ? WHERE id IN ({marks}) AND state = 'pending' RETURNING {_COLUMNS}",
        (status, now, *row_ids),
    ).fetchall()
    return sorted((_row(r) for r in rows), key=lambda r: r.id)
