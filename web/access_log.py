"""Access log lines without secrets: query values that carry credentials are redacted, and
headers (Authorization) are never logged."""

from __future__ import annotations

import asyncio
import logging
import re

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

log = logging.getLogger(__name__)
# Set on a request whose client left before its body arrived: no access line (it is counted).
CLIENT_GONE = web.RequestKey("client_gone", bool)
SECRET_PARAMS = re.compile(r"(?i)((?:^|[?&])(?:accesstoken|token|apikey|signature)=)[^&]*")


def redact(path_qs: str) -> str:
    return SECRET_PARAMS.sub(r"\1***", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # Skip the formatting entirely when nobody reads INFO (the hot path at WARNING).
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if request.get(CLIENT_GONE):
            return
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            time * 1000,
        )


class MalformedRequestFilter(logging.Filter):
    """aiohttp logs every unparseable request (over-long line, NUL in a header) at ERROR with a
    traceback, before any route sees it: any client could flood the log. Count them and say so
    once; the client still gets the parser's 400."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True
        self.count += 1
        if self.count == 1:
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.msg = (
                "malformed HTTP request answered 400 by the parser (%s); "
                "further ones are counted, not logged"
            )
            record.args = (type(exc).__name__,)
            record.exc_info = None
            return True
        return False


MALFORMED = MalformedRequestFilter()


def install_malformed_request_filter() -> None:
    logger = logging.getLogger("aiohttp.server")
    if MALFORMED not in logger.filters:
        logger.addFilter(MALFORMED)


class MinuteCounter:
    """Counts something any client can cause at will (disconnecting mid-request, sending
    garbage) and says so in one INFO line per minute at most: each one is logged at DEBUG,
    so a flood cannot fill the log."""

    def __init__(self, message: str, window: float = 60.0) -> None:
        self.message = message  # with one %d: the count
        self.window = window
        self.count = 0
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def note(self) -> None:
        self.count += 1
        loop = asyncio.get_running_loop()
        # A timer of a loop that has gone (tests run one loop each) will never fire.
        if self._handle is None or self._loop is not loop:
            self._loop = loop
            self._handle = loop.call_later(self.window, self.flush)

    def flush(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        if self.count:
            log.info(self.message, self.count)
            self.count = 0


DISCONNECTS = MinuteCounter("%d clients disconnected mid-request in the last minute")
MALFORMED_COUNT = MinuteCounter("%d malformed HTTP requests answered 400 in the last minute")
