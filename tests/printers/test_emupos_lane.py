"""TcpPrinter against emupos, a virtual Epson TM-T20III that the project did not write.

emupos needs Python 3.13, so it lives in its own venv (cached across runs) and runs as a
subprocess; its control API switches faults and returns the rendered receipts.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from printers.status import PrinterState
from printers.transport import JobOutcome, TcpPrinter
from tests.printers.fake_printer import free_port

pytestmark = pytest.mark.slow

EMUPOS = "emupos==0.4.0"
VENV = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "tablegate" / "emupos-venv"
DEVICE = "front"
CONFIG = """\
schema: 1
api: {{ host: 127.0.0.1, port: {api} }}
devices:
  - id: {device}
    type: printer
    profile: epson-tm-t20iii
    connections:
      - tcp: {{ host: 127.0.0.1, port: {port} }}
    receipts_dir: ./receipts
"""
CUT = b"\x1dV\x00"


def _python313() -> str | None:
    candidates: list[str] = []
    if shutil.which("pyenv"):
        found = subprocess.run(
            ["pyenv", "which", "python"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYENV_VERSION": "3.13.0"},
            timeout=30,
            check=False,
        )
        if found.returncode == 0:
            candidates.append(found.stdout.strip())
    if path := shutil.which("python3.13"):
        candidates.append(path)
    for candidate in candidates:
        probe = subprocess.run(
            [candidate, "-c", "import sys; print(sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 13)":
            return candidate
    return None


def _installed(venv: Path) -> bool:
    python = venv / "bin" / "python"
    if not python.exists():
        return False
    probe = subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('emupos'))"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return probe.stdout.strip() == EMUPOS.split("==")[1]


def _emupos_venv() -> Path:
    """The cached venv with emupos, made on first use; skips with the reason when it cannot be."""
    python = _python313()
    if python is None:
        pytest.skip(
            "emupos needs Python 3.13: neither `PYENV_VERSION=3.13.0 pyenv which python` "
            "nor python3.13 on PATH gave one"
        )
    VENV.parent.mkdir(parents=True, exist_ok=True)
    # Two test runs at once must not build the same venv.
    with open(VENV.parent / "emupos-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not _installed(VENV):
            shutil.rmtree(VENV, ignore_errors=True)
            steps = [
                [python, "-m", "venv", str(VENV)],
                [str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", EMUPOS],
            ]
            for step in steps:
                done = subprocess.run(
                    step, capture_output=True, text=True, timeout=600, check=False
                )
                if done.returncode != 0:
                    shutil.rmtree(VENV, ignore_errors=True)
                    pytest.skip(
                        f"could not install {EMUPOS} into {VENV}: "
                        f"{(done.stderr or done.stdout).strip()[-500:]}"
                    )
    return VENV


@dataclass
class Emulator:
    port: int
    api: str
    receipts_dir: Path


def _healthy(api: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def _run_emulator(venv: Path, workdir: Path) -> Iterator[Emulator]:
    # Ports are picked free and then bound by emupos, so another process can win the race:
    # a failed start is retried with new ports.
    for _attempt in range(3):
        port, api_port = free_port(), free_port()
        if port == api_port:
            continue
        (workdir / "emupos.yaml").write_text(
            CONFIG.format(api=api_port, port=port, device=DEVICE), encoding="utf-8"
        )
        log = (workdir / "emupos.log").open("wb")
        process = subprocess.Popen(
            [str(venv / "bin" / "emupos"), "run", "--config", "emupos.yaml"],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
        )
        api = f"http://127.0.0.1:{api_port}/api/v1"
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and process.poll() is None:
                if _healthy(api):
                    yield Emulator(port, api, workdir / "receipts")
                    return
                time.sleep(0.1)
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            log.close()
    output = (workdir / "emupos.log").read_text(errors="replace")[-1000:]
    pytest.fail(f"emupos did not start: {output}")


@pytest.fixture(scope="module")
def emupos_venv() -> Path:
    return _emupos_venv()


@pytest.fixture
def emulator(emupos_venv: Path, tmp_path: Path) -> Iterator[Emulator]:
    with _run_emulator(emupos_venv, tmp_path) as running:
        yield running


@pytest.fixture
async def control(emulator: Emulator) -> AsyncIterator[Control]:
    async with aiohttp.ClientSession() as session:
        yield Control(session, f"{emulator.api}/devices/{DEVICE}")


class Control:
    def __init__(self, session: aiohttp.ClientSession, base: str) -> None:
        self.session = session
        self.base = base

    async def fault(self, name: str, *, active: bool) -> None:
        method = "PUT" if active else "DELETE"
        async with self.session.request(method, f"{self.base}/faults/{name}") as response:
            assert response.status == 204, await response.text()

    async def receipts(self) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.base}/receipts") as response:
            assert response.status == 200
            found: list[dict[str, Any]] = await response.json()
            return found

    async def text(self, receipt_id: str) -> str:
        async with self.session.get(f"{self.base}/receipts/{receipt_id}/text") as response:
            assert response.status == 200
            return await response.text()

    async def wait_receipts(self, count: int) -> list[dict[str, Any]]:
        """The receipt is stored just after the reply is written: poll briefly for it."""
        for _ in range(40):
            receipts = await self.receipts()
            if len(receipts) >= count:
                return receipts
            await asyncio.sleep(0.05)
        return await self.receipts()


def ticket(text: str) -> bytes:
    return b"\x1b@" + text.encode("ascii") + b"\n" + CUT


async def test_status_and_acknowledged_print(emulator: Emulator, control: Control) -> None:
    printer = TcpPrinter("127.0.0.1", emulator.port)
    assert (await printer.query_status()).state is PrinterState.READY

    result = await printer.print_job(ticket("Table 7: 2x Margherita"), ack_timeout=5.0)
    assert result.outcome is JobOutcome.PRINTED, result
    receipts = await control.wait_receipts(1)
    assert len(receipts) == 1
    assert "Table 7: 2x Margherita" in await control.text(receipts[0]["id"])


async def test_paper_out_holds_then_prints_once(emulator: Emulator, control: Control) -> None:
    printer = TcpPrinter("127.0.0.1", emulator.port)
    await control.fault("paper-out", active=True)
    status = await printer.query_status()
    assert status.state is PrinterState.PAPER_OUT
    assert status.raw == b"\x1a\x32\x12\x7e"  # the reference's paper-out bytes

    result = await printer.print_job(ticket("Table 9: 1x Tiramisu"), ack_timeout=0.5)
    assert result.outcome is JobOutcome.HELD, result
    assert result.status.state is PrinterState.PAPER_OUT
    assert result.pending is not None
    async with result.pending as pending:
        assert await control.receipts() == []
        await control.fault("paper-out", active=False)
        done = await pending.wait(5.0)
    assert done.outcome is JobOutcome.PRINTED, done

    receipts = await control.wait_receipts(1)
    await asyncio.sleep(0.3)  # a second copy, if there were one, would have landed by now
    receipts = await control.receipts()
    assert len(receipts) == 1
    assert "Table 9: 1x Tiramisu" in await control.text(receipts[0]["id"])
    assert (await printer.query_status()).state is PrinterState.READY
