"""The writer: group commit, savepoint isolation, durability settings, migrations, restart."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from gateway.core.errors import GatewayError
from gateway.store.migrations import MIGRATIONS
from gateway.store.writer import Writer


@pytest.fixture
async def writer(tmp_path: Path) -> Any:
    w = Writer(tmp_path / "db.sqlite")
    await w.open()
    yield w
    await w.close()


def _insert(value: str) -> Any:
    def job(conn: sqlite3.Connection) -> int:
        cur = conn.execute("INSERT INTO gateway_settings (key, value) VALUES (?, '1')", (value,))
        return int(cur.lastrowid or 0)

    return job


async def test_pragmas(writer: Writer) -> None:
    def read(conn: sqlite3.Connection) -> tuple[str, int, int]:
        return (
            conn.execute("PRAGMA journal_mode").fetchone()[0],
            conn.execute("PRAGMA synchronous").fetchone()[0],
            conn.execute("PRAGMA foreign_keys").fetchone()[0],
        )

    assert await writer.run(read) == ("wal", 2, 1)  # 2 = FULL


async def test_concurrent_writes_share_transactions(writer: Writer) -> None:
    results = await asyncio.gather(*(writer.run(_insert(f"k{i}")) for i in range(300)))
    assert len(set(results)) == 300
    # Group commit: far fewer transactions (fsyncs) than jobs.
    assert writer.stats.jobs == 300
    assert writer.stats.transactions < 300
    assert writer.stats.largest_batch > 1


async def test_failing_job_does_not_undo_neighbours(writer: Writer) -> None:
    def boom(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO gateway_settings (key, value) VALUES ('bad', '1')")
        raise ValueError("job failed after writing")

    results = await asyncio.gather(
        writer.run(_insert("a")),
        writer.run(boom),
        writer.run(_insert("b")),
        return_exceptions=True,
    )
    assert isinstance(results[1], ValueError)
    keys = await writer.run(
        lambda c: sorted(r[0] for r in c.execute("SELECT key FROM gateway_settings"))
    )
    assert keys == ["a", "b"]


async def test_on_commit_runs_in_order_before_the_caller_resumes(writer: Writer) -> None:
    seen: list[int] = []
    done = await asyncio.gather(
        *(writer.run(_insert(f"x{i}"), lambda rowid: seen.append(rowid)) for i in range(50))
    )
    assert seen == sorted(seen) and sorted(done) == seen


@pytest.mark.allow_logged_errors
async def test_failed_commit_reports_storage_error(tmp_path: Path) -> None:
    w = Writer(tmp_path / "db.sqlite")
    await w.open()

    def broken(conn: sqlite3.Connection) -> None:
        # Leaves the transaction unable to commit: a deferred FK violation surfaces at COMMIT.
        conn.execute("PRAGMA defer_foreign_keys=ON")
        conn.execute("CREATE TABLE IF NOT EXISTS p (id INTEGER PRIMARY KEY)")
        conn.execute("CREATE TABLE IF NOT EXISTS c (pid INTEGER REFERENCES p(id))")
        conn.execute("INSERT INTO c (pid) VALUES (42)")

    committed: list[object] = []
    with pytest.raises(GatewayError) as err:
        await w.run(broken, committed.append)
    assert err.value.code.value == "storage_failed"
    assert committed == []  # nothing published for a failed commit
    # The writer keeps working afterwards.
    assert await w.run(_insert("after")) > 0
    await w.close()


async def test_writes_after_close_are_refused(tmp_path: Path) -> None:
    w = Writer(tmp_path / "db.sqlite")
    await w.open()
    await w.close()
    with pytest.raises(GatewayError):
        await w.run(_insert("late"))


async def test_migrations_are_recorded_once(tmp_path: Path) -> None:
    for _ in range(2):
        w = Writer(tmp_path / "db.sqlite")
        await w.open()
        names = await w.run(lambda c: [r[0] for r in c.execute("SELECT name FROM migrations")])
        await w.close()
        assert names == [m[0] for m in MIGRATIONS]


async def test_corrupt_database_fails_quick_check(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    w = Writer(path)
    await w.open()
    await w.run(
        lambda c: c.executemany(
            "INSERT INTO gateway_settings (key, value) VALUES (?, ?)",
            [(f"k{i}", "v" * 500) for i in range(200)],
        )
    )
    await w.close()
    data = bytearray(path.read_bytes())
    for off in range(4096 * 2, min(len(data), 4096 * 6)):
        data[off] = 0x5A
    path.write_bytes(bytes(data))
    w2 = Writer(path)
    with pytest.raises((RuntimeError, sqlite3.DatabaseError)):
        await w2.open()


async def test_active_orders_rebuilt_after_restart(settings: Any) -> None:
    from gateway.app import build

    gw = await build(settings)
    orders = gw.ctx.orders
    await orders.start_or_locate("1", "TO_GO", None)
    await orders.start_or_locate("2", "ON_PREMISES", "5", dummy_tracker=True)
    await orders.start_or_locate("3", "TO_GO", None)
    from gateway.core.models import ClearReason
    from gateway.services.orders.book import OrderRef

    await orders.clear(OrderRef(name="3"), ClearReason.MANAGER_OVERRIDE)
    before = {o.uuid: o for o in orders.active()}
    seq = gw.ctx.bus.last_seq
    await gw.writer.close()
    await gw.reader.close()
    gw2 = await build(settings)
    after = {o.uuid: o for o in gw2.ctx.orders.active()}
    assert after == before
    assert gw2.ctx.bus.last_seq == seq == 4  # three starts and one clear
