"""D1 crash loop (reliability-gates.md): SIGKILL the gateway under concurrent order writes.

One data directory for the whole run, so the database accumulates across crashes like a real
box. Each round: start the gateway (fresh port), check everything the previous crash may have
broken, re-send the requests whose outcome is unknown, then run 50 concurrent clients posting
new orders with unique names and SIGKILL the gateway at a random point 50-600 ms into the load.

What a round proves after the restart:
  (a) every acknowledged (201) order is present, in the API and in the file;
  (b) `PRAGMA integrity_check` is ok (read-only connection while the gateway runs, so the
      gateway itself does the WAL recovery of the crashed file, as on a real box);
  (c) no order exists that was never sent, and none whose connection was refused;
  (d) the journal is gap-free (seq = 1..N) and each order row has exactly one NEW_ORDER event
      (no event without its row, no row without its event);
  (e) re-sending the unknown-outcome names creates no duplicate: 201 if it was not stored,
      200/1009 if it was, and one active order per name;
  plus: the token issued in round 0 still works after every restart, the API's book equals the
  file's, and a restart logs no error.

Limits, stated so nobody reads more into a green run: SIGKILL kills the process, not the
machine. The kernel keeps every write() the process made, so with WAL this test passes with
synchronous=NORMAL (or OFF) just as well as with FULL; only a power-cut simulation (D2) can
tell them apart. The API has no idempotency key; the order name (start-or-locate) is the key.

`CRASH_ITERATIONS` (default 20) raises the number of kills for the nightly 200-kill gate.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support import GatewayProcess, free_port, http
from tests.support.order_load import CLIENTS, ORDERS, Round, load_until_down

ITERATIONS = int(os.environ.get("CRASH_ITERATIONS", "20"))
KILL_AFTER = (0.050, 0.600)  # seconds into the load
ITERATION_BUDGET = 8.0  # hard guard per round; a healthy round takes ~1-1.5 s


@dataclass
class Totals:
    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)  # acknowledged at some point: must never vanish
    refused: set[str] = field(default_factory=set)
    unknown: int = 0
    acked_count: int = 0
    refused_count: int = 0
    resent_stored: int = 0  # unknown outcome, turned out to be stored (200/1009)
    resent_created: int = 0  # unknown outcome, turned out not stored (201)
    rounds_with_inflight: int = 0


# -- load phase ------------------------------------------------------------------------------


# -- checks after a restart ------------------------------------------------------------------


def _ro(db: Path) -> sqlite3.Connection:
    # Read-only and never the last connection (the gateway holds the file): it neither writes,
    # checkpoints nor recovers anything, so the gateway's own crash recovery is what is tested.
    return sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)


def _active_names(gw: GatewayProcess, token: str) -> list[str]:
    status, body = http("GET", f"{gw.url}{ORDERS}", token=token, timeout=10)
    assert status == 200, f"token issued before the crash refused after restart: {body}"
    names = [o["name"] for o in body["items"]]
    assert body["count"] == len(names)
    return names


def _check_file(db: Path) -> tuple[int, int]:
    """(b) and (d) on the file; returns (orders, journal length)."""
    with contextlib.closing(_ro(db)) as conn:
        (integrity,) = conn.execute("PRAGMA integrity_check").fetchone()
        assert integrity == "ok", f"integrity_check: {integrity}"
        conn.execute("BEGIN")  # one snapshot for the consistency queries below
        seqs = [s for (s,) in conn.execute("SELECT seq FROM journal ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), (
            f"journal has gaps: {len(seqs)} rows, max {seqs[-1] if seqs else 0}"
        )
        bad = conn.execute(
            "SELECT o.uuid, o.name, COUNT(j.seq) FROM orders o "
            "LEFT JOIN journal j ON j.order_uuid = o.uuid AND j.type = 'NEW_ORDER' "
            "GROUP BY o.uuid HAVING COUNT(j.seq) != 1 LIMIT 5"
        ).fetchall()
        assert not bad, f"orders without exactly one NEW_ORDER event: {bad}"
        orphans = conn.execute(
            "SELECT seq, type, order_uuid FROM journal "
            "WHERE order_uuid NOT IN (SELECT uuid FROM orders) LIMIT 5"
        ).fetchall()
        assert not orphans, f"journal events without their order row: {orphans}"
        mismatched = conn.execute(
            "SELECT j.seq, o.name, json_extract(j.payload, '$.name') FROM journal j "
            "JOIN orders o ON o.uuid = j.order_uuid "
            "WHERE j.type = 'NEW_ORDER' AND json_extract(j.payload, '$.name') != o.name LIMIT 5"
        ).fetchall()
        assert not mismatched, f"NEW_ORDER payload disagrees with the row: {mismatched}"
        dupes = conn.execute(
            "SELECT name, COUNT(*) FROM orders WHERE state != 'cleared' "
            "GROUP BY name HAVING COUNT(*) > 1 LIMIT 5"
        ).fetchall()
        assert not dupes, f"more than one active order per name: {dupes}"
        (n_orders,) = conn.execute("SELECT COUNT(*) FROM orders").fetchone()
        conn.execute("COMMIT")
    # This test only creates orders, so the journal is exactly one event per row.
    assert len(seqs) == n_orders, f"journal {len(seqs)} events for {n_orders} orders"
    return n_orders, len(seqs)


def _file_names(db: Path) -> set[str]:
    with contextlib.closing(_ro(db)) as conn:
        return {n for (n,) in conn.execute("SELECT name FROM orders WHERE state != 'cleared'")}


def _verify_after_restart(
    gw: GatewayProcess, token: str, db: Path, last: Round, totals: Totals, rng: random.Random
) -> None:
    listed = _active_names(gw, token)  # also proves the pre-crash token survived
    present = set(listed)
    assert len(listed) == len(present), "the listing shows a name twice"
    assert present == _file_names(db), "the API's book differs from the file"

    # (a) nothing acknowledged is lost
    lost = totals.acked - present
    assert not lost, f"{len(lost)} acknowledged orders lost, e.g. {sorted(lost, key=int)[:10]}"
    for name in rng.sample(sorted(last.acked), min(20, len(last.acked))):
        status, body = http("GET", f"{gw.url}{ORDERS}/{name}", token=token)
        assert (status, body.get("returnCode")) == (200, 6), (name, status, body)
        assert body["activeorder"]["name"] == name
    # (c) nothing appears that was never sent, nor what never reached the server
    phantom = present - totals.sent
    assert not phantom, f"orders that were never sent: {sorted(phantom)[:10]}"
    ghost = present & totals.refused
    assert not ghost, f"orders whose connection was refused: {sorted(ghost)[:10]}"
    # (b) and (d)
    _check_file(db)

    # (e) re-send what has no known outcome: no duplicate, and the answer matches the file
    for name in sorted(last.unknown, key=int):
        status, body = http(
            "POST", f"{gw.url}{ORDERS}", {"name": name, "orderType": "TO_GO"}, token=token
        )
        if name in present:
            assert (status, body.get("returnCode")) == (200, 1009), (name, status, body)
            totals.resent_stored += 1
        else:
            assert (status, body.get("returnCode")) == (201, 5), (name, status, body)
            totals.resent_created += 1
        totals.acked.add(name)  # acknowledged now: must survive every later crash
    after = _active_names(gw, token)
    assert len(after) == len(set(after)) == len(present | last.unknown), "duplicate after resend"
    _check_file(db)


def _assert_clean_log(gw: GatewayProcess) -> None:
    text = gw.log_path.read_text(errors="replace") if gw.log_path else ""
    assert "Traceback" not in text and "ERROR" not in text, f"restart logged errors:\n{text}"


# -- the test ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_crash_loop_loses_no_acknowledged_order(tmp_path: Path) -> None:
    seed = int(os.environ.get("CRASH_SEED", str(random.SystemRandom().randrange(2**32))))
    rng = random.Random(seed)
    print(f"\nD1 crash loop: {ITERATIONS} kills, {CLIENTS} clients, seed {seed}")
    data_dir = tmp_path / "data"
    db = data_dir / "tablegate.db"
    names = itertools.count(1)
    totals = Totals()
    last = Round()
    token = ""
    gw = GatewayProcess(data_dir, free_port())
    t_start = time.monotonic()
    try:
        for i in range(ITERATIONS + 1):
            t_round = time.monotonic()
            gw.port = free_port()
            ready = gw.start()
            if i == 0:
                token = gw.token()
                status, _ = http("GET", f"{gw.url}{ORDERS}", token="0" * 48)
                assert status == 401, "a made-up token is accepted: the token check is vacuous"
            else:
                _assert_clean_log(gw)
                _verify_after_restart(gw, token, db, last, totals, rng)
            verified = time.monotonic() - t_round - ready
            if i == ITERATIONS:
                break  # the final restart only verifies

            last = asyncio.run(load_until_down(gw, token, names, rng.uniform(*KILL_AFTER)))
            assert not last.unexpected, f"unexpected answers: {last.unexpected[:5]}"
            totals.sent |= last.sent
            totals.acked |= last.acked
            totals.refused |= last.refused
            totals.acked_count += len(last.acked)
            totals.unknown += len(last.unknown)
            totals.refused_count += len(last.refused)
            totals.rounds_with_inflight += bool(last.unknown)
            took = time.monotonic() - t_round
            print(
                f"round {i + 1:3d}: ready {ready:.2f}s, checks {verified:.2f}s,"
                f" kill at {last.stopped_at * 1000:4.0f} ms,"
                f" sent {len(last.sent):4d}, acknowledged {len(last.acked):4d},"
                f" unknown {len(last.unknown):3d}, refused {len(last.refused):3d},"
                f" round {took:.2f}s"
            )
            assert took < ITERATION_BUDGET, f"round {i + 1} took {took:.1f}s"

        # A clean stop after the last check: checkpoint on close, then check the file alone.
        gw.kill(signal.SIGTERM)
        assert gw.proc is not None and gw.proc.returncode == 0, gw.log()
        with contextlib.closing(sqlite3.connect(db)) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        n_orders, n_events = _check_file(db)
    finally:
        gw.kill()
    elapsed = time.monotonic() - t_start
    print(
        f"totals: kills {ITERATIONS}, acknowledged {totals.acked_count}, unknown"
        f" {totals.unknown} (stored {totals.resent_stored}, not stored"
        f" {totals.resent_created}), refused {totals.refused_count}, lost 0,"
        f" duplicates 0, orders {n_orders}, journal {n_events},"
        f" rounds killed mid-flight {totals.rounds_with_inflight}/{ITERATIONS},"
        f" {elapsed:.1f}s"
    )
    assert totals.acked_count > 0
    # The kill must land while requests are in flight, or the test proves little.
    assert totals.rounds_with_inflight >= ITERATIONS // 2
