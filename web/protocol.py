"""The HTTP server the gateway runs: aiohttp's, except for requests its parser refuses.

aiohttp answers a malformed request line, a bad header or a bad chunk size itself, before any
route or middleware: a text/plain 400 that echoes the offending bytes back (reflection), plus
an ERROR with a traceback per request. Here such a request gets JSON in the envelope of the
dialect its path belongs to (a generic one when the path cannot be read), nothing of what it
sent, and a DEBUG line; the count is said at INFO once a minute.
"""

from __future__ import annotations

import logging
import re

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler, _ErrInfo
from aiohttp.web_request import BaseRequest

from gateway.core.errors import Code
from web.access_log import MALFORMED_COUNT
from web.dialect import DIALECTS_KEY, Dialects
from web.envelope import fail_reply

log = logging.getLogger(__name__)
# The path of a request line, up to the first byte that cannot be in one. Used only to pick
# the dialect (a prefix test): never echoed.
REQUEST_LINE = re.compile(rb"[A-Z]{1,16} (/[!-~]{0,2048})")


def request_path(data: bytes) -> str | None:
    found = REQUEST_LINE.match(data)
    if found is None:
        return None
    return found.group(1).partition(b"?")[0].partition(b"#")[0].decode("ascii")


class GatewayRequestHandler(RequestHandler):
    __slots__ = ("_refused_path",)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._refused_path: str | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        # The parser refused this chunk: keep its path (when the chunk holds the request
        # line) for the envelope. One type check per chunk on the hot path.
        if self._messages and type(err := self._messages[-1][0]) is _ErrInfo:
            self._refused_path = request_path(data)
            current = self._current_request
            if current is not None and not current.content.is_eof():
                # The parser failed inside the body being read (a bad chunk size): the read
                # fails now, answered 400 by the body guard, instead of at its deadline.
                current.content.set_exception(err.exc)

    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        MALFORMED_COUNT.note()
        log.debug("malformed request from %s refused: %s", request.remote, type(exc).__name__)
        # A refused request has no application yet: the server knows the app's dialects.
        assert isinstance(self._manager, GatewayServer)
        dialects = self._manager.dialects
        resp = fail_reply(
            request, Code.MALFORMED_REQUEST, path=self._refused_path, dialects=dialects
        )
        resp.force_close()
        return resp


class GatewayServer(web.Server):
    dialects: Dialects

    def __call__(self) -> RequestHandler:
        return GatewayRequestHandler(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """An AppRunner whose connections use GatewayRequestHandler."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The same object with our protocol factory: the subclass adds no state to copy.
        server.__class__ = GatewayServer
        server.dialects = self.app[DIALECTS_KEY]  # type: ignore[attr-defined]
        return server
