"""DNS-rebinding guard: refuse a request whose `Host` is not one of the box's own names.

A web page on the LAN can point a name it controls at the box's address (DNS rebinding); the
browser then sends `Host: <that name>` and treats the answers as same-origin. Rebinding needs a
name, so IP literals are always accepted; so are `localhost`, the box's host name (and its
`.local` form, which Avahi announces), the mDNS name the gateway announces and every name in
the `allowed_hosts` setting (`*` turns the check off, e.g. behind a reverse proxy).

A request without `Host` (HTTP/1.0) is accepted, as most servers do: browsers always send
one, so a missing `Host` cannot come from a rebinding page.
"""

from __future__ import annotations

import ipaddress
import logging
import socket

from aiohttp import hdrs, web
from aiohttp.typedefs import Middleware

from gateway.core.errors import Code, GatewayError
from web.envelope import Handler

log = logging.getLogger(__name__)

_MAX_CACHED = 256  # raw Host values already accepted: the hot path is one set lookup
_MAX_NAMED = 256  # refused host names counted one by one (and logged once each)


def host_name(raw: str) -> str:
    """The name or address part of a `Host` value, lower case, without port or final dot;
    "" if the value is not a well-formed host[:port]."""
    value = raw.strip().lower()
    if value.startswith("["):  # [v6]:port
        inner, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not (rest[0] == ":" and _is_port(rest[1:]))):
            return ""
        return inner.replace("%25", "%")  # a zone id, percent-encoded in a URL
    name, colon, port = value.rpartition(":")
    if colon and ":" not in name:  # name:port (more colons: a bare IPv6 literal)
        if not _is_port(port):
            return ""
        value = name
    return value.rstrip(".")


def _is_port(text: str) -> bool:
    return text == "" or (len(text) <= 5 and text.isascii() and text.isdigit())


def is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def own_names(extra: frozenset[str]) -> frozenset[str]:
    """Computed once at build time: localhost, this host's name and its `.local` form, and the
    names the composition root adds (the mDNS name, the `allowed_hosts` setting)."""
    hostname = socket.gethostname().lower().rstrip(".")
    short = hostname.split(".", 1)[0]
    names = {"localhost", hostname, f"{short}.local"}
    names |= {host_name(n) for n in extra}
    return frozenset(n for n in names if n)


class HostCheck:
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names
        self._accepted: set[str] = set()
        self.refused: dict[str, int] = {}  # per refused name (the first _MAX_NAMED of them)
        self.refused_total = 0

    def allows(self, raw: str) -> bool:
        if raw in self._accepted:
            return True
        name = host_name(raw)
        ok = bool(name) and (name in self.names or is_ip_literal(name))
        if ok and len(self._accepted) < _MAX_CACHED:
            self._accepted.add(raw)
        return ok

    def note_refused(self, raw: str) -> None:
        """Logged once per name at WARNING, then only counted: a rebinding page retries a lot.
        Only the (shortened) Host value is logged, never the request."""
        self.refused_total += 1
        name = host_name(raw)[:100] or raw[:100]
        if name in self.refused:
            self.refused[name] += 1
            return
        if len(self.refused) >= _MAX_NAMED:
            return
        self.refused[name] = 1
        log.warning(
            "refused a request for Host %r: not this gateway's name or address (DNS rebinding?). "
            "If it is a name of this box, add it to the allowed_hosts setting. Further requests "
            "for it are counted, not logged.",
            name,
        )


HOST_CHECK = web.AppKey("host_check", HostCheck)


def host_middleware(check: HostCheck) -> Middleware:
    """Runs inside the envelope middleware and before every handler (WebSocket upgrades,
    /api/openapi.json and unknown paths included), so a refusal is a 421 in the dialect's
    envelope and nothing else happens."""

    @web.middleware
    async def check_host(request: web.Request, handler: Handler) -> web.StreamResponse:
        raw = request.headers.get(hdrs.HOST)
        if raw and not check.allows(raw):
            check.note_refused(raw)
            raise GatewayError(Code.HOST_REFUSED)
        return await handler(request)

    return check_host
