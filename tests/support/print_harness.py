"""A printing service on a real SQLite file, driving real TCP printers (the fake or emupos)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.compose.printer_link import TicketRenderer, make_link
from gateway.core.models import Order
from gateway.core.netguard import ConnectGuard
from gateway.core.ports import SystemClock
from gateway.core.printing import PrintRequest, ProcessStatus, Source
from gateway.services.printing.service import DeviceSpec, PrintPolicy, PrintService
from gateway.store.reader import Reader
from gateway.store.writer import Writer
from printers.escpos_tokens import to_text

FAST = PrintPolicy(
    ack_timeout=0.5,
    backoff=(0.05, 0.1, 0.2),
    status_interval=0.5,
    hold_poll=0.1,
    sweep_interval=0.05,
    max_retries=5,
    allow=frozenset({"127.0.0.1"}),
)


@dataclass
class Harness:
    svc: PrintService
    writer: Writer
    reader: Reader
    orders: dict[str, Order] = field(default_factory=dict)

    async def until(self, check: Callable[[], bool], timeout: float = 10.0) -> None:
        end = time.monotonic() + timeout
        while not check():
            if time.monotonic() > end:
                raise AssertionError("condition not met in time")
            await asyncio.sleep(0.02)

    async def finished(
        self, device_id: str, request_id: str, timeout: float = 10.0
    ) -> PrintRequest:
        await self.until(lambda: request_id not in self.svc.open, timeout)
        return await self.svc.request(device_id, request_id)

    async def status_of(self, device_id: str, request_id: str) -> ProcessStatus:
        return (await self.svc.request(device_id, request_id)).process_status

    async def add_tcp(self, device_id: str, port: int, station: str = "") -> None:
        await self.svc.add_device(
            DeviceSpec(device_id, f"tcp://127.0.0.1:{port}", station, id=device_id), Source.API
        )


@asynccontextmanager
async def harness(
    db: Path,
    policy: PrintPolicy = FAST,
    *,
    start: bool = True,
    wake_outbox: Callable[[], None] = lambda: None,
    **changes: Any,
) -> AsyncIterator[Harness]:
    writer = Writer(db)
    await writer.open()
    reader = Reader(db)
    await reader.open()
    orders: dict[str, Order] = {}
    policy = replace(policy, **changes)
    guard = ConnectGuard(policy.allow)
    svc = PrintService(
        writer,
        reader,
        SystemClock(),
        find_order=lambda ref: orders.get(ref),
        links=lambda device: make_link(device, {}, guard),
        renderer=TicketRenderer(ZoneInfo("UTC")),
        policy=policy,
        wake_outbox=wake_outbox,
    )
    await svc.load()
    h = Harness(svc, writer, reader, orders)
    if start:
        await svc.start()
    try:
        yield h
    finally:
        await svc.close()
        await reader.close()
        await writer.close()


def texts(jobs: list[bytes]) -> list[str]:
    return [to_text(j) for j in jobs]
