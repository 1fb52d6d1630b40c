"""Raw ESC/POS over a serial port or a Linux usblp device (/dev/usb/lpN), as TcpPrinter does it.

The same `GS r 1` acknowledgement and `JobResult`s as on TCP; every blocking call runs in a
worker thread. pyserial opens and configures the port (baud rate, flow control, exclusive lock),
but reads and writes use poll() on its descriptor: pyserial's own use select(), which fails for
descriptors above 1024, and a busy gateway holds that many sockets. usblp needs no pyusb."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import select
import termios
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import serial

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
from printers.transport import JobOutcome, JobResult, PendingAck, PrinterUnreachable

__all__ = ["LpPrinter", "PortPendingAck", "SerialPrinter"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_READ_SIZE = 4096
_DRAIN_READS = 64  # bound on reads while draining stale input
_PUMP_WINDOW = 0.25  # longest a read holds a thread and the port; callers loop to their deadline
_BUSY = "busy: an earlier job on this port still waits for its acknowledgement"
# Device I/O gets its own threads: a printer waiting for an acknowledgement keeps one busy, and
# the loop's default executor also resolves host names for the rest of the gateway.
_IO = ThreadPoolExecutor(max_workers=8, thread_name_prefix="printer-io")


def _in_thread(call: Callable[..., _T], *args: object) -> asyncio.Future[_T]:
    return asyncio.get_running_loop().run_in_executor(_IO, call, *args)


class _FdPort:
    """A non-blocking device descriptor used from worker threads, one operation at a time: else
    a cancelled caller's read, still running, could see its descriptor closed and reused."""

    def __init__(self, fd: int, close: Callable[[bool], None], *, eof_is_hangup: bool) -> None:
        os.set_blocking(fd, False)
        self._fd, self._close, self._eof_is_hangup = fd, close, eof_is_hangup
        self._lock = threading.Lock()
        self._open = True
        self.readable = True  # a unidirectional usblp printer cannot be read at all

    def read(self, timeout: float) -> bytes:
        """What arrives within `timeout` s (b"" if nothing); OSError when the device is gone."""
        with self._lock:
            return self._read(timeout)

    def _read(self, timeout: float) -> bytes:
        if not self._open:
            raise OSError(errno.EBADF, "port closed")
        if not self.readable:
            time.sleep(timeout)
            return b""
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        if not poller.poll(timeout * 1000):
            return b""
        try:
            data = os.read(self._fd, _READ_SIZE)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.readable = False  # usblp answers EINVAL when the printer has no read channel
            return b""
        if not data:
            if self._eof_is_hangup:
                raise OSError(errno.EIO, "device returned no data (unplugged?)")
            time.sleep(min(timeout, 0.005))  # poll may keep reporting it: do not spin
        return data

    def write(self, data: bytes, timeout: float) -> None:
        """Write all of `data`; TimeoutError when the device takes nothing for `timeout` s."""
        with self._lock:
            if not self._open:
                raise OSError(errno.EBADF, "port closed")
            view = memoryview(data)
            poller = select.poll()
            poller.register(self._fd, select.POLLOUT)
            deadline = time.monotonic() + timeout
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not poller.poll(remaining * 1000):
                    raise TimeoutError(f"write timed out after {timeout} s")
                try:
                    view = view[os.write(self._fd, view) :]
                except BlockingIOError:
                    continue

    def close(self, discard: bool = False) -> None:
        """Close; `discard` drops unsent output so a stalled device cannot hold the close."""
        with self._lock:
            if not self._open:
                return
            self._open = False
            try:
                self._close(discard)
            except Exception as exc:  # runs unawaited after an abort: it must not raise
                log.debug("closing a printer port: %r", exc)


class _Link:
    """One open port and what has been read from it (transport._Link for a device)."""

    def __init__(self, port: _FdPort) -> None:
        self.port = port
        self.decoder = ReplyDecoder()
        self.ack: PaperStatus | None = None
        self.eot = bytearray()
        self.garbage, self.closed = 0, False

    async def pump(self, window: float) -> int:
        """Read once (or time out) and record what arrived; OSError when the device is gone."""
        data = await _in_thread(self.port.read, min(max(window, 0.0), _PUMP_WINDOW))
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
        for _ in range(_DRAIN_READS):
            if not await self.pump(window):
                return

    async def write(self, data: bytes, limit: float) -> None:
        await _in_thread(self.port.write, data, limit)

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
        if not self.closed:
            self.closed = True
            await _in_thread(self.port.close)

    def abort(self) -> asyncio.Future[None] | None:
        """Close without waiting (the caller may be cancelled); unsent output is dropped."""
        if self.closed:
            return None
        self.closed = True
        return _in_thread(self.port.close, True)


class PortPendingAck(PendingAck):
    """`transport.PendingAck`'s contract over a device port, which stays open (and the printer
    busy for other calls) until this is closed or the job is acknowledged."""

    def __init__(self, link: _Link, printer: _PortPrinter, bytes_delivered: int) -> None:
        self._port_link = link
        self._owner = printer
        self.bytes_delivered = bytes_delivered

    async def wait(self, ack_timeout: float) -> JobResult:
        async with self._owner._lock:
            return await self._owner._await_ack(
                self._port_link, self.bytes_delivered, ack_timeout, self
            )

    async def query_status(self) -> PrinterStatus:
        async with self._owner._lock:
            return await self._owner._status_over(self._port_link)

    @property
    def closed(self) -> bool:
        return self._port_link.closed

    async def close(self) -> None:
        await self._port_link.close()


def _close_late(opened: asyncio.Future[_FdPort]) -> None:
    # The open finished in its thread after the caller was cancelled: nobody owns the port.
    if not opened.cancelled() and opened.exception() is None:
        _in_thread(opened.result().close, True)


class _PortPrinter:
    """TcpPrinter's acknowledgement logic over a device, for SerialPrinter and LpPrinter.

    One call at a time: a port has one reader, and a second open would steal its replies."""

    def __init__(
        self,
        path: str,
        *,
        write_timeout: float,
        status_timeout: float,
        drain_window: float,
        chunk: int,
    ) -> None:
        self.path, self.write_timeout = path, write_timeout
        self.status_timeout, self.drain_window = status_timeout, drain_window
        self._chunk = chunk
        self._lock = asyncio.Lock()
        self._pending: PortPendingAck | None = None
        self._failing = self._flapped = False
        self._closing: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.path!r})"

    def _open(self) -> _FdPort:
        raise NotImplementedError

    def _healthy(self, ok: bool, why: object = "") -> None:
        # A device that comes and goes (a loose USB cable) is logged once, later at debug level.
        if ok != self._failing:
            return  # no change
        level = logging.DEBUG if self._flapped else logging.INFO if ok else logging.WARNING
        self._flapped = self._flapped or ok
        self._failing = not ok
        log.log(level, "printer %s %s", self.path, "is back" if ok else f"failed: {why}")

    def _lost(self, link: _Link, delivered: int, exc: OSError) -> JobResult:
        self._abort(link)
        self._healthy(False, exc)
        return JobResult(JobOutcome.INTERRUPTED, delivered, UNKNOWN, detail=str(exc) or repr(exc))

    def _abort(self, link: _Link) -> None:
        if (closing := link.abort()) is not None:
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    async def _connect(self) -> _Link:
        # An aborted port may still be closing in its thread; opening it again before that
        # finishes would fail on the exclusive lock (or share the device for a moment).
        if self._closing:
            await asyncio.wait(list(self._closing))
        opened = _in_thread(self._open)
        try:
            port = await asyncio.shield(opened)
        except asyncio.CancelledError:
            opened.add_done_callback(_close_late)
            raise
        except (OSError, ValueError) as exc:
            self._healthy(False, exc)
            raise PrinterUnreachable(f"{self.path}: {exc}") from exc
        return _Link(port)

    async def query_status(self) -> PrinterStatus:
        """Status from `DLE EOT 1..4`; UNKNOWN when the printer is silent or talks nonsense.

        Raises PrinterUnreachable when the device cannot be opened. While a job waits for its
        acknowledgement the question goes over that job's open port.
        """
        async with self._lock:
            pending = self._pending
            if pending is not None and not pending.closed:
                return await self._status_over(pending._port_link)
            link = await self._connect()
            try:
                return await self._status_over(link)
            finally:
                await link.close()

    async def _status_over(self, link: _Link) -> PrinterStatus:
        try:
            return await link.query_status(self.status_timeout, self.drain_window)
        except OSError as exc:  # TimeoutError included
            self._healthy(False, exc)
            return UNKNOWN

    async def print_job(self, data: bytes, *, ack_timeout: float = 10.0) -> JobResult:
        """Send one job and wait up to `ack_timeout` s for the printer to have processed it."""
        async with self._lock:
            if self._pending is not None and not self._pending.closed:
                return JobResult(JobOutcome.UNREACHABLE, 0, UNKNOWN, detail=_BUSY)
            try:
                link = await self._connect()
            except PrinterUnreachable as exc:
                return JobResult(JobOutcome.UNREACHABLE, 0, UNKNOWN, detail=str(exc))
            delivered = 0
            try:
                await link.drain_input(self.drain_window)
                payload = memoryview(data + GS_R_PAPER)
                for start in range(0, len(payload), self._chunk):
                    chunk = payload[start : start + self._chunk]
                    await link.write(bytes(chunk), self.write_timeout)
                    delivered = min(start + len(chunk), len(data))
            except OSError as exc:  # TimeoutError included
                return self._lost(link, delivered, exc)
            except asyncio.CancelledError:
                self._abort(link)
                raise
            return await self._await_ack(link, delivered, ack_timeout, None)

    async def _await_ack(
        self, link: _Link, delivered: int, ack_timeout: float, pending: PortPendingAck | None
    ) -> JobResult:
        if link.closed:
            raise PrinterError("this pending job's port is closed")
        deadline = time.monotonic() + ack_timeout
        try:
            while link.ack is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                await link.pump(remaining)
            if link.ack is None:
                status = await link.query_status(self.status_timeout, self.drain_window)
        except OSError as exc:  # TimeoutError included
            return self._lost(link, delivered, exc)
        except asyncio.CancelledError:
            self._abort(link)  # nobody is left to own the port
            raise
        self._healthy(True)
        if link.ack is not None:  # it may have come in with the status replies
            await link.close()
            return JobResult(JobOutcome.PRINTED, delivered, link.ack.as_status())
        outcome = JobOutcome.HELD if status.blocking else JobOutcome.UNCONFIRMED
        if pending is None:
            pending = self._pending = PortPendingAck(link, self, delivered)
        return JobResult(outcome, delivered, status, pending=pending)


class SerialPrinter(_PortPrinter):
    """An ESC/POS printer on a serial port (RS-232 or USB-serial, e.g. /dev/ttyUSB0)."""

    def __init__(
        self,
        path: str,
        baudrate: int = 9600,
        *,
        write_timeout: float = 5.0,
        status_timeout: float = 0.5,
        drain_window: float = 0.02,
        rtscts: bool = False,
        dsrdtr: bool = False,
        exclusive: bool = True,
    ) -> None:
        # About a second of line time per write, so a stall is noticed and `bytes_delivered`
        # stays close to the truth at 9600 baud (960 bytes/s).
        super().__init__(
            path,
            write_timeout=write_timeout,
            status_timeout=status_timeout,
            drain_window=drain_window,
            chunk=max(256, baudrate // 10),
        )
        self.baudrate, self.rtscts, self.dsrdtr = baudrate, rtscts, dsrdtr
        self.exclusive = exclusive

    def _open(self) -> _FdPort:
        # exclusive: another process on the same port would read our acknowledgements.
        dev = serial.Serial(
            self.path,
            self.baudrate,
            timeout=0,
            write_timeout=self.write_timeout,
            rtscts=self.rtscts,
            dsrdtr=self.dsrdtr,
            exclusive=self.exclusive,
        )

        def close(discard: bool) -> None:
            # A vanished device fails tcflush; the descriptor must be closed all the same.
            with contextlib.suppress(OSError, termios.error):
                if discard:
                    dev.reset_output_buffer()  # else close() waits for a stalled port to drain
            dev.close()

        return _FdPort(dev.fileno(), close, eof_is_hangup=True)


class LpPrinter(_PortPrinter):
    """A USB printer through Linux usblp (/dev/usb/lpN): a plain character device."""

    def __init__(
        self,
        path: str,
        *,
        write_timeout: float = 5.0,
        status_timeout: float = 0.5,
        drain_window: float = 0.02,
    ) -> None:
        super().__init__(
            path,
            write_timeout=write_timeout,
            status_timeout=status_timeout,
            drain_window=drain_window,
            chunk=4096,
        )

    def _open(self) -> _FdPort:
        fd = os.open(self.path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        # usblp can complete a read with no data (a zero-length packet), so b"" is not a hangup;
        # an unplugged device fails with ENODEV instead.
        return _FdPort(fd, lambda _discard: os.close(fd), eof_is_hangup=False)
