"""Issue 9 item 6 across restarts, with `tablegate serve` as a child process on 127.0.0.1.

- `rm tablegate.db*` under a running gateway: every order it acknowledged (201) and the token
  it minted are there after a restart.
- A start where gateway-id says this box had data but the database is missing or empty is
  refused with one line (exit 2), unless `--new-database`; a first start is not.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import ROOT, GatewayProcess, free_port, http

ORDERS = 100


@pytest.fixture
def gw(tmp_path: Path) -> Iterator[GatewayProcess]:
    proc = GatewayProcess(tmp_path / "data", free_port())
    yield proc
    proc.kill()


def remove_db_files(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{db}{suffix}")


def post_order(gw: GatewayProcess, token: str, name: str) -> int:
    status, _ = http(
        "POST", f"{gw.url}/api/v2/activeorders", {"name": name, "orderType": "TO_GO"}, token=token
    )
    return status


def active_names(gw: GatewayProcess, token: str) -> set[str]:
    status, body = http("GET", f"{gw.url}/api/v2/activeorders", token=token)
    assert status == 200, body
    return {o["name"] for o in body["items"]}


def stop(gw: GatewayProcess) -> None:
    gw.kill(signal.SIGTERM)


def test_orders_and_tokens_acknowledged_after_the_database_vanished_survive_a_restart(
    gw: GatewayProcess,
) -> None:
    db = gw.data_dir / "tablegate.db"
    gw.start(TABLEGATE_DB_CHECK_INTERVAL="0.5")
    token = gw.token()
    assert post_order(gw, token, "1") == 201
    remove_db_files(db)
    acked, refused = {"1"}, 0
    for n in range(2, 2 + ORDERS):
        status = post_order(gw, token, str(n))
        assert status in (201, 503), status  # never anything else, never a 500
        if status == 201:
            acked.add(str(n))
        else:
            refused += 1
    late_token = gw.token("after-the-loss")
    stop(gw)
    gw.start()
    assert active_names(gw, token) == acked  # no acknowledged order lost, none refused stored
    assert active_names(gw, late_token) == acked
    assert refused < ORDERS  # it healed and went on taking orders
    assert "CRITICAL gateway.store.writer: database file lost" in gw.log()


def run_serve(
    gw: GatewayProcess, *args: str, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """A start that is expected to exit by itself."""
    return subprocess.run(
        [*gw.command(), *args],
        cwd=ROOT,
        env=gw.environment(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.parametrize("damage", ["missing", "empty", "wal-without-db"])
def test_a_start_without_the_database_this_box_had_is_refused(
    gw: GatewayProcess, damage: str
) -> None:
    db = gw.data_dir / "tablegate.db"
    gw.start()
    token = gw.token()
    assert post_order(gw, token, "7") == 201
    gw.kill(signal.SIGKILL)  # leaves the -wal behind
    assert Path(f"{db}-wal").exists()
    if damage == "empty":
        remove_db_files(db)
        db.write_bytes(b"")
    elif damage == "missing":
        remove_db_files(db)
    else:
        db.unlink()
    result = run_serve(gw)
    assert result.returncode == 2, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("tablegate: the database "), result.stderr
    assert str(db) in lines[0] and "--new-database" in lines[0] and "backup" in lines[0]
    assert "Traceback" not in result.stderr
    # Nothing was created or changed by the refused start.
    assert db.exists() == (damage == "empty")
    # Told to, it starts empty (same gateway id), and keeps the orphaned journal aside.
    gid = (gw.data_dir / "gateway-id").read_text()
    gw.start(TABLEGATE_NEW_DATABASE="1")
    new_token = gw.token("again")
    assert active_names(gw, new_token) == set()
    assert (gw.data_dir / "gateway-id").read_text() == gid
    if damage == "wal-without-db":
        assert list(gw.data_dir.glob("tablegate.db-wal.orphan.*"))


def test_the_command_line_flag_starts_a_new_database(gw: GatewayProcess) -> None:
    gw.start()
    stop(gw)
    remove_db_files(gw.data_dir / "tablegate.db")
    proc = subprocess.Popen(
        [*gw.command(), "--new-database"],
        cwd=ROOT,
        env=gw.environment(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            with contextlib.suppress(OSError):
                if http("GET", f"{gw.url}/api/v2", timeout=0.5)[0] == 200:
                    break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)


def test_a_first_start_creates_the_database_and_the_id(gw: GatewayProcess) -> None:
    gw.start()
    assert (gw.data_dir / "tablegate.db").stat().st_size > 0
    assert (gw.data_dir / "gateway-id").read_text().strip()
    stop(gw)
    gw.start()  # and a normal restart is not refused
