"""Fuzz of the outbound guard (gateway.core.netguard) with hypothesis: Unicode confusable
spellings, legacy IPv4 forms and IPv6 forms of forbidden addresses are refused as URL hosts and
as printer hosts; names a stub resolver maps to forbidden addresses yield no address; ordinary
public and private targets stay allowed. Pure functions and stub resolvers: no traffic."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from typing import Any

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core import netguard
from gateway.core.netguard import ConnectGuard, forbidden_reason, host_problem, usable_addresses
from gateway.services.outbox.http import GuardedResolver

FUZZ = settings(max_examples=150, deadline=None)
DOTS = [".", "\u3002", "\uff0e", "\uff61"]  # ASCII, ideographic, fullwidth, halfwidth


def _net(cidr: str) -> st.SearchStrategy[int]:
    net = ipaddress.ip_network(cidr)
    return st.integers(int(net.network_address), int(net.broadcast_address))


forbidden_v4 = st.one_of(
    _net("127.0.0.0/8"),
    _net("169.254.0.0/16"),
    _net("0.0.0.0/8"),
    _net("224.0.0.0/4"),
    st.sampled_from(["100.100.100.200", "192.0.0.192", "255.255.255.255"]).map(
        lambda a: int(ipaddress.IPv4Address(a))
    ),
).map(ipaddress.IPv4Address)
private_v4 = st.one_of(_net("10.0.0.0/8"), _net("172.16.0.0/12"), _net("192.168.0.0/16")).map(
    ipaddress.IPv4Address
)
public_v4 = (
    st.integers(0, 2**32 - 1)
    .map(ipaddress.IPv4Address)
    .filter(lambda ip: ip.is_global and not ip.is_multicast and ip not in netguard.METADATA_IPS)
)


def _digit(d: str) -> st.SearchStrategy[str]:
    n = int(d)
    forms = [d, chr(0xFF10 + n), chr(0x1D7CE + n)]  # ASCII, fullwidth, mathematical bold
    forms.append("\u24ea" if n == 0 else chr(0x2460 + n - 1))  # circled
    return st.sampled_from(forms)


def _letter(c: str) -> st.SearchStrategy[str]:
    i = ord(c) - ord("a")
    return st.sampled_from([c, c.upper(), chr(0xFF41 + i), chr(0xFF21 + i), chr(0x24D0 + i)])


@st.composite
def confusable(draw: st.DrawFn, text: str) -> str:
    """`text` with each digit, letter and dot in a randomly chosen look-alike."""
    out = []
    for ch in text:
        if ch.isdigit():
            out.append(draw(_digit(ch)))
        elif "a" <= ch <= "z":
            out.append(draw(_letter(ch)))
        elif ch == ".":
            out.append(draw(st.sampled_from(DOTS)))
        else:
            out.append(ch)
    if draw(st.booleans()):
        out.append(draw(st.sampled_from(DOTS)))  # a trailing dot
    return "".join(out)


@st.composite
def legacy_v4(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """`ip` the way inet_aton also reads it: 1-4 parts, each decimal, octal or hex."""
    n = int(ip)
    parts = draw(st.sampled_from([1, 2, 3, 4]))
    octets = list(ip.packed)
    values = [*octets[: parts - 1], int.from_bytes(bytes(octets[parts - 1 :]), "big")]
    if parts == 1:
        values = [n]

    def spell(v: int) -> str:
        base = draw(st.sampled_from(["dec", "oct", "hex", "HEX"]))
        if base == "oct":
            return "0" + format(v, "o")
        if base == "hex":
            return "0x" + format(v, "x")
        if base == "HEX":
            return "0X" + format(v, "X")
        return str(v)

    return ".".join(spell(v) for v in values)


def _forbidden_v6_of(ip4: ipaddress.IPv4Address) -> list[str]:
    v = int(ip4)
    return [
        f"::ffff:{ip4}",
        f"::ffff:{v >> 16:x}:{v & 0xFFFF:x}",
        f"0:0:0:0:0:ffff:{ip4}",
        f"64:ff9b::{ip4}",
        f"2002:{v >> 16:x}:{v & 0xFFFF:x}::1",
    ]


@st.composite
def forbidden_v6(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["loopback", "embedded", "link-local", "multicast", "meta"]))
    if kind == "loopback":
        ip = ipaddress.IPv6Address(1)
        text = draw(st.sampled_from([ip.compressed, ip.exploded, "0:0:0:0:0:0:0:1", "::0:1"]))
    elif kind == "embedded":
        text = draw(st.sampled_from(_forbidden_v6_of(draw(forbidden_v4))))
    elif kind == "link-local":
        low = draw(st.integers(0, 2**64 - 1))
        text = str(ipaddress.IPv6Address((0xFE80 << 112) | low))
        if draw(st.booleans()):
            text += "%25" + draw(st.sampled_from(["eth0", "1", "wlan0"]))
    elif kind == "multicast":
        text = str(ipaddress.IPv6Address((0xFF << 120) | draw(st.integers(0, 2**120 - 1))))
    else:
        text = "fd00:ec2::254"
    return draw(st.sampled_from([text, text.upper().replace("%25ETH0", "%25eth0")]))


label = st.from_regex(r"[a-z][a-z0-9-]{0,20}[a-z0-9]", fullmatch=True)
dns_name = st.builds(
    lambda labels, tld: ".".join([*labels, tld]),
    st.lists(label, min_size=1, max_size=3),
    st.sampled_from(["example", "lan", "com", "local", "internal"]),
).filter(lambda n: n.split(".")[0] not in ("localhost", "metadata"))
ports = st.integers(1, 65535)


def url(host: str, port: int) -> str:
    return f"http://{host}:{port}/hook"


def refused_everywhere(host: str, port: int, bracket: bool = False) -> None:
    shown = f"[{host}]" if bracket else host
    assert forbidden_reason(url(shown, port)) is not None, shown
    assert host_problem(host.replace("%25", "%"), port) is not None, host  # a printer host


# -- refused --------------------------------------------------------------------------------


@FUZZ
@given(st.data(), forbidden_v4, ports)
def test_confusable_spellings_of_forbidden_ipv4_are_refused(
    data: st.DataObject, ip: ipaddress.IPv4Address, port: int
) -> None:
    refused_everywhere(data.draw(confusable(str(ip))), port)


@FUZZ
@given(st.data(), forbidden_v4, ports)
def test_legacy_ipv4_spellings_are_refused(
    data: st.DataObject, ip: ipaddress.IPv4Address, port: int
) -> None:
    spelled = data.draw(legacy_v4(ip))
    assert ipaddress.IPv4Address(socket.inet_aton(spelled)) == ip
    refused_everywhere(spelled, port)
    refused_everywhere(data.draw(confusable(spelled.lower())), port)


@FUZZ
@given(forbidden_v6(), ports)
def test_ipv6_forms_of_forbidden_addresses_are_refused(text: str, port: int) -> None:
    refused_everywhere(text, port, bracket=True)


@FUZZ
@given(
    st.data(),
    st.sampled_from(
        ["localhost", "metadata.google.internal", "ip6-localhost", "instance-data", "metadata"]
    ),
    label,
    ports,
)
def test_confusable_spellings_of_local_names_are_refused(
    data: st.DataObject, name: str, sub: str, port: int
) -> None:
    refused_everywhere(data.draw(confusable(name)), port)
    refused_everywhere(data.draw(confusable(f"{sub}.localhost")), port)


@FUZZ
@given(
    dns_name,
    ports,
    st.lists(st.one_of(forbidden_v4.map(str), forbidden_v6()), min_size=1, max_size=4),
)
def test_names_resolving_only_to_forbidden_addresses_yield_nothing(
    name: str, port: int, answers: list[str]
) -> None:
    answers = [a.replace("%25", "%") for a in answers]
    with pytest.raises(OSError):
        usable_addresses(name, port, answers, frozenset())
    guard = ConnectGuard(frozenset(), _stub_lookup(answers))
    with pytest.raises(OSError):
        asyncio.run(guard(name, port))
    with pytest.raises(OSError):
        asyncio.run(GuardedResolver(frozenset(), _StubResolver(answers)).resolve(name, port))


@FUZZ
@given(
    dns_name,
    ports,
    st.lists(forbidden_v4.map(str), max_size=3),
    st.lists(st.one_of(public_v4, private_v4).map(str), min_size=1, max_size=3),
)
def test_only_the_allowed_addresses_of_a_name_are_dialled(
    name: str, port: int, bad: list[str], good: list[str]
) -> None:
    answers = [*bad, *good]
    assert usable_addresses(name, port, answers, frozenset()) == good
    assert asyncio.run(ConnectGuard(frozenset(), _stub_lookup(answers))(name, port)) == good


# -- allowed --------------------------------------------------------------------------------


@FUZZ
@given(st.data(), st.one_of(public_v4, private_v4), ports)
def test_public_and_private_addresses_are_allowed(
    data: st.DataObject, ip: ipaddress.IPv4Address, port: int
) -> None:
    assert forbidden_reason(url(str(ip), port)) is None
    assert host_problem(str(ip), port) is None
    assert host_problem(data.draw(confusable(str(ip))), port) is None  # same address
    mapped = f"::ffff:{ip}"
    assert forbidden_reason(url(f"[{mapped}]", port)) is None


@FUZZ
@given(dns_name, ports)
def test_ordinary_names_are_allowed(name: str, port: int) -> None:
    assert forbidden_reason(url(name, port)) is None
    assert forbidden_reason(url(name.upper() + ".", port)) is None
    assert host_problem(name, port) is None


@FUZZ
@given(st.data(), ports)
def test_an_allow_listed_address_is_allowed_in_any_spelling_and_only_on_its_port(
    data: st.DataObject, port: int
) -> None:
    spelled = data.draw(confusable("127.0.0.1"))
    assert host_problem(spelled, port, frozenset({"127.0.0.1"})) is None
    assert host_problem(spelled, port, frozenset({f"127.0.0.1:{port}"})) is None
    other = port % 65535 + 1
    assert host_problem(spelled, other, frozenset({f"127.0.0.1:{port}"})) is not None


# -- stubs ----------------------------------------------------------------------------------


def _stub_lookup(answers: list[str]) -> netguard.Lookup:
    async def lookup(host: str, port: int) -> list[str]:
        return list(answers)

    return lookup


class _StubResolver(AbstractResolver):
    def __init__(self, ips: list[str]) -> None:
        self.ips = ips

    async def resolve(self, host: str, port: int = 0, family: Any = 0) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=ip, port=port, family=0, proto=0, flags=0)
            for ip in self.ips
        ]

    async def close(self) -> None:
        pass
