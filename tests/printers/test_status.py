"""Status bytes: the reference values decode to the right state; arbitrary bytes never crash."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from printers.status import (
    DLE_EOT_ALL,
    GS_R_PAPER,
    AsbReply,
    DleEotReply,
    Garbage,
    GsRReply,
    PrinterError,
    PrinterState,
    ReplyDecoder,
    StatusParseError,
    dle_eot,
    parse_asb,
    parse_dle_eot,
    parse_gs_r1,
)


def test_query_bytes() -> None:
    assert dle_eot(1) == b"\x10\x04\x01"
    assert DLE_EOT_ALL == b"\x10\x04\x01\x10\x04\x02\x10\x04\x03\x10\x04\x04"
    assert GS_R_PAPER == b"\x1d\x72\x01"
    with pytest.raises(ValueError):
        dle_eot(5)


@pytest.mark.parametrize(
    ("replies", "state"),
    [
        (b"\x12\x12\x12\x12", PrinterState.READY),
        (b"\x1a\x32\x12\x7e", PrinterState.PAPER_OUT),
        (b"\x12\x12\x12\x1e", PrinterState.PAPER_NEAR_END),
        (b"\x1e\x16\x12\x12", PrinterState.COVER_OPEN),
        (b"\x1a\x12\x12\x12", PrinterState.OFFLINE),
        (b"\x1a\x52\x1a\x12", PrinterState.ERROR),  # autocutter error
        (b"\x16\x12\x12\x12", PrinterState.READY),  # drawer pin 3 high is not a fault
    ],
)
def test_dle_eot_reference_values(replies: bytes, state: PrinterState) -> None:
    status = parse_dle_eot(replies)
    assert status.state is state
    assert status.raw == replies


def test_dle_eot_paper_out_fields() -> None:
    status = parse_dle_eot(b"\x1a\x32\x12\x7e")
    assert (
        status.online,
        status.cover_open,
        status.paper_near_end,
        status.paper_out,
        status.error,
    ) == (False, False, True, True, False)
    assert status.blocking


@pytest.mark.parametrize(
    "replies",
    [b"", b"\x12\x12\x12", b"\x12\x12\x12\x12\x12", b"\x00\x12\x12\x12", b"\x12\x12\x12\xff"],
)
def test_dle_eot_rejects_wrong_shape(replies: bytes) -> None:
    with pytest.raises(StatusParseError):
        parse_dle_eot(replies)


@pytest.mark.parametrize(
    ("packet", "state"),
    [
        (b"\x10\x00\x00\x00", PrinterState.READY),
        (b"\x18\x00\x0f\x00", PrinterState.PAPER_OUT),
        (b"\x38\x00\x03\x00", PrinterState.COVER_OPEN),
        (b"\x10\x00\x03\x00", PrinterState.PAPER_NEAR_END),
        (b"\x18\x20\x00\x00", PrinterState.ERROR),
    ],
)
def test_asb_reference_values(packet: bytes, state: PrinterState) -> None:
    assert parse_asb(packet).state is state


@pytest.mark.parametrize("packet", [b"\x10\x00\x00", b"\x12\x00\x00\x00", b"\x10\x80\x00\x00"])
def test_asb_rejects_wrong_shape(packet: bytes) -> None:
    with pytest.raises(StatusParseError):
        parse_asb(packet)


def test_gs_r1() -> None:
    assert parse_gs_r1(b"\x00").near_end is False
    assert parse_gs_r1(b"\x03").near_end is True
    assert parse_gs_r1(b"\x0f").paper_out is True
    assert parse_gs_r1(b"\x03").as_status().state is PrinterState.PAPER_NEAR_END
    with pytest.raises(StatusParseError):
        parse_gs_r1(b"\x12")


def test_decoder_splits_a_mixed_stream() -> None:
    # ASB packet, then two DLE EOT replies, a GS r answer, and noise; fed in awkward pieces.
    stream = b"\x18\x00\x0f\x00" + b"\x12\x1a" + b"\x00" + b"\xff"
    decoder = ReplyDecoder()
    replies = [r for i in range(0, len(stream), 3) for r in decoder.feed(stream[i : i + 3])]
    assert isinstance(replies[0], AsbReply)
    assert replies[0].status.state is PrinterState.PAPER_OUT
    assert replies[1:3] == [DleEotReply(0x12), DleEotReply(0x1A)]
    assert isinstance(replies[3], GsRReply)
    assert replies[4] == Garbage(b"\xff")


def test_decoder_reports_a_torn_asb_packet() -> None:
    replies = ReplyDecoder().feed(b"\x10\x00\x12")
    assert replies == [Garbage(b"\x10\x00"), DleEotReply(0x12)]


@given(st.binary(max_size=8))
def test_parsers_raise_only_their_declared_error(data: bytes) -> None:
    for parse in (parse_dle_eot, parse_asb, parse_gs_r1):
        try:
            status = parse(data)
        except StatusParseError as exc:
            assert isinstance(exc, PrinterError)
        else:
            assert status is not None


@given(st.lists(st.binary(max_size=16), max_size=8))
def test_decoder_never_raises_and_accounts_for_every_byte(chunks: list[bytes]) -> None:
    decoder = ReplyDecoder()
    consumed = 0
    for chunk in chunks:
        for reply in decoder.feed(chunk):
            match reply:
                case AsbReply():
                    consumed += 4
                case Garbage(data):
                    consumed += len(data)
                case _:
                    consumed += 1
    held = sum(map(len, chunks)) - consumed
    assert 0 <= held < 4  # only an unfinished ASB packet may be waiting
