"""The tracker inventory: which Bluetooth address carries which printed number."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from gateway.core.models import Tracker


def load(conn: sqlite3.Connection) -> list[Tracker]:
    rows = conn.execute(
        "SELECT number, address, paired_at, battery, last_seen FROM trackers ORDER BY number"
    )
    return [Tracker(*r) for r in rows]


def pair(conn: sqlite3.Connection, tracker: Tracker) -> None:
    # Re-pairing moves an address to a new number, or a number to a new puck: both old rows go.
    conn.execute(
        "DELETE FROM trackers WHERE number = ? OR address = ?", (tracker.number, tracker.address)
    )
    conn.execute(
        "INSERT INTO trackers (number, address, paired_at, battery, last_seen) VALUES (?,?,?,?,?)",
        (tracker.number, tracker.address, tracker.paired_at, tracker.battery, tracker.last_seen),
    )


def forget(conn: sqlite3.Connection, number: int) -> bool:
    return conn.execute("DELETE FROM trackers WHERE number = ?", (number,)).rowcount > 0


def clear(conn: sqlite3.Connection) -> int:
    return conn.execute("DELETE FROM trackers").rowcount


def touch(conn: sqlite3.Connection, rows: Sequence[tuple[int | None, float | None, int]]) -> None:
    conn.executemany("UPDATE trackers SET battery = ?, last_seen = ? WHERE number = ?", rows)
