"""Slow, oversized, broken and abandoned request bodies, and requests the HTTP parser refuses,
against the server exactly as production runs it (gateway.app.make_runner on 127.0.0.1).

Raw sockets throughout: an HTTP client library would neither send half a body nor garbage.
Every wait is bounded; "closed" means the socket reads EOF (or a reset) within WAIT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.app import Gateway, build, make_runner
from tests.conftest import make_settings
from web.access_log import DISCONNECTS
from web.protocol import request_path

WAIT = 5.0  # liveness bound for any answer or close; the deadlines under test are far below
AO = "/api/v2/activeorders"
IMPRINTED = "/api/orders.php"  # reads its body before authenticating (the signature covers it)
IMPRIMO = "/api/dev/requests"
MARKER = "Zq7Xv3Pk9Ln2"  # never part of an answer: nothing a client sent is echoed

Serve = Callable[..., Awaitable[tuple[Gateway, int]]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    made: list[tuple[Gateway, web.AppRunner]] = []

    async def make(**overrides: Any) -> tuple[Gateway, int]:
        gw = await build(make_settings(tmp_path / f"data{len(made)}", **overrides))
        runner = make_runner(gw.app)
        await runner.setup()
        made.append((gw, runner))
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        return gw, int(runner.addresses[0][1])

    yield make
    for gw, runner in made:
        await runner.cleanup()
        await gw.writer.close()
        await gw.reader.close()


async def exchange(
    port: int, *parts: bytes, pause: float = 0.0
) -> tuple[int, dict[str, str], bytes]:
    """Send `parts` (each its own write, `pause` apart), then read until the server closes
    the connection. A server that keeps it open fails the test by timing out."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n, part in enumerate(parts):
            if n and pause:
                await asyncio.sleep(pause)  # sequencing only: nothing is timed
            writer.write(part)
            await writer.drain()
        try:
            raw = await asyncio.wait_for(reader.read(), WAIT)
        except ConnectionResetError:
            raise AssertionError("reset instead of an answer") from None
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    return status, headers, body


def post_head(path: str, length: int | str, ctype: str = "application/json") -> bytes:
    framing = (
        f"Transfer-Encoding: {length}" if isinstance(length, str) else f"Content-Length: {length}"
    )
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {ctype}\r\n{framing}\r\n\r\n"
    ).encode()


# -- 1. body deadline and declared size -------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "envelope"),
    [
        (
            IMPRINTED,
            {"error": {"code": "body_timeout", "message": "Request body not received in time."}},
        ),
        (AO, {"status": 408, "returnCode": -47, "message": "Request body not received in time."}),
        (IMPRIMO, {"success": False, "error": "Request body not received in time."}),
    ],
)
async def test_half_sent_body_is_answered_408_and_closed_at_the_deadline(
    serve: Serve, path: str, envelope: dict[str, Any]
) -> None:
    """60,000 bytes declared, one sent: before, the imprinted route (which reads first) kept
    the connection for good, and the others for aiohttp's 10 s linger."""
    _, port = await serve(body_read_timeout=0.5)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    status, headers, body = await exchange(port, post_head(path, 60_000) + b"{")
    assert status == 408 and json.loads(body) == envelope
    assert headers["connection"] == "close"
    assert loop.time() - t0 >= 0.4  # the deadline, not a refusal on sight


@pytest.mark.parametrize("length", [64 * 1024 + 1, 10 * 1024**3])
async def test_declared_oversized_body_is_413_at_once_without_waiting_for_it(
    serve: Serve, length: int
) -> None:
    # A long deadline: the refusal must come from the header, not from the timer.
    _, port = await serve(body_read_timeout=60)
    status, headers, body = await exchange(port, post_head(IMPRINTED, length) + b"{")
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body)["error"]["code"] == "body_too_large"


async def test_chunked_body_over_the_limit_is_413_and_closed(serve: Serve) -> None:
    _, port = await serve(max_body_bytes=1024, body_read_timeout=60)
    chunk = b"800\r\n" + b"x" * 0x800 + b"\r\n"  # 2 KiB, more than the 1 KiB limit; no end
    status, headers, body = await exchange(port, post_head(AO, "chunked") + chunk)
    assert status == 413 and headers["connection"] == "close"
    assert json.loads(body) == {
        "status": 413,
        "returnCode": -42,
        "message": "Request body too large.",
    }


async def test_complete_bodies_still_work_on_a_kept_alive_connection(serve: Serve) -> None:
    """The guard leaves the hot path alone: two requests, one connection, both answered."""
    gw, port = await serve(body_read_timeout=0.5)
    token = (await gw.tokens.issue("limits", "127.0.0.1")).secret
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for name in ("1", "2"):
            body = json.dumps({"name": name, "orderType": "TO_GO"}).encode()
            writer.write(
                f"POST {AO} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            )
            await writer.drain()
            writer.write(body)  # a separate segment: the guard reads it under the deadline
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
            assert head.startswith(b"HTTP/1.1 201 "), head
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await asyncio.wait_for(reader.readexactly(length), WAIT)
    finally:
        writer.close()
    assert {o.name for o in gw.ctx.orders.active()} == {"1", "2"}


# -- 2. clients leaving mid-body --------------------------------------------------------------


def _reset_mid_body(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(post_head(IMPRINTED, 6000) + b"{")
        # Linger 0: close sends a reset, as a client that crashes or loses Wi-Fi does.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def test_clients_leaving_mid_body_are_counted_not_logged_as_errors(
    serve: Serve, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: each one was a 29-line ERROR traceback and a "500" access line."""
    monkeypatch.setattr(DISCONNECTS, "window", 0.5)
    monkeypatch.setattr(DISCONNECTS, "count", 0)
    _, port = await serve(body_read_timeout=30)
    caplog.set_level(logging.DEBUG)
    counted = 0

    def said() -> int:
        return sum(
            r.args[0]
            for r in caplog.records  # type: ignore[index,misc]
            if r.name == "web.access_log" and "mid-request" in r.getMessage()
        )

    for _ in range(200):
        await asyncio.to_thread(_reset_mid_body, port)

    async def all_counted() -> None:
        while said() < 200:
            await asyncio.sleep(0.05)

    await asyncio.wait_for(all_counted(), WAIT)
    counted = said()
    assert counted == 200
    records = caplog.records
    assert not [r for r in records if r.levelno >= logging.WARNING]
    assert not [r for r in records if r.name == "aiohttp.access"]  # no "500", no line at all
    info = [r for r in records if r.levelno == logging.INFO and r.name.startswith(("web", "aio"))]
    # One counted line per window: the 200 resets take a few windows of 0.5 s at most.
    assert 1 <= len(info) <= 10, [r.getMessage() for r in info]
    assert len([r for r in records if "disconnected mid-body" in r.getMessage()]) == 200


# -- 3. requests the parser refuses -----------------------------------------------------------


BAD_LINE = f"GET /api/v2/<script>{MARKER}</script>\x00 HTTP/1.1\r\nHost: x\r\n\r\n".encode()
BAD_HEADER = f"GET {IMPRIMO} HTTP/1.1\r\nHost: x\r\nX-<b>{MARKER}</b>\x01: y\r\n\r\n".encode()
BAD_CHUNK = post_head(IMPRINTED, "chunked") + f"zz{MARKER}\r\nabc\r\n0\r\n\r\n".encode()
TOO_LONG = f"GET /api/dev/{MARKER}{'a' * 9000} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
NOT_HTTP = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + MARKER.encode()  # a TLS hello

TT_400 = {"status": 400, "returnCode": -48, "message": "Malformed HTTP request."}
IMPRIMO_400 = {"success": False, "error": "Malformed HTTP request."}
IMPRINTED_400 = {"error": {"code": "malformed_request", "message": "Malformed HTTP request."}}


@pytest.mark.parametrize(
    ("raw", "envelope"),
    [
        (BAD_LINE, TT_400),
        (BAD_HEADER, IMPRIMO_400),
        (BAD_CHUNK, IMPRINTED_400),
        (TOO_LONG, IMPRIMO_400),
        (NOT_HTTP, TT_400),
    ],
    ids=["request-line", "header", "chunk-size", "line-too-long", "not-http"],
)
async def test_parser_400s_are_json_in_the_paths_envelope_without_echo(
    serve: Serve, caplog: pytest.LogCaptureFixture, raw: bytes, envelope: dict[str, Any]
) -> None:
    """Before: text/plain that quoted the offending bytes back, and an ERROR traceback."""
    _, port = await serve()
    caplog.set_level(logging.DEBUG)
    status, headers, body = await exchange(port, raw)
    assert status == 400 and headers["content-type"].startswith("application/json")
    assert json.loads(body) == envelope
    assert MARKER.encode() not in body and b"<" not in body
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_bad_chunk_after_the_handler_started_is_400_in_the_envelope(serve: Serve) -> None:
    """The chunk arrives after the request was dispatched: the body read fails, not the
    parser's first pass."""
    _, port = await serve()
    first = post_head(IMPRIMO, "chunked") + b"5\r\nhello\r\n"
    # Apart, so the request is dispatched and its body read before the bad chunk arrives
    # (were they read together, the parser's first pass answers the same).
    status, headers, body = await exchange(port, first, f"zz{MARKER}\r\n".encode(), pause=0.3)
    assert status == 400 and headers.get("connection", "close") == "close"
    assert json.loads(body) == IMPRIMO_400


@given(st.binary(max_size=300))
def test_request_path_reads_only_a_plain_path(data: bytes) -> None:
    path = request_path(data)
    assert path is None or (path.startswith("/") and path.isascii() and " " not in path)
    assert request_path(b"GET " + b"/api/dev/x?token=1 HTTP/1.1") == "/api/dev/x"


async def test_fuzzed_malformed_heads_are_never_500_nor_echoed(serve: Serve) -> None:
    # A short body deadline: junk can make a valid head that declares a body.
    _, port = await serve(body_read_timeout=1)

    @settings(max_examples=80, deadline=None)
    @given(
        prefix=st.sampled_from(["/api/v2/x", "/api/dev/x", IMPRINTED, "/"]),
        junk=st.binary(min_size=1, max_size=40),
        where=st.sampled_from(["line", "header"]),
    )
    def check(prefix: str, junk: bytes, where: str) -> None:
        marked = MARKER.encode() + junk
        if where == "line":
            raw = b"GET " + prefix.encode() + marked + b" HTTP/1.1\r\nHost: x\r\n\r\n"
        else:
            raw = b"GET " + prefix.encode() + b" HTTP/1.1\r\nHost: x\r\nX-" + marked + b"\r\n\r\n"
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(raw)
            head = b""
            while b"\r\n\r\n" not in head:
                data = s.recv(4096)
                assert data, f"closed without an answer: {head!r}"
                head += data
        status = int(head.split()[1])
        assert status < 500, head
        if status == 400:
            assert b"application/json" in head
        assert MARKER.encode() not in head

    # Blocking client calls in a thread: the server runs on this loop.
    await asyncio.to_thread(check)
