"""Rendering primitives and the ESC/POS tokenizer: meaning, encodings, escpos import hygiene."""

from __future__ import annotations

import codecs
import io
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

from printers import escpos_tokens as t
from printers.render import (
    PAPER_58MM,
    PAPER_80MM,
    EscposJob,
    Paper,
    RenderError,
    capabilities_pickle_dir,
    codepage_table,
    configure,
    printable,
)
from printers.tickets import render_text

ROOT = Path(__file__).resolve().parents[2]
ACCENTED = "café crème brûlée Äpfel ñ ø Ørsted façade Œuvre naïve € ß"


def texts(data: bytes) -> str:
    return "".join(tok.text for tok in t.tokenize(data) if isinstance(tok, t.Text))


def test_accented_text_decodes_back_exactly() -> None:
    job = EscposJob()
    job.init()
    job.line(ACCENTED)
    out = job.output()
    assert texts(out) == ACCENTED + "\n"
    assert t.to_text(out) == ACCENTED + "\n"
    assert not any(isinstance(tok, t.Unknown) for tok in t.tokenize(out))


def test_codepage_is_resent_after_every_init() -> None:
    # Lesson 7: after ESC @ the printer is back on its default page; the job must say which
    # page it means before any text, even when the previous text left another page active.
    job = EscposJob()
    job.init()
    job.line("ø")  # not in CP437: switches page
    job.init()
    job.line("ø é")
    toks = t.tokenize(job.output())
    inits = [i for i, tok in enumerate(toks) if isinstance(tok, t.Init)]
    assert len(inits) == 2
    for i in inits:
        assert isinstance(toks[i + 1], t.Codepage)
    assert texts(job.output()) == "ø\nø é\n"


def test_character_without_code_page_prints_question_mark() -> None:
    out = render_text("Ramen 拉麺 ok")
    assert t.to_text(out).startswith("Ramen ?? ok\n")


def test_control_bytes_in_user_text_never_become_commands() -> None:
    # A note is customer input: ESC/GS inside it must not cut paper or kick the drawer.
    out = render_text("no onions\x1bp\x00\x32\x32\x1dV\x00\x1b@ please")
    toks = t.tokenize(out)
    assert not any(isinstance(tok, t.Drawer | t.Unknown) for tok in toks)
    assert sum(isinstance(tok, t.Cut) for tok in toks) == 1
    assert sum(isinstance(tok, t.Init) for tok in toks) == 1


def test_combining_accents_are_composed() -> None:
    assert printable("cafe\u0301") == "café"


def test_every_emitted_codepage_is_in_the_tokenizer_default_table() -> None:
    for paper in (PAPER_80MM, PAPER_58MM):
        for n, codec in codepage_table(paper).items():
            assert codecs.lookup(t.EPSON_CODEPAGES[n]).name == codecs.lookup(codec).name


def test_style_tokens() -> None:
    job = EscposJob()
    job.style(size=(2, 2), bold=True, align="center")
    job.style(size=(1, 1), bold=False, align="right")
    job.feed(3)
    job.drawer(2)
    job.cut()
    toks = t.tokenize(job.output())
    assert toks == [
        t.Size(2, 2), t.Bold(True), t.Align("center"),
        t.Size(1, 1), t.Bold(False), t.Align("right"),
        t.Feed(3), t.Drawer(2), t.Feed(6), t.Cut(partial=False),
    ]  # fmt: skip


def test_bad_arguments_raise_render_error() -> None:
    job = EscposJob()
    with pytest.raises(RenderError):
        job.style(size=(9, 1))
    with pytest.raises(RenderError):
        job.style(align="middle")
    with pytest.raises(RenderError):
        job.drawer(3)
    with pytest.raises(RenderError):
        job.logo(b"not a png")


def test_logo_is_scaled_to_the_paper_and_tokenized_as_image() -> None:
    buf = io.BytesIO()
    PILImage.new("RGBA", (1200, 300), (0, 0, 0, 255)).save(buf, format="PNG")
    for paper in (PAPER_80MM, PAPER_58MM):
        job = EscposJob(paper)
        job.logo(buf.getvalue())
        images = [tok for tok in t.tokenize(job.output()) if isinstance(tok, t.Image)]
        assert len(images) == 1
        assert images[0].height <= 160
        assert images[0].width <= 576


def test_58mm_qr_is_native_and_80mm_too() -> None:
    for paper in (PAPER_80MM, PAPER_58MM):
        job = EscposJob(paper)
        job.qr("3f1e0c1a-0000-4000-8000-000000000001")
        assert t.QR("3f1e0c1a-0000-4000-8000-000000000001") in t.tokenize(job.output())


def test_profile_without_native_qr_or_cutter() -> None:
    # A cheap 58 mm printer: the QR comes as an image, and no cut is sent to a printer that
    # has no cutter (escpos leaves it out; the feed still clears the tear bar).
    job = EscposJob(Paper("POS-5890", 32, 384))
    job.qr("5b0c6a3e-8d0f-4c71-9f0e-2a7f1c9d4e11")
    job.cut()
    toks = t.tokenize(job.output())
    assert any(isinstance(tok, t.Image) for tok in toks)
    assert not any(isinstance(tok, t.QR | t.Cut | t.Unknown) for tok in toks)
    with pytest.raises(RenderError):
        EscposJob(Paper("no-such-printer", 42, 576))


# --- tokenizer robustness ------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=512))
def test_tokenizer_accepts_any_bytes(data: bytes) -> None:
    toks = t.tokenize(data)
    t.to_text(data)
    # Unknown tokens keep their bytes, so nothing is silently dropped: length is conserved.
    unknown = sum(len(tok.data) for tok in toks if isinstance(tok, t.Unknown))
    assert unknown <= len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([b"\x1b", b"\x1d", b"\x1d(k", b"\x1dv0"]))
def test_truncated_commands_become_unknown(prefix: bytes, tail: bytes) -> None:
    toks = t.tokenize(prefix + tail)
    assert toks  # and no exception


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_renderer_output_round_trips(text: str) -> None:
    out = render_text(text)
    toks = t.tokenize(out)
    assert not any(isinstance(tok, t.Unknown) for tok in toks)
    shown = "".join(t.to_text(out).split())
    assert shown == "".join(printable(text).split())


# Scripts that force page switches, next to the ASCII that must survive each switch ('%' is
# not ASCII on every page: cp864 is left out for that).
_MIXED = st.text(alphabet=st.sampled_from(list("a%#é øΩЖשع€ßĞŁ拉\x1b\t\n")), max_size=120)


@settings(max_examples=300, deadline=None)
@given(_MIXED, st.sampled_from([PAPER_80MM, PAPER_58MM]))
def test_mixed_scripts_round_trip(text: str, paper: Paper) -> None:
    job = EscposJob(paper)
    job.init()
    job.text(text)
    toks = t.tokenize(job.output(), codepage_table(paper))
    assert not any(isinstance(tok, t.Unknown) for tok in toks)
    assert texts(job.output()) == printable(text, paper)


# --- python-escpos import hygiene (lesson 4), in fresh interpreters -------------------------

_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from printers import render
    if len(sys.argv) > 1:
        render.configure(Path(sys.argv[1]))
    from printers.tickets import render_text
    render_text("café")
    import logging
    print(render.capabilities_pickle_dir(), len(logging.getLogger().handlers))
    """
)


def _probe(tmp: Path, env_dir: Path | None, arg: Path | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "ESCPOS_CAPABILITIES_PICKLE_DIR"}
    env["TMPDIR"] = str(tmp)
    if env_dir is not None:
        env["ESCPOS_CAPABILITIES_PICKLE_DIR"] = str(env_dir)
    argv = [sys.executable, "-c", _PROBE] + ([str(arg)] if arg else [])
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, check=True)
    pickle_dir, root_handlers = done.stdout.split()
    # escpos calls logging.basicConfig() on import; the wrapper must undo it.
    assert root_handlers == "0"
    return pickle_dir


def test_pickle_dir_from_env_and_no_temp_dirs_on_reimport(tmp_path: Path) -> None:
    scratch, cache = tmp_path / "tmp", tmp_path / "cache"
    scratch.mkdir()
    for _ in range(2):  # the second import must reuse the pickle and create nothing
        assert _probe(scratch, cache, None) == str(cache)
        assert list(scratch.iterdir()) == []
    assert len(list(cache.glob("*.capabilities.pickle"))) == 1


def test_configure_after_load_is_refused(tmp_path: Path) -> None:
    job = EscposJob()  # escpos is loaded now
    assert job.output() == b""
    configure(capabilities_pickle_dir())  # the same dir is fine
    with pytest.raises(RenderError):
        configure(tmp_path)


def test_pickle_dir_passed_in(tmp_path: Path) -> None:
    scratch, cache = tmp_path / "tmp", tmp_path / "given"
    scratch.mkdir()
    assert _probe(scratch, None, cache) == str(cache)
    assert list(scratch.iterdir()) == []
    assert len(list(cache.glob("*.capabilities.pickle"))) == 1


def test_upstream_escpos_still_leaks_a_temp_dir(tmp_path: Path) -> None:
    # Why render._import_escpos patches mkdtemp: python-escpos 3.1 creates a temp dir on import
    # even with ESCPOS_CAPABILITIES_PICKLE_DIR set. When this fails, upstream fixed it and the
    # patch can go.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch), ESCPOS_CAPABILITIES_PICKLE_DIR=str(tmp_path))
    code = "import escpos.capabilities"
    subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, check=True)
    assert len(list(scratch.iterdir())) == 1


def test_a_damaged_capabilities_cache_is_rebuilt(tmp_path: Path) -> None:
    """A power cut can leave python-escpos's cache empty or torn; the next start must not fail
    on it (it did, in every gateway start after the cut, once escpos was loaded at start)."""
    import platform
    import subprocess
    import sys

    cache = tmp_path / "escpos"
    cache.mkdir()
    for name, damage in (("empty", b""), ("torn", b"\x80\x02}q\x00(X")):
        pickle_file = cache / f"{platform.python_version()}.capabilities.pickle"
        pickle_file.write_bytes(damage)
        run = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from printers import render; "
                "render.configure(__import__('pathlib').Path(sys.argv[1])); render.warm_up(); "
                "print(render.capabilities_pickle_dir())",
                str(cache),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert run.returncode == 0, (name, run.stderr[-2000:])
        assert pickle_file.stat().st_size > 1000, name  # rebuilt whole
