"""Issue 9 item 6: the database file vanishing (or being replaced) under a running gateway.

Real SQLite files in tmp_path; the writer, readers and guard of the gateway; a real aiohttp
server for the dialects and the native feed. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.core.errors import Unavailable
from gateway.store.guard import DatabaseGuard
from gateway.store.reader import Reader
from gateway.store.writer import Writer

Client = TestClient  # type: ignore[type-arg]
WAIT = 20.0  # liveness bound: a heal takes milliseconds; this is "not never"


def remove_db_files(path: Path) -> None:
    """What `rm tablegate.db*` does."""
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{path}{suffix}")


def rows_on_disk(path: Path) -> list[str]:
    """What the next start would see: a fresh connection on the file at the path."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        return [r[0] for r in conn.execute("SELECT v FROM t ORDER BY rowid")]
    finally:
        conn.close()


async def until(cond: Callable[[], bool], timeout: float = WAIT) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.02)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[tuple[Writer, Reader, DatabaseGuard]]:
    writer = Writer(tmp_path / "data" / "t.db")
    await writer.open()
    await writer.run(lambda c: c.execute("CREATE TABLE IF NOT EXISTS t (v TEXT)"))
    reader = Reader(writer.path)
    await reader.open()
    guard = DatabaseGuard(writer, reader, interval=0.05, backoff=(0.02, 0.1))
    guard.start()
    yield writer, reader, guard
    await guard.close()
    await reader.close()
    await writer.close()


def insert(value: str) -> Callable[[sqlite3.Connection], None]:
    return lambda c: c.execute("INSERT INTO t VALUES (?)", (value,)) and None


@pytest.mark.allow_logged_errors  # the CRITICAL line is the point
async def test_a_deleted_database_refuses_writes_then_is_restored_with_every_ack(
    store: tuple[Writer, Reader, DatabaseGuard],
) -> None:
    writer, reader, guard = store
    for n in range(20):
        await writer.run(insert(f"before-{n}"))
    remove_db_files(writer.path)
    with pytest.raises(Unavailable, match="missing"):
        await writer.run(insert("refused"))  # never acknowledged into the unlinked inode
    await until(lambda: guard.heals == 1 and writer.lost is None)
    for n in range(5):
        await writer.run(insert(f"after-{n}"))
    expected = [f"before-{n}" for n in range(20)] + [f"after-{n}" for n in range(5)]
    assert rows_on_disk(writer.path) == expected
    # The readers follow the writer to the restored file.
    assert await reader.run(lambda c: c.execute("SELECT count(*) FROM t").fetchone()[0]) == 25


@pytest.mark.allow_logged_errors
async def test_writes_acknowledged_between_deletion_and_detection_are_kept(
    store: tuple[Writer, Reader, DatabaseGuard],
) -> None:
    """The window the checks cannot close: the file vanishes after a transaction's check and
    before its COMMIT. That write is acknowledged into the old inode; the heal copies it."""
    writer, _, guard = store
    await writer.run(insert("first"))

    def delete_then_write(conn: sqlite3.Connection) -> None:
        remove_db_files(writer.path)
        conn.execute("INSERT INTO t VALUES ('in-the-window')")

    await writer.run(delete_then_write)  # acknowledged
    await until(lambda: guard.heals == 1 and writer.lost is None)
    assert rows_on_disk(writer.path) == ["first", "in-the-window"]


@pytest.mark.allow_logged_errors
async def test_a_heal_that_cannot_write_keeps_refusing_and_retries(
    store: tuple[Writer, Reader, DatabaseGuard],
) -> None:
    writer, _, guard = store
    await writer.run(insert("kept"))
    shutil.rmtree(writer.path.parent)  # the whole data directory: nowhere to restore to
    assert not guard.check()
    await asyncio.sleep(0.3)  # several retries with the short test backoff
    assert writer.lost is not None and guard.heals == 0
    with pytest.raises(Unavailable):
        await writer.run(insert("refused"))
    writer.path.parent.mkdir()
    await until(lambda: guard.heals == 1 and writer.lost is None)
    await writer.run(insert("after"))
    assert rows_on_disk(writer.path) == ["kept", "after"]


@pytest.mark.allow_logged_errors
async def test_a_replaced_database_is_kept_aside_and_the_live_one_restored(
    store: tuple[Writer, Reader, DatabaseGuard],
) -> None:
    writer, _, guard = store
    await writer.run(insert("live"))
    foreign = writer.path.with_name("foreign.db")
    conn = sqlite3.connect(foreign)
    conn.execute("CREATE TABLE t (v TEXT)")
    conn.execute("INSERT INTO t VALUES ('foreign')")
    conn.commit()
    conn.close()
    os.replace(foreign, writer.path)
    await until(lambda: guard.heals == 1 and writer.lost is None)  # found by the timer
    assert rows_on_disk(writer.path) == ["live"]
    aside = list(writer.path.parent.glob("t.db.replaced.*"))
    assert len(aside) == 1 and rows_on_disk(aside[0]) == ["foreign"]


# -- the gateway: dialects, health, native feed ----------------------------------------------


async def wait_healthy(client: Client) -> None:
    async with asyncio.timeout(WAIT):
        while (await client.get("/api/v2")).status != 200:
            await asyncio.sleep(0.02)


@pytest.mark.allow_logged_errors
async def test_gateway_answers_503_in_each_dialect_raises_and_clears_the_alarm(
    client: Client, gateway: Gateway, auth: dict[str, str], token: str
) -> None:
    gateway.guard.backoff = (0.05, 0.2)
    resp = await client.post(
        "/api/v2/activeorders", json={"name": "1", "orderType": "TO_GO"}, headers=auth
    )
    assert resp.status == 201
    ws = await client.ws_connect("/api/ws", headers=auth)
    assert json.loads((await asyncio.wait_for(ws.receive(), 5)).data)["type"] == "SNAPSHOT"

    shutil.rmtree(gateway.settings.data_dir)  # the heal cannot succeed until it is back
    resp = await client.get("/api/v2")
    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    assert (await resp.json())["returnCode"] == -5
    for path in ("/api/v2/activeorders", "/api/v1/activeorders"):
        resp = await client.post(path, json={"name": "2", "orderType": "TO_GO"}, headers=auth)
        assert resp.status == 503 and resp.headers["Retry-After"] == "2"
        body = await resp.json()
        assert body["returnCode"] == -5 and "Nothing was written" in body["message"]
    resp = await client.post(
        "/api/dev/devices/", headers=auth, json={"name": "K", "address": "virtual://k"}
    )
    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    assert (await resp.json())["success"] is False

    alarm = await _next_alarm(ws)
    assert alarm["type"] == "GATEWAY_ALARM" and alarm["alarm"] == "database-missing"
    assert "missing" in alarm["detail"]
    resp = await client.get("/api/v2")
    assert resp.status == 503 and "database-missing" in (await resp.json())["message"]

    gateway.settings.data_dir.mkdir()
    cleared = await _next_alarm(ws)
    assert cleared["type"] == "GATEWAY_ALARM_CLEARED" and cleared["alarm"] == "database-missing"
    await wait_healthy(client)
    resp = await client.post(
        "/api/v2/activeorders", json={"name": "3", "orderType": "TO_GO"}, headers=auth
    )
    assert resp.status == 201
    await ws.close()
    # The restored file holds both acknowledged orders and the token, not the refused one;
    # the id and cookie that went with the directory are back for the next start.
    conn = sqlite3.connect(gateway.settings.db_path)
    names = sorted(r[0] for r in conn.execute("SELECT name FROM orders"))
    tokens = conn.execute("SELECT count(*) FROM tokens").fetchone()[0]
    conn.close()
    assert names == ["1", "3"] and tokens == 1
    assert (gateway.settings.data_dir / "gateway-id").read_text().strip() == (
        gateway.ctx.gateway_id
    )
    assert gateway.settings.admin_cookie_path.read_text() == gateway.ctx.admin_cookie


async def _next_alarm(ws: Any) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        while True:
            msg = await ws.receive()
            assert msg.type is WSMsgType.TEXT, msg
            frame: dict[str, Any] = json.loads(msg.data)
            if frame["type"].startswith("GATEWAY_ALARM"):
                return frame
