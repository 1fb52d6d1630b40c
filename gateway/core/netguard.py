"""Where the gateway may connect: never loopback, link-local, unspecified, multicast or a cloud
metadata service unless an operator allow-listed the host. Webhook URLs and printer addresses
are attacker-controlled input, so this is the one policy for both, applied twice:

- to the text, when a target is registered and before each send: the host is judged in every
  ASCII spelling a client library can turn it into (yarl/aiohttp use UTS-46, getaddrinfo uses
  Python's IDNA 2003 codec; both fold fullwidth digits, ideographic dots and circled letters),
  including the legacy IPv4 forms inet_aton reads (127.1, 0x7f.1, 2130706433);
- to the addresses a name resolves to, at connect time (`usable_addresses`, `ConnectGuard`),
  and the caller then dials the judged IP literal so a second lookup cannot rebind it.

Private LAN ranges stay allowed: printers and back offices live there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import yarl

from gateway.core.errors import Code, ValidationFailed

IP = ipaddress.IPv4Address | ipaddress.IPv6Address
Lookup = Callable[[str, int], Awaitable[list[str]]]  # (host, port) -> IP literals

METADATA_HOSTS = frozenset(
    {
        "metadata.google.internal",
        "metadata",
        "instance-data",
        "metadata.azure.internal",
        "metadata.packet.net",
    }
)
LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"})
# Metadata services outside the link-local range (AWS IPv6, Alibaba, Oracle legacy).
METADATA_IPS = frozenset(
    ipaddress.ip_address(a)
    for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "192.0.0.192")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # Linux dials 0.x as the local host
_V4_COMPATIBLE = ipaddress.ip_network("::/96")  # deprecated ::a.b.c.d
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# What a host may look like once encoded: DNS labels (underscores occur on LANs), an IPv6
# literal, nothing else (no spaces, %-escapes or NULs for a resolver to read its own way).
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_IPV6 = re.compile(r"[0-9a-f:.]+(%[0-9a-z_.-]+)?")
# Resolvers accept the legacy IPv4 spellings (127.1, 2130706433, 0x7f000001, 0177.0.0.1);
# a name made only of these characters is read the way inet_aton reads it.
_LEGACY_V4 = re.compile(r"[0-9a-fx.]+")
MAX_URL = 2048


# -- addresses ------------------------------------------------------------------------------


def ip_problem(ip: IP) -> str | None:
    """Why connecting to `ip` is refused, or None. Embedded IPv4 (v4-mapped, 6to4, NAT64) is
    judged as the IPv4 address it leads to."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id is not None:
            ip = ipaddress.IPv6Address(str(ip).partition("%")[0])
        if ip in _V4_COMPATIBLE and not ip.is_loopback and not ip.is_unspecified:
            return f"Address {ip} is an IPv4-compatible IPv6 address."
        embedded = ip.ipv4_mapped or ip.sixtofour or _nat64(ip)
        if embedded is not None:
            return ip_problem(embedded)
    if ip.is_loopback or ip.is_link_local or ip.is_unspecified or ip.is_multicast:
        return f"Address {ip} is loopback, link-local, unspecified or multicast."
    if ip in METADATA_IPS:
        return f"Address {ip} is a metadata service."
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _THIS_NETWORK or ip.is_reserved):
        return f"Address {ip} is reserved."
    return None


def _nat64(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def literal_ip(host: str) -> IP | None:
    """The address an ASCII host spells, as getaddrinfo would read it; None for a name."""
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


# -- host names -----------------------------------------------------------------------------


class Unencodable(ValueError):
    """A host no client would turn into ASCII the same way (or at all)."""


def spellings(host: str) -> set[str]:
    """The lower-case ASCII forms `host` reaches the network as: itself when ASCII (the socket
    module passes ASCII through); otherwise Python's "idna" codec (IDNA 2003, what getaddrinfo
    gets) and yarl's UTS-46 form (what aiohttp dials). Raises Unencodable."""
    host = host.removeprefix("[").removesuffix("]")
    if host.isascii():
        return {host.lower()}
    try:
        forms = {host.encode("idna").decode("ascii").lower()}
    except UnicodeError as exc:
        raise Unencodable(f"Host {host!r} cannot be encoded (IDNA).") from exc
    try:
        built = yarl.URL.build(scheme="http", host=host).raw_host
    except (ValueError, UnicodeError) as exc:
        raise Unencodable(f"Host {host!r} cannot be encoded (IDNA).") from exc
    forms.add((built or "").removeprefix("[").removesuffix("]").lower())
    return forms


def _canonical(ascii_host: str) -> str:
    """One key per host for the allow-list: an IP in its standard form, or the name."""
    ascii_host = ascii_host.replace("%25", "%")
    ip = literal_ip(ascii_host)
    return str(ip) if ip is not None else ascii_host.rstrip(".")


@lru_cache(maxsize=64)
def _allow_keys(allow: frozenset[str]) -> frozenset[str]:
    """The allow-list as canonical `host` and `host:port` keys (entries spelled like hosts)."""
    keys: set[str] = set()
    for entry in allow:
        host, port = entry.strip(), ""
        if host.startswith("[") and "]" in host:
            host, _, rest = host[1:].partition("]")
            port = rest.removeprefix(":")
        elif host.count(":") == 1:
            host, _, port = host.partition(":")
        try:
            names = {_canonical(s) for s in spellings(host)}
        except Unencodable:
            continue
        keys.update(f"{n}:{port}" if port else n for n in names)
    return frozenset(keys)


def _allowed(ascii_host: str, port: int | None, allow: frozenset[str]) -> bool:
    if not allow:
        return False
    keys = _allow_keys(allow)
    key = _canonical(ascii_host)
    return key in keys or (port is not None and f"{key}:{port}" in keys)


def host_problem(host: str, port: int | None, allow: frozenset[str] = frozenset()) -> str | None:
    """Why a connection to `host` (as written: Unicode, brackets or a trailing dot allowed) is
    refused, or None. Every spelling must pass: allow-listed, or neither a local name nor a
    forbidden address."""
    try:
        forms = spellings(host)
    except Unencodable as exc:
        return str(exc)
    for form in forms:
        if why := _spelling_problem(form, port, allow):
            return why
    return None


def _spelling_problem(form: str, port: int | None, allow: frozenset[str]) -> str | None:
    form = form.replace("%25", "%")
    if not form.rstrip("."):
        return "Host is empty."
    if not (_NAME.fullmatch(form) or (":" in form and _IPV6.fullmatch(form))):
        return f"Host {form!r} is not a host name or IP address."
    if _allowed(form, port, allow):
        return None
    name = form.rstrip(".")
    if name in LOCAL_NAMES or name.endswith(".localhost") or name in METADATA_HOSTS:
        return f"Host {name} is local or a metadata service; allow-list it to use it."
    if ":" in name:
        try:
            ip: IP | None = ipaddress.ip_address(name)
        except ValueError:
            return f"Host {name!r} is not a valid IPv6 address."
    else:
        ip = literal_ip(name)
    if ip is not None and (why := ip_problem(ip)):
        return f"{why} Allow-list it to use it."
    return None


# -- URLs -----------------------------------------------------------------------------------


def forbidden_reason(url: str, allow: frozenset[str] = frozenset()) -> str | None:
    """None when `url` is an acceptable http(s) target, else why not (one line). Parsed by
    yarl, as aiohttp will parse it, and the host as written judged too."""
    if len(url) > MAX_URL:
        return f"URL longer than {MAX_URL} characters."
    try:
        parsed = yarl.URL(url)
        written = urlsplit(url).hostname or ""
    except (ValueError, UnicodeError) as exc:
        return f"Malformed URL: {exc}."
    if parsed.scheme not in ("http", "https"):
        return "URL scheme must be http or https."
    if not parsed.raw_host:
        return "URL has no host."
    if parsed.raw_user or parsed.raw_password:
        return "Credentials in the URL are not accepted."
    if parsed.explicit_port == 0:
        return "URL port must be 1-65535."
    return host_problem(parsed.raw_host, parsed.port, allow) or (
        host_problem(written, parsed.port, allow) if written else None
    )


def require_url(value: Any, allow: frozenset[str], name: str = "url") -> str:
    """`value` as an outbound URL a client gave under `name`, or ValidationFailed saying why."""
    if value is None or value == "":
        raise ValidationFailed(Code.MISSING_HTTP_CLIENT, f"Missing {name}.")
    if not isinstance(value, str):
        raise ValidationFailed(Code.BAD_HTTP_CLIENT, f"{name} must be a URL string.")
    if reason := forbidden_reason(value, allow):
        raise ValidationFailed(Code.BAD_HTTP_CLIENT, f"Invalid {name}: {reason}")
    return value


# -- connect time ---------------------------------------------------------------------------


def usable_addresses(
    host: str, port: int, addresses: Iterable[str], allow: frozenset[str]
) -> list[str]:
    """The resolved `addresses` of `host` a connection may use: all of them for an allow-listed
    host, else those not forbidden. Raises OSError when the host itself is refused or nothing
    is left (DNS rebinding, `*.nip.io`, a LAN name pointing at loopback)."""
    if why := host_problem(host, port, allow):
        raise OSError(why)
    listed = list(addresses)
    if all(_allowed(form, port, allow) for form in spellings(host)):
        return listed
    usable = [a for a in listed if (ip := _address(a)) is not None and ip_problem(ip) is None]
    if not usable:
        raise OSError(f"{host} resolves only to local, link-local or metadata addresses")
    return usable


def _address(text: str) -> IP | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None  # a resolver answered something that is not an address: not usable


async def system_lookup(host: str, port: int) -> list[str]:
    """getaddrinfo through the loop, as asyncio.open_connection would do it."""
    if _address(host) is not None:
        return [host]  # a standard IP literal: no trip through the executor's threads
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


class ConnectGuard:
    """`await guard(host, port)`: the IP literals a connection to host:port may dial, judged by
    this module's policy; raises OSError when there are none."""

    def __init__(self, allow: frozenset[str], lookup: Lookup = system_lookup) -> None:
        self.allow = allow
        self._lookup = lookup

    async def __call__(self, host: str, port: int) -> list[str]:
        if why := host_problem(host, port, self.allow):
            raise OSError(why)
        # Look up the IDNA 2003 form: the one getaddrinfo would have used for `host`.
        ascii_host = host.encode("idna").decode("ascii") if not host.isascii() else host
        return usable_addresses(ascii_host, port, await self._lookup(ascii_host, port), self.allow)
