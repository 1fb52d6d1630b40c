"""Issue 9, item 3: a request whose Host is not the box's own name or address is refused (421)
before any handler runs: the DNS-rebinding guard."""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import build
from gateway.core.hostnames import mdns_host_name
from tests.conftest import make_settings
from web.hostcheck import HOST_CHECK, HostCheck, host_name, is_ip_literal, own_names

GEN = "/api/v2/accesstoken/generate"
EVIL = {"Host": "attacker.example", "Origin": "http://attacker.example"}


def _evil(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {**EVIL, **(extra or {})}


async def test_fake_host_gets_no_token_even_with_the_window_open(client: Any, gateway: Any) -> None:
    gateway.ctx.tokens.open_window()
    resp = await client.get(f"{GEN}?name=pos", headers=_evil())
    body = await resp.json()
    assert (resp.status, body["status"], body["returnCode"]) == (421, 421, -46)
    assert "allowed_hosts" in body["message"]
    # A long-poll is refused at once, not parked until the press.
    resp = await asyncio.wait_for(client.get(f"{GEN}?name=pos&timeout=30", headers=_evil()), 5)
    assert resp.status == 421
    assert gateway.tokens.list() == []


async def test_fake_host_creates_no_order(client: Any, gateway: Any, auth: Any) -> None:
    resp = await client.post(
        "/api/v2/activeorders", json={"name": "7", "orderType": "TO_GO"}, headers=_evil(auth)
    )
    assert resp.status == 421
    assert gateway.ctx.orders.active() == []
    # The same request with the box's own address is served.
    resp = await client.post(
        "/api/v2/activeorders", json={"name": "7", "orderType": "TO_GO"}, headers=auth
    )
    assert resp.status == 201
    assert len(gateway.ctx.orders.active()) == 1


@pytest.mark.parametrize("path", ["/api/v2/websocket", "/api/ws"])
async def test_fake_host_websocket_upgrade_is_refused(client: Any, path: str) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect(path, headers=_evil())
    assert refused.value.status == 421


@pytest.mark.parametrize(
    ("path", "dialect"),
    [
        ("/api/openapi.json", "tracker"),
        ("/no/such/path", "tracker"),
        ("/api/v1/activeorders", "tracker"),
        ("/api/dev/devices/", "imprimo"),
        ("/api/orders.php", "imprinted"),
    ],
)
async def test_fake_host_is_421_in_the_paths_envelope(client: Any, path: str, dialect: str) -> None:
    resp = await client.get(path, headers=_evil())
    assert resp.status == 421
    body = await resp.json()
    if dialect == "tracker":
        assert body["returnCode"] == -46
    elif dialect == "imprimo":
        assert body["success"] is False and "Unknown Host" in body["error"]
    else:
        assert body["error"]["code"] == "host_refused"


async def test_refusals_are_logged_once_per_name_then_counted(
    client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="web.hostcheck")
    for _ in range(3):
        assert (await client.get("/api/v2", headers={"Host": "a.example:80"})).status == 421
    assert (await client.get("/api/v2", headers={"Host": "B.example."})).status == 421
    records = [r for r in caplog.records if r.name == "web.hostcheck"]
    assert len(records) == 2
    assert "'a.example'" in records[0].getMessage()
    check: HostCheck = client.app[HOST_CHECK]
    assert check.refused == {"a.example": 3, "b.example": 1}
    assert check.refused_total == 4


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "127.0.0.1:8000",
        "192.168.1.20:8000",
        "[::1]",
        "[::1]:8000",
        "[fe80::1%25eth0]:8000",
        "localhost",
        "LOCALHOST.:8000",
        socket.gethostname(),
        f"{socket.gethostname().split('.')[0]}.local:8000",
        "",  # empty: treated like a missing Host (HTTP/1.0)
    ],
)
async def test_own_names_and_addresses_are_served(client: Any, host: str) -> None:
    resp = await client.get("/api/openapi.json", headers={"Host": host})
    assert resp.status == 200


async def test_mdns_name_and_allow_listed_names_are_served(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    gw = await build(make_settings(tmp_path / "data", allowed_hosts=["Tablegate.Lan."]))
    try:
        client = await aiohttp_client(gw.app)
        mdns = mdns_host_name(gw.ctx.gateway_id)
        for host in (mdns, f"{mdns}:8000", "tablegate.lan", "tablegate.lan:8000"):
            resp = await client.get("/api/openapi.json", headers={"Host": host})
            assert resp.status == 200, host
        assert (await client.get("/api/openapi.json", headers=_evil())).status == 421
        await client.close()
    finally:
        await gw.writer.close()
        await gw.reader.close()


async def test_star_turns_the_check_off(tmp_path: Path, aiohttp_client: Any) -> None:
    gw = await build(make_settings(tmp_path / "data", allowed_hosts=["*"]))
    try:
        client = await aiohttp_client(gw.app)
        assert (await client.get("/api/openapi.json", headers=_evil())).status == 200
        assert HOST_CHECK not in gw.app
        await client.close()
    finally:
        await gw.writer.close()
        await gw.reader.close()


async def test_http10_without_host_is_served(client: Any) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(b"GET /api/openapi.json HTTP/1.0\r\n\r\n")
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readline(), 5)
        assert status_line.startswith(b"HTTP/1.0 200") or status_line.startswith(b"HTTP/1.1 200")
    finally:
        writer.close()


def test_allowed_hosts_setting_is_validated() -> None:
    from gateway.settings import SettingsError, load_settings

    assert load_settings(None, allowed_hosts=["POS.Example.", "*"]).allowed_hosts == [
        "pos.example",
        "*",
    ]
    for bad in ("http://x", "a b", "x/y", ""):
        with pytest.raises(SettingsError, match="allowed_hosts"):
            load_settings(None, allowed_hosts=[bad])


# -- the parser and the guard, fuzzed -----------------------------------------------------

CHECK = HostCheck(own_names(frozenset({"tablegate-abc.local", "pos.example"})))
LABEL = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
PORT = st.one_of(st.just(""), st.integers(0, 65535).map(lambda p: f":{p}"))


@settings(max_examples=500, deadline=None, derandomize=True)
@given(st.text(max_size=80))
def test_any_host_value_is_decided_without_error(raw: str) -> None:
    allowed = CHECK.allows(raw)
    name = host_name(raw)
    if allowed:
        assert name in CHECK.names or is_ip_literal(name)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.lists(LABEL, min_size=1, max_size=4).map(".".join), PORT)
def test_foreign_names_are_refused_with_any_port(name: str, port: str) -> None:
    if name in CHECK.names:
        return
    assert not CHECK.allows(name + port)
    assert not CHECK.allows(name.upper() + "." + port)


@settings(max_examples=300, deadline=None, derandomize=True)
@given(st.ip_addresses(), PORT)
def test_ip_literals_are_accepted_with_any_port(ip: Any, port: str) -> None:
    literal = f"[{ip}]" if ip.version == 6 else str(ip)
    assert CHECK.allows(literal + port)


@pytest.mark.parametrize(
    "raw",
    [
        "attacker.example",
        "127.0.0.1.attacker.example",
        "localhost.attacker.example",
        "[::1]x",
        "[::1",
        "127.0.0.1:80:80",
        "127.0.0.1:port",
        "2130706433",  # a decimal IPv4 is a name to the resolver, not a literal here
        "tablegate-abc.local.attacker.example",
    ],
)
def test_lookalikes_are_refused(raw: str) -> None:
    assert not CHECK.allows(raw)
