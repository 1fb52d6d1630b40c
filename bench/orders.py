"""Load figures for the gateway, each next to a ceiling measured in the same run.

    .venv/bin/python bench/orders.py [--duration S] [--quick]

1. orders      durable order creation (synchronous=FULL), wrk -t2 -c50 --latency, vs a bare
               aiohttp JSON POST handler; then acknowledged = stored, read from the database.
2. ws fan-out  POST-to-WebSocket latency, 100 clients, a fixed-rate poster, vs a raw aiohttp
               broadcast; `seq` contiguous per client.
3. start       spawn to first 200 from GET /api/v2, median of 5, on a DB with 1,000 orders.
4. rss         VmRSS with 1,000 active orders and 100 WebSocket clients, vs the bare server's.

Figures are printed, never asserted: the machine is shared and has 2 cores, and the load
generator competes with the server for them, so the ratio to the ceiling is the figure to
compare across runs. Every child process is killed on the way out; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from tests.support import ChildServer, GatewayProcess, free_port  # noqa: E402

CONNECTIONS = 50
THREADS = 2
WS_CLIENTS = 100
WS_RATE = 50.0  # orders per second for the fan-out figure
SEED_ORDERS = 1000
STARTS = 5
MAX_DURATION = 120.0
LUA = BENCH / "wrk_post.lua"

# Every child process we start, so the finally block can kill what is still running.
_CHILDREN: list[subprocess.Popen[bytes]] = []


# -- processes ----------------------------------------------------------------------------


@dataclass
class BareProcess(ChildServer):
    """bench/bare_server.py as a child process, started and probed exactly like the gateway."""

    def command(self) -> list[str]:
        return [
            sys.executable,
            str(BENCH / "bare_server.py"),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]

    def start(self, timeout: float = 15, **env: str) -> float:
        took = super().start(timeout, **env)
        assert self.proc is not None
        _CHILDREN.append(self.proc)
        return took


GATEWAY_ENV: dict[str, str] = {}  # --env KEY=VALUE, for experiments (default: none)


def start_gateway(gw: GatewayProcess) -> float:
    try:
        return gw.start(**GATEWAY_ENV)
    finally:
        if gw.proc is not None:
            _CHILDREN.append(gw.proc)


def stop(proc_holder: GatewayProcess | BareProcess, sig: int = signal.SIGTERM) -> None:
    try:
        proc_holder.kill(sig)
    except subprocess.TimeoutExpired:
        proc_holder.kill(signal.SIGKILL)


def kill_children() -> None:
    for p in _CHILDREN:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM in KiB from /proc/<pid>/status."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (clock ticks → seconds)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an unsorted list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


# -- figure 1: durable order creation ---------------------------------------------------


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    non2xx: int
    socket_errors: int
    statuses: dict[str, int]
    acked: list[str]
    sent: dict[int, int]  # thread id -> requests generated (names tid*10^7+offset+1..n)
    server_cpu: float = 0.0
    tool: str = "wrk"
    raw: str = ""


def run_wrk(
    url: str, token: str, duration: float, offset: int, work: Path, server_pid: int
) -> LoadResult:
    out = work / f"wrk-{time.monotonic_ns()}.json"
    cmd = [
        "wrk",
        f"-t{THREADS}",
        f"-c{CONNECTIONS}",
        f"-d{round(duration)}s",
        "--latency",
        "-s",
        str(LUA),
        f"{url}/api/v2/activeorders",
        "--",
        token,
        str(offset),
    ]
    cpu0 = cpu_seconds(server_pid)
    t0 = time.monotonic()
    proc = subprocess.run(
        cmd,
        env={**os.environ, "WRK_OUT": str(out)},
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    wall = time.monotonic() - t0
    server_cpu = (cpu_seconds(server_pid) - cpu0) / wall
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    d = json.loads(out.read_text())
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", proc.stdout)
    non2xx = int(m.group(1)) if m else 0
    statuses: dict[str, int] = {}
    acked: list[str] = []
    sent: dict[int, int] = {}
    for t in d["threads"]:
        for k, v in t["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
        acked.extend(t["acked"])
        sent[t["tid"]] = t["sent"]
    return LoadResult(
        rps=d["requests"] / (d["duration_us"] / 1e6),
        p50_ms=d["lat_p50_us"] / 1000,
        p99_ms=d["lat_p99_us"] / 1000,
        requests=d["requests"],
        non2xx=non2xx,
        socket_errors=d["err_connect"] + d["err_read"] + d["err_write"] + d["err_timeout"],
        statuses=statuses,
        acked=acked,
        sent=sent,
        server_cpu=server_cpu,
        raw=proc.stdout,
    )


async def _aio_load(url: str, token: str, duration: float, offset: int) -> dict[str, Any]:
    """Fallback load generator (no wrk): CONNECTIONS workers, one request in flight each."""
    lat: list[float] = []
    statuses: dict[str, int] = {}
    acked: list[str] = []
    errors = 0
    counters = {tid: 0 for tid in range(1, THREADS + 1)}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    t_end = time.perf_counter() + duration
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker(i: int) -> None:
            nonlocal errors
            tid = 1 + i % THREADS
            while time.perf_counter() < t_end:
                counters[tid] += 1
                name = tid * 10_000_000 + offset + counters[tid]
                body = f'{{"name":"{name}","orderType":"ON_PREMISES"}}'
                t0 = time.perf_counter()
                try:
                    async with session.post(
                        f"{url}/api/v2/activeorders", data=body, headers=headers
                    ) as resp:
                        text = await resp.text()
                except aiohttp.ClientError:
                    errors += 1
                    continue
                lat.append(time.perf_counter() - t0)
                statuses[str(resp.status)] = statuses.get(str(resp.status), 0) + 1
                if 200 <= resp.status < 300:
                    m = re.search(r'"name":"(\d+)"', text)
                    if m:
                        acked.append(m.group(1))

        t0 = time.perf_counter()
        await asyncio.wait_for(
            asyncio.gather(*(worker(i) for i in range(CONNECTIONS))), timeout=duration + 30
        )
        wall = time.perf_counter() - t0
    return {
        "requests": len(lat),
        "wall": wall,
        "p50": pct(lat, 50),
        "p99": pct(lat, 99),
        "statuses": statuses,
        "acked": acked,
        "sent": counters,
        "errors": errors,
    }


def run_aio_load(
    url: str, token: str, duration: float, offset: int, work: Path, server_pid: int
) -> LoadResult:
    """The fallback in a separate process, so it does not share the measuring process."""
    out = work / f"aio-{time.monotonic_ns()}.json"
    cpu0 = cpu_seconds(server_pid)
    t0 = time.monotonic()
    proc = subprocess.run(
        [
            sys.executable,
            str(Path(__file__).resolve()),
            "--_loadgen",
            url,
            token,
            str(duration),
            str(offset),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    server_cpu = (cpu_seconds(server_pid) - cpu0) / (time.monotonic() - t0)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed: {proc.stderr}")
    d = json.loads(out.read_text())
    non2xx = sum(v for k, v in d["statuses"].items() if not k.startswith("2"))
    return LoadResult(
        rps=d["requests"] / d["wall"],
        p50_ms=d["p50"] * 1000,
        p99_ms=d["p99"] * 1000,
        requests=d["requests"],
        non2xx=non2xx,
        socket_errors=d["errors"],
        statuses=d["statuses"],
        acked=d["acked"],
        sent={int(k): v for k, v in d["sent"].items()},
        server_cpu=server_cpu,
        tool="aiohttp-client",
    )


def drive(
    url: str, token: str, duration: float, offset: int, work: Path, server_pid: int
) -> LoadResult:
    if shutil.which("wrk"):
        return run_wrk(url, token, duration, offset, work, server_pid)
    return run_aio_load(url, token, duration, offset, work, server_pid)


def check_stored(db: Path, res: LoadResult, offset: int) -> str:
    sent = {
        str(tid * 10_000_000 + offset + i) for tid, n in res.sent.items() for i in range(1, n + 1)
    }
    acked = set(res.acked)
    uri = f"file:{db}?mode=ro"
    conn = sqlite3.connect(uri, uri=True)
    try:
        stored = {row[0] for row in conn.execute("SELECT name FROM orders")}
        (journal,) = conn.execute(
            "SELECT count(*) FROM journal WHERE type = 'NEW_ORDER'"
        ).fetchone()
        (quick,) = conn.execute("PRAGMA quick_check").fetchone()
    finally:
        conn.close()
    lost = acked - stored
    foreign = stored - sent
    extra = stored - acked  # sent, in flight when wrk stopped, committed afterwards
    unanswered = sum(res.sent.values()) - res.requests
    ok = (
        not lost
        and not foreign
        and len(acked) == len(res.acked)
        and len(extra) <= max(unanswered, 0)
        and journal == len(stored)
        and quick == "ok"
    )
    return (
        f"orders check: {'PASS' if ok else 'FAIL'} | 2xx acknowledged {len(res.acked)} "
        f"(unique {len(acked)}), stored {len(stored)} = acknowledged {len(acked & stored)} "
        f"+ {len(extra)} in flight when the load stopped (≤ {unanswered} unanswered) | "
        f"acknowledged but not stored {len(lost)} | stored but never sent {len(foreign)} | "
        f"NEW_ORDER journal rows {journal} | quick_check {quick} | read after kill -9"
    )


def figure_orders(work: Path, duration: float) -> list[str]:
    lines: list[str] = []
    bare = BareProcess(work / "bare", free_port())
    bare.start()
    try:
        assert bare.proc is not None
        b = drive(bare.url, "bare", duration, 0, work, bare.proc.pid)
    finally:
        stop(bare, signal.SIGKILL)
    gw = GatewayProcess(work / "gw-load", free_port())
    start_gateway(gw)
    try:
        assert gw.proc is not None
        token = gw.token("bench")
        g = drive(gw.url, token, duration, 0, work, gw.proc.pid)
        time.sleep(1.0)  # let requests that were in flight when wrk stopped finish
    finally:
        stop(gw, signal.SIGKILL)  # acknowledged must mean durable, not "flushed at shutdown"
    lines.append(
        f"orders: {g.rps:.0f} req/s p50 {g.p50_ms:.2f} ms p99 {g.p99_ms:.2f} ms | "
        f"bare aiohttp: {b.rps:.0f} req/s (p50 {b.p50_ms:.2f} ms p99 {b.p99_ms:.2f} ms) | "
        f"ratio {g.rps / b.rps:.2f} (target >= 0.35)"
    )
    lines.append(
        f"orders load: {g.tool} "
        + (f"-t{THREADS} " if g.tool == "wrk" else "(separate process, client-bound) ")
        + f"-c{CONNECTIONS} -d{round(duration)}s | "
        f"gateway non-2xx {g.non2xx} socket errors {g.socket_errors} statuses "
        f"{dict(sorted(g.statuses.items()))} server CPU {g.server_cpu:.0%} of a core | "
        f"bare non-2xx {b.non2xx} socket errors {b.socket_errors} server CPU "
        f"{b.server_cpu:.0%} of a core"
    )
    lines.append(check_stored(gw.data_dir / "tablegate.db", g, 0))
    return lines


# -- figures 2 and 4: WebSocket fan-out latency and RSS -----------------------------------


@dataclass
class FanOut:
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")
    max_ms: float = float("nan")
    deliveries: int = 0
    expected: int = 0
    contiguous: int = 0
    clients: int = 0
    posts_ok: int = 0
    posts: int = 0
    post_p50_ms: float = float("nan")
    post_p99_ms: float = float("nan")
    rss_idle_kib: int = 0
    rss_kib: int = 0
    hwm_kib: int = 0
    server_cpu: float = 0.0
    connect_s: float = float("nan")
    notes: list[str] = field(default_factory=list)


async def fan_out(url: str, token: str | None, pid: int, duration: float) -> FanOut:
    """100 clients and the poster in this one process (one clock: time.perf_counter)."""
    res = FanOut(clients=WS_CLIENTS)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    ws_url = url.replace("http://", "ws://") + "/api/v2/websocket"
    frames: list[list[tuple[float, str]]] = [[] for _ in range(WS_CLIENTS)]
    first_seq: list[int] = [-1] * WS_CLIENTS
    connected = 0
    all_in = asyncio.Event()
    ws_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    post_session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20))

    sockets: list[aiohttp.ClientWebSocketResponse] = []

    async def client(i: int) -> None:
        nonlocal connected
        ws = await ws_session.ws_connect(ws_url, headers=headers, max_msg_size=0, heartbeat=None)
        sockets.append(ws)
        first = await ws.receive(timeout=30)
        first_seq[i] = int(json.loads(first.data)["seq"])
        connected += 1
        if connected == WS_CLIENTS:
            all_in.set()
        rec = frames[i]
        async for msg in ws:  # ends when the socket is closed at the end of the run
            rec.append((time.perf_counter(), msg.data))  # parse later: keep this path short

    sent_at: dict[str, float] = {}
    post_lat: list[float] = []
    statuses: dict[int, int] = {}

    async def post(name: str) -> None:
        body = {"name": name, "orderType": "ON_PREMISES"}
        t0 = time.perf_counter()
        sent_at[name] = t0
        async with post_session.post(
            f"{url}/api/v2/activeorders", json=body, headers=headers
        ) as resp:
            await resp.read()
        post_lat.append(time.perf_counter() - t0)
        statuses[resp.status] = statuses.get(resp.status, 0) + 1

    res.rss_idle_kib = proc_status(pid)["VmRSS"]
    t_connect = time.perf_counter()
    tasks = [asyncio.create_task(client(i)) for i in range(WS_CLIENTS)]
    try:
        await asyncio.wait_for(all_in.wait(), timeout=60)
        res.connect_s = time.perf_counter() - t_connect
        await asyncio.sleep(1.0)  # let the snapshots' buffers settle before reading RSS
        st = proc_status(pid)
        res.rss_kib, res.hwm_kib = st["VmRSS"], st["VmHWM"]
        count = int(duration * WS_RATE)
        res.posts = count
        posts: list[asyncio.Task[None]] = []
        cpu0 = cpu_seconds(pid)
        t_start = time.perf_counter()
        for n in range(count):
            delay = t_start + n / WS_RATE - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            posts.append(asyncio.create_task(post(str(900_000_000 + n))))
        outcomes = await asyncio.wait_for(
            asyncio.gather(*posts, return_exceptions=True), timeout=30
        )
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        if failed:
            res.notes.append(f"{len(failed)} POSTs failed, first: {failed[0]!r}")
        res.server_cpu = (cpu_seconds(pid) - cpu0) / (time.perf_counter() - t_start)
        # Let the last frames arrive, bounded: stop once every client has every frame.
        deadline = time.perf_counter() + 5
        ok = statuses.get(201, 0)
        while time.perf_counter() < deadline and any(len(f) < ok for f in frames):
            await asyncio.sleep(0.05)
        res.posts_ok = ok
        if set(statuses) - {201}:
            res.notes.append(f"POST statuses {statuses}")
    finally:
        await asyncio.wait_for(
            asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), timeout=15
        )
        await asyncio.wait(tasks, timeout=10)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await ws_session.close()
        await post_session.close()

    lat: list[float] = []
    for i, rec in enumerate(frames):
        expect = first_seq[i] + 1
        contiguous = True
        for t, text in rec:
            d = json.loads(text)
            if d.get("seq") != expect:
                contiguous = False
            expect = int(d.get("seq", expect)) + 1
            sent = sent_at.get(str(d.get("name")))
            if d.get("type") == "NEW_ORDER" and sent is not None:
                lat.append(t - sent)
        res.contiguous += int(contiguous and len(rec) == res.posts_ok)
    res.deliveries = len(lat)
    res.expected = res.posts_ok * WS_CLIENTS
    res.p50_ms, res.p99_ms = pct(lat, 50) * 1000, pct(lat, 99) * 1000
    res.max_ms = max(lat) * 1000 if lat else float("nan")
    res.post_p50_ms, res.post_p99_ms = pct(post_lat, 50) * 1000, pct(post_lat, 99) * 1000
    return res


def seed_orders(url: str, token: str, n: int) -> None:
    async def go() -> None:
        headers = {"Authorization": f"Bearer {token}"}
        sem = asyncio.Semaphore(20)
        async with aiohttp.ClientSession() as s:

            async def one(i: int) -> None:
                async with (
                    sem,
                    s.post(
                        f"{url}/api/v2/activeorders",
                        headers=headers,
                        json={"name": str(i), "orderType": "ON_PREMISES"},
                    ) as r,
                ):
                    if r.status != 201:
                        raise RuntimeError(f"seed POST {i}: {r.status} {await r.text()}")

            await asyncio.gather(*(one(i) for i in range(1, n + 1)))

    asyncio.run(asyncio.wait_for(go(), timeout=120))


def active_count(url: str) -> int:
    with urllib.request.urlopen(f"{url}/api/v2", timeout=5) as resp:
        return int(json.loads(resp.read())["activeOrders"])


def figures_start_ws_rss(work: Path, duration: float) -> list[str]:
    lines: list[str] = []
    gw = GatewayProcess(work / "gw-1000", free_port())
    start_gateway(gw)
    try:
        token = gw.token("bench")
        seed_orders(gw.url, token, SEED_ORDERS)
    finally:
        stop(gw)
    # 3. start to ready, alternating gateway and bare so drift on the machine hits both.
    g_starts: list[float] = []
    b_starts: list[float] = []
    bare = BareProcess(work / "bare", free_port())
    for _ in range(STARTS):
        try:
            g_starts.append(start_gateway(gw))
        finally:
            stop(gw)
        try:
            b_starts.append(bare.start())
        finally:
            stop(bare)
    g_med, b_med = statistics.median(g_starts), statistics.median(b_starts)
    lines.append(
        f"start to ready: median {g_med * 1000:.0f} ms "
        f"({', '.join(f'{s * 1000:.0f}' for s in g_starts)}) on {SEED_ORDERS} orders | "
        f"bare aiohttp: median {b_med * 1000:.0f} ms | ratio {g_med / b_med:.1f}x "
        f"(target <= 1000 ms)"
    )
    # 4 and 2 on the same processes: RSS with 100 clients connected, then the fan-out.
    start_gateway(gw)
    try:
        assert gw.proc is not None
        active = active_count(gw.url)
        g = asyncio.run(fan_out(gw.url, token, gw.proc.pid, duration))
    finally:
        stop(gw, signal.SIGKILL)
    bare = BareProcess(work / "bare", free_port())
    bare.start()
    try:
        assert bare.proc is not None
        b = asyncio.run(fan_out(bare.url, None, bare.proc.pid, duration))
    finally:
        stop(bare, signal.SIGKILL)
    lines.append(
        f"ws fan-out: {WS_CLIENTS} clients x {g.posts_ok} orders at {WS_RATE:.0f}/s: "
        f"p50 {g.p50_ms:.2f} ms p99 {g.p99_ms:.2f} ms (max {g.max_ms:.1f}) | "
        f"bare aiohttp: p50 {b.p50_ms:.2f} ms p99 {b.p99_ms:.2f} ms | "
        f"ratio p99 {g.p99_ms / b.p99_ms:.1f}x (target p99 <= 5 ms)"
    )
    lines.append(
        f"ws check: gateway deliveries {g.deliveries}/{g.expected}, seq contiguous "
        f"{g.contiguous}/{g.clients} clients, POST p50 {g.post_p50_ms:.2f} ms p99 "
        f"{g.post_p99_ms:.2f} ms | bare deliveries {b.deliveries}/{b.expected}, contiguous "
        f"{b.contiguous}/{b.clients}, POST p50 {b.post_p50_ms:.2f} ms p99 {b.post_p99_ms:.2f} ms"
        f" | server CPU while posting: gateway {g.server_cpu:.0%} bare {b.server_cpu:.0%} of a core"
        f" | {WS_CLIENTS} connects + first frame: gateway {g.connect_s * 1000:.0f} ms bare "
        f"{b.connect_s * 1000:.0f} ms"
        + (f" | gateway: {'; '.join(g.notes)}" if g.notes else "")
        + (f" | bare: {'; '.join(b.notes)}" if b.notes else "")
    )
    lines.append(
        f"rss: {g.rss_kib / 1024:.1f} MiB (peak {g.hwm_kib / 1024:.1f}, "
        f"{g.rss_idle_kib / 1024:.1f} before the clients) with {active} active orders + "
        f"{WS_CLIENTS} ws clients | bare aiohttp: {b.rss_kib / 1024:.1f} MiB (peak "
        f"{b.hwm_kib / 1024:.1f}, {b.rss_idle_kib / 1024:.1f} before) with {WS_CLIENTS} ws "
        f"clients | ratio "
        f"{g.rss_kib / b.rss_kib:.1f}x (target <= 80 MiB)"
    )
    return lines


# -- main ---------------------------------------------------------------------------------


def machine() -> str:
    wrk = shutil.which("wrk")
    wrk_v = "absent (aiohttp-client fallback)"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
        wrk_v = (out.stdout + out.stderr).splitlines()[0].strip()
    return machine_line(wrk_v)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_loadgen"]:  # the fallback load generator's own process
        url, token, duration, offset, out = argv[1:6]
        d = asyncio.run(_aio_load(url, token, float(duration), int(offset)))
        Path(out).write_text(json.dumps(d))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of load for figures 1 and 2 (default 10, quick 3)",
    )
    parser.add_argument("--quick", action="store_true", help="short loads, for a smoke test")
    parser.add_argument(
        "--only",
        choices=("orders", "feed"),
        default=None,
        help="orders: figure 1 only; feed: figures 2-4 only",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra environment for the gateway (e.g. TABLEGATE_SYNCHRONOUS="
        "NORMAL); the default run sets none",
    )
    args = parser.parse_args(argv)
    for kv in args.env:
        key, sep, value = kv.partition("=")
        if not sep:
            parser.error(f"--env wants KEY=VALUE, got {kv!r}")
        GATEWAY_ENV[key] = value
    duration = args.duration if args.duration is not None else (3.0 if args.quick else 10.0)
    duration = max(1.0, min(duration, MAX_DURATION))
    print(machine() + (f" | gateway env {GATEWAY_ENV}" if GATEWAY_ENV else ""), flush=True)
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tablegate-bench-"))
    try:
        if args.only in (None, "orders"):
            for line in figure_orders(work, duration):
                print(line, flush=True)
        if args.only in (None, "feed"):
            for line in figures_start_ws_rss(work, duration):
                print(line, flush=True)
    finally:
        kill_children()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"bench: done in {time.monotonic() - t0:.0f} s "
        f"(load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
