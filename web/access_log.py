"""Access log lines without secrets: query values that carry credentials are redacted, and
headers (Authorization) are never logged."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

SECRET_PARAMS = re.compile(r"(?i)((?:^|[?&])(?:accesstoken|token|apikey|signature)=)[^&]*")


def redact(path_qs: str) -> str:
    return SECRET_PARAMS.sub(r"\1***", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    @property
    def enabled(self) -> bool:
        # Skip the formatting entirely when nobody reads INFO (the hot path at WARNING).
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
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
