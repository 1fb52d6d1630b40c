"""Pure ESC/POS rendering: layout calls in, bytes out; nothing here touches a device.

python-escpos's `Dummy` printer collects the bytes so its real printer profiles (code pages,
cutter, native QR) decide what is emitted; sending is the transports' job (printing.md lesson 4).
python-escpos is untyped, so it is only touched through `EscposJob`, a small typed wrapper.
"""

from __future__ import annotations

import codecs
import io
import logging
import os
import pickle
import sys
import tempfile
import threading
import unicodedata
from dataclasses import dataclass
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

from PIL import Image as PILImage

log = logging.getLogger(__name__)

CACHE_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"
MAX_LOGO_HEIGHT = 160  # dots (20 mm): a logo must not cost the kitchen a palm of paper
_MAX_SOURCE_PIXELS = 4_000_000  # refuse huge PNGs before Pillow decodes them
_MULTIBYTE = frozenset({"cp932"})  # the tokenizer and MagicEncode handle single bytes only


class RenderError(Exception):
    """Root of this module's errors; the printing service maps it at its boundary."""


@dataclass(frozen=True, slots=True)
class Paper:
    """A printer profile (capabilities.json name) and the layout limits used with it."""

    profile: str
    columns: int  # Font A columns the layout wraps at
    dots: int  # printable width for images


# 42 columns even on TM-T20II (48 per its profile) so one layout fits every 80 mm printer,
# including the 42-column TM-T88 class. The 58 mm profile is one with a cutter and native QR.
PAPER_80MM = Paper("TM-T20II", 42, 576)
PAPER_58MM = Paper("RP-F10-58mm", 32, 384)

_lock = threading.Lock()
_configured_dir: Path | None = None
_lib: _Escpos | None = None


@dataclass(frozen=True, slots=True)
class _Escpos:
    dummy: Any
    encoder: Any
    capabilities: Any


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tablegate" / "escpos"


def configure(cache_dir: Path) -> None:
    """Choose the capabilities pickle dir (over the environment's); before the first render.

    python-escpos reads the dir once, at import, so a later change cannot take effect.
    """
    global _configured_dir
    with _lock:
        if _lib is not None and Path(_lib.capabilities.pickle_dir) != cache_dir:
            raise RenderError("python-escpos is already loaded; configure() it before rendering")
        _configured_dir = cache_dir


def capabilities_pickle_dir() -> Path:
    return Path(_load().capabilities.pickle_dir)


def _load() -> _Escpos:
    global _lib
    lib = _lib
    if lib is not None:
        return lib
    with _lock:
        if _lib is None:
            _lib = _import_escpos()
        return _lib


def _import_escpos() -> _Escpos:
    # An explicit configure() (the composition root) wins over the environment, which wins
    # over the default; whichever is chosen is put in the environment escpos reads.
    env = os.environ.get(CACHE_ENV)
    target = _configured_dir or (Path(env) if env else default_cache_dir())
    if "escpos.capabilities" in sys.modules:
        return _wrap_loaded(target)
    target.mkdir(parents=True, exist_ok=True)
    _drop_damaged_pickles(target)
    os.environ[CACHE_ENV] = str(target)
    # capabilities.py runs `environ.get(KEY, mkdtemp())`: the default is evaluated even when the
    # variable is set, leaving an empty temp dir per process. Hand it the stable dir instead.
    real_mkdtemp = tempfile.mkdtemp
    root = logging.getLogger()
    handlers = list(root.handlers)
    setattr(tempfile, "mkdtemp", lambda *a, **k: str(target))  # noqa: B010
    try:
        lib = _escpos_modules()
    finally:
        setattr(tempfile, "mkdtemp", real_mkdtemp)  # noqa: B010
        # capabilities.py also calls logging.basicConfig() on import, which would make the
        # gateway's own logging setup a no-op; undo that.
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)
    return lib


def _drop_damaged_pickles(target: Path) -> None:
    # python-escpos writes its cache in place, without fsync: a power cut can leave it empty or
    # torn, and its import then fails on every start. A cache that does not load is removed
    # (escpos rebuilds it from its JSON); it holds nothing that cannot be rebuilt.
    for cached in target.glob("*.capabilities.pickle"):
        try:
            with cached.open("rb") as f:
                pickle.load(f)  # noqa: S301 - our own cache file, written by python-escpos
        except Exception as exc:
            log.warning(
                "python-escpos cache %s is damaged (%s); rebuilding it", cached, type(exc).__name__
            )
            cached.unlink(missing_ok=True)


def _wrap_loaded(target: Path) -> _Escpos:
    # Someone imported escpos before us: its pickle dir is already chosen, nothing to patch.
    lib = _escpos_modules()
    if Path(lib.capabilities.pickle_dir) != target:
        log.warning("python-escpos was imported early; pickle dir %s", lib.capabilities.pickle_dir)
    return lib


def _escpos_modules() -> _Escpos:
    # The only import site of python-escpos (untyped): everything else goes through EscposJob.
    from escpos import capabilities  # type: ignore[import-untyped]
    from escpos.magicencode import Encoder  # type: ignore[import-untyped]
    from escpos.printer import Dummy  # type: ignore[import-untyped]

    return _Escpos(Dummy, Encoder, capabilities)


@dataclass(frozen=True, slots=True)
class _Profile:
    encoder_map: dict[str, int]  # code page name -> ESC t number, only decodable pages
    table: dict[int, str]  # ESC t number -> Python codec, what the tokenizer needs
    base: str  # page selected right after ESC @
    encodable: frozenset[str]
    char_cache: dict[str, Any]  # MagicEncode's per-page char maps, shared read-only
    qr_native: bool


@cache
def _profile(name: str) -> _Profile:
    lib = _load()
    profiles = lib.capabilities.CAPABILITIES["profiles"]
    if name not in profiles:
        raise RenderError(f"unknown printer profile {name!r}")
    encodings = lib.capabilities.CAPABILITIES["encodings"]
    encoder_map: dict[str, int] = {}
    table: dict[int, str] = {}
    for number, page in sorted(profiles[name]["codePages"].items(), key=lambda kv: int(kv[0])):
        codec = encodings.get(page, {}).get("python_encode")
        if codec is None or codecs.lookup(codec).name in _MULTIBYTE or not _ascii_safe(codec):
            continue
        encoder_map[page] = int(number)
        table[int(number)] = codec
    if not encoder_map:
        raise RenderError(f"profile {name!r} has no code page Python can encode")
    # Encoder order is (already used, ESC t number): deterministic per job, as we start fresh.
    encoder = lib.encoder(encoder_map)
    encodable: set[str] = set()
    for page in encoder_map:
        encodable.update(encoder._get_codepage_char_map(page))
    encodable.discard(" ")  # undecodable slots are filled with spaces
    return _Profile(
        encoder_map=encoder_map,
        table=table,
        base=next(iter(encoder_map)),
        encodable=frozenset(encodable),
        char_cache=encoder.available_characters,
        qr_native=bool(profiles[name]["features"].get("qrCode")),
    )


def _ascii_safe(codec: str) -> bool:
    # MagicEncode writes ASCII as-is under any page; Python's cp864, for one, maps 0x25 to the
    # Arabic percent sign, so such a page would print '%' wrongly. Leave those out.
    return bytes(range(128)).decode(codec, errors="replace") == "".join(map(chr, range(128)))


def warm_up(papers: tuple[Paper, ...] = (PAPER_80MM, PAPER_58MM)) -> None:
    """Import python-escpos and build the profiles now (a few hundred ms of CPU), so the first
    ticket does not pay for it. Blocking: call it from a thread before any job renders."""
    for paper in papers:
        _profile(paper.profile)


def codepage_table(paper: Paper = PAPER_80MM) -> dict[int, str]:
    """`ESC t` numbers this paper's profile may emit, for `escpos_tokens.tokenize`."""
    return dict(_profile(paper.profile).table)


_CONTROLS: dict[int, str | None] = {i: None for i in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS[ord("\n")] = "\n"
_CONTROLS[ord("\t")] = " "


def clean_text(text: str) -> str:
    """NFC-normalise and drop control characters.

    Without this a note containing ESC or GS bytes would be sent as printer commands (a cut or
    a drawer kick from a customer note), and 'e' + combining acute would print as two glyphs.
    """
    return unicodedata.normalize("NFC", text).translate(_CONTROLS)


def printable(text: str, paper: Paper = PAPER_80MM) -> str:
    """`clean_text`, then '?' for each character none of the profile's code pages has."""
    text = clean_text(text)
    if text.isascii():
        return text
    ok = _profile(paper.profile).encodable
    return "".join(c if c.isascii() or c in ok else "?" for c in text)


class EscposJob:
    """One print job; the only place python-escpos objects are touched."""

    def __init__(self, paper: Paper = PAPER_80MM) -> None:
        lib = _load()
        self.paper = paper
        self._profile = _profile(paper.profile)
        # A fresh encoder per job keeps the output a pure function of the input (the encoder
        # prefers pages it used before); sharing the char maps keeps it cheap.
        encoder = lib.encoder(self._profile.encoder_map)
        encoder.available_characters = self._profile.char_cache
        self._p: Any = lib.dummy(profile=paper.profile, magic_encode_args={"encoder": encoder})

    def init(self) -> None:
        """ESC @, then the code page again (lesson 7).

        The printer falls back to its default page on ESC @ while python-escpos 3.1 keeps
        believing the old one is active, so accented text after a reset would print with the
        wrong glyphs. Forgetting the page and selecting one explicitly keeps both in step.
        """
        self._p.hw("INIT")
        self._p.magic.encoding = None
        self._p.magic.write_with_encoding(self._profile.base, None)

    def text(self, text: str) -> None:
        """Write text. Characters no code page of the profile has print as '?'.

        '?' rather than an image of the line: an image costs ~100x the bytes (seconds per ticket
        on serial links) and a kitchen ticket must stay fast. Doing the replacement here also
        keeps MagicEncode off its CJK branch, which sends GB18030 bytes with no code page switch.
        """
        text = printable(text, self.paper)
        if text.isascii() and self._p.magic.encoding is not None:
            # Every page kept in the profile is ASCII-identical, so ASCII needs no code page
            # search; MagicEncode's per-character probing is most of the render time.
            self._p._raw(text.encode("ascii"))
        else:
            self._p.text(text)

    def line(self, text: str = "") -> None:
        self.text(text + "\n")

    def style(
        self,
        *,
        size: tuple[int, int] | None = None,
        bold: bool | None = None,
        align: str | None = None,
    ) -> None:
        if size is not None:
            width, height = size
            if not (1 <= width <= 8 and 1 <= height <= 8):
                raise RenderError(f"text size {size} outside 1..8")
            self._p.set(custom_size=True, width=width, height=height)
        if align is not None and align not in ("left", "center", "right"):
            raise RenderError(f"unknown alignment {align!r}")
        self._p.set(bold=bold, align=align)

    def qr(self, data: str, module: int = 6) -> None:
        if not data:
            return
        if self._profile.qr_native:
            self._p.qr(data, native=True, size=module)
        else:
            # Printers without GS ( k get the same code as an image, centred by escpos.
            self._p.qr(data, native=False, size=max(1, module // 2), center=True)

    def logo(self, png: bytes) -> None:
        self._p._raw(_logo_bytes(png, self.paper))

    def feed(self, lines: int) -> None:
        self._p.print_and_feed(max(0, min(lines, 255)))

    def cut(self) -> None:
        # escpos feeds 6 lines first so the last line clears the cutter; a profile without a
        # cutter emits no cut at all.
        self._p.cut("FULL")

    def drawer(self, pin: int = 2) -> None:
        if pin not in (2, 5):
            raise RenderError(f"drawer pin must be 2 or 5, not {pin}")
        self._p.cashdraw(pin)

    def output(self) -> bytes:
        return bytes(self._p.output)


@lru_cache(maxsize=16)
def _logo_bytes(png: bytes, paper: Paper) -> bytes:
    # Cached: the same restaurant logo is on every ticket and decoding it dominates render time.
    try:
        with PILImage.open(io.BytesIO(png)) as source:
            width, height = source.size
            if width * height > _MAX_SOURCE_PIXELS:
                raise RenderError(f"logo too large: {width}x{height}")
            image = source.convert("RGBA")
    except (OSError, ValueError, PILImage.DecompressionBombError) as exc:
        raise RenderError(f"logo is not a readable image: {exc}") from exc
    image.thumbnail((paper.dots, MAX_LOGO_HEIGHT))
    job: Any = _load().dummy(profile=paper.profile)
    job.image(image, impl="bitImageRaster", center=True)
    return bytes(job.output)
