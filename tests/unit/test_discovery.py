"""mDNS advertisement, checked by a second zeroconf instance browsing on loopback only.

Every zeroconf here is bound to 127.0.0.1 (never the machine's real interface) and every
instance name carries a uuid, because other test runs may share the loopback multicast group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from zeroconf import (
    BadTypeInNameException,
    IPVersion,
    ServiceInfo,
    ServiceListener,
    ServiceStateChange,
    Zeroconf,
)
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from gateway.discovery import Advertiser

TRACKER = "_tracker-http._tcp.local."
HTTP = "_http._tcp.local."
LOOPBACK = ["127.0.0.1"]
WAIT = 10.0


def unique(prefix: str = "tg-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def loopback_zeroconf() -> AsyncZeroconf:
    return AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)


class Browser(ServiceListener):
    """Records browse events for one service type and lets a test wait for a given one."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ServiceStateChange]] = []
        self._changed = asyncio.Event()
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def on(cls, aiozc: AsyncZeroconf, service_type: str) -> Browser:
        # Registered through the peer, so closing the peer also cancels the browse.
        browser = cls()
        await aiozc.async_add_service_listener(service_type, browser)
        return browser

    def _record(self, name: str, state: ServiceStateChange) -> None:
        self.events.append((name.lower(), state))
        self._changed.set()

    def add_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._loop.call_soon_threadsafe(self._record, name, ServiceStateChange.Added)

    def remove_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._loop.call_soon_threadsafe(self._record, name, ServiceStateChange.Removed)

    def update_service(self, zc: Zeroconf, type_: str, name: str) -> None:
        self._loop.call_soon_threadsafe(self._record, name, ServiceStateChange.Updated)

    async def wait_for(self, name: str, state: ServiceStateChange, timeout: float = WAIT) -> None:
        async def seen() -> None:
            while (name.lower(), state) not in self.events:
                self._changed.clear()
                await self._changed.wait()

        await asyncio.wait_for(seen(), timeout)


@pytest.fixture
async def peer() -> AsyncIterator[AsyncZeroconf]:
    aiozc = loopback_zeroconf()
    yield aiozc
    await asyncio.wait_for(aiozc.async_close(), WAIT)


MakeAdvertiser = Callable[..., Advertiser]


@pytest.fixture
async def make_advertiser() -> AsyncIterator[MakeAdvertiser]:
    """Builds loopback-only Advertisers with unique names and stops them all afterwards."""
    made: list[Advertiser] = []

    def make(**overrides: Any) -> Advertiser:
        options: dict[str, Any] = {
            "port": 8123,
            "gateway_id": unique("gw"),
            "version": "1",
            "instance_name": unique(),
            "interfaces": LOOPBACK,
            "service_types": (TRACKER,),
        }
        made.append(Advertiser(**(options | overrides)))
        return made[-1]

    yield make
    for advertiser in made:
        await asyncio.wait_for(advertiser.stop(), WAIT)


async def resolve(aiozc: AsyncZeroconf, service_type: str, name: str) -> AsyncServiceInfo:
    info = AsyncServiceInfo(service_type, name)
    assert await asyncio.wait_for(info.async_request(aiozc.zeroconf, 3000), WAIT), name
    return info


async def test_advertises_both_types_with_port_address_and_txt(
    peer: AsyncZeroconf, make_advertiser: MakeAdvertiser
) -> None:
    instance, gateway_id = unique(), unique("gw")
    browser = await Browser.on(peer, TRACKER)
    advertiser = make_advertiser(
        gateway_id=gateway_id,
        version="1.2.3",
        instance_name=instance,
        service_types=(TRACKER, HTTP),
    )
    await asyncio.wait_for(advertiser.start(), WAIT)

    names = [f"{instance}.{TRACKER}", f"{instance}.{HTTP}"]
    assert advertiser.registered == names
    await browser.wait_for(names[0], ServiceStateChange.Added)
    for service_type, name in zip((TRACKER, HTTP), names, strict=True):
        info = await resolve(peer, service_type, name)
        assert info.port == 8123
        assert info.parsed_addresses() == ["127.0.0.1"]
        assert info.decoded_properties == {
            "api": "v2",
            "path": "/api/v2",
            "id": gateway_id,
            "version": "1.2.3",
        }
        # A host name of its own, so two boxes with one instance name never share A records.
        assert info.server == f"tablegate-{gateway_id}.local."


async def test_name_conflict_is_resolved_by_renaming(
    peer: AsyncZeroconf, make_advertiser: MakeAdvertiser, caplog: pytest.LogCaptureFixture
) -> None:
    instance = unique()
    holder = ServiceInfo(
        TRACKER,
        f"{instance}.{TRACKER}",
        port=1,
        server=f"{unique('other')}.local.",
        parsed_addresses=["127.0.0.1"],
    )
    await asyncio.wait_for(peer.async_register_service(holder), WAIT)

    advertiser = make_advertiser(port=8124, instance_name=instance)
    with caplog.at_level(logging.INFO, logger="gateway.discovery"):
        await asyncio.wait_for(advertiser.start(), WAIT)

    renamed = f"{instance}-2.{TRACKER}"
    assert advertiser.registered == [renamed]
    renames = [r for r in caplog.records if "taken" in r.getMessage()]
    assert len(renames) == 1
    assert renames[0].name == "gateway.discovery" and renames[0].levelno == logging.INFO
    assert renamed in renames[0].getMessage()
    # Both owners answer for their own name: the holder kept its port, the gateway got the new name.
    assert (await resolve(peer, TRACKER, renamed)).port == 8124
    assert (await resolve(peer, TRACKER, f"{instance}.{TRACKER}")).port == 1


async def test_stop_says_goodbye_and_is_idempotent(
    peer: AsyncZeroconf, make_advertiser: MakeAdvertiser
) -> None:
    instance = unique()
    browser = await Browser.on(peer, TRACKER)
    advertiser = make_advertiser(port=8125, instance_name=instance)
    await asyncio.wait_for(advertiser.start(), WAIT)
    name = f"{instance}.{TRACKER}"
    await browser.wait_for(name, ServiceStateChange.Added)

    await asyncio.wait_for(advertiser.stop(), WAIT)
    # A goodbye removes it within ~1 s; without one the browser would keep it for its 75-minute TTL.
    await browser.wait_for(name, ServiceStateChange.Removed, timeout=5)
    assert advertiser.registered == []
    await asyncio.wait_for(advertiser.stop(), WAIT)


async def test_stop_without_start_is_harmless() -> None:
    advertiser = Advertiser(port=1, gateway_id="gw", version="1", interfaces=LOOPBACK)
    await asyncio.wait_for(advertiser.stop(), WAIT)
    assert advertiser.registered == []


async def test_long_name_is_truncated_and_explicit_addresses_win(
    peer: AsyncZeroconf, make_advertiser: MakeAdvertiser
) -> None:
    # 'é' is two bytes: a byte cut in the middle of one must not leave half a character.
    instance = unique("tg") + "-" + "é" * 40
    advertiser = make_advertiser(instance_name=instance, host_addresses=["192.0.2.7", "127.0.0.1"])
    await asyncio.wait_for(advertiser.start(), WAIT)

    [name] = advertiser.registered
    label = name.removesuffix(f".{TRACKER}")
    assert len(label.encode()) <= 63
    assert instance.startswith(label) and len(label) > len(unique("tg"))
    info = await resolve(peer, TRACKER, name)
    assert sorted(info.parsed_addresses()) == ["127.0.0.1", "192.0.2.7"]


def test_oversized_txt_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="version"):
        Advertiser(port=1, gateway_id="gw", version="x" * 248, interfaces=LOOPBACK)  # 256 bytes
    Advertiser(port=1, gateway_id="gw", version="x" * 247, interfaces=LOOPBACK)  # exactly 255


async def test_hung_goodbye_is_bounded_and_logged(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    make_advertiser: MakeAdvertiser,
) -> None:
    monkeypatch.setattr("gateway.discovery._STOP_STEP_TIMEOUT", 0.3)
    original = AsyncZeroconf.async_unregister_all_services
    calls = 0

    async def hang_first_call(self: AsyncZeroconf) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.Event().wait()
        await original(self)

    monkeypatch.setattr(AsyncZeroconf, "async_unregister_all_services", hang_first_call)
    advertiser = make_advertiser()
    await asyncio.wait_for(advertiser.start(), WAIT)
    loop = asyncio.get_running_loop()
    began = loop.time()
    await asyncio.wait_for(advertiser.stop(), WAIT)

    assert loop.time() - began < 2.0
    assert calls >= 1
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "mDNS goodbye did not finish within 0.3 s" in warnings


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts open fds in /proc")
async def test_failed_start_raises_and_leaves_no_sockets(make_advertiser: MakeAdvertiser) -> None:
    def open_fds() -> int:
        return len(os.listdir("/proc/self/fd"))

    before = open_fds()
    advertiser = make_advertiser(service_types=(TRACKER, "_not_a_valid_type.local."))
    with pytest.raises(BadTypeInNameException):
        await asyncio.wait_for(advertiser.start(), WAIT)
    assert advertiser.registered == []
    assert open_fds() == before


async def test_served_gateway_advertises_its_port_and_says_goodbye(tmp_path: Path) -> None:
    """The composition root registers after the port listens and unregisters on SIGTERM."""
    import signal

    from tests.support import GatewayProcess, free_port

    name = unique("tg-serve")
    gw = GatewayProcess(tmp_path / "data", free_port())
    peer = loopback_zeroconf()
    browser = await Browser.on(peer, TRACKER)
    try:
        await asyncio.to_thread(
            gw.start,
            TABLEGATE_MDNS_ENABLED="true",
            TABLEGATE_MDNS_INTERFACES='["127.0.0.1"]',
            TABLEGATE_INSTANCE_NAME=name,
        )
        full = f"{name}.{TRACKER}"
        await browser.wait_for(full, ServiceStateChange.Added)
        info = AsyncServiceInfo(TRACKER, full)
        assert await info.async_request(peer.zeroconf, 3000)
        assert info.port == gw.port
        assert info.parsed_addresses() == ["127.0.0.1"]
        gateway_id = (gw.data_dir / "gateway-id").read_text().strip()
        assert info.properties[b"id"] == gateway_id.encode()
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGTERM)
        await browser.wait_for(full, ServiceStateChange.Removed)
        assert await asyncio.to_thread(gw.proc.wait, 15) == 0
    finally:
        gw.kill()
        await peer.async_close()


# -- which addresses are advertised: only where the API listens ------------------------------

BOX = ["192.168.1.5", "10.0.0.2"]  # the box's LAN addresses, as ifaddr would list them


@pytest.mark.parametrize(
    ("listening", "interfaces", "expected"),
    [
        (["0.0.0.0"], None, BOX),  # every interface: every address (as before)
        (["::"], None, BOX),
        (["0.0.0.0"], ["10.0.0.2"], ["10.0.0.2"]),  # filtered by mdns_interfaces
        (["192.168.1.5"], None, ["192.168.1.5"]),  # one address: only that one
        (["192.168.1.5"], ["10.0.0.2"], []),  # listening where mDNS was told not to speak
        (["127.0.0.1"], None, []),  # loopback: nobody else can connect
        (["127.0.0.1", "::1"], None, []),  # host = "localhost"
        (["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]),  # asked for: mDNS stays on lo
    ],
)
def test_advertised_addresses_are_only_where_the_api_listens(
    listening: list[str], interfaces: list[str] | None, expected: list[str]
) -> None:
    from gateway.discovery import advertised_addresses

    assert advertised_addresses(listening, interfaces, lambda: BOX) == expected


@given(
    st.lists(st.ip_addresses().map(str), max_size=4),
    st.none() | st.lists(st.ip_addresses().map(str), max_size=3),
)
def test_advertised_addresses_property(listening: list[str], interfaces: list[str] | None) -> None:
    import ipaddress

    from gateway.discovery import advertised_addresses

    found = advertised_addresses(listening, interfaces, lambda: BOX)
    assert len(found) == len(set(found))
    wildcard = any(ipaddress.ip_address(a).is_unspecified for a in listening)
    for address in found:
        assert address in listening or (wildcard and address in (interfaces or BOX))
        if ipaddress.ip_address(address).is_loopback:
            assert address in (interfaces or [])


class _FakeAdvertiser:
    made: list[dict[str, Any]] = []

    def __init__(self, **options: Any) -> None:
        self.made.append(options)

    async def start(self) -> None:
        return None


@pytest.mark.parametrize(
    ("listening", "interfaces", "advertised", "spoken_on"),
    [
        (["127.0.0.1"], None, None, None),
        (["192.0.2.7"], None, ["192.0.2.7"], ["192.0.2.7"]),
        (["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"], ["127.0.0.1"]),
    ],
)
async def test_served_gateway_advertises_only_where_it_listens(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    listening: list[str],
    interfaces: list[str] | None,
    advertised: list[str] | None,
    spoken_on: list[str] | None,
) -> None:
    # The composition root's choice, with a stand-in Advertiser: nothing multicasts here.
    from gateway.compose.mdns import _advertise
    from tests.conftest import make_settings

    monkeypatch.setattr("gateway.discovery.Advertiser", _FakeAdvertiser)
    _FakeAdvertiser.made = []
    settings = make_settings(tmp_path, mdns_interfaces=interfaces)
    with caplog.at_level(logging.INFO, logger="gateway.compose.mdns"):
        result = await _advertise(settings, "gw", asyncio.Event(), listening)
    if advertised is None:
        assert result is None and _FakeAdvertiser.made == []
        assert "mDNS: not advertising: the API listens only on 127.0.0.1" in caplog.text
    else:
        [options] = _FakeAdvertiser.made
        assert options["host_addresses"] == advertised
        assert options["interfaces"] == spoken_on
