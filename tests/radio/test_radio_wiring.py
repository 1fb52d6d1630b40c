"""How the composition root starts the radio: never invented activity without the simulator,
and a missing Bluetooth adapter is a warning, not a failed start."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from gateway.app import build
from gateway.compose.radio import radio as radio_step
from gateway.compose.radio import start_radio
from tests.conftest import make_settings


async def test_no_simulation_without_demo(tmp_path: Any) -> None:
    settings = make_settings(tmp_path / "d", bluetooth=False)
    gw = await build(settings)
    mark = gw.supervisor.mark()
    radio = await gw.supervisor.enter("radio", radio_step(gw.core, gw.supervisor))
    try:
        await asyncio.sleep(0.5)
        assert radio.simulator is None and radio.links == []
        assert gw.ctx.orders.active() == [] and gw.trackers.list() == []
        assert [r.kind for r in gw.ctx.receivers()] == ["local-adapter"]
    finally:
        await gw.supervisor.stop(to=mark)
        await gw.writer.close()
        await gw.reader.close()


async def test_missing_adapter_is_a_warning(
    tmp_path: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bus with nobody on it: what a box without bluetoothd looks like to bleak.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    settings = make_settings(tmp_path / "d")
    gw = await build(settings)
    mark = gw.supervisor.mark()
    with caplog.at_level(logging.WARNING):
        await gw.supervisor.enter("radio", radio_step(gw.core, gw.supervisor))
    try:
        assert "no Bluetooth" in caplog.text
        assert gw.ctx.receivers()[0].status == "no-adapter"
        assert gw.pager.available() is False
    finally:
        await gw.supervisor.stop(to=mark)
        await gw.writer.close()
        await gw.reader.close()


async def test_demo_pairs_the_simulated_trackers(tmp_path: Any) -> None:
    settings = make_settings(tmp_path / "d", simulator=True, simulator_seed=1)
    gw = await build(settings)
    mark = gw.supervisor.mark()
    await gw.supervisor.enter("radio", radio_step(gw.core, gw.supervisor))
    try:
        assert len(gw.trackers.list()) == 12
        kinds = sorted(r.kind for r in gw.ctx.receivers())
        assert kinds == ["local-adapter", "pad", "pad", "pad", "simulator"]
        assert gw.pager.available() is True
    finally:
        await gw.supervisor.stop(to=mark)
        await gw.writer.close()
        await gw.reader.close()


async def test_the_scanner_keeps_looking_for_the_adapter_until_the_radio_stops(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The retry is the scanner's own (radio.backoff); the composition root only starts it.
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp_path}/no-bus")
    settings = make_settings(tmp_path / "d")
    gw = await build(settings)
    radio = await start_radio(gw.core, gw.supervisor)
    try:
        assert radio.scanner.status == "no-adapter"
        assert "BlueZ not reachable" in str(radio.scanner.problem)
        retrying = [t for t in asyncio.all_tasks() if t.get_name() == "radio-scanner"]
        assert len(retrying) == 1 and not retrying[0].done()
    finally:
        await radio.stop()
        await gw.writer.close()
        await gw.reader.close()
    assert retrying[0].done() and radio.scanner.status == "stopped"
