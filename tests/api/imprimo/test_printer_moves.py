"""Issue 9 item 7c: an mDNS announcement under a printer's name at a new address moves the
printer only with the identity it was found with; otherwise a manager confirms.

The policy as a unit, and the whole path with real zeroconf on 127.0.0.1 and a real gateway.
"""

from __future__ import annotations

import asyncio
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from zeroconf import IPVersion
from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

from gateway.app import build
from gateway.compose.printer_discovery import Move, PrinterMoves
from gateway.core.printing import Device, Source
from printers.discovery import IDENTITY_KEYS, FoundPrinter
from tests.conftest import make_settings
from tests.support import free_port

A, B, C = "tcp://10.0.0.5:9100", "tcp://10.0.0.6:9100", "tcp://10.0.0.7:9100"


def device(address: str, source: Source = Source.MDNS) -> Device:
    return Device("p1", "Kitchen", address, "", "80mm", source, 0.0)


def test_a_move_with_the_identity_it_was_found_with_is_followed() -> None:
    moves = PrinterMoves()
    assert moves.decide(None, "p1", A, "uuid=1") is Move.ADD
    assert moves.decide(device(A), "p1", B, "uuid=1") is Move.ADD


def test_a_move_without_that_identity_is_held() -> None:
    moves = PrinterMoves()
    moves.decide(None, "p1", A, "uuid=1")
    assert moves.decide(device(A), "p1", B, "uuid=2") is Move.HOLD
    assert moves.decide(device(A), "p1", B, None) is Move.HOLD
    # Back where it is: the held move is void, the identity still the first one.
    assert moves.decide(device(A), "p1", A, "uuid=1") is Move.SETTLED
    assert moves.decide(device(A), "p1", C, "uuid=1") is Move.ADD


def test_a_confirmed_move_follows_the_printer_found_at_the_confirmed_address() -> None:
    moves = PrinterMoves()
    moves.decide(None, "p1", A, "uuid=1")
    assert moves.decide(device(A), "p1", B, "uuid=2") is Move.HOLD
    # The manager moved it to B; the next announcement of that printer elsewhere is followed.
    assert moves.decide(device(B), "p1", C, "uuid=2") is Move.ADD
    assert moves.decide(device(C), "p1", A, "uuid=1") is Move.HOLD


def test_a_printer_that_announces_no_identity_never_moves_by_itself() -> None:
    moves = PrinterMoves()
    moves.decide(None, "p1", A, None)
    assert moves.decide(device(A), "p1", B, None) is Move.HOLD


def test_after_a_restart_the_first_sighting_elsewhere_is_held() -> None:
    moves = PrinterMoves()  # nothing recorded: the stored device's identity is unknown
    assert moves.decide(device(A), "p1", B, "uuid=1") is Move.HOLD
    assert moves.decide(device(A), "p1", A, "uuid=1") is Move.SETTLED
    assert moves.decide(device(A), "p1", B, "uuid=1") is Move.ADD


def test_configured_and_hand_added_printers_are_not_touched() -> None:
    moves = PrinterMoves()
    for source in (Source.SETTINGS, Source.API):
        assert moves.decide(device(A, source), "p1", B, "uuid=1") is Move.NOTHING


def test_held_moves_are_logged_once_per_address(caplog: Any) -> None:
    moves = PrinterMoves()
    moves.decide(None, "p1", A, "uuid=1")
    for _ in range(5):
        moves.decide(device(A), "p1", B, "uuid=2")
    moves.decide(device(A), "p1", C, "uuid=2")
    held = [r for r in caplog.records if "until a manager confirms" in r.getMessage()]
    assert len(held) == 2


@given(st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=8))
def test_identity_is_the_first_identity_key_announced_or_none(txt: dict[str, str]) -> None:
    identity = FoundPrinter("x._pdl-datastream._tcp.local.", "10.0.0.5", 9100, txt).identity
    lowered = {k.lower(): v.strip() for k, v in txt.items()}
    present = [k for k in IDENTITY_KEYS if lowered.get(k)]
    if not present:
        assert identity is None
    else:
        assert identity == f"{present[0]}={lowered[present[0]].lower()}"


# -- the whole path -------------------------------------------------------------------------


async def wait_for(check: Callable[[], bool], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


def announcement(name: str, port: int, printer_uuid: str) -> AsyncServiceInfo:
    return AsyncServiceInfo(
        "_pdl-datastream._tcp.local.",
        f"{name}._pdl-datastream._tcp.local.",
        addresses=[socket.inet_aton("127.0.0.1")],
        port=port,
        server=f"{name}.local.",
        properties={"ty": "Test Kitchen", "UUID": printer_uuid},
    )


async def test_an_impostor_announcement_is_held_until_a_manager_confirms(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(
        tmp_path / "data",
        printer_discovery=True,
        mdns_interfaces=["127.0.0.1"],
        outbound_allow=["127.0.0.1"],
    )
    gw = await build(settings)
    client = await aiohttp_client(gw.app)
    token = (await gw.tokens.issue("manager", "127.0.0.1")).secret
    auth = {"Authorization": f"Bearer {token}"}
    name = f"tg-move-{uuid.uuid4().hex[:8]}"
    real, impostor = str(uuid.uuid4()), str(uuid.uuid4())
    p1, p2, p3 = free_port(), free_port(), free_port()
    first = f"tcp://127.0.0.1:{p1}"
    announcer = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
    info = announcement(name, p1, real)
    try:
        await announcer.async_register_service(info)
        await wait_for(lambda: any(d.name == name for d in gw.printing.devices.values()))
        did = next(d.id for d in gw.printing.devices.values() if d.name == name)

        # Same name, another address, another printer: held, and shown to the manager.
        info = announcement(name, p2, impostor)
        await announcer.async_update_service(info)
        await wait_for(lambda: gw.printing.devices[did].pending_address is not None)
        assert gw.printing.devices[did].address == first
        body = await (await client.get(f"/api/dev/devices/{did}", headers=auth)).json()
        assert body["device"]["pendingAddress"] == f"tcp://127.0.0.1:{p2}"

        # The manager confirms: moved, nothing pending.
        resp = await client.post(
            f"/api/dev/devices/{did}/address",
            headers=auth,
            json={"address": f"tcp://127.0.0.1:{p2}"},
        )
        body = await resp.json()
        assert resp.status == 200 and body["success"] is True, body
        assert "pendingAddress" not in body["device"]
        assert gw.printing.devices[did].address == f"tcp://127.0.0.1:{p2}"

        # From there, the printer at the confirmed address moves by itself with its identity.
        info = announcement(name, p3, impostor)
        await announcer.async_update_service(info)
        await wait_for(lambda: gw.printing.devices[did].address == f"tcp://127.0.0.1:{p3}")
        assert gw.printing.devices[did].pending_address is None
    finally:
        await announcer.async_unregister_service(info)
        await announcer.async_close()


async def test_the_confirmation_needs_a_token_and_a_valid_address(
    client: Any, auth: dict[str, str]
) -> None:
    resp = await client.post(
        "/api/dev/devices/", headers=auth, json={"name": "K", "address": "tcp://10.0.0.9:9100"}
    )
    did = (await resp.json())["device"]["id"]
    url = f"/api/dev/devices/{did}/address"
    resp = await client.post(url, json={"address": "tcp://10.0.0.9:9101"})
    assert resp.status == 401 and (await resp.json())["success"] is False
    for bad in (
        {"address": "ftp://x"},
        {"address": 5},
        {},
        {"address": "tcp://10.0.0.9:1", "extra": 1},
    ):
        resp = await client.post(url, headers=auth, json=bad)
        assert resp.status == 400 and (await resp.json())["success"] is False, bad
    resp = await client.post(
        "/api/dev/devices/nope/address", headers=auth, json={"address": "tcp://10.0.0.9:9101"}
    )
    assert resp.status == 404
