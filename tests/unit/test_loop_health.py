"""The loop watchdog names what blocks the event loop, and SIGTERM works when the loop does not."""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from gateway.loop_health import LoopWatch


def _hog(seconds: float) -> None:
    time.sleep(seconds)  # stands in for any code that holds the loop without awaiting


async def test_a_block_is_logged_with_the_task_and_place_that_held_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    watch = LoopWatch(threshold=0.1, tick=0.02)
    await watch.start()
    try:

        async def culprit() -> None:
            _hog(0.4)

        with caplog.at_level(logging.WARNING, logger="gateway.loop_health"):
            await asyncio.create_task(culprit(), name="greedy-worker")
            await asyncio.sleep(0.1)  # the watch task measures the lateness after the block
    finally:
        await watch.stop()
    lines = [r.getMessage() for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert lines, "the block was not reported"
    assert "greedy-worker" in lines[-1]
    assert watch.stats.blocks == 1 and watch.stats.worst >= 0.3
    assert watch.stats.culprits == {"greedy-worker": 1}


async def test_short_pauses_are_not_reported(caplog: pytest.LogCaptureFixture) -> None:
    watch = LoopWatch(threshold=0.25, tick=0.02)
    await watch.start()
    try:
        with caplog.at_level(logging.WARNING, logger="gateway.loop_health"):
            for _ in range(5):
                _hog(0.03)
                await asyncio.sleep(0.03)
    finally:
        await watch.stop()
    assert not [r for r in caplog.records if "event loop blocked" in r.getMessage()]
    assert watch.stats.blocks == 0


async def test_a_block_that_does_not_end_is_reported_while_it_lasts(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The loop cannot report its own endless block: the watching thread does."""
    watch = LoopWatch(threshold=0.1, tick=0.02)
    await watch.start()
    seen_during: list[str] = []
    try:

        async def endless() -> None:
            end = time.monotonic() + 0.6
            while time.monotonic() < end:  # "endless" for the test's purpose
                if not seen_during and watch.current_block():
                    seen_during.append(watch.current_block())

        with caplog.at_level(logging.WARNING, logger="gateway.loop_health"):
            await asyncio.create_task(endless(), name="spinner")
            await asyncio.sleep(0.05)
    finally:
        await watch.stop()
    assert seen_during and "spinner" in seen_during[0]
    so_far = [r.getMessage() for r in caplog.records if "so far" in r.getMessage()]
    assert so_far and "spinner" in so_far[0]


SPINNING_GATEWAY = textwrap.dedent("""
    import asyncio, logging, sys
    from gateway.loop_health import LoopWatch, StopSignals

    async def main() -> None:
        stop = asyncio.Event()
        watch = LoopWatch(threshold=0.1, tick=0.02)
        signals = StopSignals(stop, timeout=1.0, watch=watch)
        signals.install()
        await watch.start()
        async def spin() -> None:
            print("spinning", flush=True)
            while True:
                pass
        asyncio.create_task(spin(), name="runaway-worker")
        await stop.wait()

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())
""")


def test_sigterm_ends_a_process_whose_loop_never_yields() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SPINNING_GATEWAY],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "spinning"
        time.sleep(0.3)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = proc.stderr.read() if proc.stderr else ""
    assert code == 70, stderr
    assert took < 10  # the 1 s stop timeout, not a hang
    assert "did not stop within 1 s" in stderr and "runaway-worker" in stderr
