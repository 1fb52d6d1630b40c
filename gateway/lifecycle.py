"""The process lifecycle (ARCHITECTURE.md §7): named background tasks and a staged stop.

A compose step is an async generator, the shape of aiohttp's cleanup contexts: it sets up,
yields what it made, and tears down after the yield. The Supervisor enters steps in order and
stops them in reverse, one stage per step, each with a timeout: a stage that overruns is logged
with the names of what still runs, cancelled, and the stop goes on to the next stage (a stuck
printer must not keep the store from its checkpoint). Teardown code after the `yield` runs only
when the Supervisor resumes the step, never when a forgotten step is garbage collected.

Background loops are spawned under a name, owned by the step that spawned them (stopped with
it, before its teardown), restarted after a crash with a capped backoff, and listed by
`status()` for health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
Step = AsyncIterator[T]  # set up, yield one value, tear down

FIRST_BACKOFF = 1.0  # seconds before the first restart of a crashed task
MAX_BACKOFF = 60.0  # the cap: a task that keeps crashing is retried once a minute
STEADY_AFTER = 60.0  # a run this long without a crash resets the backoff
CANCEL_GRACE = 1.0  # after a stage's timeout: how long a cancelled leftover is waited for


@dataclass(slots=True)
class TaskStatus:
    name: str
    state: str = "running"  # running | restarting | done | failed | stopped
    restarts: int = 0
    last_error: str = ""


@dataclass(slots=True)
class _Stage:
    name: str
    step: AsyncIterator[object]
    tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)


class Supervisor:
    def __init__(
        self,
        *,
        stage_timeout: float = 4.0,
        backoff: tuple[float, float] = (FIRST_BACKOFF, MAX_BACKOFF),
    ) -> None:
        self.stage_timeout = stage_timeout
        self.backoff = backoff
        self._stages: list[_Stage] = []
        self._status: dict[str, TaskStatus] = {}

    # -- steps -----------------------------------------------------------------------------

    async def enter(self, name: str, step: AsyncIterator[T]) -> T:
        """Run `step` up to its `yield`; its teardown runs at `stop`. A step that fails to set
        up is not entered (its tasks are cancelled); the caller stops what came before."""
        stage = _Stage(name, step)
        self._stages.append(stage)  # spawns during set-up belong to this step
        try:
            value = await anext(step)
        except BaseException:
            self._stages.remove(stage)
            await _cancel(list(stage.tasks.values()), CANCEL_GRACE)
            for task_name in stage.tasks:
                self._status[task_name].state = "stopped"
            raise
        return value

    def mark(self) -> int:
        """How many steps are entered: `stop(to=mark)` stops only the ones entered after."""
        return len(self._stages)

    @property
    def stages(self) -> list[str]:
        return [s.name for s in self._stages]

    async def stop(self, to: int = 0) -> None:
        """Stop the entered steps in reverse down to `to`, each within `stage_timeout`."""
        while len(self._stages) > to:
            stage = self._stages.pop()
            await self._stop_stage(stage)

    async def _stop_stage(self, stage: _Stage) -> None:
        deadline = time.monotonic() + self.stage_timeout
        for task in stage.tasks.values():
            task.cancel()
        loops = [t for t in stage.tasks.values() if not t.done()]
        if loops:
            await asyncio.wait(loops, timeout=self.stage_timeout)
        teardown = asyncio.create_task(_finish(stage), name=f"teardown of {stage.name}")
        left = max(0.0, deadline - time.monotonic())
        running = [t for t in loops if not t.done()] + [teardown]
        await asyncio.wait(running, timeout=left)
        still = [t for t in running if not t.done()]
        if still:
            log.warning(
                "stop: %s still running after %.1f s: %s; going on without it",
                stage.name,
                self.stage_timeout,
                ", ".join(t.get_name() for t in still),
            )
            await _cancel(still, CANCEL_GRACE)
        elif (failure := teardown.exception()) is not None:
            log.error("stop: %s failed to tear down", stage.name, exc_info=failure)
        for name in stage.tasks:
            self._status[name].state = "stopped"

    # -- background tasks ------------------------------------------------------------------

    def spawn(self, name: str, run: Callable[[], Awaitable[None]], *, restart: bool = True) -> None:
        """Run `run()` as a task named `name`, owned by the step being entered (else the last
        one entered) and stopped with it. With `restart`, a crash is logged and `run()` is
        called again after a backoff that doubles up to the cap."""
        if not self._stages:
            raise RuntimeError(f"spawn({name!r}) outside any step: nothing would stop it")
        stage = self._stages[-1]
        old = stage.tasks.get(name)
        if old is not None and not old.done():
            raise ValueError(f"a task named {name!r} is already running")
        status = self._status[name] = TaskStatus(name)
        stage.tasks[name] = asyncio.create_task(self._supervise(status, run, restart), name=name)

    def status(self) -> dict[str, TaskStatus]:
        return dict(self._status)

    async def _supervise(
        self, status: TaskStatus, run: Callable[[], Awaitable[None]], restart: bool
    ) -> None:
        delay, cap = self.backoff
        while True:
            began = time.monotonic()
            status.state = "running"
            try:
                await run()
            except asyncio.CancelledError:
                status.state = "stopped"
                raise
            except Exception as exc:
                status.last_error = f"{type(exc).__name__}: {exc}"[:200]
                if time.monotonic() - began >= STEADY_AFTER:
                    delay = self.backoff[0]  # a rare crash is not a crash loop
                if not restart:
                    status.state = "failed"
                    log.error("background task %s crashed", status.name, exc_info=exc)
                    return
                status.restarts += 1
                status.state = "restarting"
                # The traceback once; a task crashing in a loop then says one line per crash.
                log.log(
                    logging.ERROR if status.restarts == 1 else logging.WARNING,
                    "background task %s crashed (%s); restart %d in %.1f s",
                    status.name,
                    status.last_error,
                    status.restarts,
                    delay,
                    exc_info=exc if status.restarts == 1 else None,
                )
                await asyncio.sleep(delay)
                delay = min(cap, delay * 2)
                continue
            status.state = "done"
            return


async def _finish(stage: _Stage) -> None:
    try:
        await anext(stage.step)
    except StopAsyncIteration:
        return
    raise RuntimeError(f"step {stage.name} yielded twice")


async def _cancel(tasks: list[asyncio.Task[None]], grace: float) -> None:
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=grace)
