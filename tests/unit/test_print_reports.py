"""Automatic reports (seed 000, Imprimo) through the durable outbox to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from gateway.core.ports import SystemClock
from gateway.core.printing import Command, ProcessStatus, ReportStatus
from gateway.services.outbox.service import DeliveryService
from gateway.services.printing.service import REPORT_KIND
from tests.printers.fake_printer import FakePrinter, free_port
from tests.support.deliveries import delivery_service
from tests.support.print_harness import Harness, harness


class Receiver:
    def __init__(self, port: int = 0) -> None:
        self.reports: list[dict[str, Any]] = []
        self.status = 200
        self.port = port
        self._runner: web.AppRunner | None = None

    async def handle(self, request: web.Request) -> web.Response:
        assert request.content_type == "application/json"
        assert request.headers.get("webhook-id")
        self.reports.append(await request.json())
        return web.Response(status=self.status)

    async def __aenter__(self) -> Receiver:
        app = web.Application()
        app.router.add_post("/reports", self.handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/reports"

    def requests(self, rid: str) -> list[dict[str, Any]]:
        return [r for rep in self.reports for r in rep.get("requests", []) if r["id"] == rid]


@asynccontextmanager
async def reported(
    db: Path, url: str, *, send: bool = True, **changes: Any
) -> AsyncIterator[tuple[Harness, DeliveryService]]:
    box: list[DeliveryService] = []
    async with harness(
        db, report_url=url, wake_outbox=lambda: box[0].wake(), start=False, **changes
    ) as h:
        deliveries = delivery_service(
            h.writer, h.reader, SystemClock(), allow=frozenset({"127.0.0.1"})
        )
        box.append(deliveries)
        deliveries.register_hook(
            REPORT_KIND,
            lambda conn, row, event, code, msg: h.svc.report_hook(
                conn, row.ref, event, code, msg, row.attempts
            ),
            on_commit=h.svc.apply_report_updates,
        )
        await h.svc.start()
        if send:
            await deliveries.start()
        try:
            yield h, deliveries
        finally:
            await deliveries.close()


async def test_outcome_and_device_reports_reach_the_submitter(tmp_path: Path) -> None:
    async with Receiver() as rx, FakePrinter() as fake, reported(tmp_path / "db", rx.url) as (h, _):
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "report me", reserved="pos-77")
        await h.until(lambda: any(x["process"]["status"] == "archived" for x in rx.requests(r.id)))
        final = next(x for x in rx.requests(r.id) if x["process"]["status"] == "archived")
        assert final["deviceId"] == "kp" and final["reserved"] == "pos-77"
        assert final["output"]["data"] == {"printed": True}
        assert final["report"]["enabled"] is True and "attemps" in final["report"]
        # The device came online: a device report, in the seed's shape.
        devices = [d for rep in rx.reports for d in rep.get("devices", [])]
        assert any(d["id"] == "kp" and d["isOnline"] is True for d in devices)
        # The request's own report block follows the delivery: archived after one attempt.

        async def report_block() -> Any:
            return (await h.svc.request("kp", r.id)).report

        for _ in range(100):
            rep = await report_block()
            if rep.status is ReportStatus.ARCHIVED and rep.attempts == 1:
                break
            await asyncio.sleep(0.05)
        assert rep.status is ReportStatus.ARCHIVED and rep.attempts == 1 and rep.error is None


async def test_accept_answer_is_reported_with_output_data(tmp_path: Path) -> None:
    async with Receiver() as rx, FakePrinter() as fake, reported(tmp_path / "db", rx.url) as (h, _):
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_ORDER, "1x Lasagne")
        await h.until(
            lambda: any(x["process"]["status"] == "waiting-output" for x in rx.requests(r.id))
        )
        await h.svc.respond("kp", r.id, True, 20)
        await h.until(
            lambda: any(
                x["output"]["data"] == {"accepted": True, "time": 20} for x in rx.requests(r.id)
            )
        )


async def test_reports_survive_a_restart_between_commit_and_send(tmp_path: Path) -> None:
    db = tmp_path / "db"
    port = free_port()
    url = f"http://127.0.0.1:{port}/reports"
    async with FakePrinter() as fake:
        async with reported(db, url, send=False) as (h, deliveries):
            await h.add_tcp("kp", fake.port)
            r = await h.svc.submit("kp", Command.PRINT_TEXT, "printed before the crash")
            await h.finished("kp", r.id)
            assert await deliveries.pending() >= 1  # committed with the outcome, not sent
        async with Receiver(port) as rx, reported(db, url) as (h2, _):
            await h2.until(
                lambda: any(x["process"]["status"] == "archived" for x in rx.requests(r.id))
            )
        assert len(fake.printed) == 1  # the restart reported it; it did not print it again


async def test_failed_report_keeps_the_report_block_true(tmp_path: Path) -> None:
    async with Receiver() as rx, FakePrinter() as fake, reported(tmp_path / "db", rx.url) as (h, _):
        rx.status = 410  # the submitter says: stop
        await h.add_tcp("kp", fake.port)
        r = await h.svc.submit("kp", Command.PRINT_TEXT, "nobody listens")
        await h.finished("kp", r.id)
        end = time.monotonic() + 5
        while True:
            rep = (await h.svc.request("kp", r.id)).report
            if rep.error is not None or time.monotonic() > end:
                break
            await asyncio.sleep(0.05)
        assert rep.status is ReportStatus.ARCHIVED and rep.error is not None
        assert rep.attempts == 1
        assert (await h.svc.request("kp", r.id)).process_status is ProcessStatus.ARCHIVED
