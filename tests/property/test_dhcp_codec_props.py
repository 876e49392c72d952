"""Codec properties: any bytes parse or raise ParseError (nothing else); build/parse round-trips; the size
limit holds; scapy dissects whatever we build."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scapy.fields import StrField
from scapy.layers.dhcp import BOOTP, DHCP, DHCPOptions, DHCPRevOptions

from bootstrapd.dhcp.codec import Message, build, build_dropping, parse
from bootstrapd.errors import ParseError
from tests.scapy_oracle import assert_bootp_header

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

VALID = bytes.fromhex(
    "0101060000005eed00008000000000000000000000000000000000000056" + "2b043615" + "00" * 10
) + bytes(192) + bytes.fromhex(
    "63825363" "350101" "3d0701" "00562b043615" "3c0d" + b"CP-8841-3PCC\0".hex()
    + "3709010306" "0f2a4296" "9fa0" "390205dc" "5206010461626364" "ff"
)  # fmt: skip


def outcome(data: bytes) -> Message | None:
    """parse's result, None for ParseError; any other exception fails the test."""
    try:
        return parse(data)
    except ParseError as err:
        assert 0 <= err.offset <= len(data)
        return None


def test_the_valid_seed_parses() -> None:
    msg = parse(VALID)
    assert msg.vendor_class == "CP-8841-3PCC" and msg.max_message_size == 1500


@SETTINGS
@given(st.binary(max_size=700))
def test_random_bytes_parse_or_raise_parse_error(data: bytes) -> None:
    outcome(data)


@SETTINGS
@given(st.binary(min_size=240, max_size=600).map(lambda b: b[:236] + b"\x63\x82\x53\x63" + b[240:]))
def test_random_options_after_a_valid_cookie_parse_or_raise(data: bytes) -> None:
    outcome(data)


@st.composite
def mutations(draw: st.DrawFn) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 8))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete"]))
        # half the edits land in the options field, where the parser has the most branches
        low = draw(st.sampled_from([0, min(240, max(len(data) - 1, 0))]))
        pos = draw(st.integers(low, max(len(data) - 1, low)))
        if kind == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and data:
            data[pos] = draw(st.sampled_from([0, 1, 2, 3, 52, 255, draw(st.integers(0, 255))]))
        elif kind == "cut":
            del data[pos:]
        elif kind == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif data:
            del data[pos : pos + draw(st.integers(1, 8))]
    return bytes(data)


def test_every_truncation_and_single_byte_change_parses_or_raises() -> None:
    for cut in range(len(VALID) + 1):
        outcome(VALID[:cut])
    for pos in range(236, len(VALID)):
        for byte in (0, 1, 2, 3, 52, 254, 255):
            outcome(VALID[:pos] + bytes([byte]) + VALID[pos + 1 :])


@SETTINGS
@given(mutations())
def test_mutated_packets_parse_or_raise_parse_error(data: bytes) -> None:
    outcome(data)


addresses = st.integers(0, 2**32 - 1).map(IPv4Address)


def names(size: int) -> st.SearchStrategy[bytes]:
    return st.binary(max_size=size).map(lambda b: b.replace(b"\0", b""))


option_codes = st.integers(1, 254).filter(lambda c: c != 52)


@st.composite
def messages(draw: st.DrawFn, max_value: int = 600, codes: st.SearchStrategy[int] = option_codes) -> Message:
    hlen = draw(st.integers(0, 16))
    codes_ = draw(st.lists(codes, unique=True, max_size=12))
    return Message(
        op=draw(st.integers(0, 255)),
        htype=draw(st.integers(0, 255)),
        hlen=hlen,
        hops=draw(st.integers(0, 255)),
        xid=draw(st.integers(0, 2**32 - 1)),
        secs=draw(st.integers(0, 2**16 - 1)),
        flags=draw(st.integers(0, 2**16 - 1)),
        ciaddr=draw(addresses),
        yiaddr=draw(addresses),
        siaddr=draw(addresses),
        giaddr=draw(addresses),
        chaddr=draw(st.binary(min_size=hlen, max_size=hlen)),
        sname=draw(names(64)),
        file=draw(names(128)),
        options=tuple((c, draw(st.binary(max_size=max_value))) for c in codes_),
    )


def wire_order(msg: Message) -> tuple[tuple[int, bytes], ...]:
    """Option 82 goes last on the wire (RFC 3046 2.2)."""
    return tuple(o for o in msg.options if o[0] != 82) + tuple(o for o in msg.options if o[0] == 82)


@SETTINGS
@given(messages())
def test_build_then_parse_round_trips(msg: Message) -> None:
    data, dropped = build_dropping(msg, max_size=65535)
    assert dropped == ()
    assert parse(data) == dataclasses.replace(msg, options=wire_order(msg))


@SETTINGS
@given(messages(max_value=300), st.integers(300, 1472))
def test_build_respects_the_size_limit_and_keeps_priority(msg: Message, limit: int) -> None:
    data, dropped = build_dropping(msg, max_size=limit)
    assert 300 <= len(data) <= limit
    kept = parse(data).options
    expected = tuple(o for o in wire_order(msg) if o[0] not in dropped)
    assert kept == expected
    assert {c for c, _ in kept} | set(dropped) == {c for c, _ in msg.options}


def _scapy_raw(code: int) -> bool:
    """Codes scapy dissects as plain bytes, so any value we send must come back unchanged."""
    entry = DHCPOptions.get(code)
    return entry is None or isinstance(entry, str | StrField)


scapy_raw_codes = st.sampled_from([c for c in range(1, 255) if c != 52 and _scapy_raw(c)])


@settings(max_examples=150, deadline=None)
@given(messages(max_value=300, codes=scapy_raw_codes))
def test_scapy_dissects_every_message_we_build(msg: Message) -> None:
    data = build(msg, max_size=1472)
    pkt = BOOTP(data)
    assert_bootp_header(pkt, msg)
    merged: dict[int, bytes] = {}
    for opt in pkt[DHCP].options:
        if opt in ("end", "pad"):
            continue
        assert isinstance(opt, tuple), f"scapy could not dissect {opt!r}"
        code = opt[0] if isinstance(opt[0], int) else DHCPRevOptions[opt[0]][0]
        merged[code] = merged.get(code, b"") + opt[1]
    assert tuple(merged.items()) == parse(data).options
    assert "end" in pkt[DHCP].options
