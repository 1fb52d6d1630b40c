"""Raw ESC/POS over TCP (port 9100), with an acknowledgement and an honest status.

Bytes accepted by a socket prove nothing (a printer switched off mid-job loses them), so a job
ends with `GS r 1`: the printer answers only after processing everything before it, and that
answer is the acknowledgement. While paper is out it does not answer until the fault clears and
keeps the data, so a job without an answer is HELD (not failed, not to be resent) and its
connection is handed to the caller to wait on. Real-time `DLE EOT` status requests are answered
even then, on the same connection, which matters because many printers accept one connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from printers.status import (
    DLE_EOT_ALL,
    GS_R_PAPER,
    UNKNOWN,
    AsbReply,
    DleEotReply,
    Garbage,
    GsRReply,
    PaperStatus,
    PrinterError,
    PrinterStatus,
    ReplyDecoder,
    StatusParseError,
    parse_dle_eot,
)

__all__ = [
    "JobOutcome",
    "JobResult",
    "PendingAck",
    "PrinterError",
    "PrinterUnreachable",
    "Resolve",
    "TcpPrinter",
]

_CHUNK = 16 * 1024  # bytes per write, so `bytes_delivered` is known when the link drops
_READ_SIZE = 4096
_DRAIN_READS = 64  # bound on reads while draining stale input


# (host, port) -> the IP literals a connection may dial; raises OSError when there are none.
# The application decides which addresses a printer may have (e.g. never loopback).
Resolve = Callable[[str, int], Awaitable[Sequence[str]]]


class PrinterUnreachable(PrinterError):
    """No TCP connection could be made (refused, unroutable, or connect timed out)."""


class JobOutcome(StrEnum):
    PRINTED = "printed"  # the printer answered GS r 1: it processed the whole job
    HELD = "held"  # no answer and the printer reports a blocking fault: it keeps the data
    UNCONFIRMED = "unconfirmed"  # no answer and no blocking fault reported (silent, garbage)
    INTERRUPTED = "interrupted"  # the connection broke mid-job: resend with the same request id
    UNREACHABLE = "unreachable"  # nothing was sent


@dataclass(frozen=True, slots=True, eq=False)
class JobResult:
    outcome: JobOutcome
    # Bytes the OS accepted; the printer may have fewer. Never read as "printed".
    bytes_delivered: int
    status: PrinterStatus
    # HELD / UNCONFIRMED: the open connection, still waiting for the acknowledgement. The caller
    # owns it and must `close()` it (or `wait()` until PRINTED / INTERRUPTED).
    pending: PendingAck | None = None
    detail: str = ""

    @property
    def printed(self) -> bool:
        return self.outcome is JobOutcome.PRINTED


class _Disconnected(Exception):
    pass


@dataclass(slots=True)
class _Link:
    """One connection and what has been read from it so far."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    decoder: ReplyDecoder = field(default_factory=ReplyDecoder)
    ack: PaperStatus | None = None
    eot: bytearray = field(default_factory=bytearray)
    garbage: int = 0
    closed: bool = False

    async def pump(self, window: float) -> int:
        """Read once (or time out) and record what arrived; raises _Disconnected on EOF."""
        try:
            data = await asyncio.wait_for(self.reader.read(_READ_SIZE), max(window, 0.0))
        except TimeoutError:
            return 0
        except OSError as exc:
            raise _Disconnected(str(exc)) from exc
        if not data:
            raise _Disconnected("connection closed by printer")
        for reply in self.decoder.feed(data):
            match reply:
                case GsRReply(paper):
                    self.ack = paper if self.ack is None else self.ack
                case DleEotReply(byte):
                    self.eot.append(byte)
                case Garbage():
                    self.garbage += 1
                case AsbReply():
                    pass  # unasked; the status query asks explicitly instead
        return len(data)

    async def drain_input(self, window: float) -> None:
        """Consume whatever sits in the receive buffer so old replies are not read as new."""
        for _ in range(_DRAIN_READS):
            if not await self.pump(window):
                return

    async def write(self, data: bytes, limit: float) -> None:
        if self.writer.is_closing():
            raise _Disconnected("connection closed")
        self.writer.write(data)
        try:
            await asyncio.wait_for(self.writer.drain(), limit)
        except OSError as exc:
            raise _Disconnected(str(exc)) from exc

    async def query_status(self, limit: float, drain_window: float) -> PrinterStatus:
        await self.drain_input(drain_window)
        self.eot.clear()
        garbage = self.garbage
        await self.write(DLE_EOT_ALL, limit)
        deadline = time.monotonic() + limit
        while len(self.eot) < 4 and self.garbage == garbage:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            await self.pump(remaining)
        if self.garbage != garbage:
            return UNKNOWN  # a stream with noise in it cannot be aligned to the 4 replies
        try:
            return parse_dle_eot(bytes(self.eot[:4]))
        except StatusParseError:
            return UNKNOWN

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(self.writer.wait_closed(), 1.0)

    def abort(self) -> None:
        self.closed = True
        self.writer.transport.abort()


class PendingAck:
    """A job whose bytes the printer has, but whose `GS r 1` answer has not come yet.

    Do not resend the job while this is open: a printer holding data during paper-out prints
    it when the roll is changed, and a resend would print the food twice.
    """

    def __init__(self, link: _Link, printer: TcpPrinter, bytes_delivered: int) -> None:
        self._link = link
        self._printer = printer
        self.bytes_delivered = bytes_delivered

    async def wait(self, ack_timeout: float) -> JobResult:
        """Wait up to `ack_timeout` s for the acknowledgement; a new result either way."""
        return await self._printer._await_ack(self._link, self.bytes_delivered, ack_timeout, self)

    async def query_status(self) -> PrinterStatus:
        """Status over this connection (`DLE EOT` is answered even while data is held)."""
        try:
            return await self._link.query_status(
                self._printer.status_timeout, self._printer.drain_window
            )
        except (_Disconnected, TimeoutError):
            return UNKNOWN

    @property
    def closed(self) -> bool:
        return self._link.closed

    async def close(self) -> None:
        await self._link.close()

    async def __aenter__(self) -> PendingAck:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class TcpPrinter:
    """A raw ESC/POS printer on TCP. One call at a time: many printers take one connection.

    With `resolve`, the host is looked up by it and only the addresses it returns are dialled,
    as IP literals, so nothing resolves the name a second time (no rebinding in between).
    """

    def __init__(
        self,
        host: str,
        port: int = 9100,
        *,
        connect_timeout: float = 2.0,
        write_timeout: float = 5.0,
        status_timeout: float = 0.5,
        drain_window: float = 0.02,
        resolve: Resolve | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.resolve = resolve
        self.connect_timeout = connect_timeout
        self.write_timeout = write_timeout
        self.status_timeout = status_timeout
        self.drain_window = drain_window

    def __repr__(self) -> str:
        return f"TcpPrinter({self.host!r}, {self.port})"

    async def _connect(self) -> _Link:
        try:
            reader, writer = await asyncio.wait_for(self._open(), self.connect_timeout)
        except (OSError, TimeoutError) as exc:
            raise PrinterUnreachable(f"{self.host}:{self.port}: {exc!r}") from exc
        return _Link(reader, writer)

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.resolve is None:
            return await asyncio.open_connection(self.host, self.port)
        addresses = await self.resolve(self.host, self.port)
        error: OSError = OSError(f"{self.host} has no address")
        for address in addresses:  # in the resolver's order, as getaddrinfo's would be tried
            try:
                return await asyncio.open_connection(address, self.port)
            except OSError as exc:
                error = exc
        raise error

    async def query_status(self) -> PrinterStatus:
        """Status from `DLE EOT 1..4`; UNKNOWN when the printer is silent or talks nonsense.

        Raises PrinterUnreachable when no connection can be made.
        """
        link = await self._connect()
        try:
            return await link.query_status(self.status_timeout, self.drain_window)
        except (_Disconnected, TimeoutError):
            return UNKNOWN
        finally:
            await link.close()

    async def print_job(self, data: bytes, *, ack_timeout: float = 10.0) -> JobResult:
        """Send one job and wait up to `ack_timeout` s for the printer to have processed it."""
        try:
            link = await self._connect()
        except PrinterUnreachable as exc:
            return JobResult(JobOutcome.UNREACHABLE, 0, UNKNOWN, detail=str(exc))
        delivered = 0
        try:
            # No drain here: a fresh connection holds no stale replies, and an unasked ASB
            # packet is told apart by the decoder; waiting `drain_window` would cost every job
            # ~20 ms before its first byte.
            payload = memoryview(data + GS_R_PAPER)
            for start in range(0, len(payload), _CHUNK):
                chunk = payload[start : start + _CHUNK]
                await link.write(bytes(chunk), self.write_timeout)
                delivered = min(start + len(chunk), len(data))
        except (_Disconnected, TimeoutError) as exc:
            # A printer that stops reading (buffer full while faulted) cannot be asked either.
            link.abort()
            return JobResult(
                JobOutcome.INTERRUPTED, delivered, UNKNOWN, detail=str(exc) or "write timed out"
            )
        except asyncio.CancelledError:
            link.abort()
            raise
        return await self._await_ack(link, delivered, ack_timeout, None)

    async def _await_ack(
        self, link: _Link, delivered: int, ack_timeout: float, pending: PendingAck | None
    ) -> JobResult:
        if link.closed:
            raise PrinterError("this pending job's connection is closed")
        deadline = time.monotonic() + ack_timeout
        try:
            while link.ack is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await link.pump(remaining)
            if link.ack is None:
                status = await link.query_status(self.status_timeout, self.drain_window)
        except (_Disconnected, TimeoutError) as exc:
            link.abort()
            return JobResult(
                JobOutcome.INTERRUPTED, delivered, UNKNOWN, detail=str(exc) or "timed out"
            )
        except asyncio.CancelledError:
            link.abort()  # nobody is left to own the connection
            raise
        if link.ack is not None:  # it may have come in with the status replies
            await link.close()
            return JobResult(JobOutcome.PRINTED, delivered, link.ack.as_status())
        outcome = JobOutcome.HELD if status.blocking else JobOutcome.UNCONFIRMED
        return JobResult(
            outcome, delivered, status, pending=pending or PendingAck(link, self, delivered)
        )
