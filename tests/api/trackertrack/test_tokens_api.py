"""The button window, token minting, listing, revocation and the authorization matrix."""

from __future__ import annotations

import asyncio
import re
import sqlite3
import time
from typing import Any

import pytest

from web.dialect import Dialects
from web.routing import Auth
from web.server import DIALECTS

ROUTES = Dialects(DIALECTS).routes()

GEN = "/api/v2/accesstoken/generate"


async def test_generate_outside_window_is_403(client: Any) -> None:
    resp = await client.get(f"{GEN}?name=pos")
    body = await resp.json()
    assert (resp.status, body) == (
        403,
        {
            "status": 403,
            "returnCode": -3,
            "message": "Time window expired or gateway button not pressed.",
        },
    )


async def test_window_generates_48_hex_token_once(client: Any, gateway: Any) -> None:
    gateway.ctx.tokens.open_window()
    resp = await client.get(f"{GEN}?name=kitchen display")
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (201, 2)
    tok = body["token"]
    assert re.fullmatch(r"[0-9a-f]{48}", tok["token"])
    assert tok["name"] == "kitchen display" and tok["ip_address"] == "127.0.0.1"
    assert set(tok) >= {"name", "token", "creation_date", "last_used", "ip_address"}
    # The token works, and the list never shows a secret.
    auth = {"Authorization": f"Bearer {tok['token']}"}
    assert (await client.get("/api/v2/activeorders", headers=auth)).status == 200
    listing = await (await client.get("/api/v2/accesstoken", headers=auth)).json()
    assert listing["returnCode"] == 3 and listing["count"] == 1
    assert "token" not in listing["items"][0]
    assert tok["token"] not in str(listing)
    assert listing["items"][0]["last_used"] is not None


async def test_token_stored_only_as_digest(client: Any, gateway: Any, settings: Any) -> None:
    gateway.ctx.tokens.open_window()
    secret = (await (await client.get(f"{GEN}?name=x")).json())["token"]["token"]
    raw = (
        settings.db_path.read_bytes()
        + settings.db_path.with_name(settings.db_path.name + "-wal").read_bytes()
    )
    assert secret.encode() not in raw
    assert bytes.fromhex(secret) not in raw


@pytest.mark.parametrize("name", ["", "a" * 65, "bad/name", "x<y>", None])
async def test_bad_token_name(client: Any, gateway: Any, name: str | None) -> None:
    gateway.ctx.tokens.open_window()
    url = GEN if name is None else f"{GEN}?name={name}"
    resp = await client.get(url)
    assert (resp.status, (await resp.json())["returnCode"]) == (400, -4)


async def test_long_poll_waits_for_the_button(client: Any, gateway: Any) -> None:
    pending = asyncio.ensure_future(client.get(f"{GEN}?name=pos&timeout=5"))
    await asyncio.sleep(0.2)
    assert not pending.done()
    gateway.ctx.tokens.open_window()
    resp = await asyncio.wait_for(pending, 5)
    assert (resp.status, (await resp.json())["returnCode"]) == (201, 2)


async def test_long_poll_timeout_and_bad_timeouts(client: Any) -> None:
    resp = await client.get(f"{GEN}?name=pos&timeout=1")
    assert (resp.status, (await resp.json())["returnCode"]) == (408, -32)
    resp = await client.get(f"{GEN}?name=pos&timeout=soon")
    assert (resp.status, (await resp.json())["returnCode"]) == (400, -33)
    for t in ("0", "121"):
        resp = await client.get(f"{GEN}?name=pos&timeout={t}")
        assert (resp.status, (await resp.json())["returnCode"]) == (400, -34)


async def test_window_closes(client: Any, gateway: Any) -> None:
    gateway.ctx.tokens.open_window(0.2)
    assert (await client.get(f"{GEN}?name=a")).status == 201
    await asyncio.sleep(0.3)
    assert (await client.get(f"{GEN}?name=b")).status == 403


async def test_mint_with_bearer_and_revoke(client: Any, auth: Any) -> None:
    resp = await client.post(f"{GEN}?name=second", headers=auth)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (201, 2)
    resp = await client.post(GEN, json={"name": "third"}, headers=auth)
    third = (await resp.json())["token"]
    resp = await client.post(GEN, json={"name": 5}, headers=auth)
    assert (await resp.json())["returnCode"] == -4
    t3 = {"Authorization": f"Bearer {third['token']}"}
    assert (await client.get("/api/v2/activeorders", headers=t3)).status == 200
    resp = await client.delete(f"/api/v2/accesstoken/{third['id']}", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (200, 1001)
    resp = await client.get("/api/v2/activeorders", headers=t3)
    assert (resp.status, (await resp.json())["returnCode"]) == (401, -2)
    resp = await client.delete(f"/api/v2/accesstoken/{third['id']}", headers=auth)
    assert (resp.status, (await resp.json())["returnCode"]) == (404, -35)
    resp = await client.delete("/api/v2/accesstoken/abc", headers=auth)
    assert resp.status == 400


async def test_tokens_survive_restart(settings: Any, aiohttp_client: Any) -> None:
    from gateway.app import build

    gw = await build(settings)
    secret = (await gw.tokens.issue("pos", None)).secret
    await gw.writer.close()
    await gw.reader.close()
    gw2 = await build(settings)
    client = await aiohttp_client(gw2.app)
    resp = await client.get("/api/v2/activeorders", headers={"Authorization": f"Bearer {secret}"})
    assert resp.status == 200


async def test_last_used_is_flushed(client: Any, gateway: Any, token: str, settings: Any) -> None:
    await client.get("/api/v2/activeorders", headers={"Authorization": f"Bearer {token}"})
    await gateway.tokens.flush_usage()
    with sqlite3.connect(settings.db_path) as conn:
        (last_used,) = conn.execute("SELECT last_used FROM tokens").fetchone()
    assert last_used is not None


@pytest.mark.parametrize(
    ("header", "status", "rc"),
    [
        (None, 400, -1),
        ("Bearer", 400, -1),
        ("Bearer ", 400, -1),
        ("Token abc", 400, -1),
        ("Bearer " + "a" * 300, 400, -1),
        ("Bearer 0123456789abcdef0123456789abcdef0123456789abcdef", 401, -2),
    ],
)
async def test_auth_errors(client: Any, header: str | None, status: int, rc: int) -> None:
    headers = {} if header is None else {"Authorization": header}
    resp = await client.get("/api/v2/activeorders", headers=headers)
    assert (resp.status, (await resp.json())["returnCode"]) == (status, rc)


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


@pytest.mark.parametrize(
    "route",
    [r for r in ROUTES if r.auth in (Auth.TOKEN, Auth.ADMIN)],
    ids=lambda r: f"{r.method} {r.path}",
)
@pytest.mark.parametrize("header", [None, "Bearer nope", "Basic Og==", "Bearer revoked"])
async def test_authorization_matrix(
    client: Any, gateway: Any, route: Any, header: str | None
) -> None:
    """S1: generated from the route table, so a new route cannot skip authentication."""
    if header == "Bearer revoked":
        issued = await gateway.tokens.issue("gone", None)
        await gateway.tokens.revoke(issued.info.id)
        header = f"Bearer {issued.secret}"
    headers = {} if header is None else {"Authorization": header}
    before = len(gateway.ctx.orders.active())
    resp = await client.request(
        route.method,
        _concrete(route.path),
        headers=headers,
        json={"name": "1", "orderType": "TO_GO"},
    )
    body = await resp.json()
    if route.path.startswith("/api/dev/"):  # Imprimo (seed 000): 401, its own envelope
        assert resp.status == 401 and body["success"] is False, body
    else:
        assert resp.status in (400, 401), body
        assert body["returnCode"] in (-1, -2)
    assert len(gateway.ctx.orders.active()) == before


async def test_admin_window_requires_the_cookie(client: Any, gateway: Any) -> None:
    resp = await client.post("/api/admin/token-window", headers={"Authorization": "Bearer x"})
    assert resp.status == 401
    assert gateway.ctx.tokens.window_remaining() == 0
    resp = await client.post(
        "/api/admin/token-window",
        headers={"Authorization": f"Bearer {gateway.ctx.admin_cookie}"},
    )
    body = await resp.json()
    assert (resp.status, body["returnCode"], body["seconds"]) == (200, 1015, 120)
    assert gateway.ctx.tokens.window_remaining() > 100


async def test_failed_authentication_is_throttled_per_client(
    client: Any, gateway: Any, token: str
) -> None:
    """S5: after `limit` failures a client's wrong tokens get 429 with Retry-After until the
    window passes; a good token from that address is still served; another client is not
    affected."""
    gateway.ctx.tokens.throttle.limit = 5
    bad = {"Authorization": "Bearer " + "0" * 48}
    for _ in range(5):
        resp = await client.get("/api/v2/activeorders", headers=bad)
        assert resp.status == 401
    resp = await client.get("/api/v2/activeorders", headers=bad)
    body = await resp.json()
    assert (resp.status, body["returnCode"]) == (429, -44)
    assert int(resp.headers["Retry-After"]) > 0
    good = {"Authorization": f"Bearer {token}"}
    assert (await client.get("/api/v2/activeorders", headers=good)).status == 200
    # Another address is unaffected (the service keys on the client's address).
    assert gateway.ctx.tokens.authenticate(token, "192.0.2.7").name == "test-pos"
    throttle = gateway.ctx.tokens.throttle
    throttle.now = lambda: time.monotonic() + throttle.window + 1  # the window passes
    resp = await client.get("/api/v2/activeorders", headers=bad)
    assert resp.status == 401
