"""The composition's steps run in the order of ARCHITECTURE.md §7 under the Supervisor, and a
stop stage that hangs is named and skipped so the store still closes."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from pathlib import Path
from typing import Any

import pytest

from gateway.app import build
from gateway.core.errors import Unavailable
from tests.conftest import make_settings


async def test_steps_start_with_the_app_and_stop_in_reverse(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    gw = await build(make_settings(tmp_path / "d"))
    assert gw.supervisor.stages == ["store", "integrations"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        gw.core.pager = gw.core.pager  # type: ignore[misc]
    client = await aiohttp_client(gw.app)
    assert gw.supervisor.stages == ["store", "integrations", "upkeep", "outbox", "printing"]
    assert gw.supervisor.status()["db-guard"].state == "running"
    # Without serving (tests), the core's periodic loops wait for the test to step them.
    assert "token-usage" not in gw.supervisor.status()
    await client.close()
    assert gw.supervisor.stages == []
    assert gw.supervisor.status()["db-guard"].state == "stopped"
    with pytest.raises(Unavailable):  # the store closed: "the gateway is stopping"
        await gw.writer.run(lambda conn: conn.execute("SELECT 1"))


async def test_a_hanging_printer_stop_does_not_keep_the_store_open(
    tmp_path: Path, aiohttp_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    gw = await build(make_settings(tmp_path / "d", stop_stage_timeout=0.3))
    client = await aiohttp_client(gw.app)
    never = asyncio.Event()

    async def stuck() -> None:  # a printer worker that never lets go
        await never.wait()

    gw.printing.close = stuck  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, logger="gateway.lifecycle"):
        await asyncio.wait_for(client.close(), 20)
    overrun = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    assert len(overrun) == 1 and "printing" in overrun[0]
    assert gw.supervisor.stages == []  # the outbox and the store were still stopped
    with pytest.raises(Unavailable):  # the store closed: "the gateway is stopping"
        await gw.writer.run(lambda conn: conn.execute("SELECT 1"))
