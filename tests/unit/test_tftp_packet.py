"""The TFTP codec: RFC 1350 packets as bytes, and hostile datagrams raise only TftpParseError."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bootstrapd.tftp.packet import (
    Ack,
    Data,
    Error,
    ErrorCode,
    Oack,
    Opcode,
    Request,
    TftpParseError,
    ack_block,
    encode_data,
    encode_error,
    encode_oack,
    encode_request,
    parse,
)


def test_rrq_with_options_keeps_order_and_lowercases_names() -> None:
    raw = b"\x00\x01SEPaabbccddeeff.cnf.xml\x00OCTET\x00BLKSIZE\x001468\x00tsize\x000\x00"
    assert parse(raw) == Request(Opcode.RRQ, "SEPaabbccddeeff.cnf.xml", "octet",
                                 (("blksize", "1468"), ("tsize", "0")))


def test_round_trips() -> None:
    req = Request(Opcode.WRQ, "x.cfg", "netascii", (("windowsize", "16"),))
    assert parse(encode_request(req)) == req
    assert parse(encode_data(70000, b"abc")) == Data(70000 & 0xFFFF, b"abc")
    assert parse(b"\x00\x04\x12\x34") == Ack(0x1234)
    assert parse(encode_error(ErrorCode.FILE_NOT_FOUND, "File not found")) == Error(1, "File not found")
    assert parse(encode_oack((("blksize", "1024"),))) == Oack((("blksize", "1024"),))
    assert encode_data(1, b"hi") == b"\x00\x03\x00\x01hi"


def test_error_without_nul_is_accepted() -> None:
    assert parse(b"\x00\x05\x00\x08tsize probe") == Error(8, "tsize probe")


def test_ack_fast_path() -> None:
    assert ack_block(b"\x00\x04\xff\xff") == 65535
    assert ack_block(b"\x00\x04\x00\x01\x00") is None  # padded: the slow path parses it
    assert ack_block(b"\x00\x03\x00\x01") is None


@pytest.mark.parametrize("raw", [
    b"", b"\x00", b"\x00\x04\x00", b"\x00\x03\x00",
    b"\x00\x01file-without-nul", b"\x00\x01name\x00octet",  # mode not terminated
    b"\x00\x01name\x00", b"\x00\x01\x00octet\x00", b"\x00\x01name\x00\x00",
    b"\x00\x01name\x00octet\x00blksize\x00",  # option without its value
    b"\x00\x01x\x00octet\x00" + b"a\x001\x00" * 200,  # 200 options
    b"\x00\x01" + b"A" * 4096 + b"\x00octet\x00",  # a 4 KB name
    b"\x00\x07junk", b"\xff\xffjunk", b"\x00\x00",
    b"\x00\x06blksize",
])
def test_hostile_datagrams_raise_the_parse_error(raw: bytes) -> None:
    with pytest.raises(TftpParseError):
        parse(raw)


@given(st.binary(max_size=3000))
def test_any_bytes_parse_or_raise_the_parse_error(raw: bytes) -> None:
    with contextlib.suppress(TftpParseError):
        parse(raw)


@given(st.binary(max_size=64))
def test_requests_with_any_tail_parse_or_raise_the_parse_error(tail: bytes) -> None:
    with contextlib.suppress(TftpParseError):
        parse(b"\x00\x01" + tail)
