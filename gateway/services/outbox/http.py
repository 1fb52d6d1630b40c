"""HTTP side of the outbox: one attempt and what its answer means, Retry-After, log-safe
URLs, and a resolver that refuses names leading to local addresses."""

from __future__ import annotations

import email.utils
import re
import socket
from dataclasses import dataclass
from datetime import UTC
from urllib.parse import urlsplit, urlunsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from gateway.core.netguard import usable_addresses

RETRY_AFTER_CAP = 86_400.0  # a receiver cannot park its own queue for more than a day

# Error codes of an attempt (stored as "code: message" in outbox.last_error).
GONE = "gone"
TIMEOUT = "network-timeout"
NETWORK = "network-error"
HTTP_STATUS = "http-status"
REDIRECT = "redirect"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: no HTTP answer (timeout, connection error)
    retry_at: float | None = None
    code: str | None = None  # None: delivered
    message: str | None = None


async def post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    now: float,
    time_limit: float,
) -> Answer:
    """One attempt, and what its answer means: 2xx delivered; 410 gone; 3xx a failure (not
    followed); 429/503 may carry a Retry-After; no answer is a network failure."""
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as resp:
            status = resp.status
            retry_after = resp.headers.get("Retry-After")
    except TimeoutError:
        return Answer(None, code=TIMEOUT, message=f"no answer within {time_limit:g} s")
    except aiohttp.ClientError as exc:
        return Answer(None, code=NETWORK, message=describe(exc))
    if 200 <= status < 300:
        return Answer(status)
    if status == 410:
        return Answer(status, code=GONE, message="HTTP 410 Gone")
    if 300 <= status < 400:
        return Answer(status, code=REDIRECT, message=f"HTTP {status}; redirects are not followed")
    retry_at = retry_after_at(retry_after, now) if status in (429, 503) else None
    return Answer(status, retry_at, HTTP_STATUS, f"HTTP {status}")


_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def retry_after_at(value: str | None, now: float) -> float | None:
    """When a Retry-After header (delta-seconds or HTTP-date) allows the next attempt; None if
    absent or unreadable. Capped at RETRY_AFTER_CAP from now."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.fullmatch(value):
        return now + min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(when.timestamp(), now + RETRY_AFTER_CAP)


def safe_url(url: str) -> str:
    """The URL for logs: no credentials, query or fragment (they may carry secrets)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<malformed URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def describe(exc: aiohttp.ClientError) -> str:
    # Not str(exc): some aiohttp errors quote the full URL, query string included.
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"{type(exc).__name__}: {exc.os_error.strerror or exc.os_error}"
    return type(exc).__name__


class GuardedResolver(AbstractResolver):
    """Resolves like aiohttp's default, then keeps only the addresses netguard's connect-time
    policy allows (`usable_addresses`, the same policy printers use): the URL's text was judged
    already, this judges where a *name* actually leads (DNS rebinding, `*.nip.io`). aiohttp
    dials the addresses returned, so nothing is looked up twice. Literal IPs never get here
    (aiohttp connects to them directly; netguard has judged them)."""

    def __init__(self, allow: frozenset[str], inner: AbstractResolver | None = None) -> None:
        self._allow = allow
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        usable = set(usable_addresses(host, port, [r["host"] for r in results], self._allow))
        return [r for r in results if r["host"] in usable]

    async def close(self) -> None:
        await self._inner.close()
