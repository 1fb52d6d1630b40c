"""SerialPrinter and LpPrinter on real pty pairs, with a small printer on the master side.

The transport opens the slave by path, as it would /dev/ttyUSB0 or /dev/usb/lp0; the fake reads
the master through the event loop, answers `DLE EOT` at once and `GS r 1` only while it has
paper. Each test runs against both transports.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from printers.serial_transport import LpPrinter, SerialPrinter
from printers.status import PrinterState
from printers.transport import JobOutcome, PrinterUnreachable
from tests.printers.fake_printer import HEALTHY, PAPER_OUT

JOB = b"\x1b@Table 7\n1x Carbonara\n\x1dV\x00"
FAST_ACK = 0.3
_COMMAND = re.compile(rb"\x10\x04[\x00-\xff]|\x1d\x72[\x00-\xff]")

Printer = SerialPrinter | LpPrinter


class PtyPrinter:
    """An ESC/POS printer behind the master end of a pty."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # no echo, no CR/LF mangling: a byte pipe like a serial line
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.status_replies = dict(HEALTHY)
        self.silent = False
        self.garbage: bytes | None = None
        self.close_after: int | None = None  # close the master after this many data bytes
        self.received = bytearray()
        self.printed: list[bytes] = []
        self.paper_out = False
        self.master_open = True
        self._pending = b""
        self._job = bytearray()
        self._waiting: list[bytes] = []  # job data per GS r, held while paper is out
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)

    def _readable(self) -> None:
        try:
            self._pending += os.read(self.master, 65536)
        except OSError:
            return
        # A command split across reads waits for its last byte.
        keep = (
            2
            if self._pending[-2:] in (b"\x10\x04", b"\x1d\x72")
            else (1 if self._pending[-1:] in (b"\x10", b"\x1d") else 0)
        )
        buf, self._pending = (
            self._pending[: len(self._pending) - keep],
            self._pending[len(self._pending) - keep :],
        )
        pos = 0
        for match in _COMMAND.finditer(buf):
            self._data(buf[pos : match.start()])
            if not self.master_open:
                return
            command = match.group()
            if command[0] == 0x10:
                if not self.silent:
                    self._reply(self.status_replies.get(command[2], b""))
            else:
                self._waiting.append(bytes(self._job))
                self._job.clear()
            pos = match.end()
        self._data(buf[pos:])
        self._process()

    def _data(self, data: bytes) -> None:
        if not self.master_open:
            return
        self.received += data
        self._job += data
        if self.close_after is not None and len(self.received) >= self.close_after:
            self.close_master()

    def _reply(self, data: bytes) -> None:
        if self.master_open and data:
            os.write(self.master, self.garbage if self.garbage is not None else data)

    def _process(self) -> None:
        while self._waiting and not self.paper_out and self.master_open:
            job = self._waiting.pop(0)
            if job:
                self.printed.append(job)
            if not self.silent:
                self._reply(b"\x00")

    def set_paper_out(self, out: bool) -> None:
        self.paper_out = out
        self.status_replies = dict(PAPER_OUT if out else HEALTHY)
        self._process()

    def close_master(self) -> None:
        if self.master_open:
            self.master_open = False
            self._loop.remove_reader(self.master)
            os.close(self.master)

    def close(self) -> None:
        self.close_master()
        os.close(self.slave)


@pytest.fixture
async def pty_printer() -> AsyncIterator[PtyPrinter]:
    fake = PtyPrinter()
    yield fake
    fake.close()


MakePrinter = Callable[[str], Printer]


@pytest.fixture(params=["serial", "lp"])
def make(request: pytest.FixtureRequest) -> MakePrinter:
    def build(path: str) -> Printer:
        if request.param == "serial":
            return SerialPrinter(path, 115200, status_timeout=0.2, drain_window=0.01)
        return LpPrinter(path, status_timeout=0.2, drain_window=0.01)

    return build


async def test_status_ready_then_paper_out(pty_printer: PtyPrinter, make: MakePrinter) -> None:
    printer = make(pty_printer.path)
    status = await printer.query_status()
    assert status.state is PrinterState.READY and status.online is True
    pty_printer.set_paper_out(True)
    assert (await printer.query_status()).state is PrinterState.PAPER_OUT


async def test_job_is_printed(pty_printer: PtyPrinter, make: MakePrinter) -> None:
    result = await make(pty_printer.path).print_job(JOB, ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED and result.printed
    assert result.bytes_delivered == len(JOB)
    assert result.status.state is PrinterState.READY
    assert result.pending is None
    assert pty_printer.printed == [JOB]


async def test_paper_out_holds_the_job_then_prints_it_once(
    pty_printer: PtyPrinter, make: MakePrinter
) -> None:
    printer = make(pty_printer.path)
    pty_printer.set_paper_out(True)
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.HELD
    assert result.status.state is PrinterState.PAPER_OUT
    assert result.bytes_delivered == len(JOB)
    assert result.pending is not None
    async with result.pending as pending:
        again = await pending.wait(FAST_ACK)
        assert again.outcome is JobOutcome.HELD and again.pending is pending
        assert (await pending.query_status()).state is PrinterState.PAPER_OUT
        # The port belongs to the held job: a status question goes over it, a new job waits.
        assert (await printer.query_status()).state is PrinterState.PAPER_OUT
        busy = await printer.print_job(b"second", ack_timeout=FAST_ACK)
        assert busy.outcome is JobOutcome.UNREACHABLE and "busy" in busy.detail
        assert pty_printer.printed == []
        pty_printer.set_paper_out(False)
        done = await pending.wait(2.0)
    assert done.outcome is JobOutcome.PRINTED
    assert pty_printer.printed == [JOB]  # sent once, printed once
    assert (await printer.print_job(b"next", ack_timeout=2.0)).outcome is JobOutcome.PRINTED
    assert pty_printer.printed == [JOB, b"next"]


async def test_silent_device_is_unconfirmed_quickly(
    pty_printer: PtyPrinter, make: MakePrinter
) -> None:
    pty_printer.silent = True
    printer = make(pty_printer.path)
    started = time.monotonic()
    assert (await printer.query_status()).state is PrinterState.UNKNOWN
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert time.monotonic() - started < 2.0
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.status.state is PrinterState.UNKNOWN
    assert result.bytes_delivered == len(JOB)
    assert result.pending is not None
    await result.pending.close()
    with pytest.raises(Exception, match="closed"):
        await result.pending.wait(0.1)


async def test_garbage_replies_are_unknown(pty_printer: PtyPrinter, make: MakePrinter) -> None:
    pty_printer.garbage = b"\xff\xa5"
    printer = make(pty_printer.path)
    assert (await printer.query_status()).state is PrinterState.UNKNOWN
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.pending is not None
    await result.pending.close()


async def test_device_gone_mid_job_is_interrupted(
    pty_printer: PtyPrinter, make: MakePrinter
) -> None:
    pty_printer.close_after = 10  # like a USB-serial adapter pulled out while printing
    result = await make(pty_printer.path).print_job(JOB, ack_timeout=2.0)
    assert result.outcome is JobOutcome.INTERRUPTED
    assert not result.printed
    assert result.status.state is PrinterState.UNKNOWN
    assert 0 <= result.bytes_delivered <= len(JOB)
    assert pty_printer.printed == []


async def test_missing_device_is_unreachable(tmp_path: Path, make: MakePrinter) -> None:
    printer = make(str(tmp_path / "ttyUSB9"))
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNREACHABLE
    assert result.bytes_delivered == 0
    assert result.status.state is PrinterState.UNKNOWN
    with pytest.raises(PrinterUnreachable):
        await printer.query_status()


async def test_concurrent_calls_are_serialised(pty_printer: PtyPrinter, make: MakePrinter) -> None:
    printer = make(pty_printer.path)
    jobs = [b"first job\n", b"second job\n", b"third job\n"]
    status = asyncio.ensure_future(printer.query_status())
    results = await asyncio.gather(*(printer.print_job(job, ack_timeout=2.0) for job in jobs))
    assert (await status).state is PrinterState.READY
    assert all(r.outcome is JobOutcome.PRINTED for r in results)
    assert pty_printer.printed == jobs  # one at a time: never interleaved


async def test_cancelled_job_releases_the_port(pty_printer: PtyPrinter, make: MakePrinter) -> None:
    printer = make(pty_printer.path)
    pty_printer.set_paper_out(True)
    task = asyncio.create_task(printer.print_job(JOB, ack_timeout=5.0))
    for _ in range(200):
        if pty_printer.received:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pty_printer.set_paper_out(False)  # the printer kept the data and prints it now
    # The stale GS r answer left in the line is drained, not taken for the next job's.
    result = await printer.print_job(b"after\n", ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED
    assert pty_printer.printed == [JOB, b"after\n"]


async def test_a_device_that_comes_and_goes_is_logged_once(
    tmp_path: Path, pty_printer: PtyPrinter, make: MakePrinter, caplog: pytest.LogCaptureFixture
) -> None:
    plug = tmp_path / "ttyUSB0"  # a symlink to the pty stands in for udev's device node
    printer = make(str(plug))
    with caplog.at_level(logging.DEBUG, logger="printers.serial_transport"):
        for _ in range(3):
            result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
            assert result.outcome is JobOutcome.UNREACHABLE
            plug.symlink_to(pty_printer.path)
            assert (await printer.print_job(JOB, ack_timeout=2.0)).printed
            plug.unlink()
    notable = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert [level for level, _ in notable] == [logging.WARNING, logging.INFO]
    assert "failed" in notable[0][1] and "is back" in notable[1][1]
    assert len(pty_printer.printed) == 3
