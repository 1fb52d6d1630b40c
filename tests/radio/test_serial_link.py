"""PadLink on real pty pairs with real pyserial: the test plays the pad on the master side.

A symlink in tmp_path stands for /dev/serial/by-id/...: replugging a pad is a new pty pair
with the symlink re-pointed, as udev does for a USB device that comes back as another ttyACMn.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
import time
import tty
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import serial
from hypothesis import given
from hypothesis import strategies as st

from radio import serial_link
from radio.backoff import JITTER, Backoff
from radio.line import (
    MAX_LINE,
    Ack,
    Heartbeat,
    Hello,
    LineError,
    PadMessage,
    PairingMode,
    Role,
    TrackerPresent,
    checksum,
    encode,
    frame,
    pairing_command,
    parse,
    ping_command,
)
from radio.serial_link import (
    REJECT_CAUSES,
    LinkState,
    MessageHandler,
    PadLink,
    PadNotConnected,
    reject_cause,
)

LOGGER = "radio.serial_link"
WAIT = 5.0  # every wait in this file is bounded by this
HELLO = Hello(Role.STARTER_TO_GO, "1.0.0", "SN0042")
TRK = TrackerPresent(66, "C0:FF:EE:00:00:42")


def point(link: Path, target: str) -> None:
    """Re-point the by-id symlink atomically, as udev does."""
    tmp = link.with_name(link.name + ".new")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


async def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)


class Pad:
    """The device end of a pty pair."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.name = os.ttyname(self.slave)
        self.received = bytearray()
        self.plugged = True

    def _drain(self) -> None:
        while self.plugged:
            try:
                chunk = os.read(self.master, 4096)
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            self.received += chunk

    async def expect(self, needle: bytes, count: int = 1) -> None:
        """Wait until the link has written `needle` `count` times in all."""

        def seen() -> bool:
            self._drain()
            return self.received.count(needle) >= count

        await wait_until(seen, f"{needle!r} x{count} from the link")

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view) :]
            except BlockingIOError:
                await asyncio.sleep(0.001)

    async def send(self, *messages: PadMessage) -> None:
        await self.write(b"".join(encode(m) for m in messages))

    async def answer_ping(self, count: int = 1) -> None:
        # pyserial flushes input on open: a pad speaking before the PING would not be heard.
        await self.expect(ping_command(), count)
        await self.send(HELLO)

    def unplug(self) -> None:
        if self.plugged:
            self.plugged = False
            os.close(self.master)
            os.close(self.slave)


class Rig:
    def __init__(self, path: Path, handler: MessageHandler | None = None, **options: Any) -> None:
        self.path = path
        self.messages: list[PadMessage] = []
        self.states: list[LinkState] = []
        self.pads: list[Pad] = []
        options = {"min_backoff": 0.01, "max_backoff": 0.05} | options
        self.link = PadLink(str(path), handler or self._message, on_state=self._state, **options)

    def _message(self, link: PadLink, message: PadMessage) -> None:
        assert link is self.link
        self.messages.append(message)

    def _state(self, link: PadLink, state: LinkState) -> None:
        self.states.append(state)

    def plug(self) -> Pad:
        pad = Pad()
        self.pads.append(pad)
        point(self.path, pad.name)
        return pad

    async def got(self, count: int) -> None:
        await wait_until(lambda: len(self.messages) >= count, f"{count} messages")

    async def attempts(self, more: int) -> None:
        """Wait for `more` further connection attempts."""
        target = self.states.count(LinkState.CONNECTING) + more
        await wait_until(
            lambda: self.states.count(LinkState.CONNECTING) >= target,
            f"{more} more connection attempts",
        )

    async def connected(self) -> Pad:
        pad = self.plug()
        await self.link.start()
        await pad.answer_ping()
        await wait_until(lambda: self.link.role is not None, "HELLO")
        return pad

    async def close(self) -> None:
        await self.link.stop()
        for pad in self.pads:
            pad.unplug()


@pytest.fixture
def by_id(tmp_path: Path) -> Path:
    return tmp_path / "usb-Tablegate_Starter_SN0042-if00"


@pytest.fixture
async def make_rig(by_id: Path) -> AsyncIterator[Callable[..., Rig]]:
    rigs: list[Rig] = []

    def make(**options: Any) -> Rig:
        rigs.append(Rig(by_id, **options))
        return rigs[-1]

    yield make
    for rig in rigs:
        await rig.close()
        assert rig.link.state is LinkState.STOPPED
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("pad-link")]
    assert not leftover


@pytest.fixture
def rig(make_rig: Callable[..., Rig]) -> Rig:
    return make_rig()


def records(caplog: pytest.LogCaptureFixture, level: int, text: str = "") -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == LOGGER and r.levelno == level and text in r.getMessage()
    ]


def open_fds_on(device: str) -> int:
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            if os.readlink(fd) == device:
                count += 1
        except OSError:
            pass
    return count


# Connected behaviour.
async def test_hello_sets_role_and_firmware(
    rig: Rig, by_id: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    assert rig.link.role is None and rig.link.last_heard is None
    await rig.connected()
    assert rig.link.state is LinkState.CONNECTED
    assert rig.link.role is Role.STARTER_TO_GO
    assert rig.link.firmware == "1.0.0"
    assert rig.link.serial_number == "SN0042"
    assert rig.link.last_heard is not None
    assert rig.messages == [HELLO]
    assert rig.link.port == str(by_id)
    link_logs = [r.getMessage() for r in caplog.records if r.name == LOGGER]
    assert records(caplog, logging.INFO, "connected") == [f"pad {by_id} connected"]
    # The operator reads the by-id name, never the ttyACMn (here /dev/pts/N) behind it.
    assert not any("/dev/pts" in m for m in link_logs)


async def test_messages_reach_the_handler_in_order(rig: Rig) -> None:
    pad = await rig.connected()
    sent: list[PadMessage] = [
        TRK,
        Heartbeat(12),
        PairingMode(True),
        Ack("PAIRMODE"),
        PairingMode(False),
        TrackerPresent(7, "AA:BB:CC:DD:EE:FF"),
    ]
    await pad.send(*sent)
    await rig.got(1 + len(sent))
    assert rig.messages == [HELLO, *sent]
    assert rig.link.stats.messages == rig.link.stats.lines == 1 + len(sent)
    assert not rig.link.stats.rejected


async def test_ping_on_connect_and_send_reaches_the_pad(rig: Rig) -> None:
    with pytest.raises(PadNotConnected):
        await rig.link.send(pairing_command(True))
    pad = await rig.connected()
    assert bytes(pad.received) == ping_command()
    await rig.link.send(pairing_command(True))
    await pad.expect(b"PAIRMODE,1*14\r\n")
    await rig.link.send(pairing_command(False))
    await pad.expect(b"PAIRMODE,0*15\r\n")
    assert bytes(pad.received) == ping_command() + b"PAIRMODE,1*14\r\nPAIRMODE,0*15\r\n"


async def test_hundred_lines_in_one_write(rig: Rig) -> None:
    pad = await rig.connected()
    sent = [TrackerPresent(n, f"C0:FF:EE:00:00:{n:02X}") for n in range(1, 101)]
    blob = b"".join(encode(m) for m in sent)
    assert os.write(pad.master, blob) == len(blob)
    await rig.got(101)
    assert rig.messages[1:] == sent


async def test_lines_split_across_one_byte_writes(rig: Rig) -> None:
    pad = await rig.connected()
    sent: list[PadMessage] = [TRK, Heartbeat(4_000_000_000), Ack("PAIRMODE")]
    for byte in b"".join(encode(m) for m in sent):
        await pad.write(bytes([byte]))
        await asyncio.sleep(0.001)  # the link reads each byte on its own
    await rig.got(1 + len(sent))
    assert rig.messages[1:] == sent
    assert rig.link.stats.bytes_dropped == 0


def raw_line(body: str) -> bytes:
    """A line with a correct checksum, even for bodies frame() would refuse."""
    return f"{body}*{checksum(body)}\r\n".encode()


BAD_LINES: dict[str, bytes] = {
    "checksum": b"TRK,66,C0:FF:EE:00:00:42*03\r\n",
    "not_ascii": "HB,5\u00e9*00\r\n".encode(),
    "unknown_role": frame("HELLO,WAITER,1.0.0,SN7"),
    "no_checksum": b"~~ line noise ~~\r\n",
    "control_chars": raw_line("HB,\x075"),
    "unknown_message": frame("FOO,1"),
    "bad_address": frame("TRK,66,C0:FF:EE:00:00"),
}


async def test_bad_lines_are_counted_by_cause_logged_once_and_reading_goes_on(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pad = await rig.connected()
    for _ in range(2):
        for bad in BAD_LINES.values():
            await pad.write(bad)
            await pad.send(TRK)
        await pad.write(b"X" * 500)  # no newline for 500 bytes
        await pad.write(b"\r\n")
        await pad.send(TRK)
    await pad.send(Heartbeat(99))
    await rig.got(1 + 2 * (len(BAD_LINES) + 1) + 1)
    assert rig.messages == [HELLO] + [TRK] * (2 * (len(BAD_LINES) + 1)) + [Heartbeat(99)]
    stats = rig.link.stats
    assert stats.rejected == {cause: 2 for cause in [*BAD_LINES, "too_long"]}
    assert stats.bytes_dropped == 2 * 501  # each run and the CR before its newline
    assert stats.lines == stats.messages + sum(stats.rejected.values())
    warnings = records(caplog, logging.WARNING, "rejected")
    assert len(warnings) == len(BAD_LINES) + 1
    for cause in [*BAD_LINES, "too_long"]:
        assert sum(f"'{cause}'" in w for w in warnings) == 1, cause
    assert len(records(caplog, logging.DEBUG, "rejected")) == len(BAD_LINES) + 1
    assert rig.link.state is LinkState.CONNECTED
    assert rig.states.count(LinkState.CONNECTED) == 1


async def test_over_long_run_is_dropped_up_to_the_newline(rig: Rig) -> None:
    pad = await rig.connected()
    for _ in range(5):  # 500 bytes over several reads, no newline
        await pad.write(b"TRK," + b"9" * 96)
        await asyncio.sleep(0.005)
    await pad.write(b"\n" + encode(TRK))
    await rig.got(2)
    assert rig.messages == [HELLO, TRK]
    assert rig.link.stats.rejected == {"too_long": 1}
    assert rig.link.stats.bytes_dropped == 500


@pytest.mark.allow_logged_errors
async def test_a_raising_handler_is_logged_and_skipped(
    make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[PadMessage] = []

    def fragile(link: PadLink, message: PadMessage) -> None:
        seen.append(message)
        if isinstance(message, TrackerPresent):
            raise RuntimeError("handler bug")

    rig = make_rig(handler=fragile)
    pad = rig.plug()
    await rig.link.start()
    await pad.answer_ping()
    await pad.send(TRK, TRK, Heartbeat(1))
    await wait_until(lambda: len(seen) == 4, "4 messages")
    assert rig.link.state is LinkState.CONNECTED
    # One ERROR for the bug, the repeat at DEBUG.
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None


# Unplug, replug, absence, silence.
async def test_unplug_goes_to_backoff_and_logs_once(
    rig: Rig, by_id: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pad = await rig.connected()
    pad.unplug()
    await wait_until(lambda: rig.link.state is not LinkState.CONNECTED, "the loss")
    assert LinkState.BACKOFF in rig.states[rig.states.index(LinkState.CONNECTED) :]
    await rig.attempts(5)  # the by-id link now points at nothing: plain retries
    assert not rig.link.connected
    with pytest.raises(PadNotConnected):
        await rig.link.send(pairing_command(True))
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith(f"pad {by_id} lost (")
    assert len(records(caplog, logging.DEBUG, "still unavailable")) >= 4
    assert rig.link.role is Role.STARTER_TO_GO  # the last HELLO is kept


async def test_replug_reconnects_and_messages_flow(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pad = await rig.connected()
    await pad.write(b"TRK,5,C0:FF")  # cut off by the unplug
    await asyncio.sleep(0.05)
    pad.unplug()
    await rig.attempts(3)
    again = rig.plug()
    await again.answer_ping()
    await again.send(TRK)
    await rig.got(3)
    assert rig.messages == [HELLO, HELLO, TRK]
    assert rig.link.state is LinkState.CONNECTED
    assert rig.link.stats.reconnects == 1
    assert rig.link.stats.bytes_dropped == len(b"TRK,5,C0:FF")
    assert not rig.link.stats.rejected
    assert len(records(caplog, logging.WARNING)) == 1
    back = records(caplog, logging.INFO, "back after")
    assert len(back) == 1
    await rig.link.send(pairing_command(True))
    await again.expect(pairing_command(True))


async def test_port_missing_at_start_keeps_retrying_quietly(
    rig: Rig, by_id: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    await rig.link.start()
    await rig.attempts(6)
    assert rig.link.state in (LinkState.CONNECTING, LinkState.BACKOFF)
    assert LinkState.CONNECTED not in rig.states
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and warnings[0].startswith(f"pad {by_id} unavailable (")
    assert not records(caplog, logging.ERROR)
    pad = rig.plug()
    await pad.answer_ping()
    await rig.got(1)
    assert rig.link.connected and rig.states[-1] is LinkState.CONNECTED
    assert len(records(caplog, logging.INFO, "back after")) == 1


async def test_a_silent_pad_is_dropped_and_reopened(
    make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rig = make_rig(heartbeat_timeout=0.3)
    pad = await rig.connected()
    await pad.expect(ping_command(), 2)  # the link gave up on the silence and reopened
    assert rig.link.stats.reconnects >= 1
    assert records(caplog, logging.WARNING) == [
        f"pad {rig.path} lost (silent for 0.3 s); reconnecting"
    ]
    await pad.send(HELLO)
    await rig.got(2)
    assert len(records(caplog, logging.INFO, "back after")) == 1


async def test_heartbeats_keep_the_pad_alive(make_rig: Callable[..., Rig]) -> None:
    rig = make_rig(heartbeat_timeout=0.5)
    pad = await rig.connected()
    for uptime in range(20):  # 1 s, twice the timeout, of heartbeats every 0.05 s
        await pad.send(Heartbeat(uptime))
        await asyncio.sleep(0.05)
    await rig.got(21)
    assert pad.received.count(ping_command()) == 1
    assert rig.link.stats.reconnects == 0
    assert rig.states.count(LinkState.CONNECTED) == 1


async def test_a_port_that_opens_but_never_talks_is_one_outage(
    make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    rig = make_rig(heartbeat_timeout=0.05, min_backoff=0.01, max_backoff=0.05)
    pad = rig.plug()
    await rig.link.start()
    await pad.expect(ping_command(), 4)
    warnings = records(caplog, logging.WARNING)
    assert len(warnings) == 1 and "silent for 0.05 s" in warnings[0]
    assert not records(caplog, logging.INFO)
    assert rig.link.stats.reconnects >= 3


class RecordingBackoff(Backoff):
    __slots__ = ("drawn",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.drawn: list[float] = []

    def next(self) -> float:
        self.drawn.append(super().next())
        return self.drawn[-1]


def within(delay: float, step: float) -> bool:
    return step * (1 - JITTER) <= delay <= step


async def test_waits_grow_while_the_pad_is_away_and_start_over_once_it_talks(rig: Rig) -> None:
    policy = rig.link._backoff = RecordingBackoff(0.01, 0.05, rng=random.Random(5))
    await rig.link.start()
    await rig.attempts(6)  # nothing at the by-id path yet
    steps = [0.01, 0.02, 0.04, 0.05, 0.05]
    assert all(map(within, policy.drawn[:5], steps)), policy.drawn
    assert len(set(policy.drawn)) == len(policy.drawn)  # jittered
    pad = rig.plug()
    await pad.answer_ping()
    await rig.got(1)
    drawn = len(policy.drawn)
    pad.unplug()
    await rig.attempts(2)
    assert within(policy.drawn[drawn], 0.01), policy.drawn[drawn:]  # the pad talked: reset
    assert within(policy.drawn[drawn + 1], 0.02), policy.drawn[drawn:]


def test_the_link_uses_the_radio_policy_with_its_own_bounds() -> None:
    link = PadLink(
        "/dev/null",
        lambda _link, _message: None,
        min_backoff=0.5,
        max_backoff=30,
        rng=random.Random(1),
    )
    delays = [link._backoff.next() for _ in range(12)]
    steps = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30, 30, 30]
    assert all(map(within, delays, steps)), delays


async def test_send_racing_an_unplug_raises_without_logging_errors(rig: Rig) -> None:
    pad = await rig.connected()
    pad.unplug()
    # No await between the unplug and the write: the link has not read the hang-up yet.
    with pytest.raises(PadNotConnected):
        await rig.link.send(pairing_command(True))
    await wait_until(lambda: rig.link.state is not LinkState.CONNECTED, "the loss")


async def test_a_second_link_cannot_steal_the_port(
    rig: Rig, make_rig: Callable[..., Rig], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    pad = await rig.connected()
    intruder = make_rig()
    await intruder.link.start()
    await intruder.attempts(3)
    assert LinkState.CONNECTED not in intruder.states
    await pad.send(TRK)
    await rig.got(2)
    assert rig.messages == [HELLO, TRK] and not intruder.messages
    assert any("exclusively lock" in w for w in records(caplog, logging.WARNING))


# Stopping.
async def test_stop_is_clean(rig: Rig) -> None:
    await rig.link.stop()  # before start: nothing to do
    pad = await rig.connected()
    assert open_fds_on(pad.name) == 2  # the test's slave and the link's port
    await rig.link.stop()
    assert rig.link.state is LinkState.STOPPED
    assert rig.states[-1] is LinkState.STOPPED
    assert asyncio.all_tasks() == {asyncio.current_task()}
    assert open_fds_on(pad.name) == 1
    with pytest.raises(PadNotConnected):
        await rig.link.send(ping_command())
    await rig.link.stop()
    # It can be started again, on the same port.
    await rig.link.start()
    await pad.answer_ping(2)
    await rig.got(2)


async def test_stop_right_after_start_and_while_backing_off(rig: Rig) -> None:
    await rig.link.start()
    await rig.link.stop()
    assert rig.link.state is LinkState.STOPPED
    await rig.link.start()
    await wait_until(lambda: rig.link.state is LinkState.BACKOFF, "a backoff")
    await rig.link.stop()
    assert rig.link.state is LinkState.STOPPED
    assert asyncio.all_tasks() == {asyncio.current_task()}


async def test_stop_while_the_port_is_opening_closes_it_once_opened(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = threading.Event()
    real_open = serial_link._open_port

    def slow_open(port: str, baudrate: int) -> serial.Serial:
        time.sleep(0.2)  # a wedged USB device answering its control transfers late
        result = real_open(port, baudrate)
        opened.set()
        return result

    monkeypatch.setattr(serial_link, "_open_port", slow_open)
    pad = rig.plug()
    await rig.link.start()
    await asyncio.sleep(0.05)
    assert rig.link.state is LinkState.CONNECTING
    await rig.link.stop()
    assert rig.states[-1] is LinkState.STOPPED
    assert await asyncio.to_thread(opened.wait, WAIT)
    await wait_until(lambda: open_fds_on(pad.name) == 1, "the late port to be closed")


def test_bad_settings_are_refused() -> None:
    settings: list[dict[str, Any]] = [
        {"min_backoff": 0},
        {"min_backoff": 2, "max_backoff": 1},
        {"heartbeat_timeout": 0},
    ]
    for options in settings:
        with pytest.raises(ValueError):
            PadLink("/dev/null", lambda link, message: None, **options)


# The assembler on its own (feed() is pure: no port needed).
def collector() -> tuple[PadLink, list[PadMessage]]:
    got: list[PadMessage] = []
    link = PadLink("/dev/serial/by-id/test", lambda _link, message: got.append(message))
    return link, got


def test_feed_assembles_partial_lines_and_ignores_blank_ones() -> None:
    link, got = collector()
    line = encode(TRK)
    link.feed(line[:5])
    link.feed(line[5:-1])
    assert got == []
    link.feed(line[-1:] + b"\r\n\n" + encode(Heartbeat(3)).rstrip(b"\r\n") + b"\n")
    assert got == [TRK, Heartbeat(3)]
    assert link.stats.lines == 2 and not link.stats.rejected
    assert link.role is None and link.last_heard is not None


def test_feed_line_length_limit_matches_the_parser() -> None:
    link, got = collector()
    longest = raw_line("ACK," + "P" * (MAX_LINE - 7))  # 120 bytes before CR LF
    assert len(longest.rstrip(b"\r\n")) == MAX_LINE
    link.feed(longest)
    assert got == [Ack("P" * 16)]
    too_long = raw_line("ACK," + "P" * (MAX_LINE - 6))  # 121 bytes before CR LF
    link.feed(too_long[:-2] + b"\n")  # fits the assembler, refused by the parser
    assert link.stats.bytes_dropped == 0
    link.feed(too_long)  # with its CR, too long for the assembler already
    assert link.stats.bytes_dropped == len(too_long) - 1
    link.feed(b"A" * 300 + b"\n")
    assert len(got) == 1
    assert link.stats.rejected == {"too_long": 3}
    assert link.stats.bytes_dropped == len(too_long) - 1 + 300


lines = st.lists(
    st.one_of(
        st.builds(
            TrackerPresent,
            st.integers(1, 0xFFFF),
            st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":").upper()),
        ),
        st.builds(Heartbeat, st.integers(0, 2**32 - 1)),
        st.builds(PairingMode, st.booleans()),
    ),
    max_size=20,
)


@given(lines, st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_any_chunking_gives_the_same_messages(sent: list[PadMessage], sizes: list[int]) -> None:
    link, got = collector()
    stream = b"".join(encode(m) for m in sent)
    start, i = 0, 0
    while start < len(stream):
        size = sizes[i % len(sizes)]
        link.feed(stream[start : start + size])
        start, i = start + size, i + 1
    assert got == sent


bodies = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=130)


@given(
    st.one_of(
        st.binary(max_size=140),
        bodies.map(raw_line),
        st.tuples(st.sampled_from(["HELLO", "TRK", "HB", "PAIR", "ACK"]), bodies).map(
            lambda kb: raw_line(f"{kb[0]},{kb[1]}")
        ),
    )
)
def test_every_parser_refusal_has_a_known_cause(line: bytes) -> None:
    try:
        parse(line)
    except LineError as exc:
        assert reject_cause(exc) in REJECT_CAUSES, str(exc)


# Against the project's own simulator: the same pad protocol from the other implementation.
async def test_the_simulated_pad_speaks_to_the_link(
    make_rig: Callable[..., Rig], by_id: Path
) -> None:
    from radio.simulator import SimulatedPad

    pad = SimulatedPad(Role.CLEARER, "SIM0001")
    try:
        point(by_id, pad.path)
        rig = make_rig()
        await rig.link.start()
        await wait_until(lambda: rig.link.role is Role.CLEARER, "the simulator's HELLO")
        await rig.link.send(pairing_command(True))
        await rig.got(2)
        assert rig.messages[1] == Ack("PAIRMODE") and pad.pairing_led
        pad.send(TRK)
        await rig.got(3)
        assert rig.messages[2] == TRK
        assert rig.link.serial_number == "SIM0001" and not rig.link.stats.rejected
        await rig.link.stop()
    finally:
        pad.close()
