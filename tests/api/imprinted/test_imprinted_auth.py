"""Imprinted signatures (seed 001's SHA1 scheme and the HMAC-SHA256 one), the replay cache and
the app management API: every refusal is 401/403 with no side effect (S7)."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import time
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from gateway.app import Gateway, build
from gateway.services.integrations.imprinted.auth import ImprintedAuth, hmac_signature, split_query
from gateway.store import integration_keys as keys
from gateway.store.migrations import apply_migrations
from tests.api.imprinted.test_imprinted_helpers import (
    APPS,
    SEED_JSON,
    Client,
    Imprinted,
    make_app,
    parse_xml,
    sha1_sig,
)
from tests.conftest import make_settings
from web.access_log import redact
from web.api.imprinted import schemas as isc


@pytest.fixture
async def shop(client: Client, auth: dict[str, str]) -> Imprinted:
    return await make_app(client, auth)


def auth_of(gw: Gateway) -> ImprintedAuth:
    return gw.ctx.imprinted.auth


async def count(gw: Gateway) -> int:
    return len(gw.ctx.orders.active())


async def refused(resp: object, status: int, code: str) -> None:
    body = await resp.json()  # type: ignore[attr-defined]
    assert resp.status == status, body  # type: ignore[attr-defined]
    isc.ImprintedError.model_validate(body)
    assert body["error"]["code"] == code, body


# -- the seed's scheme ----------------------------------------------------------------------


def test_split_query_keeps_the_rest_as_sent() -> None:
    assert split_query("AppId=A&Signature=s&ids=1,2&format=xml") == (
        "AppId=A&ids=1,2&format=xml",
        ["s"],
        ["A"],
    )
    assert split_query("b=%20&AppId=A&Signature=x") == ("b=%20&AppId=A", ["x"], ["A"])
    assert split_query("") == ("", [], [])


async def test_good_signatures_on_every_method(shop: Imprinted) -> None:
    created = await shop.create()
    for path, query in (
        ("/api/orders.php", "limit=5&page=1"),
        ("/api/orders/count.php", ""),
        ("/api/order.php", f"id={created['id']}"),
    ):
        assert (await shop.get(path, query)).status == 200
    # The Signature may sit anywhere; the rest of the query is signed as sent.
    q = f"limit=5&AppId={shop.app_id}"
    resp = await shop.client.get(
        f"/api/orders.php?limit=5&Signature={sha1_sig(q.encode(), shop.secret)}&AppId={shop.app_id}"
    )
    assert resp.status == 200
    upper = sha1_sig(f"AppId={shop.app_id}".encode(), shop.secret).upper()
    resp = await shop.client.get(f"/api/orders.php?AppId={shop.app_id}&Signature={upper}")
    assert resp.status == 200
    assert (await shop.delete(f"id={created['id']}")).status == 200


async def test_missing_is_401_wrong_is_403(shop: Imprinted, gateway: Gateway) -> None:
    c = shop.client
    await refused(await c.get("/api/orders.php"), 401, "auth_malformed")
    await refused(await c.get(f"/api/orders.php?AppId={shop.app_id}"), 401, "auth_malformed")
    await refused(await c.get("/api/orders.php?Signature=" + "0" * 40), 401, "auth_malformed")
    await refused(
        await c.get(f"/api/orders.php?AppId={shop.app_id}&Signature=" + "0" * 40),
        403,
        "auth_invalid",
    )
    await refused(
        await c.get(f"/api/orders.php?AppId={shop.app_id}&Signature=zz"), 403, "auth_invalid"
    )
    q = "AppId=APP-00000000"
    await refused(
        await c.get(f"/api/orders.php?{q}&Signature={sha1_sig(q.encode(), 'x')}"),
        403,
        "auth_invalid",
    )
    two = f"AppId={shop.app_id}&AppId=APP-00000000"
    await refused(
        await c.get(f"/api/orders.php?{two}&Signature={sha1_sig(two.encode(), '')}"),
        401,
        "auth_malformed",
    )
    body = orjson.dumps(SEED_JSON)
    await refused(
        await c.post(
            f"/api/orders.php?AppId={shop.app_id}",
            data=body,
            headers={"Content-Type": "application/json"},
        ),
        401,
        "auth_malformed",
    )
    await refused(
        await shop.post_raw(body, signature=sha1_sig(body, "not-the-secret")), 403, "auth_invalid"
    )
    good = sha1_sig(body, shop.secret)
    await refused(
        await shop.post_raw(body, signature=good[:-1] + ("1" if good[-1] == "0" else "0")),
        403,
        "auth_invalid",
    )
    assert await count(gateway) == 0


async def test_unsigned_requests_are_refused_before_parsing(
    shop: Imprinted, gateway: Gateway
) -> None:
    """Bad parameters, bodies and types are only looked at for a verified caller."""
    c = shop.client
    await refused(await c.get("/api/orders.php?limit=9999"), 401, "auth_malformed")
    resp = await c.post(
        f"/api/orders.php?AppId={shop.app_id}&Signature={'0' * 40}",
        data=b"<!DOCTYPE x []><order/>",
        headers={"Content-Type": "application/xml"},
    )
    assert resp.status == 403 and resp.content_type == "application/xml"
    assert parse_xml(await resp.read()) == {
        "code": "auth_invalid",
        "message": "Invalid AppId or Signature.",
    }
    assert await count(gateway) == 0


async def test_reserialized_body_and_reordered_query_fail(
    shop: Imprinted, gateway: Gateway
) -> None:
    original = b'{"items": [{"pn": "JH001", "quantity": 4}], "comment": "x"}'
    sig = sha1_sig(original, shop.secret)
    reserialized = orjson.dumps(orjson.loads(original))  # same JSON, other bytes
    assert reserialized != original
    await refused(await shop.post_raw(reserialized, signature=sig), 403, "auth_invalid")
    assert await count(gateway) == 0
    assert (await shop.post_raw(original, signature=sig)).status == 201

    q = f"AppId={shop.app_id}&limit=5&page=1"
    sig = sha1_sig(q.encode(), shop.secret)
    swapped = f"AppId={shop.app_id}&page=1&limit=5"
    await refused(
        await shop.client.get(f"/api/orders.php?{swapped}&Signature={sig}"), 403, "auth_invalid"
    )
    encoded = f"AppId={shop.app_id}&limit=%35&page=1"  # decodes to the same value
    url = URL(f"{shop.client.make_url('/api/orders.php')}?{encoded}&Signature={sig}", encoded=True)
    await refused(await shop.client.session.get(url), 403, "auth_invalid")
    assert (await shop.client.get(f"/api/orders.php?{q}&Signature={sig}")).status == 200


async def test_any_flipped_byte_is_refused(shop: Imprinted, gateway: Gateway) -> None:
    """S7: every byte of the body is signed."""
    auth_of(gateway).throttle.limit = 10**9  # this test fails on purpose, many times
    body = orjson.dumps(SEED_JSON)
    sig = sha1_sig(body, shop.secret)
    for position in range(len(body)):
        for flip in (0x01, 0x20, 0x80):
            changed = bytearray(body)
            changed[position] ^= flip
            resp = await shop.post_raw(bytes(changed), signature=sig)
            assert resp.status == 403, (position, flip)
    assert await count(gateway) == 0


async def test_a_revoked_app_is_refused(
    shop: Imprinted, client: Client, auth: dict[str, str]
) -> None:
    assert (await shop.get("/api/orders.php")).status == 200
    resp = await client.delete(f"{APPS}/{shop.app_id}", headers=auth)
    assert resp.status == 200, await resp.json()
    await refused(await shop.get("/api/orders.php"), 403, "auth_invalid")
    resp = await client.delete(f"{APPS}/{shop.app_id}", headers=auth)
    assert resp.status == 404


async def test_failed_signatures_are_throttled(shop: Imprinted) -> None:
    bad = f"/api/orders.php?AppId={shop.app_id}&Signature={'0' * 40}"
    for _ in range(20):
        assert (await shop.client.get(bad)).status == 403
    resp = await shop.client.get(bad)
    await refused(resp, 429, "too_many_failures")
    assert resp.headers["Retry-After"]
    # A valid signature from the same address is served all the same (issue 9, item 7).
    assert (await shop.get("/api/orders.php")).status == 200


# -- the replay cache -----------------------------------------------------------------------


async def test_a_replayed_post_is_refused_with_no_second_order(
    shop: Imprinted, gateway: Gateway
) -> None:
    body = orjson.dumps({"items": [{"pn": "A"}]})
    assert (await shop.post_raw(body)).status == 201
    await refused(await shop.post_raw(body), 403, "replayed")
    assert await count(gateway) == 1
    # GETs and DELETEs are not cached: polling the same URL is normal.
    for _ in range(2):
        assert (await shop.get("/api/orders/count.php")).status == 200


async def test_a_refused_body_can_be_sent_again(shop: Imprinted) -> None:
    """Nothing is claimed for a request that did not take effect."""
    body = orjson.dumps({"items": [{"pn": "A", "quantity": 0}]})
    assert (await shop.post_raw(body)).status == 400
    assert (await shop.post_raw(body)).status == 400


async def test_the_replay_window_ends_and_external_id_keeps_retries_safe(
    shop: Imprinted, gateway: Gateway
) -> None:
    body = orjson.dumps({**SEED_JSON, "external_id": "R-1"})
    first = await shop.post_raw(body)
    assert first.status == 201
    await refused(await shop.post_raw(body), 403, "replayed")
    auth = auth_of(gateway)
    real = auth.clock

    class Later:
        def now(self) -> float:
            return real.now() + auth.replay_window + 1

    auth.clock = Later()
    again = await shop.post_raw(body)  # the window is over: the same order, not a second one
    assert again.status == 200
    assert (await again.json())["order"]["id"] == (await first.json())["order"]["id"]
    assert await count(gateway) == 1


async def test_the_replay_cache_survives_a_restart(tmp_path: Path) -> None:
    settings_ = make_settings(tmp_path / "data")
    body = orjson.dumps({"items": [{"pn": "A"}]})
    creds: list[tuple[str, str]] = []

    async def run(expect: int) -> None:
        gw = await build(settings_)
        try:
            async with TestClient(TestServer(gw.app)) as client:
                if not creds:
                    issued = await gw.tokens.issue("t", None)
                    app = await make_app(client, {"Authorization": f"Bearer {issued.secret}"})
                    creds.append((app.app_id, app.secret))
                app = Imprinted(client, *creds[0])
                resp = await app.post_raw(body)
                assert resp.status == expect, await resp.json()
        finally:
            await gw.writer.close()
            await gw.reader.close()

    await run(201)
    await run(403)  # the app and the signature it used are both remembered


# -- the HMAC-SHA256 scheme -------------------------------------------------------------------


async def test_hmac_scheme(shop: Imprinted, gateway: Gateway) -> None:
    c = shop.client
    body = orjson.dumps({"external_id": "H-1", "items": [{"pn": "A"}]})
    path = f"/api/orders.php?AppId={shop.app_id}"
    headers = {
        "Content-Type": "application/json",
        **shop.hmac_headers("POST", "/api/orders.php", body),
    }
    resp = await c.post(path, data=body, headers=headers)
    assert resp.status == 201, await resp.json()
    await refused(await c.post(path, data=body, headers=headers), 403, "replayed")
    # A retry is a new request (new timestamp): the same order comes back.
    later = {**headers, **shop.hmac_headers("POST", "/api/orders.php", body, int(time.time()) + 1)}
    resp = await c.post(path, data=body, headers=later)
    assert resp.status == 200
    stale = {
        **headers,
        **shop.hmac_headers("POST", "/api/orders.php", body, int(time.time()) - 301),
    }
    await refused(await c.post(path, data=body, headers=stale), 403, "stale_timestamp")
    wrong = {**headers, "X-Imprinted-Signature": "0" * 64}
    await refused(await c.post(path, data=body, headers=wrong), 403, "auth_invalid")
    no_ts = {k: v for k, v in headers.items() if k != "X-Imprinted-Timestamp"}
    await refused(await c.post(path, data=body, headers=no_ts), 401, "auth_malformed")
    junk_ts = {**headers, "X-Imprinted-Timestamp": "soon"}
    await refused(await c.post(path, data=body, headers=junk_ts), 403, "stale_timestamp")
    assert await count(gateway) == 1

    query = f"AppId={shop.app_id}&format=json"
    get = shop.hmac_headers("GET", "/api/orders/count.php", query.encode())
    resp = await c.get(f"/api/orders/count.php?{query}", headers=get)
    assert resp.status == 200 and (await resp.json()) == {"count": 1}
    # The method and the path are signed: the same headers cannot delete or list.
    await refused(await c.delete(f"/api/orders.php?{query}", headers=get), 403, "auth_invalid")
    await refused(await c.get(f"/api/orders.php?{query}", headers=get), 403, "auth_invalid")


def test_hmac_signature_is_the_documented_one() -> None:
    import hmac as stdlib_hmac

    expected = stdlib_hmac.new(
        b"s3cret", b"1700000000.POST./api/orders.php.{}", hashlib.sha256
    ).hexdigest()
    assert hmac_signature("s3cret", "1700000000", "post", "/api/orders.php", b"{}") == expected


# -- app management ---------------------------------------------------------------------------


async def test_app_management(client: Client, auth: dict[str, str]) -> None:
    one = await make_app(client, auth, "web shop")
    two = await make_app(client, auth, "kiosk")
    resp = await client.get(APPS, headers=auth)
    body = await resp.json()
    assert resp.status == 200
    listing = isc.ImprintedAppList.model_validate(body)
    assert [a.appId for a in listing.items] == [one.app_id, two.app_id]
    assert one.secret not in orjson.dumps(body).decode()
    resp = await client.post(APPS, json={"name": "bad/name"}, headers=auth)
    assert resp.status == 400
    resp = await client.post(APPS, json={"name": "x"})
    assert resp.status in (400, 401)
    resp = await client.delete(f"{APPS}/APP-00000000", headers=auth)
    assert resp.status == 404
    assert (await client.delete(f"{APPS}/{two.app_id}", headers=auth)).status == 200
    body = await (await client.get(APPS, headers=auth)).json()
    assert [a["appId"] for a in body["items"]] == [one.app_id]


async def test_secrets_and_signatures_stay_out_of_the_logs(
    shop: Imprinted, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    body = orjson.dumps(SEED_JSON)
    sig = sha1_sig(body, shop.secret)
    assert (await shop.post_raw(body, signature=sig)).status == 201
    await shop.post_raw(body, signature=sig)  # replayed
    await shop.client.get(f"/api/orders.php?AppId={shop.app_id}&Signature={'1' * 40}")
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert shop.secret not in text and sig not in text
    assert (
        redact(f"/api/orders.php?AppId=A&Signature={sig}")
        == "/api/orders.php?AppId=A&Signature=***"
    )


def test_the_integration_keys_store(tmp_path: Path) -> None:
    """Shared with CloudSignal: rows are per kind, revocation is once, replay claims expire."""
    conn = sqlite3.connect(tmp_path / "k.db", isolation_level=None)
    apply_migrations(conn)
    a = keys.insert(conn, "imprinted", "shop", "APP-1", created=1.0, secret="s3cret")
    keys.insert(conn, "cloudsignal", "kds", "APP-1", created=1.0, key_digest=b"d")
    assert "s3cret" not in repr(a) and "s3cret" not in str(keys.load(conn, "imprinted"))
    assert [k.kind for k in keys.load(conn, "imprinted")] == ["imprinted"]
    assert keys.by_digest(conn, "cloudsignal", b"d") is not None
    with pytest.raises(sqlite3.IntegrityError):
        keys.insert(conn, "imprinted", "again", "APP-1", created=2.0)
    with pytest.raises(ValueError, match="kind"):
        keys.load(conn, "nope")
    revoked = keys.revoke(conn, "imprinted", "APP-1", 5.0)
    assert revoked is not None and revoked.revoked == 5.0 and not revoked.active
    assert keys.revoke(conn, "imprinted", "APP-1", 6.0) is None
    assert (
        keys.load(conn, "imprinted") == [] and len(keys.load(conn, "imprinted", revoked=True)) == 1
    )
    assert keys.load(conn, "cloudsignal")[0].active
    assert keys.replay_claim(conn, b"x", 100.0, 0.0)
    assert not keys.replay_claim(conn, b"x", 200.0, 50.0)  # seen at 100, window from 50
    assert keys.replay_claim(conn, b"x", 800.0, 150.0)  # expired: taken again
    keys.replay_release(conn, b"x", 800.0)
    assert keys.replay_recent(conn, 0.0) == []
    keys.replay_claim(conn, b"y", 10.0, 0.0)
    assert keys.replay_prune(conn, 11.0) == 1
