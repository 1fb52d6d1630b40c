"""W1: a gateway killed with SIGKILL while a delivery is on the wire loses nothing."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from gateway.core.ports import SystemClock
from gateway.services.deliveries import DeliveryService
from tests.test_deliveries_helpers import ALLOW, Receiver, Seen, Store, eventually

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.core.ports import SystemClock
from gateway.services.deliveries import DeliveryService
from gateway.store import outbox
from gateway.store.outbox import Delivery
from gateway.store.reader import Reader
from gateway.store.writer import Writer

async def main(path, url):
    writer, reader = Writer(Path(path)), Reader(Path(path))
    await writer.open()
    await reader.open()
    svc = DeliveryService(writer, reader, SystemClock(), allow=frozenset({"127.0.0.1"}))
    await svc.start()
    await writer.run(lambda c: [outbox.enqueue(c, Delivery(f"evt-{i}", url, "test", b"{}"), 1.0)
                                for i in range(3)])
    svc.wake()
    await asyncio.sleep(60)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_kill_9_mid_send_loses_nothing(tmp_path: Path) -> None:
    gate = asyncio.Event()

    async def first_hangs(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        if len(r.requests) == 1:
            await gate.wait()
        return web.Response(status=200)

    r = await Receiver(respond=first_hangs).start()
    path = tmp_path / "db.sqlite"
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, str(path), r.url(), cwd=ROOT)
    store: Store | None = None
    svc: DeliveryService | None = None
    try:
        async def on_the_wire() -> bool:
            return len(r.requests) == 1
        await eventually(on_the_wire, timeout=20.0)
        child.kill()  # SIGKILL: no close, no checkpoint
        await child.wait()
        gate.set()

        store = opened = Store(path)
        await opened.open()
        svc = DeliveryService(opened.writer, opened.reader, SystemClock(), allow=ALLOW)
        await svc.start()
        svc.wake()

        async def all_delivered() -> bool:
            return {x.state for x in await opened.rows()} == {"delivered"}
        await eventually(all_delivered)
        assert r.ids() == ["evt-0", "evt-0", "evt-1", "evt-2"]  # the one on the wire, twice
        assert [x.attempts for x in await opened.rows()] == [2, 1, 1]
    finally:
        if child.returncode is None:
            child.kill()
            await child.wait()
        gate.set()
        if svc is not None:
            await svc.close()
        if store is not None:
            await store.close()
        await r.close()
