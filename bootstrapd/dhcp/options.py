"""DHCPv4 option codes and typed encoders (RFC 2132, RFC 3925, TR-069 section 3.1, Cisco 150/159/160).

Every encoder returns the option *value* (no code or length byte); `codec.build` frames it. Encoders of
user-supplied values raise ValueError with a message meant for the operator: the config loader calls
`encode_raw` and `encoded_length_problems` to validate the site file, so a message here ends up in
`bootstrapd check` output.
"""

from __future__ import annotations

import contextlib
import enum
import ipaddress
import re
import struct
from collections.abc import Callable, Iterable
from typing import Any

from bootstrapd.config.model import Acs, Options, RawType, Vivso

MAX_VALUE = 255  # one option (or sub-option) length octet; longer needs RFC 3396 splitting


class OptionCode(enum.IntEnum):
    """Option codes bootstrapd reads or writes."""

    PAD = 0  # RFC 2132 3.1
    SUBNET_MASK = 1  # RFC 2132 3.3
    TIME_OFFSET = 2  # RFC 2132 3.4, signed seconds from UTC
    ROUTER = 3  # RFC 2132 3.5
    DNS_SERVERS = 6  # RFC 2132 3.8
    LOG_SERVERS = 7  # RFC 2132 3.9
    HOSTNAME = 12  # RFC 2132 3.14
    DOMAIN_NAME = 15  # RFC 2132 3.17
    NTP_SERVERS = 42  # RFC 2132 8.3
    VENDOR_SPECIFIC = 43  # RFC 2132 8.4; TR-069 section 3.1 sub-options for ACS discovery
    REQUESTED_IP = 50  # RFC 2132 9.1
    LEASE_TIME = 51  # RFC 2132 9.2
    OVERLOAD = 52  # RFC 2132 9.3: options continue in file (1), sname (2) or both (3)
    MESSAGE_TYPE = 53  # RFC 2132 9.6
    SERVER_ID = 54  # RFC 2132 9.7
    PARAMETER_REQUEST_LIST = 55  # RFC 2132 9.8
    MESSAGE = 56  # RFC 2132 9.9, text in a NAK
    MAX_MESSAGE_SIZE = 57  # RFC 2132 9.10
    RENEWAL_TIME = 58  # RFC 2132 9.11, T1
    REBINDING_TIME = 59  # RFC 2132 9.12, T2
    VENDOR_CLASS = 60  # RFC 2132 9.13
    CLIENT_ID = 61  # RFC 2132 9.14
    TFTP_SERVER_NAME = 66  # RFC 2132 9.4
    BOOTFILE_NAME = 67  # RFC 2132 9.5
    CLIENT_FQDN = 81  # RFC 4702
    RELAY_AGENT_INFO = 82  # RFC 3046, echoed to the relay as received
    VIVSO = 125  # RFC 3925 section 4, V-I vendor-specific information
    CISCO_TFTP_SERVERS = 150  # Cisco TFTP server list (IPv4 addresses)
    PROVISIONING_SERVER = 159  # Cisco MPP; also RFC 7618 port parameters (hence class-gated)
    PROVISIONING_URL = 160  # Cisco MPP; also the old captive-portal code (hence class-gated)
    END = 255  # RFC 2132 3.2


# mpp-bootstrap.md section 3: never sent to a device that no class matched.
PROVISIONING_CODES = frozenset(
    {OptionCode.CISCO_TFTP_SERVERS, OptionCode.PROVISIONING_SERVER, OptionCode.PROVISIONING_URL}
)

# Options model field -> option code (site-yaml.md's table).
FIELD_CODES: dict[str, OptionCode] = {
    "time_offset": OptionCode.TIME_OFFSET,
    "dns_servers": OptionCode.DNS_SERVERS,
    "log_servers": OptionCode.LOG_SERVERS,
    "ntp_servers": OptionCode.NTP_SERVERS,
    "acs": OptionCode.VENDOR_SPECIFIC,
    "tftp_server": OptionCode.TFTP_SERVER_NAME,
    "bootfile": OptionCode.BOOTFILE_NAME,
    "vivso": OptionCode.VIVSO,
    "cisco_tftp_servers": OptionCode.CISCO_TFTP_SERVERS,
    "provisioning_server": OptionCode.PROVISIONING_SERVER,
    "provisioning_url": OptionCode.PROVISIONING_URL,
}

_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")
_VIVSO_HEAD = struct.Struct("!IB")  # RFC 3925 4: enterprise-number(4), data-len(1)


# -- scalar encoders (values already validated by the config model) ----------------------------------


def encode_ipv4(addr: ipaddress.IPv4Address) -> bytes:
    return addr.packed


def encode_ipv4_list(addrs: Iterable[ipaddress.IPv4Address]) -> bytes:
    return b"".join(a.packed for a in addrs)


def encode_string(text: str) -> bytes:
    """NVT ASCII per RFC 2132 2, no trailing NUL (UTF-8 beyond ASCII, never rejected here)."""
    return text.encode("utf-8")


def encode_u8(value: int) -> bytes:
    return _U8.pack(value)


def encode_u16(value: int) -> bytes:
    return _U16.pack(value)


def encode_u32(value: int) -> bytes:
    return _U32.pack(value)


def encode_i32(value: int) -> bytes:
    return _I32.pack(value)


def encode_bool(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"


def encode_tlvs(items: Iterable[tuple[int, bytes]], what: str) -> bytes:
    """`code len value` sub-options (RFC 2132 8.4, RFC 3925 4); each value must fit one length octet."""
    out = bytearray()
    for code, value in items:
        if len(value) > MAX_VALUE:
            raise ValueError(f"{what} sub-option {code} is {len(value)} bytes encoded; at most {MAX_VALUE} fit")
        out += bytes((code, len(value)))
        out += value
    return bytes(out)


def decode_tlvs(data: bytes) -> tuple[tuple[int, bytes], ...]:
    """Inverse of encode_tlvs (for tests and the phone simulator); ValueError if truncated."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data) or pos + 2 + data[pos + 1] > len(data):
            raise ValueError(f"sub-option at byte {pos} runs past the end of its option")
        end = pos + 2 + data[pos + 1]
        items.append((data[pos], data[pos + 2 : end]))
        pos = end
    return tuple(items)


# -- structured options ------------------------------------------------------------------------------


def encode_acs(acs: Acs) -> bytes:
    """Option 43 for TR-069 ACS discovery: 1 URL, 2 provisioning code (strings), 3 retry minimum wait,
    4 retry multiplier (16-bit unsigned, the range TR-181 gives both parameters)."""
    items: list[tuple[int, bytes]] = [(1, encode_string(acs.url))]
    if acs.provisioning_code is not None:
        items.append((2, encode_string(acs.provisioning_code)))
    if acs.retry_min_wait is not None:
        items.append((3, _int_value(acs.retry_min_wait, 0, 0xFFFF, "retry_min_wait", _U16)))
    if acs.retry_multiplier is not None:
        items.append((4, _int_value(acs.retry_multiplier, 0, 0xFFFF, "retry_multiplier", _U16)))
    return encode_tlvs(items, "option 43 (acs)")


def vivso_data(vivso: Vivso) -> bytes:
    """The enterprise's sub-option bytes: typed sub-options, then `hex` bytes if both are given."""
    data = encode_tlvs(((s.code, encode_raw(s.type, s.value)) for s in vivso.suboptions), "option 125 (vivso)")
    if vivso.hex is not None:
        data += parse_hex(vivso.hex)
    return data


def encode_vivso(vivso: Vivso) -> bytes:
    """Option 125 (RFC 3925 4): enterprise-number(4) data-len(1) sub-options."""
    data = vivso_data(vivso)
    if len(data) > MAX_VALUE:
        raise ValueError(f"option 125 (vivso) sub-options are {len(data)} bytes; at most {MAX_VALUE} fit")
    if not 0 <= vivso.enterprise <= 0xFFFFFFFF:
        raise ValueError(f"option 125 (vivso) enterprise must be a 32-bit number, got {vivso.enterprise}")
    return _VIVSO_HEAD.pack(vivso.enterprise, len(data)) + data


_ENCODERS: dict[str, Callable[[Any], bytes]] = {
    "time_offset": encode_i32,
    "dns_servers": encode_ipv4_list,
    "log_servers": encode_ipv4_list,
    "ntp_servers": encode_ipv4_list,
    "acs": encode_acs,
    "tftp_server": encode_string,
    "bootfile": encode_string,
    "vivso": encode_vivso,
    "cisco_tftp_servers": encode_ipv4_list,
    "provisioning_server": encode_string,
    "provisioning_url": encode_string,
}


def encode_options(opts: Options) -> dict[int, bytes]:
    """Wire values of every set field of a merged Options, by code (ascending). Empty address lists
    mean "do not send" (an IPv4 list option must hold at least one address)."""
    out: dict[int, bytes] = {}
    for name, code in sorted(FIELD_CODES.items(), key=lambda item: item[1]):
        value = getattr(opts, name)
        if value is None or value == ():
            continue
        out[int(code)] = _ENCODERS[name](value)
    return out


def encoded_length_problems(opts: Options) -> list[tuple[str, int]]:
    """(field path, encoded length) of every value that does not fit its length octet (255 bytes).

    Paths name the site-file key: `provisioning_url`, `acs.url`, `vivso.suboptions[2]`, `vivso`.
    Values that cannot be encoded at all (bad hex, wrong type) are the loader's business (encode_raw).
    """
    problems: list[tuple[str, int]] = []
    for name in FIELD_CODES:
        value = getattr(opts, name)
        if value is None or value == ():
            continue
        if isinstance(value, Acs):
            problems += _acs_problems(value)
        elif isinstance(value, Vivso):
            problems += _vivso_problems(value)
        else:
            size = len(_ENCODERS[name](value))
            if size > MAX_VALUE:
                problems.append((name, size))
    return problems


def _acs_problems(acs: Acs) -> list[tuple[str, int]]:
    problems = []
    for name in ("url", "provisioning_code"):
        text = getattr(acs, name)
        if text is not None and len(encode_string(text)) > MAX_VALUE:
            problems.append((f"acs.{name}", len(encode_string(text))))
    total = sum(2 + len(encode_string(t)) for t in (acs.url, acs.provisioning_code) if t is not None)
    total += 4 * ((acs.retry_min_wait is not None) + (acs.retry_multiplier is not None))
    if total > MAX_VALUE:
        problems.append(("acs", total))
    return problems


def _vivso_problems(vivso: Vivso) -> list[tuple[str, int]]:
    problems = []
    total = 0
    for i, sub in enumerate(vivso.suboptions):
        try:
            size = len(_RAW[sub.type](sub.value))  # unchecked length: measured here
        except ValueError:
            continue  # reported by the loader's own encode_raw call
        total += 2 + size
        if size > MAX_VALUE:
            problems.append((f"vivso.suboptions[{i}]", size))
    if vivso.hex is not None:
        with contextlib.suppress(ValueError):  # bad hex: reported by the loader's own check
            total += len(parse_hex(vivso.hex))
    if total > MAX_VALUE:
        problems.append(("vivso", total))
    return problems


# -- raw options (site-yaml.md raw_options and typed vivso sub-options) ---------------------------------

_HEX_SEPARATORS = re.compile(r"[\s:.\-]")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2})*")


def parse_hex(text: str) -> bytes:
    """`01:02:0a`, `01 02 0a`, `01020a` or `0x01020a` -> bytes; ValueError with a user-facing message."""
    if not isinstance(text, str):
        raise ValueError(f"expected hex digits as a string like '01:0a:ff', got {text!r}")
    body = _HEX_SEPARATORS.sub("", text)
    if body[:2].lower() == "0x":
        body = body[2:]
    if not _HEX.fullmatch(body):
        raise ValueError(f"not valid hex (pairs of 0-9a-f, optionally separated by ':'): {text!r}")
    return bytes.fromhex(body)


def encode_raw(kind: RawType, value: Any) -> bytes:
    """Encode a `raw_options` value of the declared type; ValueError says what is wrong with it."""
    data = _RAW[kind](value)
    if len(data) > MAX_VALUE:
        raise ValueError(f"value is {len(data)} bytes encoded; a DHCP option holds at most {MAX_VALUE}")
    return data


def _raw_string(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError(f"type string needs a text value (quote it in YAML), got {value!r}")
    return encode_string(value)


def _raw_ip(value: Any) -> bytes:
    if isinstance(value, ipaddress.IPv4Address):
        return value.packed
    if not isinstance(value, str):
        raise ValueError(f"type ip needs an IPv4 address like '198.18.0.1', got {value!r}")
    try:
        return ipaddress.IPv4Address(value.strip()).packed
    except ValueError:
        raise ValueError(f"not a valid IPv4 address: {value!r}") from None


def _raw_ips(value: Any) -> bytes:
    if isinstance(value, str | ipaddress.IPv4Address):
        value = [value]
    if not isinstance(value, list | tuple) or not value:
        raise ValueError(f"type ips needs a non-empty list of IPv4 addresses, got {value!r}")
    return b"".join(_raw_ip(v) for v in value)


def _int_value(value: Any, lo: int, hi: int, kind: str, packer: struct.Struct) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{kind} needs an integer between {lo} and {hi}, got {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{kind} must be between {lo} and {hi}, got {value}")
    return packer.pack(value)


def _raw_bool(value: Any) -> bytes:
    if not isinstance(value, bool):
        raise ValueError(f"type bool needs true or false, got {value!r}")
    return encode_bool(value)


_RAW: dict[RawType, Callable[[Any], bytes]] = {
    RawType.STRING: _raw_string,
    RawType.IP: _raw_ip,
    RawType.IPS: _raw_ips,
    RawType.U8: lambda v: _int_value(v, 0, 0xFF, "type u8", _U8),
    RawType.U16: lambda v: _int_value(v, 0, 0xFFFF, "type u16", _U16),
    RawType.U32: lambda v: _int_value(v, 0, 0xFFFFFFFF, "type u32", _U32),
    RawType.BOOL: _raw_bool,
    RawType.HEX: parse_hex,
}
