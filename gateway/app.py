"""The composition root: build() and serve() run the compose steps in the order of
ARCHITECTURE.md §7, under a Supervisor that stops them in reverse.

Start: store and services (build) -> integrations (build) -> [with the app:] store watch ->
outbox -> printer workers -> radio (serve) -> HTTP listen -> ready -> mDNS.
Stop: mDNS goodbye -> stop accepting -> close WebSockets (the web app's on_shutdown) -> radio
-> printer workers -> outbox -> store checkpoint and close (the web app's on_cleanup).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time

from aiohttp import web

from gateway import __version__
from gateway.compose.core import core, upkeep
from gateway.compose.gateway import Gateway
from gateway.compose.integrations import integrations
from gateway.compose.mdns import mdns
from gateway.compose.printing import outbox, printing
from gateway.compose.radio import radio
from gateway.compose.web import make_runner, services, web_app
from gateway.core.ports import Pager
from gateway.lifecycle import Supervisor
from gateway.loop_health import LoopWatch, StopSignals
from gateway.settings import Settings
from gateway.startup import StartRefused

__all__ = ["Gateway", "build", "make_runner", "serve"]

log = logging.getLogger(__name__)


async def build(
    settings: Settings, *, pager: Pager | None = None, serving: bool = False
) -> Gateway:
    """The store open and the services loaded; the rest starts with the web app (aiohttp's
    on_startup) and everything stops at its on_cleanup. Without `serving` (tests) the radio
    and the core's periodic loops are not started."""
    supervisor = Supervisor(stage_timeout=settings.stop_stage_timeout)
    made = await supervisor.enter("store", core(settings, pager))
    integrated = await supervisor.enter("integrations", integrations(made))
    ctx = services(made, integrated)
    app = web_app(made, ctx)
    gw = Gateway(made, ctx, app, supervisor, base_listeners=made.bus.listener_count)

    async def start(_: web.Application) -> None:
        await supervisor.enter("upkeep", upkeep(made, supervisor, serving=serving))
        await supervisor.enter("outbox", outbox(made))
        await supervisor.enter("printing", printing(made))
        if serving:
            await supervisor.enter("radio", radio(made, supervisor))

    async def stop(_: web.Application) -> None:
        await supervisor.stop()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    if settings.demo:
        made.tokens.open_window()
    return gw


async def serve(settings: Settings, *, ready: asyncio.Event | None = None) -> None:
    """Start in the order of ARCHITECTURE.md §7, run until SIGTERM/SIGINT, stop in reverse."""
    t0 = time.monotonic()
    # Signals first: a SIGTERM during start-up must still stop in order (mDNS goodbye).
    stop = asyncio.Event()
    # Watching before anything else runs: a block during start-up is named too.
    watch = LoopWatch(threshold=settings.loop_block_threshold)
    signals = StopSignals(stop, settings.stop_timeout, watch)
    signals.install()
    await watch.start()
    try:
        await _serve(settings, t0, stop, ready)
    finally:
        await watch.stop()
        signals.done()


async def _serve(
    settings: Settings, t0: float, stop: asyncio.Event, ready: asyncio.Event | None
) -> None:
    gw = await build(settings, serving=True)
    runner = make_runner(gw.app)
    try:
        await runner.setup()  # the app's on_startup: store watch, outbox, printers, radio
    except BaseException:
        await gw.supervisor.stop()  # what did start, in reverse
        raise
    listening = gw.supervisor.mark()
    try:
        await _listen(runner, settings)
        log.info(
            "tablegate %s ready on http://%s:%d in %.0f ms%s",
            __version__,
            settings.host,
            settings.port,
            (time.monotonic() - t0) * 1000,
            " (demo mode: the token window is open for the first two minutes)"
            if settings.demo
            else "",
        )
        if ready is not None:
            ready.set()
        # Start-up objects (modules, settings, the loaded book) never die: keep them out of
        # every collection, and collect the young generation less often. The request path
        # makes few cycles, so this trims the GC pauses that set the latency tail
        # (p99 of durable creation at c=50: ~23 -> ~19 ms on the 2-core machine).
        gc.freeze()
        gc.set_threshold(20_000, 50, 100)
        # Only where the API listens: records naming other addresses send clients nowhere.
        bound = [str(sockname[0]) for sockname in runner.addresses]
        await gw.supervisor.enter("mdns", mdns(settings, gw.core.gateway_id, stop, bound))
        await stop.wait()
    finally:
        log.info("stopping")
        await gw.supervisor.stop(to=listening)  # mDNS goodbye first
        await runner.cleanup()  # stop accepting, close the feeds, then the steps in reverse
        log.info("stopped")


async def _listen(runner: web.AppRunner, settings: Settings) -> None:
    site = web.TCPSite(runner, settings.host, settings.port, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        raise StartRefused(
            f"cannot serve on {settings.host}:{settings.port}: {exc}", exit_code=1
        ) from exc
