"""W1: a gateway killed with SIGKILL while a delivery is on the wire loses nothing: the outbox
alone, and a whole gateway process with real order changes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from aiohttp import web

from gateway.core.ports import SystemClock
from gateway.services.outbox.service import DeliveryService
from tests.support import GatewayProcess, free_port, http
from tests.support.deliveries import ALLOW, Receiver, Seen, Store, delivery_service, eventually

ROOT = Path(__file__).resolve().parents[2]

CHILD = """
import asyncio, sys
from pathlib import Path
from gateway.core.ports import SystemClock
from gateway.services.outbox.service import DeliveryService, OutboxPolicy
from gateway.store import outbox
from gateway.store.outbox import Delivery
from gateway.store.reader import Reader
from gateway.store.writer import Writer

async def main(path, url):
    writer, reader = Writer(Path(path)), Reader(Path(path))
    await writer.open()
    await reader.open()
    policy = OutboxPolicy(allow=frozenset({"127.0.0.1"}))
    svc = DeliveryService(writer, reader, SystemClock(), policy)
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
        sys.executable, "-c", CHILD, str(path), r.url(), cwd=ROOT
    )
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
        svc = delivery_service(opened.writer, opened.reader, SystemClock(), allow=ALLOW)
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


async def test_kill_9_with_real_order_changes_loses_no_webhook(tmp_path: Path) -> None:
    """A gateway process with a Print API subscription: orders are committed (with their
    webhooks, in the same transaction), the first webhook is on the wire, SIGKILL. After a
    restart every status change is announced, in order; only the one on the wire twice."""
    gate = asyncio.Event()

    async def hold_the_first(_req: web.Request, _seen: Seen) -> web.StreamResponse:
        if len(r.requests) == 1:
            await gate.wait()
        return web.Response(status=200)

    r = await Receiver(respond=hold_the_first).start()
    gw = GatewayProcess(tmp_path / "data", free_port())
    env = {"TABLEGATE_OUTBOUND_ALLOW": '["127.0.0.1"]'}
    try:
        await asyncio.to_thread(gw.start, **env)
        token = await asyncio.to_thread(gw.token)
        status, _ = await asyncio.to_thread(
            http, "POST", f"{gw.url}/api/integrations/webhooks", {"url": r.url("/pa")}, token
        )
        assert status == 201
        for name, location in (("11", None), ("12", None), ("11", "4")):
            body = {"name": name, "orderType": "TO_GO"} | (
                {"locationName": location} if location else {}
            )
            status, _ = await asyncio.to_thread(
                http, "POST", f"{gw.url}/api/v2/activeorders", body, token
            )
            assert status in (200, 201)

        async def on_the_wire() -> bool:
            return len(r.requests) == 1

        await eventually(on_the_wire, timeout=20.0)
        gw.kill()  # SIGKILL: acknowledged orders, their webhooks not yet sent
        gate.set()
        await asyncio.to_thread(gw.start, **env)

        async def all_arrived() -> bool:
            return len(r.requests) == 4

        await eventually(all_arrived, timeout=20.0)
        await asyncio.sleep(0.2)
        bodies = [s.body.decode() for s in r.requests]
        assert bodies == ["orderId=1", "orderId=1", "orderId=2", "orderId=1"], bodies
        assert len({s.headers["webhook-id"] for s in r.requests}) == 3  # the resend: same id
    finally:
        gate.set()
        gw.kill()
        await r.close()
