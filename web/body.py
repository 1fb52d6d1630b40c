"""Request bodies under a size limit and a deadline, before any handler sees them.

aiohttp reads a body only when a handler asks for it (client_max_size bites only then) and
with no time limit: a client that declares 60,000 bytes and sends one kept its connection as
long as it liked, and one that left mid-body made a 500 with a traceback. Here every body is
read in full (at most max_body_bytes) within body_read_timeout, whether or not the handler
wants it; otherwise the request is answered in its dialect's envelope (413, 408, 400) when
anything can still be written, and its connection is closed at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Middleware
from aiohttp.web_protocol import RequestPayloadError

from gateway.core.errors import Code
from web.access_log import CLIENT_GONE, DISCONNECTS
from web.envelope import fail_reply

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def body_guard(max_bytes: int, timeout: float) -> Middleware:
    @web.middleware
    async def guard(request: web.Request, handler: Handler) -> web.StreamResponse:
        length = request.content_length
        if length is not None and length > max_bytes:
            # Refused on the header alone: not one byte of a declared 10 GB is waited for.
            return await refuse(request, Code.BODY_TOO_LARGE)
        # The hot path: no body, or a small one that came with the headers (already at EOF).
        if not request.content.is_eof():
            try:
                async with asyncio.timeout(timeout):
                    await request.read()  # kept by the request: the handler's read is free
            except TimeoutError:
                return await refuse(request, Code.BODY_TIMEOUT)
            except web.HTTPRequestEntityTooLarge:  # chunked, so no length was declared
                return await refuse(request, Code.BODY_TOO_LARGE)
            except ConnectionResetError:
                return client_gone(request)
            except (RequestPayloadError, HttpProcessingError):  # e.g. a bad chunk size
                return await refuse(request, Code.MALFORMED_REQUEST)
        return await handler(request)

    return guard


async def refuse(request: web.Request, code: Code) -> web.StreamResponse:
    """Answer now and close: the rest of the body is never read (aiohttp would otherwise
    linger up to 10 s reading it, and a slow sender would hold the connection that long)."""
    resp = fail_reply(request, code)
    resp.force_close()
    try:
        async with asyncio.timeout(1):  # a few hundred bytes; a peer that takes none is gone
            await resp.prepare(request)
            await resp.write_eof()
    except (ConnectionError, TimeoutError):
        pass
    request.protocol.force_close()
    return resp


def client_gone(request: web.Request) -> web.StreamResponse:
    request[CLIENT_GONE] = True  # no access line: nothing was answered to anyone
    DISCONNECTS.note()
    log.debug(
        "client %s disconnected mid-body (%s %s)", request.remote, request.method, request.path
    )
    # Never written (the connection is gone); aiohttp ends the request quietly.
    return web.Response(status=400)
