"""PrinterBrowser against printers announced by a second zeroconf, both on loopback only.

Every zeroconf here is bound to 127.0.0.1 (never the machine's real interface) and every
instance name carries a uuid, because other test runs may share the loopback multicast group.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Callable

import pytest
from zeroconf import IPVersion, ServiceInfo
from zeroconf.asyncio import AsyncZeroconf

from printers.discovery import PDL_DATASTREAM, FoundPrinter, PrinterBrowser, printer_id

LOOPBACK = ["127.0.0.1"]
WAIT = 10.0


def unique() -> str:
    return f"tg-printer-{uuid.uuid4().hex[:12]}"


def announcement(instance: str, port: int = 9100) -> ServiceInfo:
    return ServiceInfo(
        PDL_DATASTREAM,
        f"{instance}.{PDL_DATASTREAM}",
        port=port,
        properties={"ty": "Virtual TM-T20", "note": "kitchen"},
        server=f"{instance}.local.",
        parsed_addresses=["127.0.0.1"],
    )


@pytest.fixture
async def peer() -> AsyncIterator[AsyncZeroconf]:
    aiozc = AsyncZeroconf(interfaces=LOOPBACK, ip_version=IPVersion.V4Only)
    yield aiozc
    await asyncio.wait_for(aiozc.async_close(), WAIT)


async def until(
    condition: Callable[[], bool], timeout: float = WAIT, each: Callable[[], None] | None = None
) -> None:
    async def poll() -> None:
        while not condition():
            if each is not None:
                each()
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), timeout)


async def test_printer_is_found_then_removed_only_after_misses(peer: AsyncZeroconf) -> None:
    instance = unique()
    info = announcement(instance)
    pid = printer_id(info.name)
    events: list[tuple[int, dict[str, FoundPrinter]]] = []
    browser = PrinterBrowser(
        interfaces=LOOPBACK,
        misses=3,
        interval=0.25,
        resolve_timeout=0.2,
        on_change=lambda found: events.append((browser.checks, found)),
    )
    await browser.start()
    try:
        await asyncio.wait_for(peer.async_register_service(info), WAIT)
        await until(lambda: pid in browser.found)
        printer = browser.found[pid]
        assert printer == FoundPrinter(
            info.name, "127.0.0.1", 9100, {"ty": "Virtual TM-T20", "note": "kitchen"}
        )
        assert printer.label == instance and printer.id == pid
        assert any(pid in found for _, found in events)

        await asyncio.wait_for(peer.async_unregister_service(info), WAIT)
        gone_at = browser.checks
        misses_seen: set[int] = set()
        await until(
            lambda: pid not in browser.found,
            each=lambda: misses_seen.add(browser.missed_checks(pid)),
        )
        removed_at = next(
            checks for checks, found in events if checks > gone_at and pid not in found
        )
        # Still listed through two missed checks; removed by the third.
        assert removed_at - gone_at >= 3
        assert {1, 2} <= misses_seen
    finally:
        await browser.close()


async def test_a_printer_that_comes_back_is_never_removed(
    peer: AsyncZeroconf, caplog: pytest.LogCaptureFixture
) -> None:
    instance = unique()
    pid = printer_id(f"{instance}.{PDL_DATASTREAM}")
    removed: list[int] = []
    seen = False

    def on_change(found: dict[str, FoundPrinter]) -> None:
        nonlocal seen
        seen = seen or pid in found
        if seen and pid not in found:
            removed.append(browser.checks)

    browser = PrinterBrowser(
        interfaces=LOOPBACK, misses=50, interval=0.2, resolve_timeout=0.1, on_change=on_change
    )
    await browser.start()
    try:
        first = announcement(instance)
        await asyncio.wait_for(peer.async_register_service(first), WAIT)
        await until(lambda: pid in browser.found)
        with caplog.at_level(logging.INFO, logger="printers.discovery"):
            for _ in range(2):  # flaps twice: the second return is not logged at INFO again
                await asyncio.wait_for(peer.async_unregister_service(first), WAIT)
                await until(lambda: browser.missed_checks(pid) >= 1)
                first = announcement(instance)
                await asyncio.wait_for(peer.async_register_service(first), WAIT)
                await until(lambda: browser.missed_checks(pid) == 0)
        assert removed == [] and pid in browser.found
        back = [r for r in caplog.records if f"{instance} is back" in r.getMessage()]
        assert [r.levelno for r in back] == [logging.INFO]
        await asyncio.wait_for(peer.async_unregister_service(first), WAIT)
    finally:
        await browser.close()


async def test_a_moved_printer_is_updated_in_place(peer: AsyncZeroconf) -> None:
    instance = unique()
    info = announcement(instance, port=9100)
    pid = printer_id(info.name)
    browser = PrinterBrowser(interfaces=LOOPBACK, interval=0.2, resolve_timeout=0.2)
    await browser.start()
    try:
        await asyncio.wait_for(peer.async_register_service(info), WAIT)
        await until(lambda: pid in browser.found)
        moved = announcement(instance, port=9101)
        await asyncio.wait_for(peer.async_update_service(moved), WAIT)
        await until(lambda: pid in browser.found and browser.found[pid].port == 9101)
        await asyncio.wait_for(peer.async_unregister_service(moved), WAIT)
    finally:
        await browser.close()


def test_printer_id_is_short_stable_and_ignores_case() -> None:
    name = f"Kitchen Printer.{PDL_DATASTREAM}"
    assert printer_id(name) == printer_id(name.upper()) == printer_id(name)
    assert len(printer_id(name)) == 16 and printer_id(name).isascii()
    int(printer_id(name), 16)
    assert printer_id(name) != printer_id(f"Bar Printer.{PDL_DATASTREAM}")


async def test_close_without_start_and_twice_is_harmless() -> None:
    browser = PrinterBrowser(interfaces=LOOPBACK)
    await browser.close()
    await browser.start()
    await browser.close()
    await browser.close()
    assert browser.found == {}


def test_nonsense_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        PrinterBrowser(misses=0)
    with pytest.raises(ValueError):
        PrinterBrowser(interval=0)
