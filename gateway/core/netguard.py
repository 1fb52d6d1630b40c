"""Which outbound URLs the gateway may call: never loopback, link-local or metadata services
unless an operator allow-listed them (a webhook URL is attacker-controlled input)."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

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
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return f"Address {host} is loopback, link-local, unspecified or multicast."
    return None
