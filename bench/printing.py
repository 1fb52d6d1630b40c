"""Printing figures (issue 4), each next to a ceiling measured in the same run.

    .venv/bin/python bench/printing.py [--quick] [--only render|latency|throughput] [...]

Figures: render (80/58 mm, the gateway's print-order), submit -> first byte latency, throughput
to 1 and 3 printers, and a backlog drained on one printer; bench/README.md says what each line
measures and against what. The printers are asyncio servers in this process (127.0.0.1) that
print instantly; the service is built as the gateway builds it, on SQLite (synchronous=FULL) in
a temporary directory. Figures are printed, never asserted; everything is closed on the way out
and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.machine import machine_line  # noqa: E402
from gateway.compose.printer_link import TicketRenderer, make_link  # noqa: E402
from gateway.core.models import Order, OrderState  # noqa: E402
from gateway.core.ports import SystemClock  # noqa: E402
from gateway.core.printing import (  # noqa: E402
    Command,
    Device,
    PrintRequest,
    ProcessStatus,
    Report,
    ReportStatus,
    Source,
)
from gateway.services.printing.commands import check_data  # noqa: E402
from gateway.services.printing.service import DeviceSpec, PrintPolicy, PrintService  # noqa: E402
from gateway.store.reader import Reader  # noqa: E402
from gateway.store.writer import Writer  # noqa: E402
from printers import escpos_tokens  # noqa: E402
from printers.render import PAPER_58MM, PAPER_80MM, EscposJob, Paper  # noqa: E402
from printers.status import GS_R_PAPER  # noqa: E402
from printers.tickets import Item, KitchenTicket, render_kitchen_ticket, render_text  # noqa: E402
from printers.transport import TcpPrinter  # noqa: E402

POLICY = PrintPolicy(status_interval=3600.0, allow=frozenset({"127.0.0.1"}))
ORDER = Order(
    "5b0c6a3e-8d0f-4c71-9f0e-2a7f1c9d4e11",
    "A117",
    "ON_PREMISES",
    "12",
    OrderState.STARTED,
    1_700_000_000.0,
    1_700_000_000.0,
)
WAIT_LIMIT = 60.0  # seconds any one wait may take before the figure gives up


def ms(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a list of seconds, in ms."""
    s = sorted(values) or [float("nan")]
    return s[max(0, min(len(s) - 1, round(p / 100 * len(s) + 0.5) - 1))] * 1000


# -- 1. render ----------------------------------------------------------------------------------


def order_data(items: int = 24) -> dict[str, Any]:
    """A print-order request as a POS sends it: 24 items, one with a note, no answer asked."""
    return {
        "orderId": ORDER.uuid,
        "number": ORDER.name,
        "table": ORDER.location,
        "type": ORDER.order_type,
        "needsAnswer": False,
        "items": [
            {
                "title": f"Crème brûlée no. {i}" if i % 5 == 0 else f"Burger deluxe {i}",
                "quantity": i % 3 + 1,
                "notes": "sans oignons, sauce à part" if i == 11 else "",
                "station": "grill" if i % 4 == 1 else "",
            }
            for i in range(items)
        ],
    }


def order_request(device_id: str = "bench") -> PrintRequest:
    data, now = check_data(Command.PRINT_ORDER, order_data(), lambda _: True), time.time()
    return PrintRequest(
        "0" * 26 + "abcdef",
        device_id,
        now,
        now + 300,
        None,
        Command.PRINT_ORDER,
        data,
        ProcessStatus.QUEUEING,
        now,
        Report(False, 0, ReportStatus.ARCHIVED, None),
        "",
        ORDER.uuid,
    )


def render_line(label: str, paper: Paper, fn: Callable[[], bytes], n: int) -> str:
    job = fn()
    lines = escpos_tokens.to_text(job).splitlines()
    dummy_cls = type(EscposJob(paper)._p)  # EscposJob loads escpos with its pickle dir first

    def ceiling() -> bytes:  # python-escpos' bare `Dummy` writing the same lines, then a cut
        p = dummy_cls(profile=paper.profile)
        for line in lines:
            p.textln(line)
        p.cut()
        return bytes(p.output)

    for _ in range(min(n, 200)):  # warm caches (profiles, code page maps) and the CPU
        fn()
        ceiling()
    ours, bare = [], []
    for _ in range(n):  # interleaved: a noisy neighbour slows both sides alike
        start = time.perf_counter()
        fn()
        mid = time.perf_counter()
        ceiling()
        ours.append(mid - start)
        bare.append(time.perf_counter() - mid)
    med, cmed = statistics.median(ours), statistics.median(bare)
    printed = sum(1 for x in lines if x.strip())
    return (
        f"{label}: {printed} printed lines, {len(job)} bytes; median {med * 1e3:.3f} ms, "
        f"p99 {ms(ours, 99):.3f} ms | ceiling bare Dummy (same lines) median "
        f"{cmed * 1e3:.3f} ms, p99 {ms(bare, 99):.3f} ms | ratio ours/bare "
        f"{med / cmed:.2f} (target median <= 2 ms)"
    )


def figure_render(n: int) -> list[str]:
    items = [
        Item(
            f"Crème brûlée no. {i}" if i % 4 == 0 else f"Burger deluxe {i}",
            i % 3 + 1,
            "sans oignons, sauce à part" if i % 2 else "",
            "grill" if i % 3 else "",
        )
        for i in range(17)
    ]  # 31 printed lines
    ticket = KitchenTicket(
        order_number="A117",
        table="12",
        order_type="dine-in",
        created="12:04",
        items=items,
        order_id=ORDER.uuid,
    )
    renderer = TicketRenderer(ZoneInfo("UTC"))
    request = order_request()
    device = Device("bench", "bench", "tcp://127.0.0.1:9100", "", "80mm", Source.API, 0.0)
    return [
        render_line(
            "render 80mm", PAPER_80MM, lambda: render_kitchen_ticket(ticket, PAPER_80MM), n
        ),
        render_line(
            "render 58mm", PAPER_58MM, lambda: render_kitchen_ticket(ticket, PAPER_58MM), n
        ),
        render_line(
            "render gateway print-order 80mm (TicketRenderer, 24 items)",
            PAPER_80MM,
            lambda: renderer.render(request, device, ORDER, False),
            n,
        ),
    ]


# -- the fake printers and the service ----------------------------------------------------------

_QUERY = re.compile(rb"\x10\x04[\x01-\x04]|\x1dr[\x01\x31]")


class FastPrinter:
    """A printer that prints instantly: first-byte time of each job connection, ack times."""

    def __init__(self) -> None:
        self.port = self.status_connections = 0
        self.firsts: list[float] = []
        self.acks: list[float] = []
        self.transports: list[asyncio.Transport] = []
        self.arrived = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def first_byte(self, k: int) -> float:
        """The first-byte time of job connection k (0-based); TimeoutError after 5 s."""
        while len(self.firsts) <= k:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5.0)
        return self.firsts[k]


class _Conn(asyncio.Protocol):
    def __init__(self, printer: FastPrinter) -> None:
        self.printer, self.tail, self.seen = printer, b"", False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.printer.transports.append(self.transport)

    def data_received(self, data: bytes) -> None:
        now, printer = time.perf_counter(), self.printer
        if not self.seen:
            self.seen = True
            if data.startswith(b"\x10\x04"):
                printer.status_connections += 1
            else:
                printer.firsts.append(now)
                printer.arrived.set()
        buf = self.tail + data  # a command split over two reads is still seen once
        replies = bytearray()
        for m in _QUERY.finditer(buf):
            if m.end() > len(self.tail):
                is_status = buf[m.start()] == 0x10
                replies.append(0x12 if is_status else 0x00)  # online, paper ok / printed
                if not is_status:
                    printer.acks.append(now)
        self.tail = buf[-2:]
        if replies and self.transport is not None and not self.transport.is_closing():
            self.transport.write(bytes(replies))


@contextlib.asynccontextmanager
async def printers(n: int) -> AsyncIterator[list[FastPrinter]]:
    made = [FastPrinter() for _ in range(n)]
    try:
        for p in made:
            p.server = await asyncio.get_running_loop().create_server(
                lambda p=p: _Conn(p), "127.0.0.1", 0
            )  # type: ignore[misc]
            p.port = p.server.sockets[0].getsockname()[1]
        yield made
    finally:
        for p in made:
            if p.server is not None:
                p.server.close()
                for transport in p.transports:
                    transport.abort()
                await p.server.wait_closed()


@contextlib.asynccontextmanager
async def service(db: Path, fakes: list[FastPrinter]) -> AsyncIterator[PrintService]:
    """A PrintService as the gateway builds it (tests/support/print_harness.py), started."""
    writer, reader = Writer(db, synchronous="FULL"), Reader(db)
    await writer.open()
    await reader.open()
    svc = PrintService(
        writer,
        reader,
        SystemClock(),
        find_order={ORDER.uuid: ORDER}.get,
        links=lambda device: make_link(device, {}),
        renderer=TicketRenderer(ZoneInfo("UTC")),
        policy=POLICY,
    )
    try:
        await svc.load()
        await svc.start()
        for i, fake in enumerate(fakes):
            address = f"tcp://127.0.0.1:{fake.port}"
            await svc.add_device(DeviceSpec(f"p{i}", address, id=f"p{i}"), Source.API)
        await until(lambda: all(d.is_online for d in svc.devices.values()), 10.0)
        yield svc
    finally:
        await svc.close()
        await reader.close()
        await writer.close()


async def until(check: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(step)
    return True


async def errors_of(svc: PrintService) -> int:
    (n,) = await svc._reader.run(
        lambda c: c.execute(
            "SELECT count(*) FROM print_requests WHERE error IS NOT NULL"
        ).fetchone()
    )
    return int(n)


async def raw_job(port: int, payload: bytes) -> None:
    """The floor: one connection, the bytes and GS r 1, one byte back, close."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(payload + GS_R_PAPER)
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(1), 5.0)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


# -- 2. submit -> first byte ----------------------------------------------------------------


async def figure_latency(work: Path, samples: int) -> list[str]:
    data = order_data()
    # ours: submit() -> first byte; returned: submit() -> returned (the queueing row durable);
    # done: first byte -> archived (ack, close, commit); tcp, raw: the ceiling and the floor.
    ours, returned, done, tcp, raw = [], [], [], [], []
    failures = 0
    async with printers(1) as (fake,), service(work / "latency.db", [fake]) as svc:
        payload = svc.renderer.render(order_request("p0"), svc.devices["p0"], ORDER, False)
        printer = TcpPrinter("127.0.0.1", fake.port)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for i in range(samples + 10):  # the first 10 warm up; the three sides interleave
            try:
                await asyncio.sleep(0.003)  # the worker is back in its idle wait
                k = len(fake.firsts)
                t0 = time.perf_counter()
                r = await svc.submit("p0", Command.PRINT_ORDER, data)
                t1 = time.perf_counter()
                tf = await fake.first_byte(k)
                if not await until(lambda rid=r.id: rid not in svc.open, 10.0):  # type: ignore[misc]
                    raise TimeoutError
                t_done = time.perf_counter()
                await asyncio.sleep(0.003)
                t2 = time.perf_counter()
                if not (await printer.print_job(payload, ack_timeout=5.0)).printed:
                    raise TimeoutError
                tf2 = await fake.first_byte(k + 1)
                await asyncio.sleep(0.003)
                t3 = time.perf_counter()
                await raw_job(fake.port, payload)
                tf3 = await fake.first_byte(k + 2)
            except TimeoutError:
                failures += 1
                break  # a late connection would be taken for the next trial's
            if i >= 10:
                ours.append(tf - t0)
                returned.append(t1 - t0)
                done.append(t_done - tf)
                tcp.append(tf2 - t2)
                raw.append(tf3 - t3)
        cpu = (time.process_time() - cpu0) / (time.perf_counter() - wall0)
        errors, stats = await errors_of(svc), svc._writer.stats
    return [
        f"latency: submit -> first byte at the printer p50 {ms(ours, 50):.2f} ms p99 "
        f"{ms(ours, 99):.2f} ms max {ms(ours, 100):.2f} ms ({len(ours)} jobs, 24-item "
        f"print-order, {len(payload)} bytes) | ceiling TcpPrinter.print_job -> first byte p50 "
        f"{ms(tcp, 50):.2f} ms p99 {ms(tcp, 99):.2f} ms | ratio ceiling/ours p50 "
        f"{ms(tcp, 50) / ms(ours, 50):.2f} p99 {ms(tcp, 99) / ms(ours, 99):.2f} "
        f"(target p99 <= 20 ms)",
        f"latency floor: raw open_connection + write -> first byte p50 {ms(raw, 50):.2f} ms "
        f"p99 {ms(raw, 99):.2f} ms | split p50: submit() returned after {ms(returned, 50):.2f} "
        f"ms (queueing row durable), then {ms(ours, 50) - ms(returned, 50):.2f} ms to the "
        f"first byte (pick, render, sending-input row, connect); first byte -> archived "
        f"{ms(done, 50):.2f} ms",
        f"latency check: requests with an error {errors}, failed trials {failures} (the first "
        f"stops the figure), jobs the printer acknowledged {len(fake.acks)} (= 3 x "
        f"{samples + 10} trials: no resends), status connections {fake.status_connections} (the "
        f"start-up poll only), writer {stats.transactions} transactions for {stats.jobs} jobs, "
        f"process CPU {cpu:.0%} of a core",
    ]


# -- 3. throughput, 4. backlog ----------------------------------------------------------------


def tickets(n: int) -> list[str]:
    return [
        f"Table {i % 40 + 1} - ticket {i}\n2x espresso\n1x croissant, warm\n"
        f"1x orange juice (no ice)"
        for i in range(n)
    ]


@dataclass
class Drain:
    wall: float  # submit of the first -> the last archived
    returned: float  # submit of the first -> every submit() returned
    acks: list[float]  # ack times at the printer(s), this run's only
    check: str  # the figure's check line, after its label


async def drain(work: Path, name: str, n_dev: int, texts: list[str]) -> Drain:
    """Submit every text at once (round-robin over the printers); wait until all archived."""
    async with printers(n_dev) as fakes, service(work / f"{name}.db", fakes) as svc:
        for text in texts[:5]:  # warm the path (connections, statements, renderer)
            await svc.submit("p0", Command.PRINT_TEXT, text)
        await until(lambda: not svc.open, 10.0)
        stats = svc._writer.stats
        tx0, jobs0, acks0 = stats.transactions, stats.jobs, [len(f.acks) for f in fakes]
        cpu0, t0 = time.process_time(), time.perf_counter()
        reqs = await asyncio.gather(
            *(svc.submit(f"p{i % n_dev}", Command.PRINT_TEXT, text) for i, text in enumerate(texts))
        )
        returned = time.perf_counter() - t0
        # Only this run's requests are open (the warm-up ones were archived first).
        await until(lambda: not svc.open, WAIT_LIMIT, 0.002)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        left = len({r.id for r in reqs} & svc.open.keys())
        acks = sorted(t for f, a0 in zip(fakes, acks0, strict=True) for t in f.acks[a0:])
        return Drain(
            wall,
            returned,
            acks,
            (
                f"check: not archived {left}, errors {await errors_of(svc)}, jobs acknowledged by "
                f"the printer(s) {len(acks)} (= {len(texts)} requests: no resends) | writer "
                f"{stats.transactions - tx0} transactions for {stats.jobs - jobs0} writes | "
                f"process CPU {cpu / wall:.0%} of a core"
            ),
        )


async def bare_loops(n_dev: int, payloads: list[bytes], *, raw: bool) -> float:
    """The same jobs, pre-rendered, one bare sequential loop per printer, loops in parallel."""
    async with printers(n_dev) as fakes:

        async def loop(i: int) -> None:
            printer = TcpPrinter("127.0.0.1", fakes[i].port)
            for payload in payloads[i::n_dev]:
                await (
                    raw_job(fakes[i].port, payload)
                    if raw
                    else printer.print_job(payload, ack_timeout=5.0)
                )

        t0 = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(loop(i) for i in range(n_dev))), WAIT_LIMIT)
        return time.perf_counter() - t0


async def figure_throughput(work: Path, jobs: int) -> tuple[list[str], float]:
    """The lines, and the one-printer req/s for the backlog figure."""
    texts = tickets(jobs)
    payloads = [render_text(t, PAPER_80MM) for t in texts]
    out, one = [], 0.0
    for n_dev in (1, 3):
        d = await drain(work, f"throughput-{n_dev}", n_dev, texts)
        bare = await bare_loops(n_dev, payloads, raw=False)
        floor = await bare_loops(n_dev, payloads, raw=True)
        label = "throughput 1 printer" if n_dev == 1 else f"throughput {n_dev} printers"
        rps, bare_rps = jobs / d.wall, jobs / bare
        one = one or rps
        out.append(
            f"{label}: {jobs} print-text requests submitted at once -> all archived in "
            f"{d.wall:.2f} s = {rps:.0f} req/s ({d.wall / jobs * 1000:.2f} ms a job; every "
            f"submit() returned after {d.returned * 1000:.0f} ms) | ceiling bare "
            f"TcpPrinter.print_job loop{'s' if n_dev > 1 else ''} {bare_rps:.0f} jobs/s | ratio "
            f"ours/bare {rps / bare_rps:.2f} | floor raw socket {jobs / floor:.0f} jobs/s (no "
            f"target; a busy kitchen sends ~1 job/s a printer)"
        )
        out.append(f"{label} {d.check}")
    return out, one


async def figure_backlog(work: Path, n: int, jobs: int, reference: float) -> list[str]:
    d = await drain(work, "backlog", 1, tickets(n))
    rps = n / d.wall
    # ms a job at the printer while > n/2 requests are still open, then while < n/2.
    half = n // 2
    full = n >= 4 and len(d.acks) == n
    early = (d.acks[half] - d.acks[0]) / half * 1000 if full else float("nan")
    late = (d.acks[-1] - d.acks[half]) / (n - 1 - half) * 1000 if full else float("nan")
    return [
        f"backlog: {n:,} requests on 1 printer -> all archived in {d.wall:.2f} s = {rps:.0f} "
        f"req/s (every submit() returned after {d.returned * 1000:.0f} ms) | reference: "
        f"throughput 1 printer ({jobs} requests) {reference:.0f} req/s | ratio "
        f"{rps / reference:.2f} | ms a job at the printer with > {half:,} open {early:.2f}, "
        f"with < {half:,} open {late:.2f} (target: flat, ratio ~1)",
        f"backlog {d.check}",
    ]


def show(lines: list[str]) -> None:
    print(*lines, sep="\n", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples (~15 s)")
    parser.add_argument("--renders", type=int, help="per render figure (1000, quick 200)")
    parser.add_argument("--samples", type=int, help="latency trials (200, quick 40)")
    parser.add_argument("--jobs", type=int, help="throughput requests (500, quick 120)")
    parser.add_argument("--backlog", type=int, help="backlog requests (2000, quick 300; 0 skips)")
    parser.add_argument(
        "--only",
        choices=("render", "latency", "throughput"),
        help="throughput includes the backlog",
    )
    args = parser.parse_args(argv)
    q = args.quick
    renders = max(10, min(args.renders or (200 if q else 1000), 100_000))
    samples = max(5, min(args.samples or (40 if q else 200), 2000))
    jobs = max(3, min(args.jobs or (120 if q else 500), 5000))
    backlog = min(args.backlog if args.backlog is not None else 300 if q else 2000, 20_000)

    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="tablegate-print-bench-"))
    show([machine_line(f"SQLite in {work} (synchronous=FULL)")])

    async def run() -> None:
        if args.only in (None, "latency"):
            show(await figure_latency(work, samples))
        if args.only in (None, "throughput"):
            lines, one = await figure_throughput(work, jobs)
            show(lines)
            if backlog > 0:
                show(await figure_backlog(work, backlog, jobs, one))

    try:
        if args.only in (None, "render"):
            show(figure_render(renders))
        asyncio.run(run())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    show(
        [
            f"bench: done in {time.monotonic() - t0:.0f} s "
            f"(load after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])})"
        ]
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
