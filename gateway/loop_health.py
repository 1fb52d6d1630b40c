"""Event-loop health: measure how late the loop runs, and name what held it when it blocks.

Everything in the gateway shares one event loop, so a callback that runs too long (a worker
that never awaits, a CPU-heavy render, a blocking call) stalls every HTTP answer, feed and
printer at once. A task on the loop measures its own lateness; a small thread watches that
task's heartbeat and, while the loop is stuck, samples the loop thread's stack and current
task, so the log says *who* held the loop even when the block never ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Frames from these top-level folders name a culprit; asyncio's and aiohttp's own frames do not.
_OURS = ("gateway", "web", "radio", "printers")
_REPEAT_SECONDS = 10.0  # a block that goes on is logged again at this interval


@dataclass(slots=True)
class LoopStats:
    blocks: int = 0  # how many times the loop was late by more than the threshold
    worst: float = 0.0  # the longest lateness seen, seconds
    culprits: dict[str, int] = field(default_factory=dict)  # "task at where" -> blocks


@dataclass(slots=True)
class _Block:
    # task name -> {where it was seen -> samples}: the names say who, the places say what
    seen: dict[str, dict[str, int]] = field(default_factory=dict)
    logged_at: float = 0.0

    def note(self, task: str, where: str) -> None:
        places = self.seen.setdefault(task, {})
        places[where] = places.get(where, 0) + 1

    def describe(self) -> str:
        if not self.seen:
            return "unknown (between samples)"
        parts = []
        for task, places in sorted(self.seen.items(), key=lambda kv: -sum(kv[1].values())):
            top = max(places, key=places.__getitem__)
            more = f" and {len(places) - 1} other places" if len(places) > 1 else ""
            parts.append(f"{task}{top}{more}" if top else task)
        return "; ".join(parts)


class LoopWatch:
    """Start it on the loop to watch; `stop` it before the loop closes."""

    def __init__(self, threshold: float = 0.25, tick: float = 0.05) -> None:
        self.threshold = threshold
        self.tick = tick
        self.stats = LoopStats()
        self._beat = time.monotonic()
        self._block: _Block | None = None
        self._lock = threading.Lock()
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._beat = time.monotonic()
        self._task = asyncio.create_task(self._measure(), name="loop-watch")
        self._thread = threading.Thread(
            target=self._watch, args=(loop, threading.get_ident()), name="loop-watch", daemon=True
        )
        self._thread.start()

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 2.0)

    def current_block(self) -> str:
        """What holds the loop right now ("" when it runs freely)."""
        with self._lock:
            return self._block.describe() if self._block else ""

    # -- on the loop ---------------------------------------------------------------------

    async def _measure(self) -> None:
        while True:
            before = time.monotonic()
            self._beat = before
            await asyncio.sleep(self.tick)
            late = time.monotonic() - before - self.tick
            self.stats.worst = max(self.stats.worst, late)
            with self._lock:
                block, self._block = self._block, None
            if late > self.threshold:
                self._ended(late, block)

    def _ended(self, late: float, block: _Block | None) -> None:
        who = block.describe() if block else "unknown (between samples)"
        self.stats.blocks += 1
        for name in block.seen if block else ():
            self.stats.culprits[name] = self.stats.culprits.get(name, 0) + 1
        if len(self.stats.culprits) > 64:  # bounded: a name per distinct culprit
            self.stats.culprits.pop(next(iter(self.stats.culprits)))
        log.warning("event loop blocked for %.0f ms by %s", late * 1000, who)

    # -- on the watching thread -------------------------------------------------------------

    def _watch(self, loop: asyncio.AbstractEventLoop, loop_thread: int) -> None:
        interval = min(self.tick, self.threshold / 4)
        while not self._stop.wait(interval):
            if loop.is_closed():
                return
            stuck_for = time.monotonic() - self._beat - self.tick
            if stuck_for <= self.threshold / 2:
                continue
            task, where = _culprit(loop, loop_thread)
            now = time.monotonic()
            with self._lock:
                block = self._block
                if block is None:
                    block = self._block = _Block()
                block.note(task, where)
                # A block that never ends is never measured by the loop: say so from here.
                if stuck_for > self.threshold and now - block.logged_at >= _REPEAT_SECONDS:
                    block.logged_at = now
                    log.warning(
                        "event loop blocked for %.0f ms so far by %s",
                        stuck_for * 1000,
                        block.describe(),
                    )


def _culprit(loop: asyncio.AbstractEventLoop, loop_thread: int) -> tuple[str, str]:
    """(task name, " at <file>:<line> in <function>") for what the loop thread runs now."""
    try:
        task = asyncio.current_task(loop)
    except RuntimeError:
        task = None
    name = task.get_name() if task is not None else "a callback"
    frame = sys._current_frames().get(loop_thread)
    where = ""
    while frame is not None:
        path = Path(frame.f_code.co_filename)
        if any(part in _OURS for part in path.parts[-4:-1]) and path.name != "loop_health.py":
            where = f" at {'/'.join(path.parts[-2:])}:{frame.f_lineno} in {frame.f_code.co_name}"
            break
        frame = frame.f_back
    return name, where


class StopSignals:
    """SIGTERM/SIGINT that work even when the loop does not.

    asyncio's own signal handlers run *on* the loop, so a loop that never yields never hears
    SIGTERM. A Python-level handler runs between bytecodes of the main thread whatever the
    loop is doing: it asks the loop to stop, and a timer thread ends the process if the orderly
    stop has not finished within `timeout` (a supervisor then restarts a healthy process).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(
        self,
        stop: asyncio.Event,
        timeout: float,
        watch: LoopWatch | None = None,
        exit_code: int = 70,
    ) -> None:
        self._stop = stop
        self.timeout = timeout
        self._watch = watch
        self._exit_code = exit_code
        self._loop: asyncio.AbstractEventLoop | None = None
        self._requested = False
        self._done = threading.Event()
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        self._loop = asyncio.get_running_loop()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)

    def done(self) -> None:
        """The orderly stop finished: no forced exit."""
        self._done.set()
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self._requested:
            return
        self._requested = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        threading.Thread(
            target=self._deadline, args=(signum,), name="stop-deadline", daemon=True
        ).start()

    def _deadline(self, signum: int) -> None:
        if self._done.wait(self.timeout):
            return
        held = ""
        if self._watch is not None and self._watch.current_block():
            held = f"; the event loop is held by {self._watch.current_block()}"
        log.critical(
            "%s: the gateway did not stop within %.0f s%s; exiting now",
            signal.Signals(signum).name,
            self.timeout,
            held,
        )
        for handler in logging.getLogger().handlers:
            with contextlib.suppress(Exception):
                handler.flush()
        os._exit(self._exit_code)
