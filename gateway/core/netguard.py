"""Which outbound URLs the gateway may call: never loopback, link-local or metadata services
unless an operator allow-listed them (a webhook URL is attacker-controlled input)."""

from __future__ import annotations

import ipaddress
import re
import socket
from typing import Any
from urllib.parse import urlsplit

from gateway.core.errors import Code, ValidationFailed

METADATA_HOSTS = frozenset({"metadata.google.internal", "metadata", "instance-data"})
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})


def forbidden_reason(url: str, allow: frozenset[str] = frozenset()) -> str | None:
    """None when `url` is an acceptable http(s) target, else why not (one line)."""
    if len(url) > 2048:
        return "URL longer than 2048 characters."
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"Malformed URL: {exc}."
    if parts.scheme not in ("http", "https"):
        return "URL scheme must be http or https."
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "URL has no host."
    if parts.username or parts.password:
        return "Credentials in the URL are not accepted."
    if port == 0:
        return "URL port must be 1-65535."
    if host in allow or f"{host}:{port}" in allow:
        return None
    if host in LOCAL_NAMES or host.endswith(".localhost") or host in METADATA_HOSTS:
        return f"Host {host} is local or a metadata service; allow-list it to use it."
    ip = _literal_ip(host)
    if ip is None:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return f"Address {host} is loopback, link-local, unspecified or multicast."
    return None


def require_url(value: Any, allow: frozenset[str], name: str = "url") -> str:
    """`value` as an outbound URL a client gave under `name`, or ValidationFailed saying why."""
    if value is None or value == "":
        raise ValidationFailed(Code.MISSING_HTTP_CLIENT, f"Missing {name}.")
    if not isinstance(value, str):
        raise ValidationFailed(Code.BAD_HTTP_CLIENT, f"{name} must be a URL string.")
    if reason := forbidden_reason(value, allow):
        raise ValidationFailed(Code.BAD_HTTP_CLIENT, f"Invalid {name}: {reason}")
    return value


# Resolvers accept the legacy IPv4 spellings (127.1, 2130706433, 0x7f000001, 0177.0.0.1);
# a name made only of these characters is read the way inet_aton reads it.
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+")


def _literal_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if _LEGACY_V4.fullmatch(host) and host[0].isdigit():
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None
