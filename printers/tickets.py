"""Ticket content (plain dataclasses, no gateway models) and the layouts that print them."""

from __future__ import annotations

import logging
import textwrap
from dataclasses import dataclass, field

from printers.render import PAPER_80MM, EscposJob, Paper, RenderError, clean_text

log = logging.getLogger(__name__)

NOTE_INDENT = "    "


@dataclass(frozen=True, slots=True)
class Item:
    title: str
    quantity: int = 1
    notes: str = ""
    station: str = ""


@dataclass(frozen=True, slots=True)
class KitchenTicket:
    order_number: str
    table: str
    order_type: str  # e.g. "dine-in", "takeaway", "delivery"
    created: str  # already formatted for the kitchen, e.g. "12:04"
    items: list[Item] = field(default_factory=list)
    order_id: str = ""  # uuid; the QR lets a scanner at the pass find the order
    logo: bytes | None = None  # PNG
    banner: str = ""  # e.g. "REPRINT": printed above everything, so a cook spots a duplicate


@dataclass(frozen=True, slots=True)
class ReceiptLine:
    title: str
    quantity: int
    unit_price: int  # minor units (cents): no float rounding on money


@dataclass(frozen=True, slots=True)
class Total:
    label: str
    amount: int  # minor units
    emphasis: bool = False


@dataclass(frozen=True, slots=True)
class Receipt:
    order_number: str
    lines: list[ReceiptLine]
    totals: list[Total]
    currency: str = "EUR"
    footer: str = ""
    minor_digits: int = 2  # 0 for JPY, 3 for KWD
    banner: str = ""


def wrap(text: str, width: int, indent: str = "") -> list[str]:
    """Wrap at `width` columns; keeps the writer's line breaks, splits words longer than a line.

    Every character is one column: text is NFC-normalised and anything a code page lacks prints
    as a single '?', so counting characters is counting columns.
    """
    width = max(width, len(indent) + 1)
    lines: list[str] = []
    for paragraph in clean_text(text).split("\n"):
        wrapped = textwrap.wrap(
            paragraph,
            width,
            initial_indent=indent,
            subsequent_indent=indent,
            break_long_words=True,
            break_on_hyphens=False,
        )
        lines.extend(wrapped or [indent.rstrip()])
    return lines


def _banner(job: EscposJob, text: str, cols: int) -> None:
    if not text:
        return
    job.style(align="center", bold=True, size=(1, 2))
    for line in wrap(f"** {text} **", cols):
        job.line(line)
    job.style(align="left", bold=False, size=(1, 1))


def render_kitchen_ticket(ticket: KitchenTicket, paper: Paper = PAPER_80MM) -> bytes:
    job = EscposJob(paper)
    cols = paper.columns
    job.init()
    _banner(job, ticket.banner, cols)
    if ticket.logo:
        try:
            job.logo(ticket.logo)
        except RenderError as exc:
            # A broken logo must not hold back the food; the ticket prints without it.
            log.warning("kitchen ticket %s printed without logo: %s", ticket.order_number, exc)
    job.style(align="center", bold=True, size=(2, 2))
    for line in wrap(f"#{ticket.order_number}", cols // 2):
        job.line(line)
    job.style(size=(1, 2))
    for line in wrap(f"Table {ticket.table}", cols):
        job.line(line)
    job.style(size=(1, 1), bold=False)
    for line in wrap(f"{ticket.order_type}  {ticket.created}".strip(), cols):
        job.line(line)
    job.style(align="left")
    job.line("-" * cols)
    for item in ticket.items:
        head = f"{item.quantity}x {item.title}"
        if item.station:
            head += f" [{item.station}]"
        job.style(bold=True)
        for line in wrap(head, cols):
            job.line(line)
        job.style(bold=False)
        if item.notes:
            for line in wrap(item.notes, cols, NOTE_INDENT):
                job.line(line)
    job.line("-" * cols)
    if ticket.order_id:
        job.style(align="center")
        job.qr(ticket.order_id)
        job.line()
        job.style(align="left")
    job.cut()
    return job.output()


def format_money(amount: int, currency: str, minor_digits: int = 2) -> str:
    sign = "-" if amount < 0 else ""
    whole, minor = divmod(abs(amount), 10**minor_digits)
    digits = f".{minor:0{minor_digits}d}" if minor_digits else ""
    return f"{sign}{whole}{digits} {currency}"


def _priced(label: str, price: str, cols: int) -> list[str]:
    # The price sits right-aligned on the first line; the label wraps in the space left of it.
    if len(price) > cols - 9:
        return [*wrap(label, cols), price.rjust(cols)]
    lines = wrap(label, cols - len(price) - 1)
    lines[0] = lines[0].ljust(cols - len(price)) + price
    return lines


def render_receipt(receipt: Receipt, paper: Paper = PAPER_80MM) -> bytes:
    job = EscposJob(paper)
    cols = paper.columns

    def money(amount: int) -> str:
        return format_money(amount, receipt.currency, receipt.minor_digits)

    job.init()
    _banner(job, receipt.banner, cols)
    job.style(align="center", bold=True, size=(2, 2))
    for line in wrap(f"#{receipt.order_number}", cols // 2):
        job.line(line)
    job.style(align="left", bold=False, size=(1, 1))
    job.line("-" * cols)
    for item in receipt.lines:
        label = f"{item.quantity}x {item.title}"
        for line in _priced(label, money(item.quantity * item.unit_price), cols):
            job.line(line)
    job.line("-" * cols)
    for total in receipt.totals:
        job.style(bold=total.emphasis)
        for line in _priced(total.label, money(total.amount), cols):
            job.line(line)
    job.style(bold=False)
    if receipt.footer:
        job.line()
        job.style(align="center")
        for line in wrap(receipt.footer, cols):
            job.line(line)
        job.style(align="left")
    job.cut()
    return job.output()


def render_text(text: str, paper: Paper = PAPER_80MM, banner: str = "") -> bytes:
    """Imprimo `print-text`: the caller's text, wrapped to the paper, then a cut."""
    job = EscposJob(paper)
    job.init()
    _banner(job, banner, paper.columns)
    for line in wrap(text, paper.columns):
        job.line(line)
    job.cut()
    return job.output()


def open_drawer_bytes(paper: Paper = PAPER_80MM, pin: int = 2) -> bytes:
    """Imprimo `open-drawer`: kick one pin; no ESC @, which would drop a job mid-line."""
    job = EscposJob(paper)
    job.drawer(pin)
    return job.output()
