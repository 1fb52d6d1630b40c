"""D2 power cut (reliability-gates.md): an acknowledged order survives the power going off.

The data directory lives on lossyfs (tests/lanes/powercut/lossyfs.py): a FUSE passthrough that keeps
every write in memory until the file is fsync'd and drops all of it when the power is cut.
One backing directory ("the disk") serves the whole run, so the database accumulates across
cuts, checkpoints included. Each round: power on (a fresh lossyfs over the disk), start the
gateway on it, so its own recovery reads what the last cut left; then 50 concurrent clients
POST orders with unique names and, at a random point 50-600 ms in, the gateway is SIGKILLed
and the power cut in the same instant. Then, on a copy of what the disk holds:
  (a) every acknowledged (201) order is there;
  (b) `PRAGMA integrity_check` is ok;
  (c) the journal is gap-free with one NEW_ORDER per order row: the cut left whole commits;
  (d) nothing is stored that was never sent;
and after the next power-on the gateway lists exactly what the disk holds.

synchronous=FULL: 0 lost over POWERCUT_CUTS cuts (default 40, about 1-2 s each on the 2-core
box, most of it the gateway's own start-up; the gate asks 100: set POWERCUT_CUTS=100 nightly).
Negative control, synchronous=NORMAL: in WAL mode NORMAL fsyncs only at checkpoints, so what
was acknowledged since the last one must vanish in at least one of POWERCUT_CONTROL_CUTS
(default 3) cuts. If none vanishes, this harness cannot see a power cut and the test fails.

What the model does not capture, so nobody reads more into a green run:
- An fsync is atomic here (all of a file's unsynced pages land, or none). A real disk can
  persist any subset of them, in any order, if the power fails during the flush. SQLite's WAL
  checksums and salts are designed for exactly that, but this lane does not exercise it.
- No torn or corrupted sectors, no bit rot, no drive that acknowledges a flush it never did
  (volatile write cache without FUA/barrier): FULL cannot help there, and nothing here shows it.
- Metadata (create, rename, unlink, mkdir) is durable at once, so a missing directory fsync
  would go unnoticed; SQLite does fsync the directory after creating the -wal.
- Only fsync/fdatasync persist: no kernel writeback ever saves unsynced data "by luck", which
  makes NORMAL lose more than it would on a real box, never less.
- The cut lands between two file-system operations, never inside one, and only at the moments
  a SIGKILL can reach: the writer thread's timing on a 2-core box, not every instruction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import shutil
import signal
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.lanes.powercut.mount import LossyMount, MountError, fuse_unavailable
from tests.support import GatewayProcess, free_port, http
from tests.support.order_load import ORDERS, load_until_down

CUTS = int(os.environ.get("POWERCUT_CUTS", "40"))
CONTROL_CUTS = int(os.environ.get("POWERCUT_CONTROL_CUTS", "3"))
CUT_AFTER = (0.050, 0.600)  # seconds into the load
ROUND_BUDGET = 10.0  # hard guard per round

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuse_ready(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Skip, with the reason, where lossyfs cannot run: no /dev/fuse, no fusepy or libfuse2,
    or a mount that fails (not root, no CAP_SYS_ADMIN in the container...)."""
    reason = fuse_unavailable()
    if reason:
        pytest.skip(f"D2 power cut needs FUSE: {reason}")
    probe = tmp_path_factory.mktemp("fuse-probe")
    fs = LossyMount(probe / "disk", probe / "mnt", probe / "lossyfs.log")
    try:
        fs.mount()
    except MountError as exc:
        pytest.skip(f"D2 power cut needs FUSE, and mounting failed: {exc}")
    fs.unmount()


# -- the file system model itself -----------------------------------------------------------


def test_lossyfs_keeps_exactly_what_was_fsynced(fuse_ready: None, tmp_path: Path) -> None:
    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    fs = LossyMount(disk, mnt, tmp_path / "lossyfs.log")
    fs.mount()
    try:
        page = 4096
        fd = os.open(mnt / "f", os.O_RDWR | os.O_CREAT, 0o644)
        os.write(fd, b"a" * (3 * page))
        os.fsync(fd)  # durable: 3 pages of "a"
        os.pwrite(fd, b"b" * 10, page - 5)  # straddles two pages
        os.ftruncate(fd, 2 * page + 1)
        os.pwrite(fd, b"c", 4 * page)  # grows past a hole that must read as zeros
        assert os.pread(fd, 12, page - 6) == b"a" + b"b" * 10 + b"a"
        assert os.pread(fd, page, 2 * page)[:2] == b"a\0" and os.fstat(fd).st_size == 4 * page + 1
        assert os.pread(fd, 2, 4 * page - 1) == b"\0c"
        os.close(fd)  # close is not a sync
        with (mnt / "g").open("wb") as f:
            f.write(b"never synced")
        (mnt / "g").rename(mnt / "h")
        assert (mnt / "h").read_bytes() == b"never synced"  # reads see the cache
        with (mnt / "s").open("wb") as f:
            f.write(b"synced")
            f.flush()
            os.fsync(f.fileno())
        with (mnt / "s").open("r+b") as f:
            f.truncate(2)  # an unsynced truncation is lost as well
        dropped = fs.cut()
    finally:
        fs.unmount()
    assert dropped == {"f": 3, "h": 1, "s": 0}  # the cache followed the rename
    assert (disk / "f").read_bytes() == b"a" * (3 * page)
    assert (disk / "h").read_bytes() == b""  # the name is durable at once, the data is not
    assert (disk / "s").read_bytes() == b"synced"


# -- one run of cuts --------------------------------------------------------------------------


@dataclass
class Run:
    mode: str
    cuts: int = 0
    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)  # acknowledged, ever
    lost: set[str] = field(default_factory=set)  # acknowledged, then gone after a cut
    unknown: int = 0
    rounds_with_loss: int = 0
    rounds_in_flight: int = 0
    dropped_pages: int = 0
    wal_dropped: int = 0  # cuts that caught WAL frames written but not yet fsync'd
    orders_on_disk: int = 0
    checkpointed: int = 0  # cuts after which the main file had changed: a checkpoint ran
    gateway_id_lost: int = 0
    elapsed: float = 0.0

    def summary(self) -> str:
        return (
            f"D2 {self.mode}: cuts {self.cuts}, acknowledged {len(self.acked)}, lost"
            f" {len(self.lost)} (in {self.rounds_with_loss} cuts), unknown outcome"
            f" {self.unknown}, cuts with requests in flight {self.rounds_in_flight}, unsynced"
            f" pages dropped {self.dropped_pages}, cuts that dropped WAL frames {self.wal_dropped},"
            f" cuts after a checkpoint {self.checkpointed},"
            f" orders on disk {self.orders_on_disk},"
            f" {self.elapsed:.1f}s"
        )


def _disk_orders(disk: Path, scratch: Path) -> set[str]:
    """What the next boot will find, read from a copy so that the gateway still does its own
    recovery of the real files: integrity, whole commits, and the active order names."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    for suffix in ("", "-wal"):  # not -shm: it is rebuilt from the WAL, as after any crash
        if (disk / f"tablegate.db{suffix}").exists():
            shutil.copyfile(disk / f"tablegate.db{suffix}", scratch / f"tablegate.db{suffix}")
    with contextlib.closing(sqlite3.connect(scratch / "tablegate.db", isolation_level=None)) as c:
        (integrity,) = c.execute("PRAGMA integrity_check").fetchone()
        assert integrity == "ok", f"integrity_check after a power cut: {integrity}"
        if c.execute("SELECT 1 FROM sqlite_master WHERE name = 'orders'").fetchone() is None:
            return set()  # not even the schema was synced (NORMAL before its first checkpoint)
        seqs = [s for (s,) in c.execute("SELECT seq FROM journal ORDER BY seq")]
        assert seqs == list(range(1, len(seqs) + 1)), f"journal gaps: {len(seqs)} events"
        (n_orders,) = c.execute("SELECT COUNT(*) FROM orders").fetchone()
        (n_new,) = c.execute("SELECT COUNT(*) FROM journal WHERE type = 'NEW_ORDER'").fetchone()
        assert n_orders == n_new == len(seqs), f"{n_orders} orders, {n_new} NEW_ORDER events"
        return {n for (n,) in c.execute("SELECT name FROM orders WHERE state != 'cleared'")}


def _listed(gw: GatewayProcess, token: str) -> set[str]:
    status, body = http("GET", f"{gw.url}{ORDERS}", token=token, timeout=10)
    assert status == 200, f"listing refused after power-on: {status} {body}"
    names = [o["name"] for o in body["items"]]
    assert len(names) == len(set(names)) == body["count"]
    return set(names)


def _power_cut_run(tmp_path: Path, mode: str, cuts: int, rng: random.Random) -> Run:
    disk, mnt = tmp_path / "disk", tmp_path / "mnt"
    fs = LossyMount(disk, mnt, tmp_path / "lossyfs.log")
    gw = GatewayProcess(mnt, free_port())  # its log goes beside the mount, not on it
    names = itertools.count(1)
    run = Run(mode)
    on_disk: set[str] = set()
    db_stamp: tuple[int, int] | None = None
    token = ""
    t_start = time.monotonic()
    try:
        for i in range(cuts + 1):
            t_round = time.monotonic()
            fs.mount()
            gw.port = free_port()
            ready = gw.start(TABLEGATE_SYNCHRONOUS=mode)
            started = gw.log()
            assert "Traceback" not in started and "ERROR" not in started, started
            # FULL: the token acknowledged before the first cut must work after every cut;
            # NORMAL may have lost it, so take a new one each round.
            if not token or mode == "NORMAL":
                token = gw.token()
            t_checks = time.monotonic()
            if i > 0:
                listed = _listed(gw, token)
                assert listed == on_disk, (
                    f"after power-on the gateway lists {len(listed)} orders, the disk holds"
                    f" {len(on_disk)}: its recovery disagrees with the file"
                )
            checks = time.monotonic() - t_checks
            if i == cuts:
                break

            r = asyncio.run(
                load_until_down(gw, token, names, rng.uniform(*CUT_AFTER), fs.signal_cut)
            )
            dropped = fs.finish_cut()
            run.dropped_pages += sum(dropped.values())
            run.wal_dropped += dropped.get("tablegate.db-wal", 0) > 0
            assert not r.unexpected, f"unexpected answers: {r.unexpected[:5]}"
            run.cuts += 1
            run.sent |= r.sent
            run.acked |= r.acked
            run.unknown += len(r.unknown)
            run.rounds_in_flight += bool(r.unknown)

            t_checks = time.monotonic()
            on_disk = _disk_orders(disk, tmp_path / "copy")
            checks += time.monotonic() - t_checks
            phantom = on_disk - run.sent
            assert not phantom, f"orders on disk that were never sent: {sorted(phantom)[:10]}"
            lost = run.acked - run.lost - on_disk
            run.lost |= lost
            run.rounds_with_loss += bool(lost)
            run.orders_on_disk = len(on_disk)
            st = (disk / "tablegate.db").stat()  # only a checkpoint writes the main file
            run.checkpointed += db_stamp is not None and db_stamp != (st.st_size, st.st_mtime_ns)
            db_stamp = (st.st_size, st.st_mtime_ns)
            gid = disk / "gateway-id"
            run.gateway_id_lost += gid.exists() and not gid.read_text().strip()
            took = time.monotonic() - t_round
            print(
                f"{mode} cut {i + 1:3d}: ready {ready:.2f}s, checks {checks:.2f}s,"
                f" cut at {r.stopped_at * 1000:4.0f} ms,"
                f" acknowledged {len(r.acked):4d}, unknown {len(r.unknown):3d},"
                f" on disk {len(on_disk):6d}, lost {len(lost):4d}, db {st.st_size >> 10:5d} KiB,"
                f" round {took:.2f}s"
            )
            if mode == "FULL":
                assert not lost, (
                    f"cut {i + 1}: {len(lost)} acknowledged orders lost with FULL,"
                    f" e.g. {sorted(lost, key=int)[:10]}"
                )
            assert took < ROUND_BUDGET, f"round {i + 1} took {took:.1f}s"

        if mode == "FULL":
            # A clean stop (checkpoint on close) must leave a file with everything in it too.
            gw.kill(signal.SIGTERM)
            assert gw.proc is not None and gw.proc.returncode == 0, gw.log()
            fs.unmount()
            final = _disk_orders(disk, tmp_path / "copy")
            assert run.acked <= final, f"{len(run.acked - final)} lost at a clean stop"
    finally:
        gw.kill()
        fs.unmount()
    run.elapsed = time.monotonic() - t_start
    return run


def _seed() -> int:
    seed = int(os.environ.get("POWERCUT_SEED", str(random.SystemRandom().randrange(2**32))))
    print(f"\nD2 seed {seed} (POWERCUT_SEED)")
    return seed


def test_power_cut_negative_control_normal_loses_orders(fuse_ready: None, tmp_path: Path) -> None:
    run = _power_cut_run(tmp_path, "NORMAL", CONTROL_CUTS, random.Random(_seed()))
    print(run.summary())
    assert len(run.acked) > 0
    assert run.lost, (
        f"synchronous=NORMAL lost nothing in {run.cuts} power cuts: the harness cannot see"
        " a power cut (writes reach the disk without fsync?), so a green FULL run proves nothing"
    )


def test_power_cut_full_loses_no_acknowledged_order(fuse_ready: None, tmp_path: Path) -> None:
    run = _power_cut_run(tmp_path, "FULL", CUTS, random.Random(_seed()))
    print(run.summary())
    assert not run.gateway_id_lost, "gateway-id must be written durably (fsync + rename)"
    assert not run.lost
    assert len(run.acked) > 0
    # The cut must land while requests are in flight, or it proves little.
    assert run.rounds_in_flight >= run.cuts // 2
