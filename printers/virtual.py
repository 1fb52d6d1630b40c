"""A virtual ESC/POS printer on TCP for demos and tests: it prints to text and PNG, not paper.

The gateway drives it through the real TcpPrinter path, so it answers what that path relies on:
`DLE EOT n` at once (real-time, even while paper is out) and `GS r n` only once everything before
it is printed, which waits while `paper_out` is set. The stream is split as a printer's parser
reads it, stepping over image and QR payloads, so bytes in a picture are never a command."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache, lru_cache
from typing import cast

from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont

from printers import escpos_tokens as tk

__all__ = ["MAX_UNACKED_BYTES", "PAPER_DOTS", "VirtualPrinter", "VirtualTicket", "render_png"]

log = logging.getLogger(__name__)

MAX_UNACKED_BYTES = 1 << 20  # a connection sending more without a GS r is cut
PAPER_DOTS = 576  # 80 mm at 203 dpi
_PAPER_OUT = {1: 0x1A, 2: 0x32, 3: 0x12, 4: 0x7E}  # DLE EOT 1..4 answers, as printing.md lists
_HEALTHY, _NEAR_END = 0x12, 0x1E
_CONTROL = re.compile(rb"[\x10\x1b\x1d]")
# Commands of fixed length, by lead byte and command byte; any other ESC/GS command is 2 bytes.
_FIXED = {
    0x1B: {**dict.fromkeys(b"@2<", 2), 0x70: 5, **dict.fromkeys(b"-3JMGVR=r{ U!tEad", 3)},
    0x1D: dict.fromkeys(b"!rBbHfhw|Ia", 3),
}


def _u16(buf: bytes, at: int) -> int:
    return buf[at] | buf[at + 1] << 8


def _command_length(buf: bytes, pos: int) -> int | None:
    """Bytes the command at `pos` takes (binary payload included); None while incomplete."""
    avail = len(buf) - pos
    if avail < 2 or (buf[pos] == 0x1D and avail < 3):
        return None
    lead, cmd = buf[pos], buf[pos + 1]
    head = {(0x1D, 0x76): 8, (0x1D, 0x28): 5, (0x1B, 0x2A): 5}.get((lead, cmd), 0)
    if head and avail < head:
        return None
    if lead == 0x10:
        need = 3 if cmd == 0x04 else 1
    elif lead == 0x1D and cmd == 0x56:  # GS V m [n]
        need = 4 if buf[pos + 2] in (65, 66) else 3
    elif lead == 0x1D and cmd == 0x76 and buf[pos + 2] == 0x30:  # GS v 0 m x y data
        need = 8 + _u16(buf, pos + 4) * _u16(buf, pos + 6)
    elif lead == 0x1D and cmd == 0x28:  # GS ( fn pL pH data
        need = 5 + _u16(buf, pos + 3)
    elif lead == 0x1B and cmd == 0x2A:  # ESC * m nL nH columns
        need = 5 + _u16(buf, pos + 3) * (3 if buf[pos + 2] in (32, 33) else 1)
    else:
        need = _FIXED[lead].get(cmd, 2)
    return need if avail >= need else None


def _commands(buf: bytes) -> Iterator[tuple[int, int | None]]:
    """(offset, length) of each command in order; length None for one cut off at the end."""
    pos = 0
    while (match := _CONTROL.search(buf, pos)) is not None:
        length = _command_length(buf, match.start())
        yield match.start(), length
        if length is None:
            return
        pos = match.start() + length


def _split(buf: bytes) -> tuple[list[bytes | int | None], bytes]:
    """Print data (bytes), `DLE EOT n` (n) and `GS r` (None), and an incomplete command left."""
    out: list[bytes | int | None] = []
    start, end = 0, len(buf)
    for at, length in _commands(buf):
        if length is None:
            end = at
        elif buf[at : at + 2] in (b"\x10\x04", b"\x1d\x72"):
            out += [buf[start:at]] if at > start else []
            out.append(buf[at + 2] if buf[at] == 0x10 else None)
            start = at + length
    return out + ([buf[start:end]] if end > start else []), buf[end:]


@dataclass(eq=False)
class VirtualTicket:
    """One printed job. `png()` draws it on first use and keeps the picture."""

    received_at: float  # time.time()
    raw: bytes
    text: str
    number: int = 0  # 1, 2, ... per VirtualPrinter, for "new ticket" notifications
    _png: bytes | None = field(default=None, init=False, repr=False)

    def png(self) -> bytes:
        if self._png is None:
            self._png = render_png(self.raw)
        return self._png


class _Connection(asyncio.Protocol):
    def __init__(self, printer: VirtualPrinter) -> None:
        self._printer = printer
        self._tail = b""  # an incomplete command, waiting for the rest
        self._data = bytearray()  # print data since the last GS r
        self._queue: deque[tuple[bytes, bool]] = deque()  # (job, answer it) waiting for paper
        self._queued = 0
        self._transport: asyncio.Transport  # set by connection_made, before any other call
        self._done = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self._printer._conns.add(self)

    def data_received(self, data: bytes) -> None:
        if self._done:
            return
        items, self._tail = _split(self._tail + data)
        for item in items:
            if isinstance(item, bytes):
                self._data += item
            elif item is None:
                self._enqueue(answer=True)
            elif reply := self._printer._status_reply(item):
                self._write(reply)
        if len(self._data) + len(self._tail) > self._printer.max_unacked:
            log.warning(
                "virtual printer: over %d bytes without GS r; connection cut",
                self._printer.max_unacked,
            )
            self._done = True
            self._transport.abort()
            return
        self.process()

    def _enqueue(self, *, answer: bool) -> None:
        self._queue.append((bytes(self._data), answer))
        self._queued += len(self._data)
        self._data.clear()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done:
            # A printer prints what it received even if the sender went away.
            self._done = True
            self._data += self._tail
            self._enqueue(answer=False)
        self.process()

    def process(self) -> None:
        printer = self._printer
        while self._queue and not printer.paper_out:
            job, answer = self._queue.popleft()
            self._queued -= len(job)
            printer._print(job)
            if answer:
                self._write(bytes((0x03 if printer.near_end else 0x00,)))
        if not self._done:
            # A full buffer stops a real printer from reading; the sender's writes then stall.
            if self._queued > printer.max_unacked:
                self._transport.pause_reading()
            elif not self._transport.is_reading():
                self._transport.resume_reading()
        if self._done and not self._queue:
            printer._conns.discard(self)

    def _write(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)


class VirtualPrinter:
    """An ESC/POS printer on 127.0.0.1 that keeps the last `keep` jobs as `VirtualTicket`s."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        keep: int = 20,
        on_ticket: Callable[[VirtualTicket], None] | None = None,
        max_unacked: int = MAX_UNACKED_BYTES,
    ) -> None:
        self.host, self.port = host, port
        self.max_unacked = max_unacked
        self.near_end = False  # DLE EOT 4 and GS r report a low roll; printing goes on
        # Called on the event loop for each printed job; they must not block.
        self.listeners: list[Callable[[VirtualTicket], None]] = [on_ticket] if on_ticket else []
        self._tickets: deque[VirtualTicket] = deque(maxlen=keep)
        self._count, self._paper_out = 0, False
        self._conns: set[_Connection] = set()
        self._server: asyncio.Server | None = None

    @property
    def tickets(self) -> list[VirtualTicket]:
        """Kept jobs, oldest first."""
        return list(self._tickets)

    @property
    def paper_out(self) -> bool:
        return self._paper_out

    @paper_out.setter
    def paper_out(self, out: bool) -> None:
        # While out, GS r waits and jobs are held; clearing it prints them, in order.
        self._paper_out = out
        if not out:
            for conn in list(self._conns):
                conn.process()

    async def start(self) -> None:
        if self._server is not None:
            raise RuntimeError("VirtualPrinter already started")
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self), self.host, self.port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]
        log.info("virtual printer listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for conn in list(self._conns):
            conn._transport.abort()
        self._conns.clear()
        await server.wait_closed()

    def _status_reply(self, n: int) -> bytes:
        if n not in _PAPER_OUT:
            return b""  # a real printer ignores DLE EOT with another n
        if self._paper_out:
            return bytes((_PAPER_OUT[n],))
        return bytes((_NEAR_END if self.near_end and n == 4 else _HEALTHY,))

    def _print(self, job: bytes) -> None:
        if not job:
            return
        self._count += 1
        ticket = VirtualTicket(time.time(), job, tk.to_text(job), self._count)
        self._tickets.append(ticket)
        for listener in list(self.listeners):
            try:
                listener(ticket)
            except Exception:
                log.exception("virtual printer listener %r failed", listener)


# --- drawing -------------------------------------------------------------------------------

_CELL_W, _CELL_H, _LINE_GAP = 12, 24, 6  # Font A is 12x24 dots
_MAX_HEIGHT = 20_000  # dots (2.5 m of paper): garbage full of feeds must not make a huge PNG


@cache
def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    with contextlib.suppress(OSError):
        return ImageFont.truetype("DejaVuSansMono.ttf", 20)
    return ImageFont.load_default()  # not monospaced, but every glyph gets its own cell


@lru_cache(maxsize=4096)
def _glyph(char: str, width: int, height: int, bold: bool) -> PILImage.Image:
    cell = PILImage.new("L", (_CELL_W, _CELL_H), 255)
    for dx in (0, 1) if bold else (0,):
        ImageDraw.Draw(cell).text((dx, 1), char, font=_font(), fill=0)
    return cell.resize((_CELL_W * width, _CELL_H * height), PILImage.Resampling.NEAREST)


def _qr(data: str) -> PILImage.Image | None:
    import qrcode  # type: ignore[import-untyped]  # only needed once a picture is asked for

    try:
        code = qrcode.QRCode(border=0)
        code.add_data(data)
        code.make(fit=True)
        code.box_size = max(1, min(6, PAPER_DOTS // code.modules_count))  # 6 as render.py
        image: PILImage.Image = code.make_image().get_image()
    except Exception as exc:  # qrcode has its own errors for data that does not fit
        log.debug("QR not drawable: %r", exc)
        return None
    return image.convert("L")


def _raster(command: bytes) -> PILImage.Image | None:
    """`GS v 0 m xL xH yL yH data`: one bit per dot, most significant first, 1 = black."""
    mode, x, y = command[3], _u16(command, 4), _u16(command, 6)
    if not x or not y or x * 8 > 4 * PAPER_DOTS or y > _MAX_HEIGHT or x * y > 1 << 21:
        return None
    image = PILImage.frombytes("1", (x * 8, y), command[8:], "raw", "1;I").convert("L")
    image = image.resize((image.width * (1 + (mode & 1)), image.height * (1 + (mode >> 1 & 1))))
    return image.crop((0, 0, min(image.width, PAPER_DOTS), image.height))


def _rasters(raw: bytes) -> deque[tuple[int, int, PILImage.Image | None]]:
    """The `GS v 0` images of `raw` in order, with the size the tokenizer reports for them."""
    found: deque[tuple[int, int, PILImage.Image | None]] = deque()
    for at, length in _commands(raw):
        if length is not None and raw[at : at + 3] == b"\x1dv0":
            found.append((_u16(raw, at + 4) * 8, _u16(raw, at + 6), _raster(raw[at : at + length])))
    return found


class _Paper:
    """Lays tokens out as the printer does: a line prints at LF or when it is full."""

    def __init__(self, rasters: deque[tuple[int, int, PILImage.Image | None]]) -> None:
        self.rasters = rasters
        self.blocks: list[tuple[PILImage.Image, int]] = []  # picture and its x offset
        self.height = 0
        self.line: list[tuple[str, int, int, bool]] = []
        self.line_align = self.align = "left"
        self.used, self.width, self.tall, self.bold = 0, 1, 1, False

    def add(self, image: PILImage.Image, align: str = "left") -> None:
        self.newline(only_if_started=True)
        if self.height + image.height <= _MAX_HEIGHT:
            x = {"center": (PAPER_DOTS - image.width) // 2, "right": PAPER_DOTS - image.width}
            self.blocks.append((image, max(0, x.get(align, 0))))
            self.height += image.height

    def blank(self, height: int) -> None:
        self.add(PILImage.new("L", (1, max(1, min(height, _MAX_HEIGHT))), 255))

    def text(self, text: str) -> None:
        for char in text.replace("\t", " "):
            if char == "\n":
                self.newline()
            elif char.isprintable():
                if self.used + _CELL_W * self.width > PAPER_DOTS:
                    self.newline()
                if not self.line:
                    self.line_align = self.align
                self.line.append((char, self.width, self.tall, self.bold))
                self.used += _CELL_W * self.width

    def newline(self, *, only_if_started: bool = False) -> None:
        line, self.line, used, self.used = self.line, [], self.used, 0
        if not line:
            if not only_if_started:
                self.blank(_CELL_H + _LINE_GAP)
            return
        height = max(tall for _, _, tall, _ in line) * _CELL_H
        image = PILImage.new("L", (used, height + _LINE_GAP), 255)
        x = 0
        for char, width, tall, bold in line:
            image.paste(_glyph(char, width, tall, bold), (x, height - tall * _CELL_H))
            x += width * _CELL_W
        self.add(image, self.line_align)

    def token(self, token: tk.Token) -> None:
        match token:
            case tk.Init():
                self.align, self.width, self.tall, self.bold = "left", 1, 1, False
            case tk.Size(width, tall):
                self.width, self.tall = max(1, min(width, 8)), max(1, min(tall, 8))
            case tk.Bold(on):
                self.bold = on
            case tk.Align(mode):
                self.align = mode
            case tk.Text(text):
                self.text(text)
            case tk.Feed(lines):
                self.newline(only_if_started=True)
                self.blank(lines * (_CELL_H + _LINE_GAP))
            case tk.QR(data):
                if (image := _qr(data) if len(data) <= 3000 else None) is not None:
                    self.add(image, self.align)
            case tk.Image(width, height):
                image = None
                if self.rasters and self.rasters[0][:2] == (width, height):
                    image = self.rasters.popleft()[2]
                # Formats not decoded here (ESC *, GS ( L) show as a grey box of their size.
                size = (max(1, min(width, PAPER_DOTS)), max(1, min(height, 400)))
                self.add(PILImage.new("L", size, 192) if image is None else image, self.align)
            case tk.Cut():
                cut = PILImage.new("L", (PAPER_DOTS, _CELL_H), 255)
                for x in range(0, PAPER_DOTS, 16):
                    ImageDraw.Draw(cut).line((x, 12, x + 8, 12), fill=0, width=2)
                self.add(cut)
            case _:
                pass  # code pages, drawer kicks and unknown commands leave no ink


def render_png(raw: bytes) -> bytes:
    """A picture of the ticket `raw` would print on 80 mm paper; never raises on bad input."""
    paper = _Paper(_rasters(raw))
    for token in tk.tokenize(raw):
        paper.token(token)
    paper.newline(only_if_started=True)
    y = 8  # a margin above and below
    canvas = PILImage.new("L", (PAPER_DOTS, paper.height + 2 * y), 255)
    for image, x in paper.blocks:
        canvas.paste(image, (x, y))
        y += image.height
    out = io.BytesIO()
    canvas.save(out, "PNG", optimize=True)
    return out.getvalue()
