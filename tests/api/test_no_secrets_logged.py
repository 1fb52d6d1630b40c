"""S2: no token, in clear, in the database or in any log line, even at DEBUG."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.support import GatewayProcess, free_port, http
from web.access_log import redact


def test_redact() -> None:
    assert (
        redact("/api/v2/websocket?since=4&accesstoken=abc")
        == "/api/v2/websocket?since=4&accesstoken=***"
    )
    assert redact("/x?AccessToken=abc&b=1") == "/x?AccessToken=***&b=1"
    assert redact("/api/v2/activeorders") == "/api/v2/activeorders"


def test_secrets_never_reach_the_log_or_the_database(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path / "data", free_port())
    gw.start(TABLEGATE_LOG_LEVEL="DEBUG")
    try:
        token = gw.token()
        cookie = (gw.data_dir / "admin.cookie").read_text().strip()
        http("POST", f"{gw.url}/api/v2/activeorders", {"name": "1", "orderType": "TO_GO"}, token)
        http("GET", f"{gw.url}/api/v2/activeorders", token="0" * 48)  # a wrong one too
        status, minted = http("POST", f"{gw.url}/api/v2/accesstoken/generate?name=b", token=token)
        assert status == 201
        second = minted["token"]["token"]

        async def feed() -> None:
            async with (
                aiohttp.ClientSession() as s,
                s.ws_connect(
                    f"{gw.url.replace('http', 'ws')}/api/v2/websocket?accesstoken={second}"
                ) as ws,
            ):
                msg = await asyncio.wait_for(ws.receive_json(), 5)
                assert msg["type"] == "ACTIVE_ORDERS"

        asyncio.run(feed())
    finally:
        gw.kill()
    log = gw.log()
    assert "GET /api/v2/activeorders" in log  # the access log did run at DEBUG
    for secret in (token, second, cookie):
        assert secret not in log
        for f in gw.data_dir.glob("tablegate.db*"):
            assert secret.encode() not in f.read_bytes()
