"""Outbox figures, each next to a ceiling or a baseline measured in the same run.

    .venv/bin/python bench/deliveries.py [--quick] [--rows N] [--backlog N] [--duration S]

1. drain      deliveries/s from the durable outbox (DeliveryService on a synchronous=FULL
              store, in this process) to a fast local receiver (a child process), with 1 and
              with 4 endpoints; ceiling: a bare aiohttp client loop posting the same bodies
              with the same headers, one request in flight per endpoint (what FIFO per
              endpoint allows), in the same process.
2. backlog    POST /api/v2/activeorders p50/p99 on a gateway process at fixed moderate
              concurrency (wrk -t1 -c8), alternately without and with a 50,000-row backlog
              draining to the receiver (rows written into the gateway's outbox while it was
              stopped; it drains them from start), each run on a fresh gateway started on the
              same copy of the database; the figure is the median p99 with the backlog /
              the median p99 without (target <= 1.10), and how fast the backlog drained
              meanwhile.

Figures are printed, never asserted: the machine is shared and has 2 cores, and the load
generator and the receiver compete with the gateway for them. Every child process is killed on
the way out; every loop is bounded (the whole run takes about 90 s, --quick about 40 s).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from gateway.core.ports import SystemClock  # noqa: E402
from gateway.services.outbox.service import DeliveryService, OutboxPolicy  # noqa: E402
from gateway.store import outbox  # noqa: E402
from gateway.store.outbox import Delivery  # noqa: E402
from gateway.store.reader import Reader  # noqa: E402
from gateway.store.writer import Writer  # noqa: E402
from tests.support import GatewayProcess, free_port, http  # noqa: E402

LUA = BENCH / "wrk_post.lua"
BODY = b"orderId=%d"
FORM = "application/x-www-form-urlencoded"
CHILDREN: list[subprocess.Popen[bytes]] = []

# The receiver: HTTP/1.1 keep-alive in, 204 out, on N ports; counts bodies. A raw asyncio
# protocol, so that it costs far less than either sender (the figure is about the sender).
RECEIVER = r"""
import asyncio, os, signal, sys

class Sink(asyncio.Protocol):
    def connection_made(self, t):
        self.t, self.buf = t, bytearray()
    def data_received(self, data):
        self.buf += data
        while (end := self.buf.find(b"\r\n\r\n")) >= 0:
            n = 0
            for line in bytes(self.buf[:end]).split(b"\r\n")[1:]:
                k, _, v = line.partition(b":")
                if k.strip().lower() == b"content-length":
                    n = int(v)
            if len(self.buf) < end + 4 + n:
                return
            del self.buf[:end + 4 + n]
            self.t.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")

async def main(n):
    loop = asyncio.get_running_loop()
    servers = [await loop.create_server(Sink, "127.0.0.1", 0) for _ in range(n)]
    ports = [s.sockets[0].getsockname()[1] for s in servers]
    print(",".join(map(str, ports)), flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()

asyncio.run(main(int(sys.argv[1])))
"""


def start_receiver(ports: int) -> tuple[subprocess.Popen[bytes], list[int]]:
    proc = subprocess.Popen([sys.executable, "-c", RECEIVER, str(ports)], stdout=subprocess.PIPE)
    CHILDREN.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()
    if not line:
        raise RuntimeError("receiver did not start")
    return proc, [int(p) for p in line.split(",")]


def kill_children() -> None:
    for p in CHILDREN:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def urls(ports: list[int]) -> list[str]:
    return [f"http://127.0.0.1:{p}/hook" for p in ports]


# -- figure 1: drain rate ------------------------------------------------------------------


async def bare_rate(targets: list[str], rows: int) -> float:
    """The ceiling: aiohttp posting the same bodies, one in flight per endpoint."""
    async with aiohttp.ClientSession() as session:

        async def one_endpoint(k: int) -> None:
            for i in range(k, rows, len(targets)):
                headers = {"Content-Type": FORM, "webhook-id": f"evt-{i}"}
                async with session.post(
                    targets[k], data=BODY % i, headers=headers, allow_redirects=False
                ) as resp:
                    assert resp.status == 204

        t0 = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(one_endpoint(k) for k in range(len(targets)))), timeout=120
        )
        return rows / (time.perf_counter() - t0)


async def outbox_rate(work: Path, targets: list[str], rows: int) -> tuple[float, int]:
    """The outbox on a FULL store, from wake to the last row delivered."""
    db = work / f"drain-{len(targets)}.sqlite"
    writer, reader = Writer(db, synchronous="FULL"), Reader(db)
    await writer.open()
    await reader.open()
    svc = DeliveryService(
        writer, reader, SystemClock(), OutboxPolicy(allow=frozenset({"127.0.0.1"}))
    )
    try:
        batch = [
            Delivery(f"evt-{i}", targets[i % len(targets)], "bench", BODY % i, FORM)
            for i in range(rows)
        ]
        await writer.run(lambda c: [outbox.enqueue(c, d, 1.0) for d in batch])
        commits0 = writer.stats.transactions
        t0 = time.perf_counter()
        await svc.start()
        svc.wake()
        deadline = t0 + 120
        while svc.stats.delivered < rows and time.perf_counter() < deadline:
            await asyncio.sleep(0.005)
        rate = svc.stats.delivered / (time.perf_counter() - t0)
        commits = writer.stats.transactions - commits0
        assert await reader.run(outbox.count_pending) == 0, "not drained in 120 s"
        return rate, commits
    finally:
        await svc.close()
        await reader.close()
        await writer.close()


async def figure_drain(work: Path, rows: int) -> None:
    for endpoints in (1, 4):
        proc, ports = start_receiver(endpoints)
        try:
            targets = urls(ports)
            bare: list[float] = []
            ours: list[float] = []
            for _ in range(2):  # alternate, so drift hits both
                bare.append(await bare_rate(targets, rows))
                rate, commits = await outbox_rate(work / f"r{len(ours)}", targets, rows)
                ours.append(rate)
            b, o = statistics.median(bare), statistics.median(ours)
            print(
                f"drain ({endpoints} endpoint{'s' if endpoints > 1 else ''}): "
                f"{o:,.0f} deliveries/s | ceiling (bare aiohttp, 1 in flight per endpoint) "
                f"{b:,.0f}/s | ratio {o / b:.2f} | {rows:,} rows, median of 2, "
                f"synchronous=FULL, {commits / rows:.2f} commits per delivery"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)


# -- figure 2: live orders while a backlog drains -------------------------------------------


def wrk(
    url: str, token: str, duration: float, connections: int, offset: int, work: Path
) -> dict[str, float]:
    out = work / f"wrk-{time.monotonic_ns()}.json"
    cmd = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{round(duration)}s",
        "--latency",
        "-s",
        str(LUA),
        f"{url}/api/v2/activeorders",
        "--",
        token,
        str(offset),
    ]
    proc = subprocess.run(
        cmd,
        env={**os.environ, "WRK_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    d = json.loads(out.read_text())
    statuses: dict[str, int] = {}
    for t in d["threads"]:
        for k, v in t["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    bad = sum(v for k, v in statuses.items() if not k.startswith("2"))
    return {
        "rps": d["requests"] / (d["duration_us"] / 1e6),
        "p50": d["lat_p50_us"] / 1000,
        "p99": d["lat_p99_us"] / 1000,
        "requests": d["requests"],
        "bad": bad,
    }


def fill_outbox(db: Path, targets: list[str], rows: int) -> None:
    conn = sqlite3.connect(db)
    try:
        with conn:
            conn.executemany(
                "INSERT INTO outbox (event_id, endpoint, url, kind, ref, content_type, body, "
                "created, next_at, attempts, state) VALUES (?, ?, ?, 'bench', '', ?, ?, ?, ?, 0, "
                "'pending')",
                [
                    (
                        f"backlog-{i}",
                        outbox.endpoint_of(targets[i % len(targets)]),
                        targets[i % len(targets)],
                        FORM,
                        BODY % i,
                        time.time(),
                        0.0,
                    )
                    for i in range(rows)
                ],
            )
    finally:
        conn.close()


def pending(gw: GatewayProcess, token: str) -> int:
    status, body = http("GET", f"{gw.url}/api/admin/deliveries", token=token)
    assert status == 200, body
    return int(body["pending"])


def figure_backlog(work: Path, backlog: int, duration: float, connections: int, pairs: int) -> None:
    if not shutil.which("wrk"):
        print("backlog: skipped (wrk is not installed: apt-get install -y wrk)")
        return
    proc, ports = start_receiver(4)
    targets = urls(ports)
    data = work / "gw"
    gw = GatewayProcess(data, free_port())
    env = {"TABLEGATE_OUTBOUND_ALLOW": '["127.0.0.1"]'}
    runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    drained: list[float] = []
    try:
        gw.start(**env)
        assert gw.proc is not None
        CHILDREN.append(gw.proc)
        token = gw.token("bench")
        wrk(gw.url, token, 2.0, connections, 9_000_000, work)  # warm-up, not counted
        http("DELETE", f"{gw.url}/api/v2/activeorders", token=token, timeout=120)
        gw.kill(signal.SIGTERM)
        snapshot = work / "snapshot"
        shutil.copytree(data, snapshot)
        for run in range(2 * pairs):
            with_backlog = run % 2 == 1  # without, with, without, with...
            # Every run starts a gateway on the same copy of the same database, so that the
            # runs differ only in the backlog (written while it is stopped: one writer).
            shutil.rmtree(data)
            shutil.copytree(snapshot, data)
            if with_backlog:
                fill_outbox(data / "tablegate.db", targets, backlog)
            gw.start(**env)
            assert gw.proc is not None
            CHILDREN.append(gw.proc)
            before = pending(gw, token)
            res = wrk(gw.url, token, duration, connections, run * 1_000_000, work)
            if with_backlog:
                drained.append((before - pending(gw, token)) / duration)
            runs[with_backlog].append(res)
            gw.kill(signal.SIGTERM)
    finally:
        gw.kill(signal.SIGTERM)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    for with_backlog in (False, True):
        label = "with" if with_backlog else "without"
        each = ", ".join(f"{r['p99']:.1f}" for r in runs[with_backlog])
        rps = statistics.median(r["rps"] for r in runs[with_backlog])
        p50 = statistics.median(r["p50"] for r in runs[with_backlog])
        p99 = statistics.median(r["p99"] for r in runs[with_backlog])
        bad = sum(r["bad"] for r in runs[with_backlog])
        extra = (
            (f" | the backlog drained at {statistics.median(drained):,.0f} deliveries/s meanwhile")
            if with_backlog
            else ""
        )
        print(
            f"orders {label} a {backlog:,}-row backlog: {rps:,.0f} req/s | p50 {p50:.2f} ms | "
            f"p99 {p99:.2f} ms (runs: {each}) | non-2xx {bad:.0f}{extra}"
        )
    p99_with = statistics.median(r["p99"] for r in runs[True])
    p99_without = statistics.median(r["p99"] for r in runs[False])
    rps_ratio = statistics.median(r["rps"] for r in runs[True]) / statistics.median(
        r["rps"] for r in runs[False]
    )
    print(
        f"backlog effect: p99 ratio {p99_with / p99_without:.2f} (target <= 1.10) | req/s "
        f"ratio {rps_ratio:.2f} | medians of {pairs} alternating runs each, wrk -t1 "
        f"-c{connections} -d{duration:g}s, each on a fresh gateway started on the same "
        f"database copy, synchronous=FULL"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--rows", type=int, default=None, help="rows per drain run (10,000)")
    ap.add_argument("--backlog", type=int, default=50_000)
    ap.add_argument("--duration", type=float, default=None, help="each wrk run (6 s)")
    ap.add_argument("--pairs", type=int, default=None, help="runs with and without (3)")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--only", choices=("drain", "backlog"))
    args = ap.parse_args()
    rows = args.rows or (3000 if args.quick else 10_000)
    duration = min(args.duration or (3.0 if args.quick else 6.0), 60.0)
    pairs = min(args.pairs or (2 if args.quick else 3), 10)
    print(machine_line(f"rows {rows:,}, backlog {args.backlog:,}, wrk {duration:g} s"))
    work = Path(tempfile.mkdtemp(prefix="tablegate-bench-deliveries-"))
    try:
        if args.only in (None, "drain"):
            asyncio.run(figure_drain(work, rows))
        if args.only in (None, "backlog"):
            figure_backlog(work, args.backlog, duration, args.connections, pairs)
    finally:
        kill_children()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
