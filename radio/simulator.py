"""A simulated restaurant for demo mode and tests: trackers, starters and a clearer.

It produces the same bytes as the hardware through the same entry points (adverts encoded by
`radio.advert` into the scanner's `on_advertisement`, pad lines encoded by `radio.line` on real
pty pairs opened by the real serial link), so demo mode exercises the real parsers.

`speed` scales the story (order timing, how long a guest sits), not the radio: adverts repeat and
pads beat at wall-clock rates like real hardware, so the gateway sees a realistic load.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import tty
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from radio import advert, line
from radio.advert import Flags, TrackerAdvert
from radio.line import Ack, Heartbeat, Hello, PadMessage, PairingMode, Role, TrackerPresent

log = logging.getLogger(__name__)

AdvertSink = Callable[[str, Mapping[int, bytes], int | None], None]
# Asked before a tracker leaves the charger: may tracker `number` (`address`) start an order now?
# A starter pad binds the order with the tracker's number, so the host says no while that
# number (or the puck) belongs to an order the simulator did not start.
MayStart = Callable[[int, str], bool]

FIRMWARE = "sim-1.0.0"
HEARTBEAT_S = 5.0
RESOLUTION_S = 0.25  # story time step: shorter than the shortest state, so none is skipped
CHARGE_PER_S, DRAIN_PER_S = 1 / 30, 1 / 90  # percent; fast enough to see in a demo


class State(Enum):
    ON_CHARGER = "back on the charger"
    ON_STARTER = "on the starter"
    CARRIED = "carried away from the till"
    ARRIVING = "arriving, first reads table"
    AT_TABLE = "at table"
    WAITING = "waiting for a to-go order"
    PICKED_UP = "picked up by the guest"
    TO_CLEARER = "carried to the clearer"
    ON_CLEARER = "cleared on the clearer"
    TO_CHARGER = "carried to the charger"


_FLAGS = {
    State.ON_CHARGER: Flags.ON_CHARGER,
    State.ON_STARTER: Flags.ON_STARTER,
    State.CARRIED: Flags.MOVING,
    State.PICKED_UP: Flags.BUTTON | Flags.MOVING,
    State.TO_CLEARER: Flags.MOVING,
    State.TO_CHARGER: Flags.MOVING,
}
_DURATION = {
    State.ON_STARTER: (1.0, 2.0),
    State.CARRIED: (3.0, 8.0),
    State.ARRIVING: (0.5, 1.5),
    State.AT_TABLE: (20.0, 60.0),
    State.WAITING: (45.0, 90.0),
    State.PICKED_UP: (1.0, 1.5),
    State.TO_CLEARER: (2.0, 5.0),
    State.ON_CLEARER: (1.0, 1.5),
    State.TO_CHARGER: (2.0, 4.0),
}
_NEXT = {
    State.ON_STARTER: State.CARRIED,
    State.ARRIVING: State.AT_TABLE,
    State.AT_TABLE: State.TO_CLEARER,
    State.WAITING: State.TO_CLEARER,
    State.PICKED_UP: State.TO_CLEARER,
    State.TO_CLEARER: State.ON_CLEARER,
    State.ON_CLEARER: State.TO_CHARGER,
    State.TO_CHARGER: State.ON_CHARGER,
}
_QUIET = {State.CARRIED, State.ARRIVING, State.TO_CLEARER, State.TO_CHARGER}  # DEBUG, not INFO
_PAGEABLE = {State.AT_TABLE, State.WAITING}  # where a guest can notice the buzz and get up
STARTERS = (Role.STARTER_DINE_IN, Role.STARTER_TO_GO)


@dataclass(frozen=True, slots=True)
class SimEvent:
    t: float  # simulated seconds since the simulator was made
    tracker: int | None
    what: str


@dataclass(slots=True)
class SimTracker:
    number: int
    address: str
    battery: float
    counter: int
    state: State = State.ON_CHARGER
    order: Role | None = None  # the starter that started its current order
    seat: int = 0  # the table the guest goes to (dine-in)
    table: int = 0  # what the tag reader reads right now
    until: float = math.inf
    vibrate_until: float | None = None
    pickup_at: float | None = None
    next_advert: float = 0.0
    last: tuple[int, int, Flags] | None = None

    @property
    def flags(self) -> Flags:
        base = _FLAGS.get(self.state, Flags.NONE)
        return (base | Flags.VIBRATING) if self.vibrate_until is not None else base

    def reading(self) -> TrackerAdvert:
        return TrackerAdvert(self.number, self.table, int(self.battery), self.flags, self.counter)


class SimulatedPad:
    """One pad on a pty pair: the gateway opens `path` (the slave), we speak on the master."""

    def __init__(self, role: Role, serial: str) -> None:
        self.role, self.serial = role, serial
        self.lines: deque[bytes] = deque(maxlen=256)  # what was written, newest last
        self.pairing_led = False
        self.dropped = 0
        self._buffer = b""
        self._master, self._slave = os.openpty()
        try:
            for fd in (self._master, self._slave):
                tty.setraw(fd)  # no echo, no CR/LF translation: the bytes are the protocol's
            os.set_blocking(self._master, False)  # a full pty must not stall the event loop
            self.path = os.ttyname(self._slave)  # kept open: the pty outlives the link's reopens
            asyncio.get_running_loop().add_reader(self._master, self._readable)
        except BaseException:
            os.close(self._master)
            os.close(self._slave)
            raise

    def send(self, message: PadMessage) -> None:
        data = line.encode(message)
        self.lines.append(data)
        try:
            written = os.write(self._master, data)
        except BlockingIOError:
            written = 0
        if written < len(data):  # nobody reads the port: the bytes are lost, as over USB
            self.dropped += 1
            if self.dropped == 1:
                log.warning(
                    "simulated %s pad: nobody reads %s, dropping lines", self.role.value, self.path
                )

    def pairing_switch(self, on: bool) -> None:
        self.send(PairingMode(on))

    def _readable(self) -> None:
        try:
            self._buffer += os.read(self._master, 1024)
        except BlockingIOError:
            return
        except OSError as exc:
            log.warning("simulated %s pad: read failed (%s)", self.role.value, exc)
            asyncio.get_running_loop().remove_reader(self._master)
            return
        *complete, self._buffer = self._buffer.split(b"\n")
        self._buffer = self._buffer[-line.MAX_LINE :]  # a babbling host cannot grow it
        for raw in complete:
            self._command(raw.rstrip(b"\r").decode("ascii", "replace"))

    def _command(self, text: str) -> None:
        body, star, given = text.rpartition("*")
        if not star or given.upper() != line.checksum(body):
            log.debug("simulated %s pad: ignoring bad line %r", self.role.value, text[:40])
        elif body == "PING":
            self.send(Hello(self.role, FIRMWARE, self.serial))
        elif body in ("PAIRMODE,0", "PAIRMODE,1"):
            self.pairing_led = body.endswith("1")
            self.send(Ack("PAIRMODE"))
        else:
            log.debug("simulated %s pad: unknown command %r", self.role.value, body[:20])

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # the loop may already be closed
            asyncio.get_running_loop().remove_reader(self._master)
        os.close(self._master)
        os.close(self._slave)


class Simulator:
    def __init__(
        self,
        advert_sink: AdvertSink,
        *,
        trackers: int = 12,
        tables: int = 8,
        seed: int | None = None,
        order_interval: float = 6.0,
        speed: float = 1.0,
        advert_hz: float = 4.0,
        low_battery: int | None = 15,
        may_start: MayStart | None = None,
    ) -> None:
        if not (1 <= trackers <= 0xFFFF and 1 <= tables <= 0xFFFF):
            raise ValueError("trackers and tables must be 1..65535")
        if min(order_interval, speed, advert_hz) <= 0:
            raise ValueError("order_interval, speed and advert_hz must be positive")
        self._sink, self._tables = advert_sink, tables
        self._may_start = may_start
        self._interval, self._speed, self._hz = order_interval, speed, advert_hz
        self._rng = random.Random(seed)
        # RSSI jitter draws from its own generator, so the story does not depend on how often
        # adverts are sent.
        self._air = random.Random(self._rng.getrandbits(64))
        self.now = 0.0
        self.pads: dict[Role, SimulatedPad] = {}
        self.events: deque[SimEvent] = deque(maxlen=2000)
        self.trackers = [
            SimTracker(
                n,
                f"C0:FF:EE:00:{n >> 8:02X}:{n & 0xFF:02X}",
                battery=float(self._rng.randint(60, 100)),
                counter=self._rng.randrange(256),
            )
            for n in range(1, trackers + 1)
        ]
        if low_battery is not None:
            self.trackers[-1].battery = float(low_battery)
        self._by_address = {t.address: t for t in self.trackers}
        self._next_order = self._order_gap()
        self._next_beat = 0.0
        self._task: asyncio.Task[None] | None = None

    async def start(self, *, run_clock: bool = True) -> None:
        """Open the pads and say HELLO; `run_clock=False` leaves time to `step()` (tests)."""
        if self.pads:
            return
        for i, role in enumerate((*STARTERS, Role.CLEARER), start=1):
            pad = SimulatedPad(role, f"SIM{i:04d}")
            self.pads[role] = pad
            pad.send(Hello(role, FIRMWARE, pad.serial))
            log.info("simulated %s pad on %s", role.value, pad.path)
        self._next_beat = self.now + HEARTBEAT_S * self._speed
        if run_clock:
            self._task = asyncio.create_task(self._run(), name="radio-simulator")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for pad in self.pads.values():
            pad.close()
        self.pads.clear()

    def pad_lines(self, role: Role) -> list[bytes]:
        return list(self.pads[role].lines) if role in self.pads else []

    def tracker(self, address: str) -> SimTracker:
        return self._by_address[address.upper()]

    def page(self, address: str, duration_s: int) -> None:
        """The tracker vibrates for `duration_s` (0: until stopped); a guest who is waiting or
        seated notices it after a few seconds and picks it up. KeyError for an unknown address."""
        t = self.tracker(address)
        t.vibrate_until = self.now + duration_s if duration_s > 0 else math.inf
        self._note(logging.INFO, t, f"paged for {duration_s or 'unlimited'} s")

    def stop_paging(self, address: str) -> None:
        t = self.tracker(address)
        if t.vibrate_until is not None:
            t.vibrate_until = None
            self._note(logging.INFO, t, "paging stopped")

    def start_order(self, role: Role | None = None) -> SimTracker | None:
        """Take an idle tracker from the charger to a starter (random role unless given); only
        one the host lets start (`may_start`), so the simulator never takes over an order."""
        idle = [t for t in self.trackers if t.state is State.ON_CHARGER]
        if self._may_start is not None:
            idle = [t for t in idle if self._may_start(t.number, t.address)]
        if not idle:
            self._note(logging.INFO, None, "a guest ordered but no free tracker is on the charger")
            return None
        t = self._rng.choice(idle)
        t.order = role or (STARTERS[0] if self._rng.random() < 0.6 else STARTERS[1])
        t.seat = self._rng.randint(1, self._tables) if t.order is Role.STARTER_DINE_IN else 0
        self._enter(t, State.ON_STARTER)
        return t

    def started(self, name: str, address: str) -> bool:
        """Is the order `name` bound to `address` one this simulator started (and has not yet
        brought back to the charger)?"""
        t = self._by_address.get(address.upper())
        return t is not None and t.order is not None and name == str(t.number)

    def step(self, dt: float) -> None:
        """Advance simulated time by `dt` seconds, in small steps so no state is skipped."""
        while dt > 1e-9:
            h = min(dt, RESOLUTION_S)
            dt -= h
            self._advance(h)

    # -- internals --

    def _advance(self, h: float) -> None:
        self.now += h
        for t in self.trackers:
            rate = CHARGE_PER_S if t.state is State.ON_CHARGER else -DRAIN_PER_S
            t.battery = min(100.0, max(0.0, t.battery + rate * h))
            if t.vibrate_until is not None and self.now >= t.vibrate_until:
                t.vibrate_until = None
                self._note(logging.INFO, t, "page ran out")
            if t.vibrate_until is not None and t.state in _PAGEABLE and t.pickup_at is None:
                t.pickup_at = self.now + self._rng.uniform(2.0, 6.0)
            if t.pickup_at is not None and self.now >= t.pickup_at:
                t.pickup_at = None
                if t.state in _PAGEABLE:  # the guest felt it, even if the page ran out since
                    t.vibrate_until = None  # pressing the button stops the motor
                    self._enter(t, State.PICKED_UP)
            while self.now >= t.until:
                self._enter(t, self._next_state(t))
        if self.now >= self._next_order:
            self._next_order = self.now + self._order_gap()
            self.start_order()
        if self.pads and self.now >= self._next_beat:
            self._next_beat = self.now + HEARTBEAT_S * self._speed
            for pad in self.pads.values():
                pad.send(Heartbeat(int(self.now / self._speed)))
        for t in self.trackers:
            self._advertise(t)

    def _order_gap(self) -> float:
        return self._interval * self._rng.uniform(0.5, 1.5)

    def _next_state(self, t: SimTracker) -> State:
        if t.state is not State.CARRIED:
            return _NEXT[t.state]
        if t.order is Role.STARTER_TO_GO:
            return State.WAITING
        # Tag readers sometimes catch the neighbouring table first; the gateway must debounce.
        noisy = self._tables > 1 and self._rng.random() < 0.3
        return State.ARRIVING if noisy else State.AT_TABLE

    def _enter(self, t: SimTracker, state: State) -> None:
        t.state = state
        lo_hi = _DURATION.get(state)
        t.until = self.now + self._rng.uniform(*lo_hi) if lo_hi else math.inf
        t.table = t.seat if state is State.AT_TABLE else 0
        if state is State.ARRIVING:
            t.table = t.seat + 1 if t.seat < self._tables else t.seat - 1
        detail = state.value
        if state is State.ON_STARTER and t.order is not None:
            detail = f"new order on the {t.order.value} pad"
            self._pad_send(t.order, TrackerPresent(t.number, t.address))
        elif state is State.ON_CLEARER:
            self._pad_send(Role.CLEARER, TrackerPresent(t.number, t.address))
        elif state in (State.AT_TABLE, State.ARRIVING):
            detail = f"{state.value} {t.table}"
        elif state is State.ON_CHARGER:
            t.order, t.seat = None, 0
        self._note(logging.DEBUG if state in _QUIET else logging.INFO, t, detail)

    def _pad_send(self, role: Role, message: PadMessage) -> None:
        pad = self.pads.get(role)
        if pad is not None:
            pad.send(message)

    def _advertise(self, t: SimTracker) -> None:
        content = (t.table, int(t.battery), t.flags)
        if content != t.last:  # a new reading: a real beacon bumps its counter
            t.last = content
            t.counter = (t.counter + 1) & 0xFF
        elif self.now < t.next_advert:
            return
        per_s = self._hz / 4 if t.state is State.ON_CHARGER else self._hz  # resting: slower
        t.next_advert = self.now + self._speed / per_s
        near = t.state in (State.ON_CHARGER, State.ON_STARTER, State.ON_CLEARER)
        rssi = (-50 if near else -72 if t.table else -62) + self._air.randint(-4, 4)
        self._sink(t.address, {advert.COMPANY_ID: advert.encode(t.reading())}, rssi)

    def _note(self, level: int, t: SimTracker | None, what: str) -> None:
        self.events.append(SimEvent(round(self.now, 3), t.number if t else None, what))
        log.log(
            level, "simulator t=%.1fs: %s%s", self.now, f"tracker {t.number} " if t else "", what
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        last, failed = loop.time(), False
        while True:
            await asyncio.sleep(1 / self._hz)
            now = loop.time()
            try:
                self.step((now - last) * self._speed)
            except Exception:  # a failing sink must not kill the demo; say so once
                if not failed:
                    log.exception("simulator step failed; carrying on")
                failed = True
            last = now
