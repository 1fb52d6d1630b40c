"""The ceiling for bench/orders.py: a bare aiohttp app on the same Python, no gateway code.

    python bench/bare_server.py --host 127.0.0.1 --port 8123

Routes (the same paths the gateway serves, so the load generators need no changes):
- GET  /api/v2                 200 small JSON (readiness probe, as for the gateway)
- POST /api/v2/activeorders    reads the JSON body, answers 201 with a small JSON echo of `name`
- GET  /api/v2/websocket       a WebSocket that gets every broadcast frame (no auth, no snapshot
                               beyond a one-line hello carrying the current seq)
The POST also broadcasts one NEW_ORDER frame (`name`, `seq`) to every connected WebSocket, so
the same poster measures POST-to-WebSocket latency against this server and the gateway.

Same process shape as the gateway: asyncio default loop, web.AppRunner, logging at WARNING
(so aiohttp's access log is off, as in the gateway), SIGTERM/SIGINT stop it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from aiohttp import WSMsgType, web

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
CLIENTS = web.AppKey("clients", set)
SEQ = web.AppKey("seq", list)


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": 200, "returnCode": 1, "message": "bare ready"})


async def create(request: web.Request) -> web.Response:
    try:
        body = json.loads(await request.read())
    except (ValueError, RecursionError):
        return web.json_response({"status": 400, "returnCode": -31}, status=400)
    name = str(body.get("name", "")) if isinstance(body, dict) else ""
    seq_box = request.app[SEQ]
    seq_box[0] += 1
    clients = request.app[CLIENTS]
    if clients:
        frame = _dumps({"type": "NEW_ORDER", "name": name, "seq": seq_box[0]})
        for ws in tuple(clients):
            if not ws.closed:
                await ws.send_str(frame)
    return web.Response(
        body=_dumps({"status": 201, "returnCode": 5, "activeorder": {"name": name}}).encode(),
        status=201,
        content_type="application/json",
    )


async def websocket(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(heartbeat=20.0, autoping=True)
    await ws.prepare(request)
    await ws.send_str(_dumps({"type": "HELLO", "seq": request.app[SEQ][0]}))
    clients = request.app[CLIENTS]
    clients.add(ws)
    try:
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
    finally:
        clients.discard(ws)
    return ws


async def _close_all(app: web.Application) -> None:
    for ws in tuple(app[CLIENTS]):
        await ws.close(code=1001)


def build() -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[CLIENTS] = set()
    app[SEQ] = [0]
    app.router.add_get("/api/v2", health)
    app.router.add_post("/api/v2/activeorders", create)
    app.router.add_get("/api/v2/websocket", websocket)
    app.on_shutdown.append(_close_all)
    return app


async def serve(host: str, port: int) -> None:
    runner = web.AppRunner(build(), handle_signals=False, shutdown_timeout=5.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(serve(args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
