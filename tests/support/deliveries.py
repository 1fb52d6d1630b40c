"""Shared pieces of the delivery tests: a store on a file, real receivers, a fake clock.

(No tests here; the name only keeps it among the delivery test files.)
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from gateway.core.ports import Clock, SystemClock
from gateway.services.outbox.service import DeliveryService, OutboxPolicy
from gateway.store import outbox
from gateway.store.outbox import Delivery, OutboxRow
from gateway.store.reader import Reader
from gateway.store.writer import Writer

ALLOW = frozenset({"127.0.0.1"})
T0 = 1_700_000_000.0


class FakeClock:
    """Time that moves only when the service sleeps: a 10-hour schedule runs in milliseconds,
    and the gaps a receiver observes are exactly the delays the service chose."""

    def __init__(self, t: float = T0) -> None:
        self.t = t
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)


def delivery_service(writer: Writer, reader: Reader, clock: Clock, **kw: Any) -> DeliveryService:
    """A DeliveryService from one set of keywords: the injections by name (signer, uplink, rng,
    resolver), everything else an OutboxPolicy field."""
    inject = {k: kw.pop(k) for k in ("signer", "uplink", "rng", "resolver") if k in kw}
    return DeliveryService(writer, reader, clock, OutboxPolicy(**kw), **inject)


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.writer = Writer(path, synchronous="NORMAL")
        self.reader = Reader(path)

    async def open(self) -> None:
        await self.writer.open()
        await self.reader.open()

    async def close(self) -> None:
        await self.reader.close()
        await self.writer.close()

    async def reopen(self) -> None:
        """A new process' view: fresh writer and reader on the same file."""
        await self.close()
        self.writer = Writer(self.path, synchronous="NORMAL")
        self.reader = Reader(self.path)
        await self.open()

    async def enqueue(self, *deliveries: Delivery, now: float | None = None) -> list[int]:
        at = time.time() if now is None else now
        return await self.writer.run(lambda c: [outbox.enqueue(c, d, at) for d in deliveries])

    async def row(self, row_id: int) -> OutboxRow:
        row = await self.writer.run(lambda c: outbox.get(c, row_id))
        assert row is not None
        return row

    async def rows(self) -> list[OutboxRow]:
        ids = await self.writer.run(lambda c: [r[0] for r in c.execute("SELECT id FROM outbox")])
        return [await self.row(i) for i in ids]


@dataclass
class Seen:
    event_id: str
    body: bytes
    headers: dict[str, str]
    path: str
    at: float


Respond = Callable[[web.Request, Seen], Awaitable[web.StreamResponse]]


async def ok(_request: web.Request, _seen: Seen) -> web.StreamResponse:
    return web.Response(status=200)


@dataclass
class Receiver:
    """A real aiohttp server on 127.0.0.1 that records what it receives."""

    respond: Respond = ok
    clock: Clock = field(default_factory=SystemClock)
    requests: list[Seen] = field(default_factory=list)
    gate: asyncio.Event = field(default_factory=asyncio.Event)  # set: held requests go on
    inflight: int = 0
    max_inflight: int = 0
    server: TestServer | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self.server = TestServer(app, host="127.0.0.1")
        await self.server.start_server()
        return self

    async def close(self) -> None:
        self.gate.set()
        if self.server is not None:
            await self.server.close()

    def url(self, path: str = "/hook") -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def ids(self) -> list[str]:
        return [s.event_id for s in self.requests]

    def gaps(self) -> list[float]:
        """Time between consecutive requests, on the receiver's clock."""
        return [b.at - a.at for a, b in itertools.pairwise(self.requests)]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        seen = Seen(
            request.headers.get("webhook-id", ""),
            await request.read(),
            dict(request.headers),
            request.path_qs,
            self.clock.now(),
        )
        self.requests.append(seen)
        self.inflight += 1
        self.max_inflight = max(self.max_inflight, self.inflight)
        try:
            return await self.respond(request, seen)
        finally:
            self.inflight -= 1


def scripted(*statuses: int | tuple[int, dict[str, str]]) -> Respond:
    """Answer with these statuses in turn, then 200 for ever."""
    todo = list(statuses)

    async def respond(_request: web.Request, _seen: Seen) -> web.StreamResponse:
        if not todo:
            return web.Response(status=200)
        step = todo.pop(0)
        status, headers = step if isinstance(step, tuple) else (step, {})
        return web.Response(status=status, headers=headers)

    return respond


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    """Wait (really, but briefly) until `check()` holds."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


def delivery(receiver_or_url: Receiver | str, n: int, **kw: Any) -> Delivery:
    url = receiver_or_url if isinstance(receiver_or_url, str) else receiver_or_url.url()
    kw.setdefault("kind", "test")
    return Delivery(event_id=f"evt-{n}", url=url, body=f'{{"n": {n}}}'.encode(), **kw)


class _Sink(asyncio.Protocol):
    """HTTP/1.1 keep-alive requests in, `204 No Content` out: just enough of a server for a
    client that sends Content-Length bodies (aiohttp does), at a fraction of a real one's cost
    (so a 50,000-delivery test measures the gateway, not its receiver)."""

    def __init__(self, on_body: Callable[[bytes], None]) -> None:
        self._on_body = on_body
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._buf += data
        while (end := self._buf.find(b"\r\n\r\n")) >= 0:
            length = 0
            for line in bytes(self._buf[:end]).split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            total = end + 4 + length
            if len(self._buf) < total:
                return
            body = bytes(self._buf[end + 4 : total])
            del self._buf[:total]
            self._on_body(body)
            assert self._transport is not None
            self._transport.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")


class FastReceiver:
    """A minimal HTTP receiver on a fixed port that can go away and come back (the far side of
    the internet, seen from a gateway whose uplink is down: nothing answers)."""

    def __init__(self, port: int, on_body: Callable[[bytes], None]) -> None:
        self.port = port
        self._on_body = on_body
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Sink(self._on_body), "127.0.0.1", self.port, reuse_address=True
        )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
