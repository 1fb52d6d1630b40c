"""Access log lines without secrets: query values that carry credentials are redacted, and
headers (Authorization) are never logged."""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

SECRET_PARAMS = re.compile(r"(?i)((?:^|[?&])(?:accesstoken|token|apikey|signature)=)[^&]*")


def redact(path_qs: str) -> str:
    return SECRET_PARAMS.sub(r"\1***", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            '%s "%s %s" %d %.1fms',
            request.remote,
            request.method,
            redact(request.path_qs),
            response.status,
            time * 1000,
        )
