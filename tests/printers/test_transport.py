"""TcpPrinter against the in-repo fake printer: every outcome, and exactly-once printing."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from printers.status import PrinterState
from printers.transport import JobOutcome, PrinterUnreachable, TcpPrinter
from tests.printers.fake_printer import NEAR_END, FakePrinter, free_port

JOB = b"\x1b@Table 12\n2x Margherita\n1x Tiramisu\n\x1dV\x00"
FAST_ACK = 0.3


@pytest.fixture
async def fake() -> AsyncIterator[FakePrinter]:
    async with FakePrinter() as printer:
        yield printer


def printer_for(fake: FakePrinter, **kwargs: float) -> TcpPrinter:
    return TcpPrinter("127.0.0.1", fake.port, **kwargs)


async def test_status_ready(fake: FakePrinter) -> None:
    status = await printer_for(fake).query_status()
    assert status.state is PrinterState.READY
    assert status.online is True and status.paper_out is False


async def test_status_paper_out_and_near_end(fake: FakePrinter) -> None:
    fake.set_paper_out(True)
    assert (await printer_for(fake).query_status()).state is PrinterState.PAPER_OUT
    fake.set_paper_out(False)
    fake.status_replies = dict(NEAR_END)
    assert (await printer_for(fake).query_status()).state is PrinterState.PAPER_NEAR_END


async def test_silent_printer_is_unknown_quickly(fake: FakePrinter) -> None:
    fake.silent = True
    started = time.monotonic()
    status = await printer_for(fake, status_timeout=0.2).query_status()
    assert status.state is PrinterState.UNKNOWN
    assert status.online is None
    assert time.monotonic() - started < 1.0


async def test_garbage_replies_are_unknown_never_an_exception(fake: FakePrinter) -> None:
    fake.garbage = b"\xff\xa5"
    printer = printer_for(fake, status_timeout=0.2)
    assert (await printer.query_status()).state is PrinterState.UNKNOWN
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.status.state is PrinterState.UNKNOWN
    assert result.pending is not None
    await result.pending.close()


async def test_stale_asb_packets_are_skipped(fake: FakePrinter) -> None:
    fake.asb = True  # a packet is pushed on every connect, before any query
    printer = printer_for(fake)
    assert (await printer.query_status()).state is PrinterState.READY
    result = await printer.print_job(JOB, ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED


async def test_job_is_printed_after_processing(fake: FakePrinter) -> None:
    fake.processing_delay = 0.2
    started = time.monotonic()
    result = await printer_for(fake).print_job(JOB, ack_timeout=2.0)
    assert time.monotonic() - started >= 0.2  # the answer waited for the processing
    assert result.outcome is JobOutcome.PRINTED and result.printed
    assert result.bytes_delivered == len(JOB)
    assert result.status.state is PrinterState.READY
    assert result.pending is None
    assert fake.printed == [JOB]


async def test_slow_processing_is_unconfirmed_then_printed(fake: FakePrinter) -> None:
    fake.processing_delay = 0.5
    result = await printer_for(fake).print_job(JOB, ack_timeout=0.1)
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.status.state is PrinterState.READY
    assert result.pending is not None
    async with result.pending as pending:
        later = await pending.wait(2.0)
    assert later.outcome is JobOutcome.PRINTED
    assert fake.printed == [JOB]


async def test_paper_out_holds_the_job_until_the_roll_is_changed(fake: FakePrinter) -> None:
    fake.set_paper_out(True)
    result = await printer_for(fake).print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.HELD
    assert result.status.state is PrinterState.PAPER_OUT
    assert result.bytes_delivered == len(JOB)
    assert result.pending is not None
    async with result.pending as pending:
        again = await pending.wait(FAST_ACK)
        assert again.outcome is JobOutcome.HELD and again.pending is pending
        assert (await pending.query_status()).state is PrinterState.PAPER_OUT
        assert fake.printed == []
        fake.set_paper_out(False)
        done = await pending.wait(2.0)
    assert done.outcome is JobOutcome.PRINTED
    assert fake.jobs == [JOB] and fake.printed == [JOB]  # sent once, printed once


async def test_held_job_prints_even_if_the_caller_lets_go(fake: FakePrinter) -> None:
    """Why a HELD job must not be resent: the printer keeps the data."""
    fake.set_paper_out(True)
    result = await printer_for(fake).print_job(JOB, ack_timeout=FAST_ACK)
    assert result.pending is not None
    await result.pending.close()
    fake.set_paper_out(False)
    status = await printer_for(fake).query_status()  # a round trip lets the fake catch up
    assert status.state is PrinterState.READY
    for _ in range(50):
        if fake.printed:
            break
        await printer_for(fake).query_status()
    assert fake.printed == [JOB]


async def test_silent_printer_in_paper_out_is_unconfirmed(fake: FakePrinter) -> None:
    fake.set_paper_out(True)
    fake.silent = True
    result = await printer_for(fake, status_timeout=0.2).print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.status.state is PrinterState.UNKNOWN
    assert result.pending is not None
    await result.pending.close()


async def test_asb_push_during_a_held_job_is_not_an_ack(fake: FakePrinter) -> None:
    fake.asb = True  # paper-out packets at connect and while held look like nothing to wait on
    fake.set_paper_out(True)
    result = await printer_for(fake).print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.HELD
    assert result.pending is not None
    async with result.pending as pending:
        fake.set_paper_out(False)  # pushes an ASB packet, then releases the answer
        done = await pending.wait(2.0)
    assert done.outcome is JobOutcome.PRINTED
    assert fake.printed == [JOB]


async def test_disconnect_mid_job_is_interrupted_and_retry_prints_once(fake: FakePrinter) -> None:
    fake.disconnect_after = 10
    printer = printer_for(fake)
    result = await printer.print_job(JOB, ack_timeout=2.0)
    assert result.outcome is JobOutcome.INTERRUPTED
    assert not result.printed
    assert result.status.state is PrinterState.UNKNOWN
    assert 0 <= result.bytes_delivered <= len(JOB)
    assert fake.received == [JOB[:10]] and fake.printed == []
    fake.disconnect_after = None
    retry = await printer.print_job(JOB, ack_timeout=2.0)
    assert retry.outcome is JobOutcome.PRINTED
    assert fake.printed == [JOB]


async def test_disconnect_during_a_large_write_records_bytes_delivered(fake: FakePrinter) -> None:
    fake.disconnect_after = 1000
    big = b"x" * (32 * 1024 * 1024)
    result = await printer_for(fake).print_job(big, ack_timeout=2.0)
    assert result.outcome is JobOutcome.INTERRUPTED
    assert 0 < result.bytes_delivered < len(big)
    assert fake.printed == []


async def test_printer_that_stops_reading_interrupts_the_write(fake: FakePrinter) -> None:
    fake.reading.clear()
    big = b"x" * (32 * 1024 * 1024)
    started = time.monotonic()
    result = await printer_for(fake, write_timeout=0.3).print_job(big, ack_timeout=2.0)
    assert result.outcome is JobOutcome.INTERRUPTED
    assert result.bytes_delivered < len(big)
    assert time.monotonic() - started < 2.0


async def test_connect_timeout_is_unreachable() -> None:
    # A listener whose accept queue is full drops new SYNs, so connecting hangs.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        with socket.create_connection(listener.getsockname(), timeout=1):
            printer = TcpPrinter("127.0.0.1", listener.getsockname()[1], connect_timeout=0.3)
            started = time.monotonic()
            result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
            assert result.outcome is JobOutcome.UNREACHABLE
            assert time.monotonic() - started < 1.5
            with pytest.raises(PrinterUnreachable):
                await printer.query_status()


async def test_unreachable_printer() -> None:
    printer = TcpPrinter("127.0.0.1", free_port(), connect_timeout=0.5)
    result = await printer.print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNREACHABLE
    assert result.bytes_delivered == 0
    assert result.status.state is PrinterState.UNKNOWN
    with pytest.raises(PrinterUnreachable):
        await printer.query_status()


async def test_printer_that_never_answers_gs_r(fake: FakePrinter) -> None:
    fake.gs_r_reply = b""
    result = await printer_for(fake).print_job(JOB, ack_timeout=FAST_ACK)
    assert result.outcome is JobOutcome.UNCONFIRMED
    assert result.status.state is PrinterState.READY
    assert result.pending is not None
    await result.pending.close()
    with pytest.raises(Exception, match="closed"):
        await result.pending.wait(0.1)


async def _against_noise(noise: bytes) -> tuple[PrinterState, JobOutcome]:
    async with FakePrinter() as fake:
        fake.garbage = noise
        printer = printer_for(fake, status_timeout=0.05, drain_window=0.005)
        status = await printer.query_status()
        result = await printer.print_job(JOB, ack_timeout=0.05)
        if result.pending is not None:
            await result.pending.close()
        return status.state, result.outcome


@given(st.binary(min_size=1, max_size=12))
@settings(max_examples=25, deadline=None)
def test_any_reply_bytes_give_a_result_not_an_exception(noise: bytes) -> None:
    state, outcome = asyncio.run(_against_noise(noise))
    assert state in PrinterState
    assert outcome in {JobOutcome.PRINTED, JobOutcome.HELD, JobOutcome.UNCONFIRMED}


async def test_cancelled_job_leaves_no_connection_open(fake: FakePrinter) -> None:
    fake.set_paper_out(True)
    task = asyncio.create_task(printer_for(fake).print_job(JOB, ack_timeout=5.0))
    for _ in range(100):
        if fake.jobs:
            break
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(100):
        if not fake.open_connections:
            break
        await asyncio.sleep(0.01)
    assert fake.open_connections == 0
