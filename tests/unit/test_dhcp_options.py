"""Option encoders: exact wire bytes per type, TR-069 option 43, RFC 3925 option 125, raw options."""

from __future__ import annotations

import dataclasses
from ipaddress import IPv4Address
from typing import Any

import pytest

from bootstrapd.config.model import Acs, Options, RawType, TypedValue, Vivso
from bootstrapd.dhcp.options import (
    FIELD_CODES,
    PROVISIONING_CODES,
    OptionCode,
    decode_tlvs,
    encode_acs,
    encode_bool,
    encode_i32,
    encode_ipv4_list,
    encode_options,
    encode_raw,
    encode_string,
    encode_u8,
    encode_u16,
    encode_u32,
    encode_vivso,
    encoded_length_problems,
    parse_hex,
)

A1, A2 = IPv4Address("198.18.0.1"), IPv4Address("198.18.0.2")


def test_scalar_encoders_write_network_byte_order() -> None:
    assert encode_ipv4_list((A1, A2)) == bytes([198, 18, 0, 1, 198, 18, 0, 2])
    assert encode_string("tftp.example.net") == b"tftp.example.net"  # no trailing NUL
    assert encode_u8(200) == b"\xc8"
    assert encode_u16(1500) == b"\x05\xdc"
    assert encode_u32(3600) == b"\x00\x00\x0e\x10"
    assert encode_i32(-18000) == b"\xff\xff\xb9\xb0"  # option 2, UTC-5
    assert (encode_bool(True), encode_bool(False)) == (b"\x01", b"\x00")


def test_acs_encodes_tr069_sub_options_in_order() -> None:
    acs = Acs(url="https://acs.example.net/cwmp", provisioning_code="staging", retry_min_wait=5,
              retry_multiplier=2000)  # fmt: skip
    assert encode_acs(acs) == (
        b"\x01\x1chttps://acs.example.net/cwmp" + b"\x02\x07staging" + b"\x03\x02\x00\x05" + b"\x04\x02\x07\xd0"
    )
    assert encode_acs(Acs(url="http://a")) == b"\x01\x08http://a"


def test_vivso_encodes_enterprise_length_and_typed_sub_options() -> None:
    vivso = Vivso(
        suboptions=(
            TypedValue(4, RawType.STRING, "FCH1234"),
            TypedValue(6, RawType.IP, "198.18.0.1"),
            TypedValue(9, RawType.U16, 443),
        )
    )
    data = b"\x04\x07FCH1234" + b"\x06\x04\xc6\x12\x00\x01" + b"\x09\x02\x01\xbb"
    assert encode_vivso(vivso) == b"\x00\x00\x0d\xe9" + bytes([len(data)]) + data  # 3561 = Cisco


def test_vivso_hex_is_sent_verbatim_after_typed_sub_options() -> None:
    assert encode_vivso(Vivso(enterprise=9, hex="01:02:aa:bb")) == b"\x00\x00\x00\x09\x04\x01\x02\xaa\xbb"
    both = Vivso(enterprise=1, suboptions=(TypedValue(1, RawType.U8, 7),), hex="ff")
    assert encode_vivso(both) == b"\x00\x00\x00\x01\x04\x01\x01\x07\xff"


def test_oversized_sub_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"option 43 .*sub-option 1 is 300 bytes"):
        encode_acs(Acs(url="h" * 300))
    with pytest.raises(ValueError, match=r"option 125 .* 260 bytes"):
        encode_vivso(Vivso(hex="00" * 260))


def test_decode_tlvs_inverts_encoding_and_rejects_truncation() -> None:
    data = encode_acs(Acs(url="http://a", provisioning_code="p"))
    assert decode_tlvs(data) == ((1, b"http://a"), (2, b"p"))
    with pytest.raises(ValueError, match="byte 0"):
        decode_tlvs(b"\x01\x05abc")


@pytest.mark.parametrize(
    ("kind", "value", "wire"),
    [
        (RawType.STRING, "hello", b"hello"),
        (RawType.STRING, "", b""),
        (RawType.IP, "198.18.0.1", b"\xc6\x12\x00\x01"),
        (RawType.IP, A2, b"\xc6\x12\x00\x02"),
        (RawType.IPS, ["198.18.0.1", "198.18.0.2"], b"\xc6\x12\x00\x01\xc6\x12\x00\x02"),
        (RawType.IPS, ("198.18.0.1",), b"\xc6\x12\x00\x01"),
        (RawType.IPS, "198.18.0.1", b"\xc6\x12\x00\x01"),
        (RawType.U8, 255, b"\xff"),
        (RawType.U16, 0, b"\x00\x00"),
        (RawType.U32, 2**32 - 1, b"\xff\xff\xff\xff"),
        (RawType.BOOL, True, b"\x01"),
        (RawType.BOOL, False, b"\x00"),
        (RawType.HEX, "01:0a:FF", b"\x01\x0a\xff"),
        (RawType.HEX, "01 0a ff", b"\x01\x0a\xff"),
        (RawType.HEX, "0x010aff", b"\x01\x0a\xff"),
        (RawType.HEX, "", b""),
    ],
)
def test_encode_raw_writes_each_type(kind: RawType, value: Any, wire: bytes) -> None:
    assert encode_raw(kind, value) == wire


@pytest.mark.parametrize(
    ("kind", "value", "message"),
    [
        (RawType.STRING, 42, "type string needs a text value"),
        (RawType.STRING, "x" * 256, "256 bytes encoded; a DHCP option holds at most 255"),
        (RawType.IP, "198.18.0.256", "not a valid IPv4 address: '198.18.0.256'"),
        (RawType.IP, 3232235777, "type ip needs an IPv4 address"),
        (RawType.IPS, [], "non-empty list"),
        (RawType.IPS, ["198.18.0.1", "nope"], "not a valid IPv4 address: 'nope'"),
        (RawType.IPS, ["198.18.0.1"] * 64, "256 bytes encoded"),
        (RawType.U8, 256, "type u8 must be between 0 and 255, got 256"),
        (RawType.U16, -1, "type u16 must be between 0 and 65535"),
        (RawType.U32, "7", "type u32 needs an integer"),
        (RawType.U8, True, "type u8 needs an integer"),
        (RawType.BOOL, 1, "type bool needs true or false"),
        (RawType.HEX, "0g", "not valid hex"),
        (RawType.HEX, "abc", "not valid hex"),
        (RawType.HEX, 10, "expected hex digits as a string"),
    ],
)
def test_encode_raw_explains_bad_values(kind: RawType, value: Any, message: str) -> None:
    with pytest.raises(ValueError) as err:
        encode_raw(kind, value)
    assert message in str(err.value)


def test_parse_hex_accepts_the_usual_spellings() -> None:
    assert parse_hex("de-ad.be:ef") == parse_hex("DEADBEEF") == b"\xde\xad\xbe\xef"


def test_encode_options_maps_every_set_field_to_its_code() -> None:
    opts = Options(
        time_offset=3600,
        dns_servers=(A1,),
        log_servers=(A2,),
        ntp_servers=(A1, A2),
        acs=Acs(url="http://a"),
        tftp_server="198.18.0.1",
        bootfile="boot.cfg",
        vivso=Vivso(enterprise=3561, hex="0101"),
        cisco_tftp_servers=(A1,),
        provisioning_server="http://198.18.0.1",
        provisioning_url="https://prov/$PSN.xml",
    )
    assert encode_options(opts) == {
        2: b"\x00\x00\x0e\x10",
        6: A1.packed,
        7: A2.packed,
        42: A1.packed + A2.packed,
        43: b"\x01\x08http://a",
        66: b"198.18.0.1",
        67: b"boot.cfg",
        125: b"\x00\x00\x0d\xe9\x02\x01\x01",
        150: A1.packed,
        159: b"http://198.18.0.1",
        160: b"https://prov/$PSN.xml",
    }


def test_encode_options_skips_unset_fields_and_empty_address_lists() -> None:
    assert encode_options(Options(dns_servers=(), tftp_server="t")) == {66: b"t"}
    assert encode_options(Options()) == {}


def test_every_options_field_has_a_code() -> None:
    assert set(FIELD_CODES) == {f.name for f in dataclasses.fields(Options)}
    assert {150, 159, 160} == set(PROVISIONING_CODES)
    assert FIELD_CODES["acs"] is OptionCode.VENDOR_SPECIFIC and int(OptionCode.VENDOR_SPECIFIC) == 43


def test_length_problems_name_the_site_file_key() -> None:
    long_url = "https://prov.example.net/" + "p" * 240
    opts = Options(
        provisioning_url=long_url,
        tftp_server="ok",
        dns_servers=tuple(IPv4Address(f"198.18.0.{i}") for i in range(1, 65)),  # 256 bytes
        acs=Acs(url="u" * 256, provisioning_code="c"),
        vivso=Vivso(suboptions=(TypedValue(1, RawType.STRING, "s" * 200), TypedValue(2, RawType.HEX, "00" * 60))),
    )
    assert encoded_length_problems(opts) == [
        ("dns_servers", 256),
        ("acs.url", 256),
        ("acs", 261),
        ("vivso", 264),
        ("provisioning_url", 265),
    ]


def test_length_problems_of_vivso_sub_options() -> None:
    vivso = Vivso(suboptions=(TypedValue(1, RawType.U8, 1), TypedValue(2, RawType.STRING, "s" * 256)))
    assert encoded_length_problems(Options(vivso=vivso)) == [("vivso.suboptions[1]", 256), ("vivso", 261)]


def test_no_length_problems_at_exactly_255_bytes() -> None:
    assert encoded_length_problems(Options(provisioning_url="x" * 255, acs=Acs(url="y" * 253))) == []
