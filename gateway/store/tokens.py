"""Token rows: only the digest of a secret is ever stored."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.core.models import TokenInfo


def load_active(conn: sqlite3.Connection) -> list[tuple[bytes, TokenInfo]]:
    rows = conn.execute(
        "SELECT digest, id, name, created, last_used, ip_address FROM tokens "
        "WHERE revoked IS NULL ORDER BY id"
    ).fetchall()
    return [(bytes(r[0]), TokenInfo(r[1], r[2], r[3], r[4], r[5])) for r in rows]


def insert(
    conn: sqlite3.Connection, name: str, digest: bytes, created: float, ip: str | None
) -> TokenInfo:
    cur = conn.execute(
        "INSERT INTO tokens (name, digest, created, ip_address) VALUES (?, ?, ?, ?)",
        (name, digest, created, ip),
    )
    assert cur.lastrowid is not None
    return TokenInfo(cur.lastrowid, name, created, None, ip)


def revoke(conn: sqlite3.Connection, token_id: int, when: float) -> None:
    conn.execute("UPDATE tokens SET revoked = ? WHERE id = ? AND revoked IS NULL", (when, token_id))


def touch(conn: sqlite3.Connection, rows: Sequence[tuple[float, str | None, int]]) -> None:
    conn.executemany("UPDATE tokens SET last_used = ?, ip_address = ? WHERE id = ?", rows)
