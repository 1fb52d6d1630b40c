"""Printing wired into the gateway: boot settings, kitchen tickets from POS orders, the demo."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.app import build
from gateway.settings import SettingsError, load_settings
from printers.escpos_tokens import to_text
from tests.conftest import make_settings
from tests.printers.fake_printer import FakePrinter


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"print_report_url": "http://127.0.0.1/reports"}, "print_report_url refused"),
        ({"print_report_url": "http://169.254.169.254/"}, "print_report_url refused"),
        (
            {"printers": [{"id": "k", "name": "K", "address": "tcp://127.0.0.1:9100"}]},
            "printers[k]: address refused",
        ),
        ({"printers": [{"id": "k", "name": "K", "address": "ftp://x"}]}, "printers[k]: address"),
        (
            {"printers": [{"id": "k", "name": "K", "address": "serial:///dev/ttyS0?baud=fast"}]},
            "printers[k]",
        ),
        (
            {
                "printers": [
                    {"id": "k", "name": "K", "address": "tcp://10.0.0.5:9100"},
                    {"id": "k", "name": "L", "address": "tcp://10.0.0.6:9100"},
                ]
            },
            "twice",
        ),
        (
            {
                "printers": [
                    {
                        "id": "much-too-long-identifier",
                        "name": "K",
                        "address": "tcp://10.0.0.5:9100",
                    }
                ]
            },
            "printers",
        ),
    ],
)
def test_bad_printing_settings_fail_at_boot(
    tmp_path: Path, overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_settings(None, data_dir=tmp_path, **overrides)


async def wait_for(check: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_pos_order_prints_a_kitchen_ticket_once(tmp_path: Path, aiohttp_client: Any) -> None:
    async with FakePrinter() as fake:
        settings = make_settings(
            tmp_path / "data",
            outbound_allow=["127.0.0.1"],
            print_kitchen_station="kitchen",
            printers=[
                {
                    "id": "kp",
                    "name": "Kitchen",
                    "station": "kitchen",
                    "address": f"tcp://127.0.0.1:{fake.port}",
                }
            ],
        )
        gw = await build(settings)
        client = await aiohttp_client(gw.app)
        token = (await gw.tokens.issue("pos", "127.0.0.1")).secret
        auth = {"Authorization": f"Bearer {token}"}
        resp = await client.post(
            "/api/v2/activeorders", json={"name": "58", "orderType": "TO_GO"}, headers=auth
        )
        assert resp.status == 201
        # A second post of the same number is not a new order: no second ticket.
        again = await client.post(
            "/api/v2/activeorders", json={"name": "58", "orderType": "TO_GO"}, headers=auth
        )
        assert again.status == 200
        await wait_for(lambda: len(fake.printed) == 1)
        await asyncio.sleep(0.3)
        assert len(fake.printed) == 1
        text = to_text(fake.printed[0])
        assert "#58" in text and "takeaway" in text
        devices = await (await client.get("/api/dev/devices/", headers=auth)).json()
        assert [d["id"] for d in devices["devices"]["items"]] == ["kp"]


async def test_a_configured_printer_survives_a_restart_with_its_queue(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        outbound_allow=["10.0.0.0"],
        printers=[{"id": "bar", "name": "Bar", "address": "tcp://10.0.0.9:9100", "station": "bar"}],
    )
    gw = await build(settings)
    assert gw.printing.devices["bar"].station == "bar"
    await gw.writer.close()
    await gw.reader.close()
    gw2 = await build(settings)
    assert list(gw2.printing.devices) == ["bar"]
    await gw2.writer.close()
    await gw2.reader.close()


async def test_demo_prints_to_the_virtual_printer(tmp_path: Path, aiohttp_client: Any) -> None:
    settings = make_settings(tmp_path / "data", demo=True, bluetooth=False)
    gw = await build(settings)
    client = await aiohttp_client(gw.app)
    token = (await gw.tokens.issue("pos", "127.0.0.1")).secret
    auth = {"Authorization": f"Bearer {token}"}
    resp = await client.post(
        "/api/dev/devices/demo-kitchen/requests/",
        json={"data": "Hello from the demo"},
        headers=auth,
    )
    assert resp.status in (200, 201), await resp.text()
    rid = (await resp.json())["request"]["id"]
    for _ in range(200):
        body = await (
            await client.get(f"/api/dev/devices/demo-kitchen/requests/{rid}", headers=auth)
        ).json()
        if body["request"]["process"]["status"] == "archived":
            break
        await asyncio.sleep(0.05)
    assert body["request"]["error"] is None
    preview = await (await client.get("/api/dev/devices/demo-kitchen/preview", headers=auth)).json()
    assert "Hello from the demo" in preview["tickets"][-1]["text"]
    png = await client.get("/api/dev/devices/demo-kitchen/preview.png", headers=auth)
    assert png.status == 200 and (await png.read()).startswith(b"\x89PNG")


async def test_a_printer_announced_by_mdns_joins_and_prints(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    import socket
    import uuid

    from zeroconf import IPVersion
    from zeroconf.asyncio import AsyncServiceInfo, AsyncZeroconf

    from gateway.core.printing import Source

    async with FakePrinter() as fake:
        settings = make_settings(
            tmp_path / "data",
            printer_discovery=True,
            mdns_interfaces=["127.0.0.1"],
            outbound_allow=["127.0.0.1"],
        )
        gw = await build(settings)
        client = await aiohttp_client(gw.app)
        name = f"tg-test-{uuid.uuid4().hex[:8]}"
        info = AsyncServiceInfo(
            "_pdl-datastream._tcp.local.",
            f"{name}._pdl-datastream._tcp.local.",
            addresses=[socket.inet_aton("127.0.0.1")],
            port=fake.port,
            server=f"{name}.local.",
            properties={"ty": "Test Kitchen"},
        )
        announcer = AsyncZeroconf(interfaces=["127.0.0.1"], ip_version=IPVersion.V4Only)
        try:
            await announcer.async_register_service(info)
            # By name: another test run on this machine may announce printers on loopback too.
            await wait_for(
                lambda: any(
                    d.source is Source.MDNS and d.name == name for d in gw.printing.devices.values()
                ),
                15,
            )
            device = next(d for d in gw.printing.devices.values() if d.name == name)
            assert device.address == f"tcp://127.0.0.1:{fake.port}" and device.name == name
            token = (await gw.tokens.issue("pos", "127.0.0.1")).secret
            resp = await client.post(
                f"/api/dev/devices/{device.id}/requests/",
                json={"data": "found by mDNS"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert resp.status == 200
            await wait_for(lambda: len(fake.printed) == 1)
            assert "found by mDNS" in to_text(fake.printed[0])
        finally:
            await announcer.async_unregister_service(info)
            await announcer.async_close()


async def test_a_configured_printer_cannot_be_deleted_through_the_api(
    tmp_path: Path, aiohttp_client: Any
) -> None:
    settings = make_settings(
        tmp_path / "data",
        outbound_allow=["10.0.0.9"],
        printers=[{"id": "bar", "name": "Bar", "address": "tcp://10.0.0.9:9100"}],
    )
    gw = await build(settings)
    client = await aiohttp_client(gw.app)
    token = (await gw.tokens.issue("pos", "127.0.0.1")).secret
    resp = await client.delete("/api/dev/devices/bar", headers={"Authorization": f"Bearer {token}"})
    body = await resp.json()
    assert resp.status == 409 and body["success"] is False
    assert "settings file" in body["error"]
    assert "bar" in gw.printing.devices
