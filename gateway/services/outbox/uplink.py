"""Is the gateway itself online? The outbox asks before it spends a delivery attempt.

A delivery that gets no HTTP answer (connection refused, DNS failure, timeout) failed either
because the receiver is down or because the restaurant's own internet link is. Only the first
is the receiver's fault. So, after such a failure to an endpoint that needs the internet, the
outbox *checks*: `Uplink.confirm()` runs the probe (a TCP connect to a configurable target,
by default two public anycast resolvers on 443; any one answering is enough).

- Probe answers: the link works, the failure counts against the receiver (an attempt spent).
- Probe fails: the uplink is DOWN. The attempt is given back, and no endpoint that needs the
  internet is tried until the link is back: the monitor probes every `interval` seconds and
  tells its listeners (the outbox wakes) when it answers again.
- While DOWN, one *canary* delivery per interval may still go out (its attempt is given back
  too if it fails): a probe target that a firewall blocks cannot stop deliveries for ever,
  because any HTTP answer from a receiver proves the link is up (`alive()`).

Endpoints on the LAN (private, loopback and link-local addresses, `.local`/`.lan`/
`.home.arpa`/`.internal` and single-label names) do not need the uplink: their failures are
always theirs, and they are never held (`needs_uplink`). With no probe configured the check is
off and every failure spends an attempt, as before.

Time and waiting are injected (`clock`, `sleep`) like the outbox's, so tests can spend "a
weekend" offline in milliseconds; the probe is any `async () -> bool`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlsplit

from gateway.core.ports import Clock

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[bool]]
Sleep = Callable[[float], Awaitable[None]]
Listener = Callable[[bool], None]

DEFAULT_TARGETS: tuple[str, ...] = ("1.1.1.1:443", "9.9.9.9:443")
LAN_SUFFIXES = (".local", ".lan", ".home.arpa", ".internal", ".localdomain", ".localhost")


class State(Enum):
    UNKNOWN = "unknown"  # nothing failed yet: treated as up
    UP = "up"
    DOWN = "down"


@dataclass(slots=True)
class UplinkStats:
    probes: int = 0
    outages: int = 0
    canaries: int = 0


def needs_uplink(endpoint: str) -> bool:
    """Whether `endpoint` (`scheme://host:port`, or a URL) is reached through the internet."""
    try:
        host = (urlsplit(endpoint).hostname or "").rstrip(".").lower()
    except ValueError:
        return False
    if not host:
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "." in host and not host.endswith(LAN_SUFFIXES)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return not (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_unspecified)


def parse_target(target: str) -> tuple[str, int]:
    """`host:port` or `[v6]:port` -> (host, port); ValueError if it is neither."""
    host, sep, port = target.strip().rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"uplink probe target must be host:port, not {target!r}")
    return host, int(port)


class TcpProbe:
    """Up when a TCP connection to any of the targets opens within `timeout` seconds. A name
    needs DNS, which is part of what it checks; IP literals avoid depending on it."""

    def __init__(self, targets: Sequence[str], timeout: float = 3.0) -> None:
        self.targets = [parse_target(t) for t in targets]
        self.timeout = timeout

    async def __call__(self) -> bool:
        if not self.targets:
            return True
        tries = [asyncio.create_task(self._connect(h, p)) for h, p in self.targets]
        try:
            for done in asyncio.as_completed(tries):
                if await done:
                    return True
            return False
        finally:
            for t in tries:
                t.cancel()
            await asyncio.gather(*tries, return_exceptions=True)

    async def _connect(self, host: str, port: int) -> bool:
        try:
            _reader, writer = await asyncio.wait_for(
                asyncio.open_connection(host, port), self.timeout
            )
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True


class Uplink:
    """The connectivity state the outbox consults; see the module docstring. `probe=None`
    turns the check off (`covers` is then always False)."""

    def __init__(
        self,
        probe: Probe | None,
        clock: Clock,
        *,
        sleep: Sleep | None = None,
        interval: float = 30.0,
        fresh: float = 0.0,
        covers: Callable[[str], bool] = needs_uplink,
        describe: str = "",
    ) -> None:
        self._probe = probe
        self._clock = clock
        self._sleep = sleep or clock.sleep  # tests may pace the monitor apart from time
        self.interval = interval
        # A probe that said "up" this recently is trusted (0: every failure is checked, which
        # is what "no attempt spent while offline" needs from the first second of an outage).
        self._fresh = fresh
        self._covers = covers
        self._describe = describe or "the uplink probe"
        self.state = State.UNKNOWN
        self.stats = UplinkStats()
        self._checked_up = float("-inf")
        self._probing: asyncio.Task[bool] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._listeners: list[Listener] = []
        self._canary = False
        self._closed = False

    @property
    def enabled(self) -> bool:
        return self._probe is not None

    @property
    def down(self) -> bool:
        return self.state is State.DOWN

    def covers(self, endpoint: str) -> bool:
        """Whether deliveries to `endpoint` depend on the uplink (and are held while down)."""
        return self._probe is not None and self._covers(endpoint)

    def on_change(self, listener: Listener) -> None:
        """`listener(up)` on the loop whenever the state flips, and (False) after each probe
        that finds the link still down (a canary may go)."""
        self._listeners.append(listener)

    async def confirm(self) -> bool:
        """After a delivery got no answer: is the uplink up? Concurrent callers share one
        probe; an "up" is trusted for `fresh` seconds (default 0); while DOWN the answer is no
        without probing (the monitor probes)."""
        if self._probe is None or self._closed:
            return True
        if self.state is State.DOWN:
            return False
        if self._fresh > 0 and self._clock.now() - self._checked_up <= self._fresh:
            return True
        if self._probing is None or self._probing.done():
            self._probing = asyncio.create_task(self._run_probe(), name="uplink-probe")
        up = await asyncio.shield(self._probing)
        if not up:
            self._went_down()
        elif self.state is not State.UP:
            self.state = State.UP
        return up

    def alive(self) -> None:
        """A receiver answered over the internet: the link works, whatever the probe says."""
        self._checked_up = self._clock.now()
        if self.state is State.DOWN:
            log.info("uplink is back (a receiver answered); deliveries resume")
            self._went_up()
        else:
            self.state = State.UP

    def take_canary(self) -> bool:
        """While DOWN: True once per probe interval (one delivery may try the link)."""
        if self.state is State.DOWN and self._canary:
            self._canary = False
            self.stats.canaries += 1
            return True
        return False

    async def close(self) -> None:
        self._closed = True
        for task in (self._monitor, self._probing):
            if task is not None:
                task.cancel()
        for task in (self._monitor, self._probing):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._monitor = self._probing = None

    # -- internals ------------------------------------------------------------------------

    async def _run_probe(self) -> bool:
        assert self._probe is not None
        self.stats.probes += 1
        try:
            up = await self._probe()
        except Exception as exc:  # a probe bug counts as "no connectivity shown"
            log.debug("uplink probe raised %s", type(exc).__name__)
            up = False
        if up:
            self._checked_up = self._clock.now()
        return up

    def _went_down(self) -> None:
        if self.state is State.DOWN:
            return
        self.state = State.DOWN
        self.stats.outages += 1
        self._canary = False
        log.warning(
            "uplink down (%s does not answer): deliveries over the internet are "
            "held, no attempt is spent until it answers again",
            self._describe,
        )
        if self._monitor is None and not self._closed:
            self._monitor = asyncio.create_task(self._watch(), name="uplink-monitor")
        self._notify(False)

    def _went_up(self) -> None:
        self.state = State.UP
        self._canary = False
        self._notify(True)

    async def _watch(self) -> None:
        try:
            while self.state is State.DOWN and not self._closed:
                await self._sleep(self.interval)
                if self.state is not State.DOWN or self._closed:
                    break
                if await self._run_probe():
                    log.info("uplink is back; deliveries resume")
                    self._went_up()
                    break
                self._canary = True
                self._notify(False)
        finally:
            self._monitor = None

    def _notify(self, up: bool) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(up)
            except Exception:
                log.exception("uplink listener failed")
