"""VirtualPrinter driven by the gateway's real TcpPrinter, its PNG pictures, and fuzzing."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from printers.escpos_tokens import to_text
from printers.render import EscposJob
from printers.status import PrinterState
from printers.tickets import Item, KitchenTicket, render_kitchen_ticket
from printers.transport import JobOutcome, TcpPrinter
from printers.virtual import VirtualPrinter, VirtualTicket, _split, render_png

GS_R = b"\x1dr\x01"
DLE_EOT = b"\x10\x04\x01"
ORDER_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


def logo_png() -> bytes:
    image = Image.new("RGB", (160, 60), "white")
    image.paste((0, 0, 0), (20, 10, 140, 50))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


KITCHEN = render_kitchen_ticket(
    KitchenTicket(
        "42",
        "12",
        "dine-in",
        "12:04",
        [Item("Margherita", 2, "no basil", "pizza"), Item("Tiramisu")],
        order_id=ORDER_ID,
        logo=logo_png(),
    )
)


@pytest.fixture
async def vp() -> AsyncIterator[VirtualPrinter]:
    printer = VirtualPrinter()
    await printer.start()
    yield printer
    await printer.close()


def tcp(vp: VirtualPrinter) -> TcpPrinter:
    return TcpPrinter(vp.host, vp.port, status_timeout=0.3)


def picture(png: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(png))
    image.load()
    return image.convert("L")


def dark(image: Image.Image) -> list[list[bool]]:
    """Dots that would be black, as rows."""
    width, data = image.width, image.tobytes()
    return [[v < 128 for v in data[y * width : (y + 1) * width]] for y in range(image.height)]


def longest_run(row: list[bool]) -> int:
    best = run = 0
    for on in row:
        run = run + 1 if on else 0
        best = max(best, run)
    return best


async def raw_session(vp: VirtualPrinter, data: bytes, replies: int) -> bytes:
    reader, writer = await asyncio.open_connection(vp.host, vp.port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(replies), 2.0)
    finally:
        writer.close()
        await writer.wait_closed()


async def test_the_gateway_path_prints_a_kitchen_ticket(vp: VirtualPrinter) -> None:
    assert vp.host == "127.0.0.1" and vp.port > 0
    result = await tcp(vp).print_job(KITCHEN, ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED
    assert result.status.state is PrinterState.READY
    [ticket] = vp.tickets
    assert ticket.raw == KITCHEN  # the GS r 1 the transport appended is not part of the job
    assert ticket.text == to_text(KITCHEN)
    assert "Table 12" in ticket.text and "[QR]" in ticket.text
    assert ticket.number == 1 and ticket.received_at > 0


async def test_status_follows_the_fault_switches(vp: VirtualPrinter) -> None:
    printer = tcp(vp)
    assert (await printer.query_status()).state is PrinterState.READY
    vp.near_end = True
    assert (await printer.query_status()).state is PrinterState.PAPER_NEAR_END
    result = await printer.print_job(b"low roll\n", ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED
    assert result.status.state is PrinterState.PAPER_NEAR_END  # from the GS r answer
    vp.paper_out = True
    assert (await printer.query_status()).state is PrinterState.PAPER_OUT


async def test_paper_out_holds_the_job_then_prints_it_once(vp: VirtualPrinter) -> None:
    vp.paper_out = True
    result = await tcp(vp).print_job(KITCHEN, ack_timeout=0.3)
    assert result.outcome is JobOutcome.HELD
    assert result.status.state is PrinterState.PAPER_OUT
    assert result.pending is not None
    async with result.pending as pending:
        assert (await pending.wait(0.2)).outcome is JobOutcome.HELD
        assert vp.tickets == []
        vp.paper_out = False
        done = await pending.wait(2.0)
    assert done.outcome is JobOutcome.PRINTED
    assert [t.raw for t in vp.tickets] == [KITCHEN]


async def test_keeps_the_last_jobs_and_tells_listeners() -> None:
    seen: list[VirtualTicket] = []
    vp = VirtualPrinter(keep=3, on_ticket=seen.append)
    await vp.start()
    try:
        for n in range(5):
            result = await tcp(vp).print_job(f"job {n}\n".encode(), ack_timeout=2.0)
            assert result.printed
    finally:
        await vp.close()
    assert [t.text for t in vp.tickets] == ["job 2\n", "job 3\n", "job 4\n"]
    assert [t.number for t in vp.tickets] == [3, 4, 5]
    assert [t.number for t in seen] == [1, 2, 3, 4, 5]


@pytest.mark.allow_logged_errors
async def test_a_failing_listener_does_not_stop_printing(
    vp: VirtualPrinter, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[int] = []

    def broken(ticket: VirtualTicket) -> None:
        raise RuntimeError("web layer bug")

    vp.listeners += [broken, lambda t: seen.append(t.number)]
    with caplog.at_level(logging.ERROR, logger="printers.virtual"):
        assert (await tcp(vp).print_job(b"x\n", ack_timeout=2.0)).printed
    assert seen == [1] and len(vp.tickets) == 1
    assert any("listener" in r.getMessage() for r in caplog.records)


async def test_jobs_are_split_at_acknowledgements(vp: VirtualPrinter) -> None:
    replies = await raw_session(vp, b"first\n" + DLE_EOT + GS_R + b"second\n" + GS_R, 3)
    assert replies == b"\x12\x00\x00"
    assert [t.raw for t in vp.tickets] == [b"first\n", b"second\n"]


async def test_commands_split_across_reads_are_reassembled(vp: VirtualPrinter) -> None:
    reader, writer = await asyncio.open_connection(vp.host, vp.port)
    for byte in KITCHEN + GS_R:  # one byte per write: every command arrives in pieces
        writer.write(bytes((byte,)))
        await writer.drain()
    assert await asyncio.wait_for(reader.readexactly(1), 2.0) == b"\x00"
    writer.close()
    await writer.wait_closed()
    assert [t.raw for t in vp.tickets] == [KITCHEN]


async def test_command_bytes_inside_an_image_are_picture_data(vp: VirtualPrinter) -> None:
    # A 8x6 raster image whose bytes spell GS r 1 and DLE EOT 1: a printer does not obey them.
    image = b"\x1dv0\x00\x01\x00\x06\x00" + GS_R + DLE_EOT
    job = b"\x1b@" + image + b"after the image\n"
    result = await tcp(vp).print_job(job, ack_timeout=2.0)
    assert result.outcome is JobOutcome.PRINTED
    assert [t.raw for t in vp.tickets] == [job]
    assert vp.tickets[0].text == "[image]\nafter the image\n"


async def test_a_closed_connection_still_prints(vp: VirtualPrinter) -> None:
    _, writer = await asyncio.open_connection(vp.host, vp.port)
    writer.write(b"no ack asked\n")
    writer.close()
    await writer.wait_closed()
    for _ in range(100):
        if vp.tickets:
            break
        await asyncio.sleep(0.01)
    assert [t.raw for t in vp.tickets] == [b"no ack asked\n"]


async def test_more_than_a_mebibyte_without_ack_is_cut(vp: VirtualPrinter) -> None:
    reader, writer = await asyncio.open_connection(vp.host, vp.port)
    writer.write(b"x" * ((1 << 20) + 1))
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError)):
        await writer.drain()
        await asyncio.wait_for(reader.readexactly(1), 2.0)
    writer.close()
    assert vp.tickets == []
    # The printer itself carries on.
    assert (await tcp(vp).print_job(b"next\n", ack_timeout=2.0)).printed


def test_png_shows_logo_text_qr_and_cut() -> None:
    ticket = VirtualTicket(0.0, KITCHEN, to_text(KITCHEN))
    png = ticket.png()
    assert png.startswith(b"\x89PNG") and ticket.png() is png  # drawn once
    image = picture(png)
    assert image.width == 576
    dots = dark(image)
    rows = [y for y, row in enumerate(dots) if any(row)]
    assert rows[0] < 80 and all(dots[rows[0] + 5][240:340])  # the logo is at the top
    # A QR finder pattern (7 modules of 6 dots: one run of 42 dark dots) below the header.
    finder = [y for y in rows if y > 100 and longest_run(dots[y][150:430]) >= 40]
    assert len(finder) >= 6 and min(finder) > image.height // 3
    # The cut is a dashed line at the bottom: dark and light dots alternate across it.
    line = dots[rows[-1]]
    assert 0.3 < sum(line) / len(line) < 0.7


def test_double_size_text_is_taller_and_wider() -> None:
    def job(size: tuple[int, int]) -> bytes:
        printer = EscposJob()
        printer.init()
        printer.style(size=size)
        printer.line("BIG")
        return printer.output()

    normal, double = picture(render_png(job((1, 1)))), picture(render_png(job((2, 2))))

    def ink(image: Image.Image) -> tuple[int, int]:
        box = image.point(lambda v: 255 if v < 128 else 0).getbbox()
        assert box is not None
        return box[2] - box[0], box[3] - box[1]

    (w1, h1), (w2, h2) = ink(normal), ink(double)
    assert w2 >= 1.8 * w1 and h2 >= 1.8 * h1


_COMMANDS = st.sampled_from(
    [
        b"\x1b@",
        b"\x1bt\x10",
        b"\x1d!\x11",
        b"\x1b!\x30",
        b"\x1ba\x01",
        b"\x1bE\x01",
        b"\x1bd\x03",
        b"\x1dV\x00",
        b"\x1dVA\x03",
        GS_R,
        DLE_EOT,
        b"\x1d(k\x08\x001P0hello",
        b"\x1bp\x00\x19\xfa",
        b"\x1dv0\x00\x02\x00\x02\x00\xff\x0f\xf0\x00",
        b"\x1b*\x00\x02\x00\xaa\x55",
        "Grüße\n".encode("cp1252"),
    ]
)
_STREAMS = st.lists(st.one_of(_COMMANDS, st.binary(max_size=40)), max_size=30).map(b"".join)


@given(st.one_of(st.binary(max_size=3000), _STREAMS))
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_bytes_give_text_and_a_picture(raw: bytes) -> None:
    ticket = VirtualTicket(0.0, raw, to_text(raw))
    assert isinstance(ticket.text, str)
    image = picture(ticket.png())
    assert image.width == 576 and image.height <= 20_100
    items, tail = _split(raw)
    commands = sum(1 for item in items if not isinstance(item, bytes))
    data = sum(len(item) for item in items if isinstance(item, bytes))
    assert data + 3 * commands + len(tail) == len(raw)  # nothing lost or invented


async def _serve_noise(chunks: list[bytes]) -> None:
    vp = VirtualPrinter()
    await vp.start()
    try:
        _, writer = await asyncio.open_connection(vp.host, vp.port)
        for chunk in chunks:
            writer.write(chunk)
        writer.close()
        await writer.wait_closed()
        result = await tcp(vp).print_job(b"still works\n", ack_timeout=2.0)
        assert result.printed  # whatever came before, the printer still answers
        for ticket in vp.tickets:
            assert isinstance(ticket.text, str)
    finally:
        await vp.close()


@given(st.lists(st.one_of(_COMMANDS, st.binary(max_size=64)), max_size=12))
@settings(max_examples=25, deadline=None)
def test_the_server_survives_any_input(chunks: list[bytes]) -> None:
    asyncio.run(_serve_noise(chunks))
