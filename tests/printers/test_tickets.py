"""Ticket layouts, asserted through the tokenizer: what the kitchen and the guest read."""

from __future__ import annotations

import io
import statistics
import time

import pytest
from PIL import Image as PILImage

from printers import escpos_tokens as t
from printers.render import PAPER_58MM, PAPER_80MM
from printers.tickets import (
    Item,
    KitchenTicket,
    Receipt,
    ReceiptLine,
    Total,
    format_money,
    open_drawer_bytes,
    render_kitchen_ticket,
    render_receipt,
    render_text,
)

ORDER_ID = "5b0c6a3e-8d0f-4c71-9f0e-2a7f1c9d4e11"


def ticket(**overrides: object) -> KitchenTicket:
    fields: dict[str, object] = {
        "order_number": "A17",
        "table": "12",
        "order_type": "dine-in",
        "created": "12:04",
        "items": [
            Item("Crème brûlée", 2, "one without sugar, Äpfel on the side", "pastry"),
            Item("Burger", 1, "", "grill"),
        ],
        "order_id": ORDER_ID,
    }
    fields.update(overrides)
    return KitchenTicket(**fields)  # type: ignore[arg-type]


def size_of(toks: list[t.Token], needle: str) -> t.Size:
    """The text size in force where `needle` is printed."""
    size = t.Size(1, 1)
    for tok in toks:
        if isinstance(tok, t.Size):
            size = tok
        elif isinstance(tok, t.Init):
            size = t.Size(1, 1)
        elif isinstance(tok, t.Text) and needle in tok.text:
            return size
    raise AssertionError(f"{needle!r} not printed")


def test_kitchen_ticket_meaning() -> None:
    out = render_kitchen_ticket(ticket())
    toks = t.tokenize(out)
    text = t.to_text(out)
    assert toks[0] == t.Init() and isinstance(toks[1], t.Codepage)
    assert size_of(toks, "#A17") == t.Size(2, 2)
    assert "Table 12" in text
    assert "2x Crème brûlée [pastry]\n" in text
    assert "\n    one without sugar, Äpfel on the side\n" in text
    assert "1x Burger [grill]\n" in text
    assert t.QR(ORDER_ID) in toks
    assert isinstance(toks[-1], t.Cut) and not toks[-1].partial
    assert not any(isinstance(tok, t.Unknown) for tok in toks)


def test_kitchen_ticket_is_pure() -> None:
    assert render_kitchen_ticket(ticket()) == render_kitchen_ticket(ticket())


def test_58mm_wraps_at_32_columns() -> None:
    long_note = "please cut the burger in four pieces and bring extra napkins to the table"
    out = render_kitchen_ticket(ticket(items=[Item("Burger", 1, long_note)]), PAPER_58MM)
    lines = t.to_text(out).splitlines()
    assert max(len(line) for line in lines) == 32
    notes = [line for line in lines if line.startswith("    ")]
    assert len(notes) >= 3
    assert " ".join(n.strip() for n in notes) == long_note
    out80 = render_kitchen_ticket(ticket(items=[Item("Burger", 1, long_note)]), PAPER_80MM)
    assert max(len(line) for line in t.to_text(out80).splitlines()) == 42


def test_order_number_wraps_at_half_width_when_double() -> None:
    out = render_kitchen_ticket(ticket(order_number="X" * 30), PAPER_58MM)
    lines = t.to_text(out).splitlines()
    assert lines[:2] == ["#" + "X" * 15, "X" * 15]


def test_logo_and_broken_logo(caplog: pytest.LogCaptureFixture) -> None:
    buf = io.BytesIO()
    PILImage.new("L", (300, 100), 0).save(buf, format="PNG")
    toks = t.tokenize(render_kitchen_ticket(ticket(logo=buf.getvalue())))
    assert sum(isinstance(tok, t.Image) for tok in toks) == 1
    out = render_kitchen_ticket(ticket(logo=b"\x89PNG broken"))
    assert not any(isinstance(tok, t.Image) for tok in t.tokenize(out))
    assert "without logo" in caplog.text


def test_receipt() -> None:
    receipt = Receipt(
        order_number="A17",
        lines=[ReceiptLine("Café au lait", 2, 350), ReceiptLine("Crème brûlée", 1, 720)],
        totals=[Total("Subtotal", 1420), Total("Total", 1420, emphasis=True)],
        currency="EUR",
        footer="Merci, à bientôt !",
    )
    out = render_receipt(receipt)
    lines = t.to_text(out).splitlines()
    assert "2x Café au lait" + " " * 19 + "7.00 EUR" in lines
    assert any(line.startswith("Total") and line.endswith("14.20 EUR") for line in lines)
    assert all(len(line) <= 42 for line in lines)
    assert "Merci, à bientôt !" in lines
    assert isinstance(t.tokenize(out)[-1], t.Cut)


def test_money() -> None:
    assert format_money(1420, "EUR") == "14.20 EUR"
    assert format_money(-5, "EUR") == "-0.05 EUR"
    assert format_money(1500, "JPY", 0) == "1500 JPY"


def test_print_text_and_drawer() -> None:
    out = render_text("Hello kitchen\nsecond line")
    assert t.to_text(out).startswith("Hello kitchen\nsecond line\n")
    assert t.tokenize(open_drawer_bytes()) == [t.Drawer(2)]


def test_thirty_line_ticket_render_time_is_reported() -> None:
    # Benchmark-style: printed, never asserted (shared CI boxes are noisy); see
    # bench/printing.py for median/p99 against a same-run ceiling.
    items = [
        Item(f"Dish number {i} with gratin", i % 3 + 1, "no salt" if i % 2 else "")
        for i in range(20)
    ]
    tk = ticket(items=items)
    assert len(t.to_text(render_kitchen_ticket(tk)).splitlines()) >= 30
    samples = []
    for _ in range(50):
        start = time.perf_counter()
        render_kitchen_ticket(tk)
        samples.append(time.perf_counter() - start)
    print(f"30-line kitchen ticket: median {statistics.median(samples) * 1e3:.3f} ms")
