"""The DHCP wire codec: exact bytes, malformed input, RFC 3396 / option 52, size limits, scapy as oracle."""

from __future__ import annotations

import dataclasses
import inspect
import struct
from ipaddress import IPv4Address
from typing import Any, cast

import pytest
from scapy.layers.dhcp import BOOTP, DHCP, DHCPRevOptions
from scapy.utils import str2mac

from bootstrapd.dhcp.codec import (
    DEFAULT_MAX_SIZE,
    MAGIC_COOKIE,
    Message,
    MessageType,
    Op,
    build,
    build_dropping,
    parse,
    reply_size_limit,
)
from bootstrapd.errors import ParseError
from tests.scapy_oracle import assert_bootp_header

MAC = bytes.fromhex("00562b043615")
SERVER = IPv4Address("198.18.0.1")
COOKIE = struct.pack("!I", MAGIC_COOKIE)


def header(
    *,
    op: int = 1,
    hlen: int = 6,
    xid: int = 0x01020304,
    flags: int = 0,
    chaddr: bytes = MAC,
    sname: bytes = b"",
    file: bytes = b"",
) -> bytes:
    """A BOOTP header written out field by field (RFC 2131 figure 1), independent of the codec."""
    return (
        bytes([op, 1, hlen, 0])
        + xid.to_bytes(4, "big")
        + (7).to_bytes(2, "big")  # secs
        + flags.to_bytes(2, "big")
        + bytes(4)  # ciaddr
        + bytes([198, 18, 0, 100])  # yiaddr
        + bytes(4)  # siaddr
        + bytes([198, 18, 1, 1])  # giaddr
        + chaddr.ljust(16, b"\0")
        + sname.ljust(64, b"\0")
        + file.ljust(128, b"\0")
        + COOKIE
    )


# -- parse -------------------------------------------------------------------------------------------


def test_parse_reads_every_header_field() -> None:
    msg = parse(header(flags=0x8000, sname=b"srv", file=b"boot.cfg") + b"\x35\x01\x01\xff")
    assert (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags) == (
        1, 1, 6, 0, 0x01020304, 7, 0x8000,
    )  # fmt: skip
    assert msg.ciaddr == IPv4Address(0)
    assert msg.yiaddr == IPv4Address("198.18.0.100")
    assert msg.giaddr == IPv4Address("198.18.1.1")
    assert msg.chaddr == MAC
    assert (msg.sname, msg.file) == (b"srv", b"boot.cfg")
    assert msg.options == ((53, b"\x01"),)
    assert msg.broadcast
    assert msg.chaddr_mac == "00:56:2b:04:36:15"


def test_accessors_decode_client_options() -> None:
    opts = (
        b"\x35\x01\x03"  # 53 REQUEST
        b"\x32\x04\xc6\x12\x00\x64"  # 50 requested 198.18.0.100
        b"\x36\x04\xc6\x12\x00\x01"  # 54 server id
        b"\x3d\x07\x01"
        + MAC  # 61 client id
        + b"\x3c\x0dCP-8841-3PCC\x00"  # 60 with the NUL older phones append
        + b"\x0c\x0fSEP00562B043615"  # 12
        + b"\x37\x04\x01\x03\x06\x96"  # 55
        + b"\x39\x02\x05\xdc"  # 57 = 1500
        + b"\x52\x06\x01\x04abcd"  # 82
        + b"\xff"
    )
    msg = parse(header() + opts)
    assert msg.msg_type is MessageType.REQUEST
    assert msg.requested_ip == IPv4Address("198.18.0.100")
    assert msg.server_id == SERVER
    assert msg.client_id == b"\x01" + MAC
    assert msg.vendor_class == "CP-8841-3PCC"
    assert msg.hostname == "SEP00562B043615"
    assert msg.param_request_list == (1, 3, 6, 150)
    assert msg.max_message_size == 1500
    assert msg.relay_agent_info == b"\x01\x04abcd"
    assert not msg.broadcast


def test_accessors_are_none_when_absent_or_malformed() -> None:
    msg = parse(header() + b"\x35\x01\x63\x32\x03abc\x39\x01\x05\xff")
    assert msg.msg_type is None  # 99 is no message type
    assert msg.requested_ip is None  # 3 bytes
    assert msg.max_message_size is None  # 1 byte
    assert (msg.server_id, msg.client_id, msg.vendor_class, msg.hostname) == (None, None, None, None)
    assert msg.param_request_list == ()
    assert msg.relay_agent_info is None


def test_pad_is_skipped_and_bytes_after_end_ignored() -> None:
    msg = parse(header() + b"\x00\x00\x35\x01\x01\x00\xff\x35\x01\x07garbage")
    assert msg.options == ((53, b"\x01"),)


def test_missing_end_is_tolerated() -> None:
    assert parse(header() + b"\x35\x01\x01").options == ((53, b"\x01"),)


def test_split_options_are_concatenated_at_their_first_position() -> None:
    # RFC 3396: several instances of one code form one value, in order.
    msg = parse(header() + b"\x2b\x02ab\x35\x01\x05\x2b\x03cde\xff")
    assert msg.options == ((43, b"abcde"), (53, b"\x05"))


def test_overload_reads_options_then_file_then_sname() -> None:
    sname = b"\x0f\x03sn1\xff"
    file = b"\x0f\x02f1\x42\x04tftp\xff"
    msg = parse(header(sname=sname, file=file) + b"\x35\x01\x02\x34\x01\x03\x0f\x01m\xff")
    assert msg.options == ((53, b"\x02"), (15, b"mf1sn1"), (66, b"tftp"))
    assert (msg.sname, msg.file) == (b"", b"")  # they carried options, not names


def test_overload_of_file_only_leaves_sname_a_name() -> None:
    msg = parse(header(sname=b"server\0junk", file=b"\x42\x01x\xff") + b"\x34\x01\x01\xff")
    assert msg.options == ((66, b"x"),)
    assert msg.sname == b"server"  # up to the first NUL


def test_option_52_inside_sname_is_ignored() -> None:
    msg = parse(header(sname=b"\x34\x01\x03\x0c\x01h\xff") + b"\x34\x01\x02\xff")
    assert msg.options == ((12, b"h"),)


@pytest.mark.parametrize(
    ("data", "offset", "words"),
    [
        (b"", 0, "at least 240"),
        (header()[:239], 239, "at least 240"),
        (header()[:236] + b"\x63\x82\x53\x64", 236, "magic cookie"),
        (header(hlen=17), 2, "hardware address length"),
        (header() + b"\x35\x01\x01\x0c", 243, "no length octet"),
        (header() + b"\x35\x01\x01\x0c\x05abc", 243, "runs past the end"),
        (header() + b"\x34\x01\x04\xff", 240, "overload"),
        (header() + b"\x34\x02\x01\x01\xff", 240, "overload"),
        (header(file=b"\x0c\x7f" + b"a" * 126) + b"\x34\x01\x01\xff", 108, "runs past the end"),
        (header(sname=b"\x0c\x3f" + b"a" * 62) + b"\x34\x01\x02\xff", 44, "runs past the end"),
    ],
    ids=["empty", "short", "cookie", "hlen", "no-length", "overrun", "overload-value", "overload-length",
         "overrun-in-file", "overrun-in-sname"],
)  # fmt: skip
def test_malformed_input_raises_parse_error_with_offset(data: bytes, offset: int, words: str) -> None:
    with pytest.raises(ParseError) as err:
        parse(data)
    assert err.value.offset == offset
    assert words in str(err.value)


def test_parse_accepts_bytearray_and_memoryview() -> None:
    data = header() + b"\x35\x01\x01\xff"
    assert parse(bytearray(data)) == parse(memoryview(data)) == parse(data)


# -- build -------------------------------------------------------------------------------------------


def offer() -> Message:
    return Message(
        op=Op.BOOTREPLY,
        xid=0xCAFEBABE,
        flags=0x8000,
        yiaddr=IPv4Address("198.18.0.100"),
        siaddr=SERVER,
        giaddr=IPv4Address("198.18.1.1"),
        chaddr=MAC,
        options=((53, b"\x02"), (54, SERVER.packed), (51, (3600).to_bytes(4, "big"))),
    )


def test_build_writes_exact_bytes_padded_to_300() -> None:
    data = build(offer())
    expected = (
        bytes([2, 1, 6, 0]) + bytes.fromhex("cafebabe") + bytes(2) + b"\x80\x00"
        + bytes(4) + bytes([198, 18, 0, 100]) + SERVER.packed + bytes([198, 18, 1, 1])
        + MAC + bytes(10) + bytes(64) + bytes(128) + COOKIE
        + b"\x35\x01\x02" + b"\x36\x04" + SERVER.packed + b"\x33\x04\x00\x00\x0e\x10" + b"\xff"
    )  # fmt: skip
    assert data == expected.ljust(300, b"\0")


def test_build_then_parse_round_trips() -> None:
    msg = dataclasses.replace(offer(), sname=b"prov", file=b"CP-8841-3PCC.cfg", hops=2, secs=9)
    assert parse(build(msg)) == msg


def test_long_values_are_split_into_255_byte_pieces() -> None:
    value = bytes(range(256)) * 2  # 512 bytes -> 255 + 255 + 2
    data = build(Message(options=((43, value),)), max_size=1000)
    opts = data[240:]
    assert opts[:2] == b"\x2b\xff" and opts[257:259] == b"\x2b\xff" and opts[514:516] == b"\x2b\x02"
    assert opts[518] == 255
    assert parse(data).options == ((43, value),)


def test_empty_value_is_sent_as_zero_length_option() -> None:
    data = build(Message(options=((80, b""),)))
    assert data[240:243] == b"\x50\x00\xff"
    assert parse(data).options == ((80, b""),)


def test_options_that_do_not_fit_are_dropped_in_priority_order() -> None:
    big = b"x" * 200
    msg = Message(options=((53, b"\x05"), (160, big), (159, big), (66, b"tftp")))
    data, dropped = build_dropping(msg, max_size=DEFAULT_MAX_SIZE)
    assert len(data) <= DEFAULT_MAX_SIZE
    assert dropped == (159,)  # 240 + 3 + 202 leaves 102 bytes: 159 does not fit, 66 still does
    assert [code for code, _ in parse(data).options] == [53, 160, 66]


def test_relay_agent_info_is_reserved_first_and_sent_last() -> None:
    relay = b"\x01\x04port\x02\x06remote"
    big = b"y" * 300
    msg = Message(options=((53, b"\x05"), (82, relay), (43, big), (15, b"example.net")))
    data, dropped = build_dropping(msg, max_size=DEFAULT_MAX_SIZE)
    assert dropped == (43,)
    assert parse(data).options == ((53, b"\x05"), (15, b"example.net"), (82, relay))
    end = data.index(b"\xff", 240 + 3 + 13)
    assert data[end - len(relay) - 2 : end] == b"\x52" + bytes([len(relay)]) + relay


def test_build_never_exceeds_the_limit() -> None:
    msg = Message(options=tuple((code, b"z" * 90) for code in range(100, 120)))
    for limit in (300, 548, 576, 1000, 1472):
        data, dropped = build_dropping(msg, max_size=limit)
        assert len(data) <= limit
        assert len(parse(data).options) + len(dropped) == 20


@pytest.mark.parametrize("code", [0, 52, 255, 256, -1])
def test_build_rejects_framing_codes(code: int) -> None:
    with pytest.raises(ValueError, match="framing"):
        build(Message(options=((code, b"\x01"),)))


def test_build_rejects_overlong_fields_and_tiny_limits() -> None:
    with pytest.raises(ValueError, match="longer than its field"):
        build(Message(chaddr=bytes(17)))
    with pytest.raises(ValueError, match="longer than its field"):
        build(Message(sname=b"s" * 65))
    with pytest.raises(ValueError, match="out of range"):
        build(Message(xid=2**32))
    with pytest.raises(ValueError, match="BOOTP minimum"):
        build(Message(), max_size=299)


@pytest.mark.parametrize(
    ("mms", "limit"),
    [(None, 548), (b"\x02\x40", 548), (b"\x01\x00", 548), (b"\x05\xdc", 1472), (b"\x23\x28", 1472),
     (b"\x03\xe8", 972), (b"\x05", 548)],
)  # fmt: skip
def test_reply_size_limit_reads_option_57_as_an_ip_datagram_size(mms: bytes | None, limit: int) -> None:
    request = Message(options=((57, mms),) if mms is not None else ())
    assert reply_size_limit(request) == limit


def test_message_init_takes_exactly_the_dataclass_fields_with_defaults() -> None:
    params = list(inspect.signature(Message.__init__).parameters)[1:]
    assert params == [f.name for f in dataclasses.fields(Message)]
    msg = Message()
    assert (msg.op, msg.htype, msg.hlen, msg.options, msg.ciaddr) == (1, 1, 6, (), IPv4Address(0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        msg.xid = 5  # type: ignore[misc]
    assert dataclasses.replace(msg, xid=5).xid == 5


# -- scapy as the independent oracle ----------------------------------------------------------------


def scapy_options(pkt: BOOTP) -> tuple[tuple[int, bytes], ...]:
    """scapy's dissection of the options, re-encoded per option with scapy's own fields, then
    concatenated per code (RFC 3396) so it compares with Message.options."""
    merged: dict[int, bytes] = {}
    for opt in pkt[DHCP].options:
        if opt in ("end", "pad"):
            continue
        assert isinstance(opt, tuple), f"scapy could not dissect {opt!r}"
        name, *values = opt
        if isinstance(name, int):
            code, raw = name, b"".join(values)
        else:
            code, fld = DHCPRevOptions[name]
            fld = cast(Any, fld)
            raw = b"".join(v if fld is None else fld.addfield(None, b"", fld.any2i(None, v)) for v in values)
        merged[code] = merged.get(code, b"") + raw
    return tuple(merged.items())


def assert_scapy_reads(data: bytes, msg: Message) -> BOOTP:
    pkt = BOOTP(data)
    assert_bootp_header(pkt, msg)
    assert pkt.options == COOKIE
    assert DHCP in pkt
    return pkt


def mpp_offer() -> Message:
    return dataclasses.replace(
        offer(),
        options=(
            (53, b"\x02"),
            (54, SERVER.packed),
            (51, (3600).to_bytes(4, "big")),
            (58, (1800).to_bytes(4, "big")),
            (59, (3150).to_bytes(4, "big")),
            (1, IPv4Address("255.255.254.0").packed),
            (3, SERVER.packed),
            (6, SERVER.packed + IPv4Address("198.18.0.2").packed),
            (15, b"staging.example.net"),
            (2, (-18000).to_bytes(4, "big", signed=True)),
            (42, SERVER.packed),
            (66, b"198.18.0.1"),
            (150, SERVER.packed),
            (159, b"http://198.18.0.1"),
            (160, b"https://prov.staging.example.net/$PSN.xml"),
            (43, b"\x01\x1ehttps://acs.example.net/cwmp\x02\x07staging"),
            (125, b"\x00\x00\x0d\xe9\x05\x01\x03abc"),
            (82, b"\x01\x04eth0"),
        ),
    )


def test_scapy_dissects_our_mpp_offer() -> None:
    msg = mpp_offer()
    data = build(msg, max_size=1472)
    pkt = assert_scapy_reads(data, msg)
    assert scapy_options(pkt) == (*(o for o in msg.options if o[0] != 82), (82, b"\x01\x04eth0"))
    typed = {o[0]: o[1:] for o in pkt[DHCP].options if isinstance(o, tuple)}
    assert typed["message-type"] == (2,)
    assert typed["server_id"] == ("198.18.0.1",)
    assert typed["lease_time"] == (3600,) and typed["renewal_time"] == (1800,)
    assert typed["subnet_mask"] == ("255.255.254.0",)
    assert typed["name_server"] == ("198.18.0.1", "198.18.0.2")
    assert typed["domain"] == (b"staging.example.net",)
    assert typed["time_zone"] == (-18000 & 0xFFFFFFFF,)  # scapy reads option 2 as unsigned
    assert typed["tftp_server_name"] == (b"198.18.0.1",)
    assert typed["tftp_server_address"] == ("198.18.0.1",)
    assert typed["v4-captive-portal"] == (b"https://prov.staging.example.net/$PSN.xml",)


def test_scapy_dissects_nak_and_split_option() -> None:
    msg = Message(
        op=2, xid=7, chaddr=MAC, flags=0x8000,
        options=((53, b"\x06"), (54, SERVER.packed), (56, b"wrong subnet"), (43, b"v" * 300)),
    )  # fmt: skip
    pkt = assert_scapy_reads(build(msg, max_size=1000), msg)
    names = [o[0] for o in pkt[DHCP].options if isinstance(o, tuple)]
    assert names.count("vendor_specific") == 2  # split on the wire, RFC 3396
    assert scapy_options(pkt) == msg.options


def scapy_client(msg_type: str, options: list[tuple[str, object]], **bootp: object) -> bytes:
    fields: dict[str, Any] = {"op": 1, "xid": 0x5EED, "chaddr": MAC + bytes(10)} | bootp
    return bytes(BOOTP(**fields) / DHCP(options=[("message-type", msg_type), *options, "end"]))


CLIENT_PACKETS = {
    "discover-mpp": scapy_client(
        "discover",
        [("vendor_class_id", b"CP-8841-3PCC\x00"), ("param_req_list", [1, 3, 6, 15, 42, 66, 150, 159, 160]),
         ("client_id", b"\x01" + MAC), ("max_dhcp_size", 1500), ("hostname", b"SEP00562B043615")],
        flags=0x8000,
    ),
    "discover-tr069": scapy_client("discover", [("vendor_class_id", b"dslforum.org"), ("param_req_list", [43])]),
    "request-selecting": scapy_client(
        "request", [("requested_addr", "198.18.0.100"), ("server_id", "198.18.0.1"), ("client_id", b"\x01" + MAC)]
    ),
    "request-renewing": scapy_client("request", [], ciaddr="198.18.0.100"),
    "request-relayed": scapy_client(
        "request", [("requested_addr", "198.18.1.20"), ("relay_agent_information", b"\x01\x03abc")],
        giaddr="198.18.1.1", hops=1,
    ),
    "decline": scapy_client("decline", [("requested_addr", "198.18.0.100"), ("server_id", "198.18.0.1")]),
    "release": scapy_client("release", [("server_id", "198.18.0.1")], ciaddr="198.18.0.100"),
    "inform": scapy_client("inform", [("param_req_list", [6, 15])], ciaddr="198.18.0.77"),
}  # fmt: skip


@pytest.mark.parametrize("name", CLIENT_PACKETS)
def test_scapy_built_client_packets_parse_identically(name: str) -> None:
    data = CLIENT_PACKETS[name]
    pkt = BOOTP(data)
    msg = parse(data)
    assert_scapy_reads(data, msg)
    assert msg.options == scapy_options(pkt)
    assert msg.chaddr_mac == str2mac(pkt.chaddr[:6])
    assert msg.msg_type is MessageType[name.split("-")[0].upper()]


def test_scapy_client_fields_reach_the_accessors() -> None:
    discover = parse(CLIENT_PACKETS["discover-mpp"])
    assert discover.vendor_class == "CP-8841-3PCC"
    assert discover.param_request_list == (1, 3, 6, 15, 42, 66, 150, 159, 160)
    assert (discover.max_message_size, discover.broadcast) == (1500, True)
    assert reply_size_limit(discover) == 1472
    relayed = parse(CLIENT_PACKETS["request-relayed"])
    assert relayed.giaddr == IPv4Address("198.18.1.1") and relayed.hops == 1
    assert relayed.relay_agent_info == b"\x01\x03abc"
    assert parse(CLIENT_PACKETS["release"]).ciaddr == IPv4Address("198.18.0.100")
