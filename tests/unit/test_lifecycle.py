"""The Supervisor: steps stop in reverse, a crashed task comes back, a stuck stage is named and
skipped rather than holding the stop forever."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from gateway.lifecycle import Supervisor


def recording(name: str, log: list[str]) -> AsyncIterator[str]:
    async def step() -> AsyncIterator[str]:
        log.append(f"start {name}")
        yield name
        log.append(f"stop {name}")

    return step()


async def test_steps_stop_in_reverse_and_up_to_a_mark() -> None:
    sup, seen = Supervisor(), []
    assert await sup.enter("store", recording("store", seen)) == "store"
    await sup.enter("printing", recording("printing", seen))
    mark = sup.mark()
    await sup.enter("mdns", recording("mdns", seen))
    await sup.stop(to=mark)
    assert seen[-1] == "stop mdns" and sup.stages == ["store", "printing"]
    await sup.stop()
    assert seen == [
        "start store",
        "start printing",
        "start mdns",
        "stop mdns",
        "stop printing",
        "stop store",
    ]
    await sup.stop()  # twice is harmless
    assert sup.stages == []


@pytest.mark.allow_logged_errors
async def test_a_crashing_task_is_restarted_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    sup = Supervisor(backoff=(0.01, 0.04))
    runs = 0
    settled = asyncio.Event()

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs < 4:
            raise OSError(f"disk hiccup {runs}")
        settled.set()
        await asyncio.Event().wait()  # then runs until stopped

    async def step() -> AsyncIterator[None]:
        sup.spawn("token-usage", flaky)
        yield

    with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
        await sup.enter("tokens", step())
        await asyncio.wait_for(settled.wait(), 5)
    status = sup.status()["token-usage"]
    assert runs == 4 and status.restarts == 3 and status.state == "running"
    assert status.last_error == "OSError: disk hiccup 3"
    crashes = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crashes) == 3 and "token-usage" in crashes[0].getMessage()
    assert crashes[0].levelno == logging.ERROR and crashes[0].exc_info is not None
    assert all(r.levelno == logging.WARNING and not r.exc_info for r in crashes[1:])
    await sup.stop()
    assert sup.status()["token-usage"].state == "stopped"


async def test_a_task_that_returns_is_not_restarted() -> None:
    sup, runs = Supervisor(backoff=(0.01, 0.01)), []

    async def once() -> None:
        runs.append(1)

    async def step() -> AsyncIterator[None]:
        sup.spawn("bt-adapter", once)
        yield

    await sup.enter("radio", step())
    for _ in range(50):
        if sup.status()["bt-adapter"].state == "done":
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.05)
    assert runs == [1] and sup.status()["bt-adapter"].state == "done"
    await sup.stop()


async def test_a_stage_that_overruns_is_logged_by_name_and_the_stop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup, seen = Supervisor(stage_timeout=0.2), []
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # a loop that swallows its cancellation, as buggy code does

    async def stuck_printing() -> AsyncIterator[None]:
        sup.spawn("print-sweeper", stubborn)
        yield
        seen.append("printing teardown began")
        await asyncio.sleep(3600)

    await sup.enter("store", recording("store", seen))
    await sup.enter("printing", stuck_printing())
    with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
        await asyncio.wait_for(sup.stop(), 10)
    overruns = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert len(overruns) == 1
    assert "printing" in overruns[0] and "print-sweeper" in overruns[0]
    assert seen[-1] == "stop store"  # the next stage still ran
    release.set()  # the test's own loop must end
    await asyncio.sleep(0.01)


async def test_a_stuck_teardown_is_named_too(caplog: pytest.LogCaptureFixture) -> None:
    sup, seen = Supervisor(stage_timeout=0.1), []

    async def slow_radio() -> AsyncIterator[None]:
        yield
        await asyncio.sleep(3600)

    await sup.enter("store", recording("store", seen))
    await sup.enter("radio", slow_radio())
    with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
        await asyncio.wait_for(sup.stop(), 10)
    assert "teardown of radio" in caplog.text and seen[-1] == "stop store"


async def test_a_step_that_fails_to_start_is_not_stopped() -> None:
    sup, seen = Supervisor(), []

    async def broken() -> AsyncIterator[None]:
        sup.spawn("never", asyncio.Event().wait)
        raise OSError("port taken")
        yield  # pragma: no cover

    await sup.enter("store", recording("store", seen))
    with pytest.raises(OSError):
        await sup.enter("http", broken())
    assert sup.stages == ["store"]
    await sup.stop()
    assert seen == ["start store", "stop store"]
    assert sup.status()["never"].state == "stopped"


async def test_spawn_outside_a_step_is_refused() -> None:
    with pytest.raises(RuntimeError):
        Supervisor().spawn("orphan", asyncio.Event().wait)
