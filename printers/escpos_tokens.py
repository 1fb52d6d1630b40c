"""Tokenizer for the ESC/POS subset this project emits, so tests assert on meaning, not bytes.

No ESC/POS decoder on PyPI runs on Python 3.11, and golden byte strings break on every harmless
reordering of style commands. The tokenizer never raises: anything it does not understand, or a
command cut short at the end of the buffer, becomes an `Unknown` token holding the raw bytes, so
it is safe on arbitrary input (fuzzed in tests/printers/test_render.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# Epson's numbering for `ESC t n`, limited to single-byte pages Python can decode. The renderer
# restricts MagicEncode to these, so every byte it emits decodes back to the character it meant.
EPSON_CODEPAGES: Mapping[int, str] = {
    0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 13: "cp857", 14: "cp737",
    15: "iso8859_7", 16: "cp1252", 17: "cp866", 18: "cp852", 19: "cp858", 32: "cp720",
    33: "cp775", 34: "cp855", 35: "cp861", 36: "cp862", 37: "cp864", 38: "cp869",
    39: "iso8859_2", 40: "iso8859_15", 44: "cp1125", 45: "cp1250", 46: "cp1251", 47: "cp1253",
    48: "cp1254", 49: "cp1255", 50: "cp1256", 51: "cp1257", 52: "cp1258",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class Text:
    text: str


@dataclass(frozen=True, slots=True)
class Init:
    pass


@dataclass(frozen=True, slots=True)
class Codepage:
    n: int


@dataclass(frozen=True, slots=True)
class Size:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Bold:
    on: bool


@dataclass(frozen=True, slots=True)
class Align:
    mode: str  # "left" | "center" | "right"


@dataclass(frozen=True, slots=True)
class QR:
    data: str


@dataclass(frozen=True, slots=True)
class Image:
    width: int
    height: int


@dataclass(frozen=True, slots=True)
class Cut:
    partial: bool


@dataclass(frozen=True, slots=True)
class Feed:
    lines: int


@dataclass(frozen=True, slots=True)
class Drawer:
    pin: int


@dataclass(frozen=True, slots=True)
class Unknown:
    data: bytes


Token = Text | Init | Codepage | Size | Bold | Align | QR | Image | Cut | Feed | Drawer | Unknown

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
_TEXT_CONTROLS = frozenset(b"\n\r\t")
_ALIGN = {0: "left", 1: "center", 2: "right", 48: "left", 49: "center", 50: "right"}
# Commands with one parameter byte that carry no meaning for the tests; consumed whole so the
# parameter is not misread as text.
_ESC_ONE_ARG = frozenset(b"-3JMGVR=r{ U")
_GS_ONE_ARG = frozenset(b"BbHfhw|I")
_QR_SETTINGS = frozenset((65, 67, 69, 81))  # model, module size, error level, print


class _Reader:
    """Cursor over the buffer; `need` tells whether a command is complete."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes) -> None:
        self.buf = buf
        self.pos = 0

    def need(self, n: int) -> bool:
        return self.pos + n <= len(self.buf)


def tokenize(data: bytes, codepages: Mapping[int, str] = EPSON_CODEPAGES) -> list[Token]:
    """Split `data` into tokens; text is decoded with the code page active at that point."""
    out: list[Token] = []
    r = _Reader(bytes(data))
    buf = r.buf
    page = 0  # what the printer selects after power-on and after ESC @
    while r.pos < len(buf):
        b = buf[r.pos]
        if b >= 0x20 or b in _TEXT_CONTROLS:
            start = r.pos
            while r.pos < len(buf) and (buf[r.pos] >= 0x20 or buf[r.pos] in _TEXT_CONTROLS):
                r.pos += 1
            _add_text(out, _decode(buf[start : r.pos], codepages.get(page)))
            continue
        start = r.pos
        tok: list[Token]
        if b == ESC:
            tok, page = _esc(r, page)
        elif b == GS:
            tok = _gs(r)
        elif b == DLE and r.need(3) and buf[r.pos + 1] == 0x04:
            r.pos += 3
            tok = [Unknown(buf[start : r.pos])]
        else:
            r.pos += 1
            tok = [Unknown(buf[start : r.pos])]
        out.extend(tok)
    return out


def _add_text(out: list[Token], text: str) -> None:
    # Adjacent runs merge so a word split across write calls is still one token.
    if out and isinstance(out[-1], Text):
        out[-1] = Text(out[-1].text + text)
    else:
        out.append(Text(text))


def _decode(raw: bytes, codec: str | None) -> str:
    if codec is None:
        return raw.decode("ascii", errors="replace")
    return raw.decode(codec, errors="replace")


def _esc(r: _Reader, page: int) -> tuple[list[Token], int]:
    buf, start = r.buf, r.pos
    if not r.need(2):
        r.pos = len(buf)
        return [Unknown(buf[start:])], page
    cmd = buf[start + 1]
    if cmd == 0x40:  # ESC @
        r.pos += 2
        return [Init()], 0
    if cmd == 0x70:  # ESC p m t1 t2
        if not r.need(5):
            r.pos = len(buf)
            return [Unknown(buf[start:])], page
        r.pos += 5
        return [Drawer(2 if buf[start + 2] in (0, 48) else 5)], page
    if cmd == 0x2A:  # ESC * m nL nH d1..dk
        if not r.need(5):
            r.pos = len(buf)
            return [Unknown(buf[start:])], page
        m, n = buf[start + 2], buf[start + 3] | buf[start + 4] << 8
        rows = 3 if m in (32, 33) else 1
        if not r.need(5 + n * rows):
            r.pos = len(buf)
            return [Unknown(buf[start:])], page
        r.pos += 5 + n * rows
        return [Image(n, rows * 8)], page
    if cmd in (0x32, 0x3C):  # ESC 2 (default line spacing), ESC < (return home)
        r.pos += 2
        return [Unknown(buf[start : r.pos])], page
    if not r.need(3):
        r.pos = len(buf)
        return [Unknown(buf[start:])], page
    arg = buf[start + 2]
    r.pos += 3
    if cmd == 0x74:  # ESC t n
        return [Codepage(arg)], arg
    if cmd == 0x45:  # ESC E n
        return [Bold(bool(arg & 1))], page
    if cmd == 0x61 and arg in _ALIGN:  # ESC a n
        return [Align(_ALIGN[arg])], page
    if cmd == 0x64:  # ESC d n
        return [Feed(arg)], page
    if cmd == 0x21:  # ESC ! n: one byte sets size and emphasis together
        return [Size(2 if arg & 0x20 else 1, 2 if arg & 0x10 else 1), Bold(bool(arg & 8))], page
    if cmd in _ESC_ONE_ARG:
        return [Unknown(buf[start : r.pos])], page
    # An unlisted command: its length is unknown, so consume only ESC and the command byte and
    # let the rest be read again (as text, most likely), which keeps the scan moving.
    r.pos = start + 2
    return [Unknown(buf[start : r.pos])], page


def _gs(r: _Reader) -> list[Token]:
    buf, start = r.buf, r.pos
    if not r.need(3):
        r.pos = len(buf)
        return [Unknown(buf[start:])]
    cmd, arg = buf[start + 1], buf[start + 2]
    if cmd == 0x21:  # GS ! n
        r.pos += 3
        return [Size((arg >> 4 & 7) + 1, (arg & 7) + 1)]
    if cmd == 0x56:  # GS V m [n]
        length = 4 if arg in (65, 66) else 3
        if not r.need(length):
            r.pos = len(buf)
            return [Unknown(buf[start:])]
        r.pos += length
        if arg in (0, 1, 48, 49, 65, 66):
            return [Cut(partial=arg in (1, 49, 66))]
        return [Unknown(buf[start : r.pos])]
    if cmd == 0x76 and arg == 0x30:  # GS v 0 m xL xH yL yH data
        if not r.need(8):
            r.pos = len(buf)
            return [Unknown(buf[start:])]
        x = buf[start + 4] | buf[start + 5] << 8
        y = buf[start + 6] | buf[start + 7] << 8
        if not r.need(8 + x * y):
            r.pos = len(buf)
            return [Unknown(buf[start:])]
        r.pos += 8 + x * y
        return [Image(x * 8, y)]
    if cmd == 0x28:  # GS ( k / GS ( L and friends: pL pH then that many bytes
        if not r.need(5):
            r.pos = len(buf)
            return [Unknown(buf[start:])]
        size = buf[start + 3] | buf[start + 4] << 8
        if not r.need(5 + size):
            r.pos = len(buf)
            return [Unknown(buf[start:])]
        r.pos += 5 + size
        body = buf[start + 5 : r.pos]
        if arg == 0x6B and len(body) >= 2 and body[0] == 49:  # QR code
            if body[1] == 80 and len(body) >= 3:
                return [QR(body[3:].decode("utf-8", errors="replace"))]
            if body[1] in _QR_SETTINGS:
                return []
        if arg == 0x4C and len(body) >= 10 and body[1] == 112:  # GS ( L raster store
            return [Image(body[6] | body[7] << 8, body[8] | body[9] << 8)]
        return [Unknown(buf[start : r.pos])]
    if cmd in _GS_ONE_ARG:
        r.pos += 3
        return [Unknown(buf[start : r.pos])]
    r.pos += 2
    return [Unknown(buf[start : r.pos])]


def to_text(data: bytes, codepages: Mapping[int, str] = EPSON_CODEPAGES) -> str:
    """What a person reads on the paper: the text, blank lines for feeds, [QR]/[image] marks."""
    parts: list[str] = []
    for tok in tokenize(data, codepages):
        if isinstance(tok, Text):
            parts.append(tok.text.replace("\r", ""))
        elif isinstance(tok, Feed):
            parts.append("\n" * tok.lines)
        elif isinstance(tok, QR):
            parts.append("[QR]\n")
        elif isinstance(tok, Image):
            parts.append("[image]\n")
    return "".join(parts)


__all__ = [
    "EPSON_CODEPAGES", "QR", "Align", "Bold", "Codepage", "Cut", "Drawer", "Feed", "Image",
    "Init", "Size", "Text", "Token", "Unknown", "to_text", "tokenize",
]  # fmt: skip
