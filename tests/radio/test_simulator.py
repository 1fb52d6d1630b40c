"""The simulated restaurant speaks the real protocols and tells the real story.

Time is driven with `step()` (start(run_clock=False)) so every run is the same; the pads are read
on their pty slave ends with plain os.read, not through the serial link.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping

import pytest

from radio import advert, line
from radio.advert import Flags, TrackerAdvert
from radio.line import Ack, Heartbeat, Hello, PadMessage, Role, TrackerPresent
from radio.simulator import Simulator, State

Label = str


class Sink:
    """Collects adverts; with pad fds it drains them before each advert so the timeline keeps
    the order in which the simulator produced lines and adverts."""

    def __init__(self, fds: Mapping[Role, int] | None = None) -> None:
        self.got: list[tuple[str, dict[int, bytes], int | None]] = []
        self.timeline: list[tuple[str, TrackerAdvert | tuple[Role, PadMessage]]] = []
        self.fds = dict(fds or {})
        self._partial: dict[Role, bytes] = {}

    def __call__(self, address: str, data: Mapping[int, bytes], rssi: int | None) -> None:
        self.drain()
        self.got.append((address, dict(data), rssi))
        self.timeline.append((address, advert.decode(data[advert.COMPANY_ID])))

    def drain(self) -> None:
        for role, fd in self.fds.items():
            buf = self._partial.get(role, b"") + read_all(fd)
            *lines, self._partial[role] = buf.split(b"\n")
            for raw in lines:
                self.timeline.append(("pad", (role, line.parse(raw))))

    def readings(self, address: str) -> list[TrackerAdvert]:
        return [a for who, a in self.timeline if who == address and isinstance(a, TrackerAdvert)]


def read_all(fd: int) -> bytes:
    out = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return out
        if not chunk:
            return out
        out += chunk


def open_slave(path: str) -> int:
    return os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)


@pytest.fixture
async def restaurant() -> AsyncIterator[tuple[Simulator, Sink]]:
    sink = Sink()
    sim = Simulator(sink, seed=7)
    await sim.start(run_clock=False)
    sink.fds = {role: open_slave(pad.path) for role, pad in sim.pads.items()}
    yield sim, sink
    for fd in sink.fds.values():
        os.close(fd)
    await sim.stop()


def label(item: TrackerAdvert | tuple[Role, PadMessage]) -> Label:
    if isinstance(item, tuple):
        return f"TRK:{item[0].value}"
    for flag in (Flags.ON_CHARGER, Flags.ON_STARTER, Flags.MOVING):
        if flag in item.flags:
            return str(flag.name)
    return f"table:{item.table}" if item.table else "rest"


def test_same_seed_same_story_and_everything_decodes() -> None:
    def run(seed: int) -> tuple[list[tuple[str, dict[int, bytes], int | None]], list[object]]:
        sink = Sink()
        sim = Simulator(sink, seed=seed)
        for _ in range(800):
            sim.step(0.25)
        return sink.got, list(sim.events)

    first, again, other = run(3), run(3), run(4)
    assert first == again
    assert first != other
    adverts, events = first
    assert len(events) > 20  # orders happened
    last: dict[str, TrackerAdvert] = {}
    for address, data, rssi in adverts:
        assert list(data) == [advert.COMPANY_ID] and rssi is not None
        reading = advert.decode(data[advert.COMPANY_ID])
        assert address == f"C0:FF:EE:00:00:{reading.tracker:02X}"
        before = last.get(address)
        if before is not None and before.counter == reading.counter:
            assert before == reading  # a repeated counter is a repeat of the same reading
        elif before is not None:
            assert reading.counter == (before.counter + 1) & 0xFF
        last[address] = reading
    assert len(last) == 12
    batteries = {advert.decode(d[advert.COMPANY_ID]).battery for _, d, _ in adverts}
    assert 15 in batteries and None not in batteries  # the tracker configured low


async def test_dine_in_story_charger_starter_table_clearer_charger(
    restaurant: tuple[Simulator, Sink],
) -> None:
    sim, sink = restaurant
    for _ in range(1200):
        sim.step(0.25)
    sink.drain()
    pad_items = [item for who, item in sink.timeline if who == "pad"]
    assert all(not isinstance(i, TrackerAdvert) for i in pad_items)
    messages = [i[1] for i in pad_items if isinstance(i, tuple)]
    assert sum(isinstance(m, Hello) for m in messages) == 3  # one per pad at power-up
    assert any(isinstance(m, Heartbeat) for m in messages)

    start = next(
        i
        for i, (who, item) in enumerate(sink.timeline)
        if who == "pad"
        and isinstance(item, tuple)
        and item[0] is Role.STARTER_DINE_IN
        and isinstance(item[1], TrackerPresent)
    )
    trk = sink.timeline[start][1]
    assert isinstance(trk, tuple) and isinstance(trk[1], TrackerPresent)
    number, address = trk[1].tracker, trk[1].address
    assert address == sim.trackers[number - 1].address

    def mine(item: TrackerAdvert | tuple[Role, PadMessage]) -> bool:
        if isinstance(item, TrackerAdvert):
            return item.tracker == number
        return isinstance(item[1], TrackerPresent) and item[1].tracker == number

    before = {label(i) for _, i in sink.timeline[:start] if mine(i)}
    assert before == {"ON_CHARGER"}
    story: list[Label] = []
    for _, item in sink.timeline[start:]:
        if mine(item) and (not story or story[-1] != label(item)):
            story.append(label(item))
        if story[-1] == "ON_CHARGER":
            break
    tables = [s for s in story if s.startswith("table:")]
    assert story[:3] == ["TRK:STARTER_DINE_IN", "ON_STARTER", "MOVING"]
    assert story[3:] == [*tables, "MOVING", "TRK:CLEARER", "rest", "MOVING", "ON_CHARGER"]
    assert 1 <= len(tables) <= 2  # at most one neighbouring reading before settling
    seated = int(tables[-1].split(":")[1])
    assert 1 <= seated <= 8
    if len(tables) == 2:
        assert abs(int(tables[0].split(":")[1]) - seated) == 1
    at_table = [r for r in sink.readings(address) if r.table == seated]
    assert len(at_table) > 3 * len({r.counter for r in at_table})  # steady: mostly repeats

    # Somewhere in the run a tracker read a neighbour's tag first, then settled on its own.
    noisy = [e for e in sim.events if e.what.startswith(State.ARRIVING.value)]
    assert noisy
    nxt = next(e for e in sim.events if e.tracker == noisy[0].tracker and e.t > noisy[0].t)
    assert nxt.what.startswith(State.AT_TABLE.value)
    assert abs(int(nxt.what.split()[-1]) - int(noisy[0].what.split()[-1])) == 1


async def test_page_vibrates_then_the_guest_picks_it_up(
    restaurant: tuple[Simulator, Sink],
) -> None:
    sim, sink = restaurant
    t = sim.start_order(Role.STARTER_TO_GO)
    assert t is not None
    while t.state is not State.WAITING:
        sim.step(0.25)
    sim.step(5)
    assert not any(Flags.VIBRATING in r.flags for r in sink.readings(t.address))
    sim.page(t.address, 30)
    for _ in range(200):
        sim.step(0.25)
        if Flags.ON_CHARGER in t.flags:
            break
    flags = [r.flags for r in sink.readings(t.address)]
    vibrating = next(i for i, f in enumerate(flags) if Flags.VIBRATING in f)
    button = next(i for i, f in enumerate(flags) if Flags.BUTTON in f)
    assert vibrating < button
    assert Flags.MOVING in flags[button] and Flags.VIBRATING not in flags[button]
    assert line.encode(TrackerPresent(t.number, t.address)) in sim.pad_lines(Role.CLEARER)
    assert Flags.ON_CHARGER in flags[-1]


async def test_page_runs_out_or_is_stopped(restaurant: tuple[Simulator, Sink]) -> None:
    sim, _ = restaurant
    a, b = sim.trackers[0], sim.trackers[1]
    sim.page(a.address, 2)
    sim.page(b.address.lower(), 0)
    sim.step(1)
    assert Flags.VIBRATING in a.flags and Flags.VIBRATING in b.flags
    sim.step(1.5)
    assert Flags.VIBRATING not in a.flags and Flags.VIBRATING in b.flags
    sim.stop_paging(b.address)
    assert Flags.VIBRATING not in b.flags
    with pytest.raises(KeyError):
        sim.page("AA:BB:CC:DD:EE:FF", 10)


async def read_line(fd: int) -> PadMessage:
    buf = b""
    for _ in range(200):
        buf += read_all(fd)
        if b"\n" in buf:
            return line.parse(buf.split(b"\n")[0])
        await asyncio.sleep(0.01)
    raise AssertionError("no line from the pad")


async def test_ping_answers_hello_and_pairmode_acks(restaurant: tuple[Simulator, Sink]) -> None:
    sim, sink = restaurant
    for role, fd in sink.fds.items():
        assert await read_line(fd) == Hello(role, "sim-1.0.0", sim.pads[role].serial)
        os.write(fd, line.ping_command())
        assert await read_line(fd) == Hello(role, "sim-1.0.0", sim.pads[role].serial)
    fd = sink.fds[Role.CLEARER]
    os.write(fd, b"PING*00\r\n")  # bad checksum: a real pad ignores it
    os.write(fd, line.pairing_command(True))
    assert await read_line(fd) == Ack("PAIRMODE")
    assert sim.pads[Role.CLEARER].pairing_led


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def test_running_clock_and_stop_leaves_nothing_behind() -> None:
    fds, tasks = open_fds(), asyncio.all_tasks()
    sink = Sink()
    sim = Simulator(sink, seed=1, speed=20, advert_hz=20)
    await sim.start()
    assert open_fds() == fds + 6  # three pty pairs
    await asyncio.sleep(0.3)
    assert len({a for a, _, _ in sink.got}) == 12
    await sim.stop()
    assert open_fds() == fds
    assert asyncio.all_tasks() == tasks
    seen = len(sink.got)
    await asyncio.sleep(0.1)
    assert len(sink.got) == seen
