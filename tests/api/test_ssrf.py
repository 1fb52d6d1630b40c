"""Issue 9, item 2: outbound targets spelled with Unicode confusables, legacy IPv4 forms or
names that resolve to loopback reach nothing local: refused in each dialect's envelope when
registered, and a canary TCP server on 127.0.0.1 sees no connection from the webhook client or
the printer worker. No allow-list here (conftest's settings), no traffic beyond 127.0.0.1."""

# Confusable characters are the point of these tests.
# ruff: noqa: RUF001

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.test_utils import TestClient

from gateway.app import Gateway
from gateway.compose.printer_link import make_link
from gateway.core import netguard
from gateway.core.ports import SystemClock
from gateway.core.printing import Device, SendOutcome, Source
from gateway.services.printing.service import DeviceSpec
from tests.support.deliveries import Store, delivery, delivery_service, eventually

Client = TestClient[web.Request, web.Application]

# The spellings of 127.0.0.1 and localhost, and their cousins.
CONFUSABLE_HOSTS = [
    "１２７.０.０.１",  # fullwidth digits
    "127。0。0。1",  # ideographic full stops
    "127．0．0．1",  # fullwidth full stops
    "127｡0｡0｡1",  # halfwidth ideographic full stops
    "①②⑦.⓪.⓪.①",  # circled digits
    "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ",  # circled letters
    "ＬＯＣＡＬＨＯＳＴ",  # fullwidth capitals
    "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ。",  # ... with an ideographic trailing dot
]
OTHER_LOCAL_HOSTS = [
    "localhost.",
    "0x7f.1",
    "0177.0.0.1",
    "2130706433",
    "127.1",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:0:0:1]",
    "[::127.0.0.1]",
    "[fe80::1%25eth0]",
    "[fd00:ec2::254]",
    "printer.localhost",
    "metadata.google.internal.",
]


class Canary:
    """A TCP server on 127.0.0.1 that only counts who connects (and what they send)."""

    def __init__(self) -> None:
        self.connections = 0
        self.received = b""
        self.server: asyncio.Server | None = None

    async def start(self) -> Canary:
        self.server = await asyncio.start_server(self._on_connect, "127.0.0.1", 0)
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            self.received += await asyncio.wait_for(reader.read(4096), 1.0)
        except (TimeoutError, OSError):
            pass
        writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def canary() -> AsyncIterator[Canary]:
    c = await Canary().start()
    yield c
    await c.close()


class StubResolver(AbstractResolver):
    """DNS without traffic: every name resolves to `ips`."""

    def __init__(self, ips: list[str]) -> None:
        self.ips = ips
        self.asked: list[str] = []

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=0, proto=0, flags=0)
            for ip in self.ips
        ]

    async def close(self) -> None:
        pass


def stub_lookup(ips: list[str]) -> netguard.Lookup:
    async def lookup(host: str, port: int) -> list[str]:
        return list(ips)

    return lookup


# -- refused when registered, in each dialect's envelope -----------------------------------


@pytest.mark.parametrize("host", CONFUSABLE_HOSTS + OTHER_LOCAL_HOSTS)
async def test_register_refuses_local_spellings(
    client: Client, auth: dict[str, str], host: str
) -> None:
    resp = await client.post(
        "/api/v2/register", json={"http_client": f"http://{host}:9911/"}, headers=auth
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (400, -29), body
    listing = await (await client.get("/api/v2/register/clients", headers=auth)).json()
    assert listing["count"] == 0


@pytest.mark.parametrize("host", CONFUSABLE_HOSTS + OTHER_LOCAL_HOSTS)
async def test_print_api_subscription_refuses_local_spellings(
    client: Client, auth: dict[str, str], host: str
) -> None:
    resp = await client.post(
        "/api/integrations/webhooks", json={"url": f"http://{host}:9911/"}, headers=auth
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (400, -29), body
    listing = await (await client.get("/api/integrations/webhooks", headers=auth)).json()
    assert listing["count"] == 0


@pytest.mark.parametrize("host", CONFUSABLE_HOSTS + OTHER_LOCAL_HOSTS)
async def test_cloudsignal_subscription_refuses_local_spellings(
    client: Client, auth: dict[str, str], host: str
) -> None:
    subs = "/api/integrations/cloudsignal/subscriptions"
    resp = await client.post(
        subs, json={"url": f"https://{host}:9911/s", "apikey": "k"}, headers=auth
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (400, -29), body
    assert (await (await client.get(subs, headers=auth)).json())["count"] == 0


@pytest.mark.parametrize("host", CONFUSABLE_HOSTS + OTHER_LOCAL_HOSTS)
async def test_printer_add_refuses_local_spellings(
    client: Client, auth: dict[str, str], host: str
) -> None:
    resp = await client.post(
        "/api/dev/devices/", headers=auth, json={"name": "K", "address": f"tcp://{host}:9912"}
    )
    body = await resp.json()
    assert (resp.status, set(body), body["success"]) == (400, {"success", "error"}, False), body
    assert "address refused" in body["error"], body
    listing = await (await client.get("/api/dev/devices/", headers=auth)).json()
    assert listing["devices"]["total"] == 0


# -- a canary on loopback hears nothing -----------------------------------------------------


async def test_webhooks_to_local_spellings_never_reach_the_canary(
    tmp_path: Path, canary: Canary
) -> None:
    store = Store(tmp_path / "db.sqlite")
    await store.open()
    stub = StubResolver(["127.0.0.1"])  # "vm" (and any other name) is loopback here
    svc = delivery_service(store.writer, store.reader, SystemClock(), resolver=stub)
    try:
        urls = [f"http://{h}:{canary.port}/hook" for h in CONFUSABLE_HOSTS[:5]]
        named = f"http://vm:{canary.port}/hook"
        ids = await store.enqueue(*(delivery(u, n) for n, u in enumerate([*urls, named])))
        await svc.start()
        svc.wake()

        async def tried() -> bool:
            rows = await store.rows()
            return canary.connections > 0 or all(r.last_error is not None for r in rows)

        await eventually(tried)
        assert (canary.connections, canary.received) == (0, b"")
        for row_id in ids[:-1]:  # judged by their text: dead, never attempted
            row = await store.row(row_id)
            assert (row.state, row.attempts) == ("dead", 0), row
        row = await store.row(ids[-1])  # judged by what the name resolves to: no address
        assert row.last_error is not None and row.last_error.startswith("network-error"), row
        assert "vm" in stub.asked
    finally:
        await svc.close()
        await store.close()


@pytest.mark.parametrize("host", ["ⓛⓞⓒⓐⓛⓗⓞⓢⓣ", "１２７.０.０.１", "localhost", "0x7f.1"])
async def test_a_stored_printer_with_a_local_spelling_never_reaches_the_canary(
    gateway: Gateway,
    client: Client,
    auth: dict[str, str],
    canary: Canary,
    monkeypatch: pytest.MonkeyPatch,
    host: str,
) -> None:
    # A device row an older check let in (as in the run): the connect-time guard must
    # still keep the worker off loopback, and the device shows as unreachable.
    monkeypatch.setattr(gateway.printing, "check_spec", lambda spec: None)
    await gateway.printing.add_device(
        DeviceSpec("K", f"tcp://{host}:{canary.port}", "", id="k"), Source.API
    )
    resp = await client.post(
        "/api/dev/devices/k/requests/", headers=auth, json={"data": "secret order"}
    )
    assert resp.status == 200, await resp.json()

    async def unreachable() -> bool:
        return (
            canary.connections > 0 or gateway.printing.devices["k"].status_detail == "unreachable"
        )

    await eventually(unreachable)
    assert (canary.connections, canary.received) == (0, b"")
    await asyncio.sleep(0.2)  # a connection the worker made would have arrived by now
    assert (canary.connections, canary.received) == (0, b"")


async def test_a_printer_name_resolving_to_loopback_is_unreachable(canary: Canary) -> None:
    device = Device("k", "K", f"tcp://vm:{canary.port}", "", "80mm", Source.API, 0.0)
    guard = netguard.ConnectGuard(frozenset(), stub_lookup(["127.0.0.1", "::1"]))
    link = make_link(device, {}, guard)
    attempt = await link.print_job(b"secret order\n", 1.0)
    assert attempt.outcome is SendOutcome.UNREACHABLE and "vm" in attempt.detail
    with pytest.raises(ConnectionError):
        await link.health()
    assert (canary.connections, canary.received) == (0, b"")


async def test_an_allow_listed_printer_name_connects_to_the_judged_address(canary: Canary) -> None:
    asked: list[str] = []

    async def lookup(host: str, port: int) -> list[str]:
        asked.append(host)
        return ["127.0.0.1"]

    device = Device("k", "K", f"tcp://Printer.Lan.:{canary.port}", "", "80mm", Source.API, 0.0)
    link = make_link(device, {}, netguard.ConnectGuard(frozenset({"printer.lan"}), lookup))
    attempt = await link.print_job(b"hello\n", 0.3)
    assert attempt.outcome is not SendOutcome.UNREACHABLE, attempt
    await eventually(lambda: _true(canary.received.startswith(b"hello")))
    assert asked == ["printer.lan."]  # resolved once, by the guard; then the IP was dialled
    if attempt.pending is not None:
        await attempt.pending.close()


async def _true(value: bool) -> bool:
    return value
