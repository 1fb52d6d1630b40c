"""Render time of a 30-line kitchen ticket, next to a ceiling measured in the same run.

    .venv/bin/python bench/printing_render.py [--renders N]

render     `printers.tickets.render_kitchen_ticket` (80 mm and 58 mm): wrapping, text cleaning,
           code page selection, styles, native QR, cut. No logo (it is cached after the first
           render, so it would only flatter the figure).
ceiling    a bare python-escpos `Dummy` with the same profile writing the same lines with
           `textln()` and `cut()`: no layout, no sanitising, MagicEncode on every character.
           A ratio below 1 means the layout costs less than what it saves over plain escpos.

Target: median <= 2 ms for 80 mm. The paper itself takes ~0.6 s to print 30 lines at 250 mm/s
and ~1.5 s to send at 9600 baud, so render time is a CPU budget for the box, not a latency
the kitchen sees. Figures are printed, never asserted (the machine is shared).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from printers import escpos_tokens
from printers.render import PAPER_58MM, PAPER_80MM, EscposJob, Paper
from printers.tickets import Item, KitchenTicket, render_kitchen_ticket


def thirty_line_ticket() -> KitchenTicket:
    items = [
        Item(f"Crème brûlée no. {i}" if i % 4 == 0 else f"Burger deluxe {i}", i % 3 + 1,
             "sans oignons, sauce à part" if i % 2 else "", "grill" if i % 3 else "")
        for i in range(17)
    ]  # fmt: skip
    return KitchenTicket(
        order_number="A117",
        table="12",
        order_type="dine-in",
        created="12:04",
        items=items,
        order_id="5b0c6a3e-8d0f-4c71-9f0e-2a7f1c9d4e11",
    )


def paired_timings(
    fn: Callable[[], object], ceiling: Callable[[], object], n: int
) -> tuple[list[float], list[float]]:
    # Interleaved so a noisy neighbour on the shared box slows both sides alike.
    for _ in range(min(n, 200)):  # warm caches (profiles, code page maps) and the CPU
        fn()
        ceiling()
    ours: list[float] = []
    bare_: list[float] = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        mid = time.perf_counter()
        ceiling()
        ours.append(mid - start)
        bare_.append(time.perf_counter() - mid)
    return ours, bare_


def p99(samples: list[float]) -> float:
    return sorted(samples)[min(len(samples) - 1, int(len(samples) * 0.99))]


def bare(paper: Paper, lines: list[str]) -> Callable[[], bytes]:
    job = EscposJob(paper)  # loads escpos with the configured pickle dir first
    dummy_cls = type(job._p)

    def run() -> bytes:
        p = dummy_cls(profile=paper.profile)
        for line in lines:
            p.textln(line)
        p.cut()
        return bytes(p.output)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=1000)
    args = parser.parse_args()
    n = max(10, min(args.renders, 100_000))
    ticket = thirty_line_ticket()
    for label, paper in (("80mm", PAPER_80MM), ("58mm", PAPER_58MM)):
        out = render_kitchen_ticket(ticket, paper)
        lines = escpos_tokens.to_text(out).splitlines()
        printed = [line for line in lines if line.strip()]
        ours, ceiling = paired_timings(
            lambda p=paper: render_kitchen_ticket(ticket, p),  # type: ignore[misc]
            bare(paper, lines),
            n,
        )
        med, cmed = statistics.median(ours), statistics.median(ceiling)
        print(
            f"render {label}: {len(printed)} printed lines, {len(out)} bytes "
            f"({len(out) * 10 / 9600:.2f} s at 9600 baud); "
            f"median {med * 1e3:.3f} ms, p99 {p99(ours) * 1e3:.3f} ms; "
            f"ceiling (bare Dummy) median {cmed * 1e3:.3f} ms, p99 {p99(ceiling) * 1e3:.3f} ms; "
            f"ratio {med / cmed:.2f} (target median <= 2 ms)"
        )
    start = time.perf_counter()
    for _ in range(200):
        escpos_tokens.tokenize(render_kitchen_ticket(ticket))
    print(f"render+tokenize 80mm: mean {(time.perf_counter() - start) / 200 * 1e3:.3f} ms")


if __name__ == "__main__":
    main()
