"""A starter or clearer pad on a USB serial port: a reconnect loop around the line codec.

The loop opens the port with pyserial (115200 8N1 raw; opening flushes stale input, as on the
real hardware), asks the pad who it is (PING, answered by HELLO), then reads lines until the
port fails, reports end of file, or the pad falls silent for `heartbeat_timeout`. It then waits
the radio's backoff (radio.backoff: capped, jittered, exponential; back to the first step once
the pad has talked) and opens the port again. An unplugged pad is a normal event on a busy
counter, not an error: one WARNING per outage, DEBUG per retry, INFO when the pad talks again.

pyserial only opens, configures and closes the port (in a worker thread: on a wedged USB
device those are control transfers that can block for seconds). Bytes move through the port's
non-blocking descriptor on this event loop. pyserial-asyncio-fast is not used: its transport
reports a failed write through the loop's exception handler (an ERROR with a traceback for a
pad unplugged during a send) and drains with tcdrain on close; reading the descriptor here
keeps every failure in this loop's hands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import serial

from radio.backoff import Backoff
from radio.line import MAX_LINE, Hello, LineError, PadMessage, Role, parse, ping_command

__all__ = [
    "REJECT_CAUSES",
    "LinkState",
    "LinkStats",
    "MessageHandler",
    "PadLink",
    "PadLinkError",
    "PadNotConnected",
    "StateHandler",
    "reject_cause",
]

log = logging.getLogger(__name__)

_READ_SIZE = 4096
_WRITE_TIMEOUT = 2.0
# Waited for even when the loop is cancelled, so stop() returns with the port closed.
_CLOSE_TIMEOUT = 5.0
# parse() applies MAX_LINE to the line without its CR LF; the assembler keeps room for the CR.
_LINE_CAP = MAX_LINE + 1


class LinkState(Enum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class PadLinkError(Exception):
    """A command could not be delivered to the pad."""


class PadNotConnected(PadLinkError):
    """The pad's port is not open (unplugged, reconnecting, or the link is stopped)."""


MessageHandler = Callable[["PadLink", PadMessage], None]
StateHandler = Callable[["PadLink", LinkState], None]


@dataclass(slots=True)
class LinkStats:
    lines: int = 0  # non-empty lines assembled, good or bad
    messages: int = 0  # lines that parsed and reached the handler
    rejected: Counter[str] = field(default_factory=Counter)  # by cause, see REJECT_CAUSES
    reconnects: int = 0  # times the port was opened again after the first time
    bytes_dropped: int = 0  # over-long runs, and partial lines cut off by a disconnect


# LineError carries only a text; these prefixes turn it into a counter key that does not vary
# with the offending value (a cause per number would grow the counter without bound).
_CAUSES: tuple[tuple[str, str], ...] = (
    ("line of ", "too_long"),
    ("not ASCII", "not_ascii"),
    ("no checksum", "no_checksum"),
    ("'*' inside", "star_in_body"),
    ("control characters", "control_chars"),
    ("checksum mismatch", "checksum"),
    ("unknown role", "unknown_role"),
    ("bad tracker address", "bad_address"),
    ("tracker must", "bad_tracker"),
    ("uptime must", "bad_uptime"),
    ("unknown message", "unknown_message"),
)
REJECT_CAUSES = frozenset(cause for _, cause in _CAUSES)
_VARIABLE = re.compile(r"'[^']*'|\"[^\"]*\"|\d+")


def reject_cause(exc: LineError) -> str:
    """A stable, bounded name for why a line was refused."""
    text = str(exc)
    for prefix, cause in _CAUSES:
        if text.startswith(prefix):
            return cause
    return _VARIABLE.sub("_", text)[:48]


def _open_port(port: str, baudrate: int) -> serial.Serial:
    # exclusive: a second gateway process (a restart overlapping the old one) must not split
    # the pad's lines with this one.
    return serial.Serial(port, baudrate, timeout=0, write_timeout=0, exclusive=True)


def _close_port(port: serial.Serial) -> None:
    # Unsent output would make close() wait (up to the driver's closing_wait) for a pad that
    # is gone or stuck; a fresh connection starts with a PING anyway.
    with contextlib.suppress(Exception):
        port.reset_output_buffer()
    try:
        port.close()
    except Exception:
        log.debug("closing %s failed", port.name, exc_info=True)


def _close_if_opened(future: asyncio.Future[serial.Serial]) -> None:
    if not future.cancelled() and future.exception() is None:
        _close_port(future.result())


class PadLink:
    """One pad on one serial port, reconnected for as long as the link runs."""

    def __init__(
        self,
        port: str,
        on_message: MessageHandler,
        *,
        on_state: StateHandler | None = None,
        baudrate: int = 115200,
        min_backoff: float = 0.5,
        max_backoff: float = 30.0,
        heartbeat_timeout: float = 15.0,
        rng: random.Random | None = None,
    ) -> None:
        if heartbeat_timeout <= 0:
            raise ValueError("heartbeat_timeout must be positive")
        # As configured (a /dev/serial/by-id/... link on the box): the name an operator can
        # find on the label, stable across replugs, unlike the ttyACMn it resolves to.
        self.port = port
        self.baudrate = baudrate
        self.stats = LinkStats()
        self._on_message = on_message
        self._on_state = on_state
        # Jitter keeps pads on one hub, all unplugged together, from retrying in lockstep.
        self._backoff = Backoff(min_backoff, max_backoff, rng=rng)  # ValueError if nonsense
        self._heartbeat_timeout = heartbeat_timeout

        self._state = LinkState.STOPPED
        self._role: Role | None = None
        self._firmware: str | None = None
        self._serial_number: str | None = None
        self._last_heard: float | None = None

        self._task: asyncio.Task[None] | None = None
        self._fd: int | None = None
        self._lost: asyncio.Future[str] | None = None  # resolved with why the session ended
        self._write_lock = asyncio.Lock()
        self._buffer = bytearray()
        self._discarding = False

        self._opened_before = False
        self._heard_in_session = False
        self._ever_heard = False
        self._outage_since: float | None = None
        self._outage_logged = False
        self._logged_causes: set[str] = set()
        self._logged_errors: set[tuple[str, type[BaseException]]] = set()

    # Read-only views of the link's state.
    @property
    def state(self) -> LinkState:
        return self._state

    @property
    def role(self) -> Role | None:
        return self._role

    @property
    def firmware(self) -> str | None:
        return self._firmware

    @property
    def serial_number(self) -> str | None:
        return self._serial_number

    @property
    def last_heard(self) -> float | None:
        """time.monotonic() of the last good message."""
        return self._last_heard

    @property
    def connected(self) -> bool:
        return self._fd is not None and self._lost is not None and not self._lost.done()

    async def start(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._outage_since = time.monotonic()
        self._outage_logged = False
        self._backoff.reset()
        self._set_state(LinkState.CONNECTING)
        self._task = asyncio.create_task(self._run(), name=f"pad-link {self.port}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
        self._set_state(LinkState.STOPPED)

    async def send(self, data: bytes) -> None:
        """Write a framed command (e.g. radio.line.pairing_command(True)) to the pad."""
        async with self._write_lock:
            fd, lost = self._fd, self._lost
            if fd is None or lost is None or lost.done():
                raise PadNotConnected(f"pad {self.port} is not connected")
            view = memoryview(data)
            deadline = time.monotonic() + _WRITE_TIMEOUT
            while view:
                try:
                    written = os.write(fd, view)
                except (BlockingIOError, InterruptedError):
                    written = 0
                except OSError as exc:
                    reason = f"write failed: {exc.strerror or exc}"
                    self._end(lost, reason)
                    raise PadNotConnected(f"pad {self.port}: {reason}") from exc
                view = view[written:]
                if view:
                    await self._writable(fd, lost, deadline)

    def feed(self, data: bytes) -> None:
        """Assemble lines from a chunk of the byte stream and handle each complete one."""
        start, end = 0, len(data)
        while start < end:
            newline = data.find(b"\n", start)
            piece = data[start : end if newline < 0 else newline]
            if self._discarding:
                self.stats.bytes_dropped += len(piece)
            elif len(self._buffer) + len(piece) > _LINE_CAP:
                # Drop the run up to the next newline: a babbling pad cannot grow the buffer,
                # and the next good line is found again.
                self.stats.bytes_dropped += len(self._buffer) + len(piece)
                self._buffer.clear()
                self._discarding = True
                self.stats.lines += 1
                self._reject("too_long", f"more than {MAX_LINE} bytes without a newline", b"")
            else:
                self._buffer += piece
            if newline < 0:
                return
            start = newline + 1
            if self._discarding:
                self._discarding = False
            else:
                line = bytes(self._buffer)
                self._buffer.clear()
                self._line(line)

    # The connect/read loop.
    async def _run(self) -> None:
        while True:
            try:
                await self._attempt()
            except Exception as exc:  # a bug here must not end the pad's loop for good
                self._log_unexpected("link loop", exc)
            # Each wait is longer until the pad talks again (which resets the policy).
            delay = self._backoff.next()
            self._set_state(LinkState.BACKOFF)
            await asyncio.sleep(delay)

    async def _attempt(self) -> None:
        self._set_state(LinkState.CONNECTING)
        try:
            port = await self._open()
        except (serial.SerialException, OSError) as exc:
            # The by-id link is absent while the pad is unplugged: a retry, not an error.
            self._unavailable(str(exc))
            return
        try:
            reason = await self._session(port)
        finally:
            await self._close(port)
        self._lost_link(reason)

    async def _open(self) -> serial.Serial:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(None, _open_port, self.port, self.baudrate)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(_close_if_opened)
            raise

    async def _close(self, port: serial.Serial) -> None:
        future = asyncio.get_running_loop().run_in_executor(None, _close_port, port)
        try:
            await asyncio.shield(future)
        except asyncio.CancelledError:
            await asyncio.wait((future,), timeout=_CLOSE_TIMEOUT)
            raise

    async def _session(self, port: serial.Serial) -> str:
        loop = asyncio.get_running_loop()
        fd = port.fileno()
        os.set_blocking(fd, False)
        lost: asyncio.Future[str] = loop.create_future()
        self._buffer.clear()
        self._discarding = False
        self._heard_in_session = False
        if self._opened_before:
            self.stats.reconnects += 1
        self._opened_before = True
        opened = time.monotonic()
        self._fd, self._lost = fd, lost
        loop.add_reader(fd, self._readable, fd, lost)
        self._set_state(LinkState.CONNECTED)
        try:
            with contextlib.suppress(PadLinkError):  # a failed write has resolved `lost`
                await self.send(ping_command())
            while not lost.done():
                heard = max(opened, self._last_heard or opened)
                remaining = heard + self._heartbeat_timeout - time.monotonic()
                if remaining <= 0:
                    return f"silent for {self._heartbeat_timeout:g} s"
                await asyncio.wait((lost,), timeout=remaining)
            return lost.result()
        finally:
            loop.remove_reader(fd)
            loop.remove_writer(fd)
            self._end(lost, "closed")  # wakes a send() waiting for the port to drain
            self._fd = self._lost = None
            self.stats.bytes_dropped += len(self._buffer)
            self._buffer.clear()
            self._discarding = False

    def _readable(self, fd: int, lost: asyncio.Future[str]) -> None:
        try:
            data = os.read(fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # A hung-up tty stays readable: stop watching it before the loop spins on it.
            asyncio.get_running_loop().remove_reader(fd)
            self._end(lost, f"read failed: {exc.strerror or exc}")
            return
        if not data:
            asyncio.get_running_loop().remove_reader(fd)
            self._end(lost, "end of file")
            return
        try:
            self.feed(data)
        except Exception as exc:
            self._log_unexpected("line assembler", exc)

    async def _writable(self, fd: int, lost: asyncio.Future[str], deadline: float) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_writer(fd, wake)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            await asyncio.wait(
                (ready, lost), timeout=remaining, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            if self._fd == fd:
                loop.remove_writer(fd)
        if lost.done():
            raise PadNotConnected(f"pad {self.port}: {lost.result()}")
        if not ready.done():
            raise PadLinkError(f"pad {self.port} did not take the command in {_WRITE_TIMEOUT:g} s")

    @staticmethod
    def _end(lost: asyncio.Future[str], reason: str) -> None:
        if not lost.done():
            lost.set_result(reason)

    # Lines and messages.
    def _line(self, line: bytes) -> None:
        if not line.rstrip(b"\r"):
            return
        self.stats.lines += 1
        try:
            message = parse(line)
        except LineError as exc:
            self._reject(reject_cause(exc), str(exc), line)
            return
        self.stats.messages += 1
        self._heard()
        if isinstance(message, Hello):
            self._hello(message)
        try:
            self._on_message(self, message)
        except Exception as exc:
            self._log_callback_error("on_message", exc)

    def _reject(self, cause: str, detail: str, line: bytes) -> None:
        self.stats.rejected[cause] += 1
        if cause in self._logged_causes:
            log.debug("pad %s: rejected a line (%s): %r", self.port, detail, line[:48])
            return
        self._logged_causes.add(cause)
        log.warning(
            "pad %s: rejected a line (%s): %r; further '%s' rejects are logged at DEBUG",
            self.port,
            detail,
            line[:48],
            cause,
        )

    def _hello(self, hello: Hello) -> None:
        known = (self._role, self._firmware, self._serial_number)
        self._role, self._firmware, self._serial_number = hello.role, hello.firmware, hello.serial
        if known != (hello.role, hello.firmware, hello.serial):
            log.info(
                "pad %s is a %s (firmware %s, serial %s)",
                self.port,
                hello.role.value,
                hello.firmware,
                hello.serial,
            )

    def _heard(self) -> None:
        now = time.monotonic()
        self._last_heard = now
        if self._fd is None or self._heard_in_session:
            return
        # The outage ends when the pad talks, not when the port opens: a port that opens but
        # stays silent is still the same outage, and must not log again.
        self._heard_in_session = True
        self._backoff.reset()
        if self._outage_since is not None:
            if self._ever_heard or self._outage_logged:
                log.info("pad %s back after %.1f s", self.port, now - self._outage_since)
            else:
                log.info("pad %s connected", self.port)
        self._ever_heard = True
        self._outage_since = None
        self._outage_logged = False

    # Outage logging: once per outage at WARNING, then DEBUG.
    def _unavailable(self, reason: str) -> None:
        if self._outage_since is None:
            self._outage_since = time.monotonic()
        if self._outage_logged:
            log.debug("pad %s still unavailable: %s", self.port, reason)
            return
        self._outage_logged = True
        log.warning(
            "pad %s unavailable (%s); retrying every %.3g..%.3g s",
            self.port,
            reason,
            self._backoff.shortest,
            self._backoff.longest,
        )

    def _lost_link(self, reason: str) -> None:
        if self._outage_since is not None:
            self._unavailable(reason)
            return
        self._outage_since = time.monotonic()
        self._outage_logged = True
        log.warning("pad %s lost (%s); reconnecting", self.port, reason)

    def _set_state(self, state: LinkState) -> None:
        if state is self._state:
            return
        self._state = state
        if self._on_state is not None:
            try:
                self._on_state(self, state)
            except Exception as exc:
                self._log_callback_error("on_state", exc)

    def _log_callback_error(self, callback: str, exc: Exception) -> None:
        self._log_unexpected(f"{callback} handler", exc)

    def _log_unexpected(self, where: str, exc: Exception) -> None:
        key = (where, type(exc))
        if key in self._logged_errors:
            log.debug("pad %s: %s raised again", self.port, where, exc_info=exc)
            return
        self._logged_errors.add(key)
        log.error(
            "pad %s: %s raised; further ones of this kind at DEBUG", self.port, where, exc_info=exc
        )
