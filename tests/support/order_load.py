"""The load both durability lanes put on a gateway: 50 clients posting unique orders until
the gateway is taken down (SIGKILL, or SIGKILL plus a power cut), recording what each request
learnt."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from tests.support import GatewayProcess

CLIENTS = 50
REQUEST_TIMEOUT = 3.0
ORDERS = "/api/v2/activeorders"


@dataclass
class Round:
    """What the clients saw in one load phase."""

    sent: set[str] = field(default_factory=set)
    acked: set[str] = field(default_factory=set)  # 201 received in full
    unknown: set[str] = field(default_factory=set)  # sent, no (complete) response
    refused: set[str] = field(default_factory=set)  # connect() failed: never reached the server
    unexpected: list[tuple[str, int, Any]] = field(default_factory=list)
    stopped_at: float = 0.0  # seconds into the load when the gateway was taken down


async def load_until_down(
    gw: GatewayProcess,
    token: str,
    names: Iterator[int],
    after: float,
    also: Callable[[], None] = lambda: None,
) -> Round:
    """Post orders from CLIENTS clients; after `after` seconds SIGKILL the gateway (and call
    `also` at the same instant, e.g. to cut the power), then collect every outcome."""
    r = Round()
    stop = asyncio.Event()
    url = f"{gw.url}{ORDERS}"
    headers = {"Authorization": f"Bearer {token}"}
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    connector = aiohttp.TCPConnector(limit=CLIENTS)

    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

        async def client() -> None:
            while not stop.is_set():
                name = str(next(names))
                r.sent.add(name)
                try:
                    async with session.post(
                        url, json={"name": name, "orderType": "TO_GO"}, headers=headers
                    ) as resp:
                        status = resp.status
                        body = await resp.json()
                except aiohttp.ClientConnectorError:
                    r.refused.add(name)  # no connection, so no byte of the request was sent
                    continue
                except (aiohttp.ClientError, TimeoutError, OSError, ValueError):
                    r.unknown.add(name)
                    continue
                activeorder = body.get("activeorder") or {}
                if (
                    status == 201
                    and body.get("returnCode") == 5
                    and activeorder.get("name") == name
                ):
                    r.acked.add(name)
                else:
                    r.unexpected.append((name, status, body))

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
        try:
            await asyncio.sleep(after)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGKILL)
            also()
            r.stopped_at = loop.time() - t0
            stop.set()
            await asyncio.to_thread(gw.proc.wait, 10)
            await asyncio.wait_for(asyncio.gather(*tasks), REQUEST_TIMEOUT + 2)
        finally:
            stop.set()
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return r
