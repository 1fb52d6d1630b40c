"""Runtime settings and webhook client rows."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from gateway.core.models import WebhookClient


def load_settings(conn: sqlite3.Connection) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM gateway_settings")}


def save_settings(conn: sqlite3.Connection, values: dict[str, Any]) -> None:
    conn.executemany(
        "INSERT INTO gateway_settings (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        [(k, json.dumps(v)) for k, v in values.items()],
    )


def load_clients(conn: sqlite3.Connection) -> list[WebhookClient]:
    rows = conn.execute("SELECT id, url, api_version, created FROM webhook_clients ORDER BY id")
    return [WebhookClient(*r) for r in rows]


def add_client(conn: sqlite3.Connection, url: str, api_version: str, now: float) -> WebhookClient:
    row = conn.execute(
        "SELECT id, url, api_version, created FROM webhook_clients WHERE url = ?", (url,)
    ).fetchone()
    if row is not None:
        return WebhookClient(*row)
    cur = conn.execute(
        "INSERT INTO webhook_clients (url, api_version, created) VALUES (?, ?, ?)",
        (url, api_version, now),
    )
    assert cur.lastrowid is not None
    return WebhookClient(cur.lastrowid, url, api_version, now)


def remove_client(conn: sqlite3.Connection, url: str) -> bool:
    return conn.execute("DELETE FROM webhook_clients WHERE url = ?", (url,)).rowcount > 0
