"""Cross-site WebSocket hijacking guard: a browser page from another origin may not open the
feed. Native clients send no Origin and pass; the gateway's own pages match its Host."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import web


def origin_allowed(request: web.Request, allowed: frozenset[str]) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    if origin in allowed or "*" in allowed:
        return True
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and parts.netloc.lower() == request.host.lower()
