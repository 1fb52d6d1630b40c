"""Outbound subscriptions, one table for every integration kind (`printapi`, `cloudsignal`).

A subscription is a URL the gateway sends a kind's deliveries to, plus what that kind needs to
send them: a Standard Webhooks `signing_secret` (Print API) or the receiver's `apikey`
(CloudSignal puts it in every body, so it must be kept as given). `disabled` is set when a
receiver answered 410 or an operator turned it off; a disabled subscription gets no new rows.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

_COLUMNS = "id, kind, url, signing_secret, apikey, created, disabled, disabled_reason"


@dataclass(frozen=True, slots=True)
class Subscription:
    id: int
    kind: str
    url: str
    signing_secret: str | None
    apikey: str | None
    created: float
    disabled: float | None
    disabled_reason: str | None

    @property
    def active(self) -> bool:
        return self.disabled is None

    def __repr__(self) -> str:  # never print the apikey or the signing secret (logs, tracebacks)
        return (
            f"Subscription(id={self.id}, kind={self.kind!r}, url={self.url!r}, "
            f"disabled={self.disabled!r})"
        )


def _row(r: Any) -> Subscription:
    return Subscription(
        int(r[0]),
        str(r[1]),
        str(r[2]),
        r[3],
        r[4],
        float(r[5]),
        None if r[6] is None else float(r[6]),
        r[7],
    )


def upsert(
    conn: sqlite3.Connection,
    kind: str,
    url: str,
    now: float,
    *,
    signing_secret: str | None = None,
    apikey: str | None = None,
) -> tuple[Subscription, bool]:
    """Add a subscription, or replace the credentials of the one with this URL (and enable it
    again). Returns it and whether it is new."""
    existing = conn.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE kind = ? AND url = ?", (kind, url)
    ).fetchone()
    if existing is not None:
        r = conn.execute(
            "UPDATE subscriptions SET signing_secret = ?, apikey = ?, disabled = NULL, "
            f"disabled_reason = NULL WHERE id = ? RETURNING {_COLUMNS}",
            (signing_secret, apikey, existing[0]),
        ).fetchone()
        return _row(r), False
    r = conn.execute(
        "INSERT INTO subscriptions (kind, url, signing_secret, apikey, created) "
        f"VALUES (?, ?, ?, ?, ?) RETURNING {_COLUMNS}",
        (kind, url, signing_secret, apikey, now),
    ).fetchone()
    return _row(r), True


def list_kind(
    conn: sqlite3.Connection, kind: str, *, active_only: bool = False
) -> list[Subscription]:
    where = " AND disabled IS NULL" if active_only else ""
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE kind = ?{where} ORDER BY id", (kind,)
    ).fetchall()
    return [_row(r) for r in rows]


def get(conn: sqlite3.Connection, kind: str, sub_id: int) -> Subscription | None:
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE kind = ? AND id = ?", (kind, sub_id)
    ).fetchone()
    return None if r is None else _row(r)


def delete(conn: sqlite3.Connection, kind: str, sub_id: int) -> bool:
    cur = conn.execute("DELETE FROM subscriptions WHERE kind = ? AND id = ?", (kind, sub_id))
    return cur.rowcount == 1


def disable(conn: sqlite3.Connection, kind: str, url: str, now: float, reason: str) -> bool:
    """Stop sending to `url` (e.g. it answered 410); False if it was not active."""
    cur = conn.execute(
        "UPDATE subscriptions SET disabled = ?, disabled_reason = ? "
        "WHERE kind = ? AND url = ? AND disabled IS NULL",
        (now, reason[:200], kind, url),
    )
    return cur.rowcount == 1


def by_url(conn: sqlite3.Connection, kind: str, url: str) -> Subscription | None:
    r = conn.execute(
        f"SELECT {_COLUMNS} FROM subscriptions WHERE kind = ? AND url = ?", (kind, url)
    ).fetchone()
    return None if r is None else _row(r)


def signing_secrets(conn: sqlite3.Connection) -> dict[tuple[str, str], str]:
    """(kind, url) -> Standard Webhooks secret of every subscription that has one (disabled
    ones too: an operator may replay their dead rows)."""
    rows = conn.execute(
        "SELECT kind, url, signing_secret FROM subscriptions WHERE signing_secret IS NOT NULL"
    ).fetchall()
    return {(str(k), str(u)): str(s) for k, u, s in rows}


def active_targets(conn: sqlite3.Connection, kind: str) -> list[tuple[int, str]]:
    """(id, url) of the kind's active subscriptions, oldest first: what an order change is
    sent to. Runs inside every journaled change, so it reads only these two columns."""
    rows = conn.execute(
        "SELECT id, url FROM subscriptions WHERE kind = ? AND disabled IS NULL ORDER BY id",
        (kind,),
    ).fetchall()
    return [(int(i), str(u)) for i, u in rows]


def journal_owner(conn: sqlite3.Connection, seq: int) -> str | None:
    """The order whose journal event is `seq` (a primary-key lookup), or None. A kind that
    remembers "announced at seq N" checks with it that seq N still is that order's change (a
    rolled-back change leaves no event, and its seq goes to the next one)."""
    r = conn.execute("SELECT order_uuid FROM journal WHERE seq = ?", (seq,)).fetchone()
    return None if r is None else str(r[0])
