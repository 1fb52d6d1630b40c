"""Rows of `integration_keys` (inbound credentials of the integration dialects) and
`replay_cache` (signatures seen recently). Generic by `kind`: each dialect reads and writes only
the rows of its own kind ('imprinted', 'cloudsignal').

What a row keeps depends on how the dialect verifies a caller:
- `secret`: the plaintext secret, for schemes that need it to recompute a signature
  (Imprinted's `SHA1(body + secret)` cannot be checked against a digest);
- `key_digest`: only a digest, for keys that are merely compared (a CloudSignal apikey).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

KINDS = frozenset({"imprinted", "cloudsignal"})
_COLUMNS = "id, kind, name, app_id, secret, key_digest, created, revoked"


@dataclass(frozen=True, slots=True)
class IntegrationKey:
    id: int
    kind: str
    name: str
    app_id: str
    secret: str | None = None
    key_digest: bytes | None = None
    created: float = 0.0
    revoked: float | None = None

    @property
    def active(self) -> bool:
        return self.revoked is None

    def __repr__(self) -> str:  # never print the secret or the digest (logs, tracebacks)
        return (
            f"IntegrationKey(id={self.id}, kind={self.kind!r}, name={self.name!r}, "
            f"app_id={self.app_id!r}, revoked={self.revoked!r})"
        )


def _row(r: tuple[Any, ...]) -> IntegrationKey:
    return IntegrationKey(
        r[0], r[1], r[2], r[3], r[4], None if r[5] is None else bytes(r[5]), r[6], r[7]
    )


def _check(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown integration kind {kind!r}")


def insert(
    conn: sqlite3.Connection,
    kind: str,
    name: str,
    app_id: str,
    *,
    created: float,
    secret: str | None = None,
    key_digest: bytes | None = None,
) -> IntegrationKey:
    """Raises sqlite3.IntegrityError when (kind, app_id) exists (the caller picks another)."""
    _check(kind)
    cur = conn.execute(
        "INSERT INTO integration_keys (kind, name, app_id, secret, key_digest, created) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (kind, name, app_id, secret, key_digest, created),
    )
    assert cur.lastrowid is not None
    return IntegrationKey(cur.lastrowid, kind, name, app_id, secret, key_digest, created, None)


def load(conn: sqlite3.Connection, kind: str, *, revoked: bool = False) -> list[IntegrationKey]:
    """The keys of one kind, oldest first; revoked ones only when asked."""
    _check(kind)
    where = "" if revoked else " AND revoked IS NULL"
    rows = conn.execute(
        f"SELECT {_COLUMNS} FROM integration_keys WHERE kind = ?{where} ORDER BY id", (kind,)
    )
    return [_row(r) for r in rows]


def by_app_id(conn: sqlite3.Connection, kind: str, app_id: str) -> IntegrationKey | None:
    _check(kind)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM integration_keys WHERE kind = ? AND app_id = ?", (kind, app_id)
    ).fetchone()
    return None if row is None else _row(row)


def by_digest(conn: sqlite3.Connection, kind: str, key_digest: bytes) -> IntegrationKey | None:
    """An active key by its digest (digest-only kinds)."""
    _check(kind)
    row = conn.execute(
        f"SELECT {_COLUMNS} FROM integration_keys WHERE kind = ? AND key_digest = ? "
        "AND revoked IS NULL",
        (kind, key_digest),
    ).fetchone()
    return None if row is None else _row(row)


def revoke(conn: sqlite3.Connection, kind: str, app_id: str, when: float) -> IntegrationKey | None:
    """Revoke an active key; None when there is no active key with this app_id."""
    _check(kind)
    cur = conn.execute(
        "UPDATE integration_keys SET revoked = ? WHERE kind = ? AND app_id = ? AND revoked IS NULL",
        (when, kind, app_id),
    )
    return by_app_id(conn, kind, app_id) if cur.rowcount == 1 else None


# -- replay cache -------------------------------------------------------------------------


def replay_recent(conn: sqlite3.Connection, since: float) -> list[tuple[bytes, float]]:
    """Digests seen at or after `since` (warms the in-memory cache at start)."""
    rows = conn.execute("SELECT digest, seen FROM replay_cache WHERE seen >= ?", (since,))
    return [(bytes(r[0]), float(r[1])) for r in rows]


def replay_claim(
    conn: sqlite3.Connection, digest: bytes, seen: float, expired_before: float
) -> bool:
    """Record `digest` as seen now. False when it was already seen at or after
    `expired_before` (a replay); an older sighting is overwritten."""
    cur = conn.execute(
        "INSERT INTO replay_cache (digest, seen) VALUES (?, ?) "
        "ON CONFLICT (digest) DO UPDATE SET seen = excluded.seen "
        "WHERE replay_cache.seen < ?",
        (digest, seen, expired_before),
    )
    return cur.rowcount == 1


def replay_release(conn: sqlite3.Connection, digest: bytes, seen: float) -> None:
    """Forget a claim whose request did not take effect (so a retry is not a replay)."""
    conn.execute("DELETE FROM replay_cache WHERE digest = ? AND seen = ?", (digest, seen))


def replay_prune(conn: sqlite3.Connection, before: float) -> int:
    return conn.execute("DELETE FROM replay_cache WHERE seen < ?", (before,)).rowcount
