"""The print queue against emupos, an ESC/POS emulator nobody here wrote (second lane).

Skips with the reason when Python 3.13 (which emupos needs) is not available.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gateway.core.printing import Command, DeviceStatus, ProcessStatus
from tests.printers import test_emupos_lane as lane
from tests.printers.test_emupos_lane import Control, Emulator
from tests.support.print_harness import harness

# The emulator fixtures of the transport lane, shared rather than duplicated.
emupos_venv = lane.emupos_venv
emulator = lane.emulator
control = lane.control

pytestmark = pytest.mark.slow


async def test_paper_out_during_a_job_holds_it_and_prints_once(
    tmp_path: Path, emulator: Emulator, control: Control
) -> None:
    async with harness(tmp_path / "db") as h:
        await h.add_tcp("front", emulator.port)
        await h.until(lambda: h.svc.devices["front"].is_online)
        await control.fault("paper-out", active=True)
        r = await h.svc.submit("front", Command.PRINT_TEXT, "Held by emupos")
        await h.until(lambda: h.svc.open[r.id].process_status is ProcessStatus.WAITING_ACK)
        await h.until(lambda: h.svc.devices["front"].status is DeviceStatus.OUT_OF_PAPER)
        await asyncio.sleep(0.5)
        assert await control.receipts() == []
        await control.fault("paper-out", active=False)
        done = await h.finished("front", r.id)
        assert done.error is None and done.attempts == 1
        receipts = await control.wait_receipts(1)
        assert len(receipts) == 1
        assert "Held by emupos" in await control.text(receipts[0]["id"])


async def test_earliest_deadline_first_on_emupos(
    tmp_path: Path, emulator: Emulator, control: Control
) -> None:
    async with harness(tmp_path / "db", start=False) as h:
        await h.add_tcp("front", emulator.port)
        now = time.time()
        for n in (3, 1, 4, 0, 2):
            await h.svc.submit("front", Command.PRINT_TEXT, f"slot {n}", deadline=now + 60 + n)
        await h.svc.start()
        receipts = await control.wait_receipts(5)
        for _ in range(100):
            if len(receipts) == 5:
                break
            await asyncio.sleep(0.05)
            receipts = await control.receipts()
        # emupos lists newest first; completed_at orders them as printed.
        receipts.sort(key=lambda x: x["completed_at"])
        texts = [await control.text(x["id"]) for x in receipts]
        assert [t.split("slot ")[1][0] for t in texts] == ["0", "1", "2", "3", "4"]


async def test_accept_flow_on_emupos(tmp_path: Path, emulator: Emulator, control: Control) -> None:
    async with harness(tmp_path / "db") as h:
        await h.add_tcp("front", emulator.port)
        r = await h.svc.submit(
            "front",
            Command.PRINT_ORDER,
            {"number": "12", "table": "7", "items": [{"title": "Caffè corretto", "quantity": 2}]},
        )
        await h.until(lambda: h.svc.open[r.id].process_status is ProcessStatus.WAITING_OUTPUT)
        done = await h.svc.respond("front", r.id, True, 10)
        assert done.output_data == {"accepted": True, "time": 10}
        receipts = await control.wait_receipts(1)
        text = await control.text(receipts[0]["id"])
        assert "#12" in text and "Caffè corretto" in text
