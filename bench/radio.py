"""Radio figures for the gateway, each next to a ceiling measured in the same run.

    .venv/bin/python bench/radio.py [--quick] [--trials N] [--background RATE] [--only WHICH]

1. throughput  in this process: a real gateway (`gateway.app.build`, a temporary data dir,
               mDNS off) and `TrackerScanner(reading(gw.trackers), repeat_filter=False)` wired
               as `start_radio` wires it; 150 paired trackers; pre-encoded manufacturer data
               (steady at a table, on a charger, carried past tables, changing table, some
               garbled) fed to `scanner.on_advertisement` in a bounded loop. Ceilings: the same
               loop calling `radio.advert.decode` only, and calling a no-op callback.
2. latency     the same gateway code served on 127.0.0.1 in this process (AppRunner + TCPSite),
               a KDS-like WebSocket client on /api/v2/websocket in a child process. From the
               advert that completes the debounce to the ORDER_MODIFIED frame the client
               receives; ceiling: POST /api/v2/activeorders locating an order (sent by the
               child) to the same frame. Idle, then with other trackers advertising at
               RATE/s (a restaurant's 150 trackers at 10 Hz = 1,500/s). The debounce window
               itself (first advert at the new table to the accepted one) is reported apart.

Figures are printed, never asserted: the machine is shared and has 2 cores, so the ratio to the
ceiling is the figure to compare across runs. Everything runs on 127.0.0.1 in a temporary
directory; the child process is killed on the way out; every loop is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import random
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import aiohttp  # noqa: E402
from aiohttp import web  # noqa: E402

from bench.machine import machine_line  # noqa: E402
from gateway.app import Gateway, build  # noqa: E402
from gateway.compose.radio import reading  # noqa: E402
from gateway.core.events import Event, OrderEvent, OrderEventType  # noqa: E402
from gateway.settings import Settings, load_settings  # noqa: E402
from radio.advert import COMPANY_ID, Flags, TrackerAdvert, decode, encode  # noqa: E402
from radio.scanner import TrackerScanner  # noqa: E402
from web.access_log import RedactingAccessLogger  # noqa: E402

Entry = tuple[str, dict[int, bytes], int]  # what bleak hands the scanner: address, data, rssi
Call = Callable[[str, dict[int, bytes], int], object]

TRACKERS = 150
STEADY, CHARGING, MOVING, CHANGING = 90, 30, 15, 15  # 150 in all
SCHEDULE_ROUNDS = 400  # one round = every tracker advertises once (0.1 s of a 10 Hz restaurant)
SEGMENT = 100  # rounds a changing tracker stays at one table (carried for the first 3)
CARRIED = 3
GARBLED_SHARE = 0.02
REPS = 3  # throughput loops alternate gateway and ceilings this many times; medians reported
RESTAURANT_RATE = TRACKERS * 10  # adverts/s: 150 trackers at 10 Hz

SUBJECT, SUBJECT_ADDR = 66, "C0:FF:EE:00:00:42"  # the tracker the latency trials move
POS_ORDER = "9001"  # the order the POST ceiling locates
ADVERT_INTERVAL = 0.03  # s between the subject's adverts (a tracker advertising fast after a move)
LAT_DEBOUNCE_READINGS, LAT_DEBOUNCE_SECONDS = 3, 0.05
WAIT_FRAME = 5.0  # s; a frame later than this counts as missing
WARMUP_TRIALS = 5

_CHILDREN: list[subprocess.Popen[bytes]] = []


def mono() -> float:
    """CLOCK_MONOTONIC: one clock for this process and the WebSocket client's."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


def pct(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of an unsorted list."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))
    return s[k]


def address(number: int) -> str:
    return f"C0:FF:EE:01:{number >> 8:02X}:{number & 0xFF:02X}"


def kill_children() -> None:
    for p in _CHILDREN:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                p.wait(timeout=10)


class LogCount(logging.Handler):
    """Counts WARNING and above by logger (and keeps the first few ERRORs) instead of printing."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1
        if record.levelno >= logging.ERROR and len(self.errors) < 3:
            self.errors.append(record.getMessage()[:200])

    def summary(self) -> str:
        if not self.counts:
            return "log: nothing at WARNING or above"
        parts = ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        errors = f" (first errors: {' | '.join(self.errors)})" if self.errors else ""
        return f"log: {parts}{errors}"


LOG = LogCount()


def gateway_settings(data_dir: Path, readings: int, seconds: float) -> Settings:
    return load_settings(
        None,
        data_dir=data_dir,
        mdns_enabled=False,
        host="127.0.0.1",
        debounce_readings=readings,
        debounce_seconds=seconds,
    )


async def close_gateway(runner: web.AppRunner) -> None:
    # The app's own shutdown and cleanup (feeds closed, trackers drained and flushed, store
    # closed), as `serve` ends.
    await asyncio.wait_for(runner.cleanup(), timeout=30)


# -- figure 1: throughput ---------------------------------------------------------------------


@dataclass
class Schedule:
    rounds: list[list[Entry]]
    moves: list[int]  # per round: table moves offered (a changer's first advert at a new table)
    garbled: int
    total: int
    starters: list[int]  # tracker numbers that get an order (put on a starter)
    # (tracker, table) -> round (within the cycle) holding the changer's 3rd valid advert in a
    # row at that table: the one the debounce (3 adverts, time condition off) accepts.
    accepts: dict[tuple[int, int], int] = field(default_factory=dict)


def _garble(rng: random.Random, good: bytes) -> bytes:
    v1 = struct.Struct("<BHHBBB")
    kind = rng.randrange(6)
    if kind == 0:
        return b""
    if kind == 1:
        return bytes([2]) + good[1:]  # unknown layout version
    if kind == 2:
        return good[: rng.randrange(1, 8)]  # short
    if kind == 3:
        return v1.pack(1, 0, 12, 80, 0, 1)  # tracker number 0
    if kind == 4:
        return v1.pack(1, 7, 12, 150, 0, 1)  # battery out of range
    return v1.pack(1, 7, 12, 80, 0x80, 1)  # reserved flag bit


def build_schedule(seed: int = 7) -> Schedule:
    """SCHEDULE_ROUNDS rounds of 150 adverts, cyclic (the last round leads into the first)."""
    rng = random.Random(seed)
    numbers = list(range(1, TRACKERS + 1))
    steady = numbers[:STEADY]
    charging = numbers[STEADY : STEADY + CHARGING]
    moving = numbers[STEADY + CHARGING : STEADY + CHARGING + MOVING]
    changing = numbers[STEADY + CHARGING + MOVING :]
    battery = {n: rng.choice([None, *range(25, 101)]) for n in numbers}
    rounds: list[list[Entry]] = []
    moves = [0] * SCHEDULE_ROUNDS
    garbled = total = 0
    for r in range(SCHEDULE_ROUNDS):
        entries: list[tuple[int, TrackerAdvert]] = []
        for n in steady:  # at its table, repeating the same reading (new counter every 1 s)
            entries.append((n, TrackerAdvert(n, n, battery[n], Flags.NONE, (r // 10) & 0xFF)))
        for n in charging:
            b = min(100, 20 + r // 8)
            entries.append((n, TrackerAdvert(n, 0, b, Flags.ON_CHARGER, (r // 8) & 0xFF)))
        for n in moving:  # carried past tables: a table tag now and then, never 3 in a row
            table = 0 if r % 2 == 0 else rng.randrange(1, STEADY + 1)
            entries.append((n, TrackerAdvert(n, table, battery[n], Flags.MOVING, r & 0xFF)))
        for j, n in enumerate(changing):  # a table for SEGMENT rounds, then carried to the next
            step = r + j * SEGMENT // len(changing)
            phase, segment = step % SEGMENT, (step // SEGMENT) % (SCHEDULE_ROUNDS // SEGMENT)
            if phase < CARRIED:
                advert = TrackerAdvert(n, 0, battery[n], Flags.MOVING, r & 0xFF)
            else:
                advert = TrackerAdvert(
                    n, 300 + 4 * j + segment, battery[n], Flags.NONE, (step // 10) & 0xFF
                )
                if phase == CARRIED:
                    moves[r] += 1
            entries.append((n, advert))
        rng.shuffle(entries)
        round_entries: list[Entry] = []
        for n, advert in entries:
            payload = encode(advert)
            if rng.random() < GARBLED_SHARE:
                payload = _garble(rng, payload)
                garbled += 1
            round_entries.append((address(n), {COMPANY_ID: payload}, rng.randrange(-90, -40)))
            total += 1
        rounds.append(round_entries)
    sched = Schedule(rounds, moves, garbled, total, steady + moving + changing)
    # Two passes over the cycle, so a stay that wraps from the last round to the first counts.
    candidate: dict[int, tuple[int, int]] = {}
    changers = {address(n): n for n in changing}
    for _ in range(2):
        for r, round_entries in enumerate(rounds):
            for addr, data, _rssi in round_entries:
                if (n := changers.get(addr)) is None:
                    continue
                try:
                    advert = decode(data[COMPANY_ID])
                except ValueError:
                    continue  # dropped by the scanner: neither counts nor resets
                if advert.table == 0:
                    candidate[n] = (0, 0)
                    continue
                table, count = candidate.get(n, (0, 0))
                count = count + 1 if advert.table == table else 1
                candidate[n] = (advert.table, count)
                if count == 3:
                    sched.accepts[(n, advert.table)] = r
    return sched


@dataclass
class LoopRun:
    adverts: int = 0
    rounds: int = 0
    wall: float = 0.0
    cpu: float = 0.0

    @property
    def rate(self) -> float:
        return self.adverts / self.wall if self.wall else float("nan")


async def run_loop(
    call: Call,
    sched: Schedule,
    start_round: int,
    max_adverts: int,
    max_seconds: float,
    stamps: dict[int, float] | None = None,
) -> LoopRun:
    """Feed rounds to `call` until max_adverts or max_seconds; yield to the loop after each
    round (150 adverts), as the D-Bus reader would between batches, so order changes run.
    `stamps` gets each round's start time (perf_counter) by absolute round number."""
    rounds, n_rounds = sched.rounds, len(sched.rounds)
    stamp = {} if stamps is None else stamps
    n = 0
    r = start_round
    cpu0, t0 = time.process_time(), time.perf_counter()
    deadline = t0 + max_seconds
    while n < max_adverts:
        stamp[r] = time.perf_counter()
        batch = rounds[r % n_rounds]
        for addr, data, rssi in batch:
            call(addr, data, rssi)
        n += len(batch)
        r += 1
        await asyncio.sleep(0)
        if time.perf_counter() >= deadline:
            break
    return LoopRun(n, r - start_round, time.perf_counter() - t0, time.process_time() - cpu0)


def noop(addr: str, data: dict[int, bytes], rssi: int) -> None:
    return None


def decode_only(addr: str, data: dict[int, bytes], rssi: int) -> None:
    try:
        decode(data[COMPANY_ID])
    except (ValueError, TypeError):
        pass


def _noop_handler(addr: str, advert: TrackerAdvert, rssi: int | None) -> None:
    return None


async def figure_throughput(work: Path, per_rep: int, rep_seconds: float) -> list[str]:
    sched = build_schedule()
    # The bench runs restaurant time many times faster than real time, so the time half of the
    # debounce is switched off here and the count half (3 adverts in a row) decides; the cost
    # per advert is the same code path either way.
    settings = gateway_settings(work / "throughput", 3, 0.0)
    t_build = time.perf_counter()
    gw = await build(settings)
    runner = web.AppRunner(
        gw.app, handle_signals=False, shutdown_timeout=5.0, access_log_class=RedactingAccessLogger
    )
    await runner.setup()
    try:
        await asyncio.gather(*(gw.trackers.pair(n, address(n)) for n in range(1, TRACKERS + 1)))
        for n in sched.starters:
            gw.trackers.on_pad("bench-starter", "STARTER_DINE_IN", n, address(n))
        await gw.trackers.drain()
        setup_s = time.perf_counter() - t_build
        events: Counter[str] = Counter()
        modified_at: list[tuple[str, str, float]] = []  # name, location, published (perf)

        def count(event: Event) -> None:
            events[event.type.value] += 1
            if isinstance(event, OrderEvent) and event.type is OrderEventType.ORDER_MODIFIED:
                modified_at.append((event.order.name, event.order.location, time.perf_counter()))

        gw.ctx.bus.subscribe(count)
        scanner = TrackerScanner(reading(gw.trackers), repeat_filter=False)
        # Warm-up: one full cycle, so steady trackers are located and caches are warm.
        warm = await run_loop(scanner.on_advertisement, sched, 0, sched.total, 30)
        await gw.trackers.drain()
        received0, decoded0 = scanner.stats.received, scanner.stats.decoded
        rejected0 = Counter(scanner.stats.rejected)
        events.clear()
        modified_at.clear()
        tx0 = gw.writer.stats.transactions
        stamps: dict[int, float] = {}
        offered = 0
        scanner_only = TrackerScanner(_noop_handler, repeat_filter=False)
        runs: dict[str, list[LoopRun]] = {k: [] for k in ("gateway", "scanner", "decode", "noop")}
        r = warm.rounds
        cpu_gw = wall_gw = 0.0
        for _ in range(REPS):
            g = await run_loop(scanner.on_advertisement, sched, r, per_rep, rep_seconds, stamps)
            offered += sum(sched.moves[(r + i) % len(sched.moves)] for i in range(g.rounds))
            r += g.rounds
            runs["gateway"].append(g)
            cpu_gw += g.cpu
            wall_gw += g.wall
            # Ceilings on exactly as many adverts of the same mix, starting at the same round.
            start = r - g.rounds
            for name, call in (
                ("scanner", scanner_only.on_advertisement),
                ("decode", decode_only),
                ("noop", noop),
            ):
                runs[name].append(await run_loop(call, sched, start, g.adverts, rep_seconds))
        t_drain = time.perf_counter()
        await asyncio.wait_for(gw.trackers.drain(), timeout=30)
        drain_ms = (time.perf_counter() - t_drain) * 1000
        stats = scanner.stats
        fed = sum(x.adverts for x in runs["gateway"])
        rejected = Counter(stats.rejected)
        rejected.subtract(rejected0)
        unknown = dict(gw.trackers.rejected)
        active = len(gw.ctx.orders.active())
        writer = gw.writer.stats
        tx = writer.transactions - tx0
        # Accepted advert's round -> ORDER_MODIFIED published, for changes accepted in a
        # measured gateway round (warm-up ones are left out).
        delays: list[float] = []
        n_rounds = len(sched.rounds)
        for name, loc, t_pub in modified_at:
            offset = sched.accepts.get((int(name), int(loc)))
            if offset is None:
                continue
            r_acc = max(
                (k for k in stamps if k % n_rounds == offset and stamps[k] <= t_pub), default=None
            )
            if r_acc is not None:
                delays.append(t_pub - stamps[r_acc])
    finally:
        await close_gateway(runner)

    med = {k: statistics.median(x.rate for x in v) for k, v in runs.items()}
    us = {k: 1e6 / v for k, v in med.items()}
    modified = events.get(OrderEventType.ORDER_MODIFIED.value, 0)
    lines = [
        f"throughput: {med['gateway']:,.0f} adverts/s parsed + applied ({us['gateway']:.1f} µs "
        f"each; median of {REPS} loops, {fed:,} adverts from {TRACKERS} trackers in "
        f"{wall_gw:.1f} s wall, CPU {cpu_gw:.1f} s = {cpu_gw / wall_gw:.0%} of a core) | "
        f"bare decode loop: {med['decode']:,.0f}/s ({us['decode']:.2f} µs) | no-op callback "
        f"loop: {med['noop']:,.0f}/s ({us['noop']:.2f} µs) | ratio "
        f"{med['gateway'] / med['decode']:.2f} of decode, "
        f"{med['gateway'] / med['noop']:.3f} of no-op; the gateway adds "
        f"{us['gateway'] - us['decode']:.1f} µs per advert | target >= 20,000/s "
        f"({med['gateway'] / 20000:.1f}x), a 150-tracker restaurant at 10 Hz needs "
        f"{RESTAURANT_RATE:,}/s ({med['gateway'] / RESTAURANT_RATE:.0f}x)",
        f"throughput check: order changes {modified} ORDER_MODIFIED for {offered} table moves "
        f"offered ({CHANGING} trackers moving table every {SEGMENT} rounds; policy 3 adverts in "
        f"a row, time condition off: the loop runs ~{med['gateway'] / RESTAURANT_RATE:.0f}x "
        f"real time), other order events {dict(events - Counter({'ORDER_MODIFIED': modified}))}"
        f", drained {drain_ms:.1f} ms after the last loop | scanner: received "
        f"{stats.received - received0:,} = fed {fed:,}, decoded {stats.decoded - decoded0:,}, "
        f"garbled rejected {dict(+rejected)} ({sum((+rejected).values()) / fed:.1%}; schedule "
        f"{sched.garbled / sched.total:.1%}), handler errors {stats.handler_errors} | unknown "
        f"trackers {unknown or 0} | scanner with a no-op handler: {med['scanner']:,.0f}/s "
        f"({us['scanner']:.2f} µs) | mix: {STEADY} at a table, {CHARGING} on a charger, "
        f"{MOVING} carried past tables, {CHANGING} changing table; {active} active orders | "
        f"order change committed + published after its accepted advert's round began: p50 "
        f"{pct(delays, 50) * 1000:.1f} ms p99 {pct(delays, 99) * 1000:.1f} ms max "
        f"{max(delays, default=float('nan')) * 1000:.1f} ms ({len(delays)} changes, "
        f"{tx} writer transactions, largest batch {writer.largest_batch} jobs) | setup (150 "
        f"pairings, {len(sched.starters)} starts) {setup_s * 1000:.0f} ms, warm-up "
        f"{warm.adverts:,} adverts",
    ]
    return lines


# -- figure 2: latency ------------------------------------------------------------------------


class ClientProc:
    """The WebSocket client child: line protocol on its stdin (commands) and stdout (events)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._frames: dict[tuple[str, str], asyncio.Future[tuple[float, int, str]]] = {}
        self._arrived: dict[tuple[str, str], tuple[float, int, str]] = {}
        self._posted: asyncio.Future[tuple[float, float, int]] | None = None
        self.frames = 0
        self.reader: asyncio.StreamReader | None = None
        self.transport: asyncio.BaseTransport | None = None
        self.task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.reader = asyncio.StreamReader()
        assert self.proc.stdout is not None
        self.transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(self.reader),
            self.proc.stdout,  # type: ignore[arg-type]
        )
        self.task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        assert self.reader is not None
        while True:
            line = await self.reader.readline()
            if not line:
                break
            parts = line.decode().split()
            if not parts:
                continue
            if parts[0] == "READY" and not self.ready.done():
                self.ready.set_result(line.decode().strip())
            elif parts[0] == "FRAME":
                self.frames += 1
                t, seq, kind, name, loc = float(parts[1]), int(parts[2]), *parts[3:6]
                key = (name, loc)
                fut = self._frames.pop(key, None)
                if fut is not None and not fut.done():
                    fut.set_result((t, seq, kind))
                else:
                    self._arrived[key] = (t, seq, kind)
            elif parts[0] == "POSTED" and self._posted is not None and not self._posted.done():
                self._posted.set_result((float(parts[1]), float(parts[2]), int(parts[3])))
        for fut in self._frames.values():
            if not fut.done():
                fut.set_exception(ConnectionError("client exited"))
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("client exited"))

    def expect(self, name: str, loc: str) -> asyncio.Future[tuple[float, int, str]]:
        fut: asyncio.Future[tuple[float, int, str]] = asyncio.get_running_loop().create_future()
        if (got := self._arrived.pop((name, loc), None)) is not None:
            fut.set_result(got)
        else:
            self._frames[(name, loc)] = fut
        return fut

    def post(self, name: str, loc: str) -> asyncio.Future[tuple[float, float, int]]:
        self._posted = asyncio.get_running_loop().create_future()
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"POST {name} {loc}\n".encode())
        self.proc.stdin.flush()
        return self._posted

    async def stop(self) -> None:
        if self.proc.poll() is None and self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.write(b"QUIT\n")
                self.proc.stdin.flush()
        for _ in range(50):  # up to 5 s to close its socket and exit
            if self.proc.poll() is not None:
                break
            await asyncio.sleep(0.1)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        if self.task is not None:
            with contextlib.suppress(asyncio.TimeoutError, Exception):
                await asyncio.wait_for(self.task, timeout=5)
        if self.transport is not None:
            self.transport.close()


@dataclass
class Phase:
    name: str
    radio: list[float] = field(default_factory=list)  # accepted advert -> frame, s
    radio_pub: list[float] = field(default_factory=list)  # accepted advert -> bus publish
    post: list[float] = field(default_factory=list)  # POST sent -> frame
    post_pub: list[float] = field(default_factory=list)  # POST sent -> bus publish
    post_http: list[float] = field(default_factory=list)  # POST sent -> response read
    window: list[float] = field(default_factory=list)  # first advert at the table -> accepted
    adverts_to_accept: Counter[int] = field(default_factory=Counter)
    agreed: int = 0
    missing_radio: int = 0
    missing_post: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    background_sent: int = 0
    background_rate: float = 0.0
    cpu: float = 0.0
    wall: float = 0.0


class Latency:
    def __init__(self, gw: Gateway, scanner: TrackerScanner, client: ClientProc) -> None:
        self.gw = gw
        self.scanner = scanner
        self.client = client
        self.published: dict[tuple[str, str], float] = {}
        self.table = 1000
        self.pos_table = 5000
        self.counter = 0
        gw.ctx.bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, OrderEvent) and event.type is OrderEventType.ORDER_MODIFIED:
            self.published[(event.order.name, event.order.location)] = mono()

    def _service_table(self) -> int | None:
        # Cross-check of the bench's own count against the service (private state, read only).
        live = getattr(self.gw.trackers, "_live", {}).get(SUBJECT_ADDR)
        return None if live is None else int(live.table)

    async def radio_trial(self, phase: Phase | None) -> None:
        self.table += 1
        table = self.table
        self.counter = (self.counter + 2) & 0xFF
        carried = encode(TrackerAdvert(SUBJECT, 0, 80, Flags.MOVING, self.counter))
        at_table = encode(TrackerAdvert(SUBJECT, table, 80, Flags.NONE, self.counter + 1))
        fut = self.client.expect(str(SUBJECT), str(table))
        on_advert = self.scanner.on_advertisement
        for _ in range(2):  # picked up and carried to the new table
            on_advert(SUBJECT_ADDR, {COMPANY_ID: carried}, -60)
            await asyncio.sleep(ADVERT_INTERVAL)
        times: list[float] = []
        accepted = service_took = None
        for k in range(1, 21):
            data = {COMPANY_ID: at_table}
            t = mono()
            on_advert(SUBJECT_ADDR, data, -55)
            times.append(t)
            if service_took is None and self._service_table() == table:
                service_took = k
            if k >= LAT_DEBOUNCE_READINGS and t - times[0] >= LAT_DEBOUNCE_SECONDS:
                accepted = k
                break
            await asyncio.sleep(ADVERT_INTERVAL)
        try:
            t_frame, _, kind = await asyncio.wait_for(fut, WAIT_FRAME)
        except (TimeoutError, ConnectionError):
            if phase is not None:
                phase.missing_radio += 1
            return
        if phase is None or accepted is None or kind != OrderEventType.ORDER_MODIFIED.value:
            return
        t_acc = times[accepted - 1]
        phase.radio.append(t_frame - t_acc)
        phase.window.append(t_acc - times[0])
        phase.adverts_to_accept[accepted] += 1
        phase.agreed += int(service_took == accepted)
        if (t_pub := self.published.get((str(SUBJECT), str(table)))) is not None:
            phase.radio_pub.append(t_pub - t_acc)

    async def post_trial(self, phase: Phase | None) -> None:
        self.pos_table += 1
        loc = str(self.pos_table)
        fut = self.client.expect(POS_ORDER, loc)
        posted = self.client.post(POS_ORDER, loc)
        try:
            t0, t1, status = await asyncio.wait_for(posted, WAIT_FRAME)
            t_frame, _, kind = await asyncio.wait_for(fut, WAIT_FRAME)
        except (TimeoutError, ConnectionError):
            if phase is not None:
                phase.missing_post += 1
            return
        if phase is None:
            return
        phase.statuses[status] += 1
        if kind == OrderEventType.ORDER_MODIFIED.value:
            phase.post.append(t_frame - t0)
            phase.post_http.append(t1 - t0)
            if (t_pub := self.published.get((POS_ORDER, loc))) is not None:
                phase.post_pub.append(t_pub - t0)


def background_entries() -> list[Entry]:
    """Adverts of 149 other paired trackers (no orders): steady at tables or on chargers."""
    rng = random.Random(11)
    out: list[Entry] = []
    for r in range(40):
        for n in range(101, 250):
            on_charger = n % 5 == 0
            advert = TrackerAdvert(
                n,
                0 if on_charger else 1 + n % 90,
                60,
                Flags.ON_CHARGER if on_charger else Flags.NONE,
                r // 10,
            )
            out.append((address(n), {COMPANY_ID: encode(advert)}, rng.randrange(-90, -40)))
    return out


async def feed_background(
    scanner: TrackerScanner,
    entries: list[Entry],
    rate: float,
    stop: asyncio.Event,
    max_seconds: float,
) -> tuple[int, float]:
    """Other trackers' adverts at `rate`/s, in the small batches a D-Bus reader delivers."""
    on_advert = scanner.on_advertisement
    sent, t0 = 0, mono()
    deadline = t0 + max_seconds
    while not stop.is_set() and mono() < deadline:
        due = min(int((mono() - t0) * rate) - sent, 1000)
        for _ in range(due):
            addr, data, rssi = entries[sent % len(entries)]
            on_advert(addr, data, rssi)
            sent += 1
        await asyncio.sleep(0.005)
    return sent, mono() - t0


async def figure_latency(work: Path, trials: int, background: float) -> list[str]:
    settings = gateway_settings(work / "latency", LAT_DEBOUNCE_READINGS, LAT_DEBOUNCE_SECONDS)
    gw = await build(settings)
    runner = web.AppRunner(
        gw.app, handle_signals=False, shutdown_timeout=5.0, access_log_class=RedactingAccessLogger
    )
    await runner.setup()
    client: ClientProc | None = None
    phases: list[Phase] = []
    stop_bg = asyncio.Event()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0, reuse_address=True)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}"
        gw.supervisor.spawn("tracker-health", gw.trackers.run_health_forever)
        token = (await gw.tokens.issue("bench-kds", None)).secret
        await gw.trackers.pair(SUBJECT, SUBJECT_ADDR)
        await asyncio.gather(*(gw.trackers.pair(n, address(n)) for n in range(101, 250)))
        gw.trackers.on_pad("bench-starter", "STARTER_DINE_IN", SUBJECT, SUBJECT_ADDR)
        await gw.trackers.drain()
        scanner = TrackerScanner(reading(gw.trackers), repeat_filter=False)
        log_path = work / "ws-client.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), "--_wsclient", url, token],
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        _CHILDREN.append(proc)
        client = ClientProc(proc)
        await client.start()
        try:
            await asyncio.wait_for(client.ready, timeout=30)
        except (TimeoutError, ConnectionError) as exc:
            raise RuntimeError(f"ws client not ready: {log_path.read_text()[-2000:]}") from exc
        # The POS order (located once, so every later POST is a modification).
        await asyncio.wait_for(client.post(POS_ORDER, "4999"), WAIT_FRAME)
        lat = Latency(gw, scanner, client)
        for _ in range(WARMUP_TRIALS):
            await lat.radio_trial(None)
            await lat.post_trial(None)
        entries = background_entries()
        for rate in (0.0, background) if background > 0 else (0.0,):
            phase = Phase("idle" if rate == 0 else f"{rate:,.0f}")
            feeder: asyncio.Task[tuple[int, float]] | None = None
            stop_bg.clear()
            if rate > 0:
                feeder = asyncio.create_task(
                    feed_background(scanner, entries, rate, stop_bg, max_seconds=trials * 1.0 + 60)
                )
                await asyncio.sleep(0.5)  # other trackers settle (their first debounce)
                await gw.trackers.drain()
            cpu0, t0 = time.process_time(), time.perf_counter()
            misses = 0
            for _ in range(trials):
                before = phase.missing_radio + phase.missing_post
                await lat.radio_trial(phase)
                await lat.post_trial(phase)
                misses = misses + 1 if phase.missing_radio + phase.missing_post > before else 0
                if misses >= 3 or proc.poll() is not None:
                    break  # the client is gone or wedged: stop rather than wait out every trial
                await asyncio.sleep(0.02)
            phase.cpu, phase.wall = time.process_time() - cpu0, time.perf_counter() - t0
            if feeder is not None:
                stop_bg.set()
                phase.background_sent, bg_wall = await asyncio.wait_for(feeder, timeout=10)
                phase.background_rate = phase.background_sent / bg_wall
            phases.append(phase)
        frames_seen = client.frames
    finally:
        stop_bg.set()
        if client is not None:
            await client.stop()
        await close_gateway(runner)

    def ms(values: list[float], p: float) -> float:
        return pct(values, p) * 1000

    lines: list[str] = []
    for ph in phases:
        label = (
            "latency"
            if ph.name == "idle"
            else f"latency with {ph.background_rate:,.0f} adverts/s of 149 other trackers"
        )
        ratio = ms(ph.radio, 99) / ms(ph.post, 99) if ph.post else float("nan")
        lines.append(
            f"{label}: accepted advert -> ORDER_MODIFIED frame p50 {ms(ph.radio, 50):.2f} ms "
            f"p99 {ms(ph.radio, 99):.2f} ms max {ms(ph.radio, 100):.2f} ms ({len(ph.radio)} "
            f"trials) | POST /api/v2/activeorders locate -> frame: p50 {ms(ph.post, 50):.2f} "
            f"ms p99 {ms(ph.post, 99):.2f} ms max {ms(ph.post, 100):.2f} ms | ratio p99 "
            f"{ratio:.2f}x (target p99 <= 20 ms, debounce excluded)"
        )
    all_windows = [w for ph in phases for w in ph.window]
    accepts = sum((ph.adverts_to_accept for ph in phases), Counter())
    lines.append(
        f"debounce window: first advert at the new table -> accepted advert p50 "
        f"{ms(all_windows, 50):.1f} ms max {ms(all_windows, 100):.1f} ms, accepted at advert "
        f"{dict(sorted(accepts.items()))} | policy {LAT_DEBOUNCE_READINGS} adverts over >= "
        f"{LAT_DEBOUNCE_SECONDS * 1000:.0f} ms, adverts every {ADVERT_INTERVAL * 1000:.0f} ms "
        f"(shipping default: 3 over >= 300 ms, so at 10 Hz a table counts ~300 ms after the "
        f"tracker lands, plus the latency above)"
    )
    parts = []
    for ph in phases:
        parts.append(
            f"{ph.name}: frames radio {len(ph.radio)}/{len(ph.radio) + ph.missing_radio} POST "
            f"{len(ph.post)}/{len(ph.post) + ph.missing_post}, POST statuses "
            f"{dict(ph.statuses)}, accepted advert = service's {ph.agreed}/{len(ph.radio)}, "
            f"p50 advert -> commit+publish {ms(ph.radio_pub, 50):.2f} ms -> frame "
            f"{ms(ph.radio, 50) - ms(ph.radio_pub, 50):.2f} ms, POST -> publish "
            f"{ms(ph.post_pub, 50):.2f} ms -> frame {ms(ph.post, 50) - ms(ph.post_pub, 50):.2f} "
            f"ms (HTTP response p50 {ms(ph.post_http, 50):.2f} ms), gateway process CPU "
            f"{ph.cpu / ph.wall:.0%} of a core"
            + (f", background {ph.background_sent:,} adverts" if ph.background_sent else "")
        )
    lines.append(
        f"latency check: {' | '.join(parts)} | client in a child process, {frames_seen} frames; "
        f"synchronous={settings.synchronous}"
    )
    return lines


# -- the WebSocket client child -------------------------------------------------------------


async def ws_client(url: str, token: str, max_seconds: float = 900.0) -> None:
    """Connect to /api/v2/websocket, then report every frame (with its receive time) and run
    the POSTs the parent asks for, until QUIT, stdin closing, or max_seconds."""
    out = sys.stdout

    def emit(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    headers = {"Authorization": f"Bearer {token}"}
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    deadline = mono() + max_seconds
    async with aiohttp.ClientSession() as session:
        ws = await session.ws_connect(
            f"{url.replace('http://', 'ws://')}/api/v2/websocket",
            headers=headers,
            heartbeat=None,
            max_msg_size=0,
        )
        first = await ws.receive(timeout=30)
        emit(f"READY {mono()!r} {json.loads(first.data)['type']}")

        async def frames() -> None:
            async for msg in ws:
                t = mono()  # as receive() returns, before parsing
                if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                d = json.loads(msg.data)
                emit(
                    f"FRAME {t!r} {d.get('seq', -1)} {d.get('type')} {d.get('name')} "
                    f"{d.get('locationName') or '-'}"
                )

        reader = asyncio.create_task(frames())
        try:
            while mono() < deadline:
                try:
                    line = await asyncio.wait_for(stdin.readline(), deadline - mono())
                except TimeoutError:
                    break
                parts = line.decode().split()
                if not parts or parts[0] == "QUIT":
                    break
                if parts[0] == "POST":
                    body = {"name": parts[1], "orderType": "ON_PREMISES", "locationName": parts[2]}
                    t0 = mono()
                    async with session.post(
                        f"{url}/api/v2/activeorders", json=body, headers=headers
                    ) as resp:
                        await resp.read()
                    emit(f"POSTED {t0!r} {mono()!r} {resp.status}")
        finally:
            await ws.close()
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


# -- main ---------------------------------------------------------------------------------


def machine(work: Path) -> str:
    fs = "?"
    best = ""
    for line in Path("/proc/mounts").read_text().splitlines():
        parts = line.split()
        if len(parts) > 2 and str(work).startswith(parts[1]) and len(parts[1]) > len(best):
            best, fs = parts[1], parts[2]
    return machine_line(f"data dir on {fs} ({best})")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--_wsclient"]:  # the WebSocket client's own process
        asyncio.run(ws_client(argv[1], argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer adverts and trials (~30 s)")
    parser.add_argument(
        "--trials",
        type=int,
        default=None,
        help="latency trials per phase (default 200, quick 40, at most 1000)",
    )
    parser.add_argument(
        "--background",
        type=float,
        default=float(RESTAURANT_RATE),
        help="adverts/s of other trackers in the second latency phase "
        f"(default {RESTAURANT_RATE}; 0 skips that phase)",
    )
    parser.add_argument("--only", choices=("throughput", "latency"), default=None)
    args = parser.parse_args(argv)
    trials = args.trials if args.trials is not None else (40 if args.quick else 200)
    trials = max(1, min(trials, 1000))
    background = max(0.0, min(args.background, 50_000.0))
    per_rep, rep_seconds = (40_000, 2.0) if args.quick else (200_000, 8.0)

    root = logging.getLogger()
    root.addHandler(LOG)
    root.setLevel(logging.WARNING)  # as GatewayProcess runs the gateway
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tablegate-radio-bench-"))
    print(machine(work), flush=True)

    async def run() -> None:
        if args.only in (None, "throughput"):
            for line in await figure_throughput(work, per_rep, rep_seconds):
                print(line, flush=True)
        if args.only in (None, "latency"):
            for line in await figure_latency(work, trials, background):
                print(line, flush=True)

    try:
        asyncio.run(run())
    finally:
        kill_children()
        shutil.rmtree(work, ignore_errors=True)
    print(LOG.summary())
    print(
        f"bench: done in {time.monotonic() - t0:.0f} s "
        f"(load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
