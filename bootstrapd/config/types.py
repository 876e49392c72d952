"""Scalar value kinds of the site file: how each is parsed from YAML and described in JSON Schema.

A model field declares its kind with `Annotated[T, KIND]`; the loader and the schema generator both read
that one declaration, so the two cannot drift apart.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class ValueProblem(ValueError):
    """A scalar that does not parse; the loader locates it."""


@dataclass(frozen=True, eq=False)  # identity hash: Annotated metadata must be hashable
class Kind:
    name: str
    parse: Callable[[Any], Any]
    schema: dict[str, Any]
    # When set, used instead of `parse` with the file that defined the value (paths relative to it).
    parse_at: Callable[[Any, str], Any] | None = None


_DURATION = re.compile(r"^\s*(\d+)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(raw: Any) -> int:
    """`90s`, `10m`, `1h`, `1d` or an integer number of seconds."""
    if isinstance(raw, bool):
        raise ValueProblem(f"expected a duration like 90s, 10m, 1h, 1d, got {raw!r}")
    if isinstance(raw, int):
        if raw < 0:
            raise ValueProblem(f"duration must not be negative, got {raw}")
        return raw
    if isinstance(raw, str):
        m = _DURATION.match(raw)
        if m:
            return int(m.group(1)) * _UNITS[m.group(2)]
    raise ValueProblem(f"expected a duration like 90s, 10m, 1h, 1d, got {raw!r}")


_MAC_SEP = re.compile(r"[:\-.]")


def _mac_hex(raw: Any, what: str, min_octets: int, max_octets: int) -> str:
    if not isinstance(raw, str):
        raise ValueProblem(f"expected a {what} string, got {raw!r}")
    text = raw.strip()
    if _MAC_SEP.search(text):
        parts = _MAC_SEP.split(text)
        if not all(re.fullmatch(r"[0-9A-Fa-f]{1,2}", p) for p in parts):
            raise ValueProblem(f"not a valid {what}: {raw!r}")
        hexs = "".join(p.zfill(2) for p in parts)
    else:
        if not re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", text):
            raise ValueProblem(f"not a valid {what}: {raw!r}")
        hexs = text
    n = len(hexs) // 2
    if not min_octets <= n <= max_octets:
        raise ValueProblem(f"not a valid {what}: {raw!r} ({n} octets)")
    return hexs.lower()


def parse_mac(raw: Any) -> str:
    """Canonical form `00:56:2b:04:36:15` from any of the accepted spellings."""
    h = _mac_hex(raw, "MAC address", 6, 6)
    return ":".join(h[i : i + 2] for i in range(0, 12, 2))


def parse_mac_prefix(raw: Any) -> str:
    """An OUI or longer prefix, canonical lower-case with colons."""
    h = _mac_hex(raw, "MAC prefix", 1, 6)
    return ":".join(h[i : i + 2] for i in range(0, len(h), 2))


def parse_ipv4(raw: Any) -> ipaddress.IPv4Address:
    if not isinstance(raw, str):
        raise ValueProblem(f"expected an IPv4 address, got {raw!r}")
    try:
        return ipaddress.IPv4Address(raw.strip())
    except ValueError:
        raise ValueProblem(f"not a valid IPv4 address: {raw!r}") from None


def parse_ipv6(raw: Any) -> ipaddress.IPv6Address:
    if not isinstance(raw, str):
        raise ValueProblem(f"expected an IPv6 address, got {raw!r}")
    try:
        return ipaddress.IPv6Address(raw.strip())
    except ValueError:
        raise ValueProblem(f"not a valid IPv6 address: {raw!r}") from None


def parse_network(raw: Any) -> ipaddress.IPv4Network:
    if not isinstance(raw, str):
        raise ValueProblem(f"expected an IPv4 prefix like 198.18.0.0/24, got {raw!r}")
    try:
        return ipaddress.IPv4Network(raw.strip(), strict=True)
    except ValueError as e:
        raise ValueProblem(f"not a valid IPv4 prefix: {raw!r} ({e})") from None


@dataclass(frozen=True, order=True)
class AddressRange:
    """An inclusive range of IPv4 addresses, written `first-last` or as one address."""

    first: ipaddress.IPv4Address
    last: ipaddress.IPv4Address

    def __contains__(self, addr: object) -> bool:
        return isinstance(addr, ipaddress.IPv4Address) and self.first <= addr <= self.last

    @property
    def size(self) -> int:
        return int(self.last) - int(self.first) + 1

    def overlaps(self, other: AddressRange) -> bool:
        return self.first <= other.last and other.first <= self.last

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


def parse_range(raw: Any) -> AddressRange:
    if not isinstance(raw, str):
        raise ValueProblem(f"expected a pool like '198.18.0.100-198.18.0.200', got {raw!r}")
    first_s, sep, last_s = raw.partition("-")
    try:
        first = ipaddress.IPv4Address(first_s.strip())
        last = ipaddress.IPv4Address(last_s.strip()) if sep else first
    except ValueError:
        raise ValueProblem(f"not a valid address range: {raw!r}") from None
    if last < first:
        raise ValueProblem(f"range ends before it starts: {raw!r}")
    return AddressRange(first, last)


@dataclass(frozen=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_hostport(raw: Any) -> HostPort:
    if not isinstance(raw, str) or ":" not in raw:
        raise ValueProblem(f"expected host:port like 127.0.0.1:9267, got {raw!r}")
    host, _, port_s = raw.rpartition(":")
    host = host.strip("[]")
    if not port_s.isdigit() or not 0 < int(port_s) < 65536:
        raise ValueProblem(f"not a valid port in {raw!r}")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ValueProblem(f"expected an IP address before the port in {raw!r}") from None
    return HostPort(host, int(port_s))


def parse_path_at(raw: Any, file: str) -> str:
    """A file or directory name, relative to the YAML file that wrote it: the absolute, normalised path."""
    if not isinstance(raw, str) or not raw.strip():
        raise ValueProblem(f"expected a file name, got {raw!r}")
    if "\0" in raw:
        raise ValueProblem(f"a file name cannot hold NUL: {raw!r}")
    base = os.path.dirname(os.path.abspath(file)) if file else os.getcwd()
    return os.path.normpath(os.path.join(base, raw.strip()))


def parse_variables(raw: Any) -> dict[str, str]:
    """Template variables: identifier -> scalar (numbers are written as text). `raw` maps keys to YNodes."""
    if not isinstance(raw, dict):
        raise ValueProblem(f"expected a mapping of names to values, got {raw!r}")
    out: dict[str, str] = {}
    for key, node in raw.items():
        value = getattr(node, "value", node)
        if not key.isidentifier() or key == "device":
            raise ValueProblem(f"variable {key!r} must be an identifier (letters, digits, _) and not 'device'")
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueProblem(f"variable {key!r}: expected text or a number, got {value!r}")
        out[key] = str(value)
    return out


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9_-]{1,63}(?<!-)$")


def parse_dns_name(raw: Any) -> str:
    """A DNS name, relative to the domain unless it ends with a dot; `@` is the apex."""
    if not isinstance(raw, str) or not raw:
        raise ValueProblem(f"expected a DNS name, got {raw!r}")
    if raw in ("@", "."):
        return raw
    body = raw[:-1] if raw.endswith(".") else raw
    labels = body.split(".")
    if len(body) > 253 or not all(_LABEL.match(lbl) for lbl in labels):
        raise ValueProblem(f"not a valid DNS name: {raw!r}")
    return raw


def parse_domain(raw: Any) -> str:
    name = parse_dns_name(raw)
    if name in ("@", "."):
        raise ValueProblem(f"not a valid domain: {raw!r}")
    return name.rstrip(".").lower()


def _int_range(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(raw: Any) -> int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ValueProblem(f"expected an integer, got {raw!r}")
        if not lo <= raw <= hi:
            raise ValueProblem(f"must be between {lo} and {hi}, got {raw}")
        return raw

    return parse


DURATION = Kind(
    "duration",
    parse_duration,
    {"anyOf": [{"type": "integer", "minimum": 0}, {"type": "string", "pattern": r"^\d+[smhd]?$"}]},
)
MAC = Kind("mac", parse_mac, {"type": "string", "pattern": r"^([0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2}$"})
MAC_PREFIX = Kind("mac prefix", parse_mac_prefix, {"type": "string"})
IPV4 = Kind("ipv4", parse_ipv4, {"type": "string", "format": "ipv4"})
IPV6 = Kind("ipv6", parse_ipv6, {"type": "string", "format": "ipv6"})
NETWORK = Kind("prefix", parse_network, {"type": "string", "pattern": r"^\d+\.\d+\.\d+\.\d+/\d+$"})
RANGE = Kind("range", parse_range, {"type": "string", "pattern": r"^[0-9.]+(-[0-9.]+)?$"})
HOSTPORT = Kind("host:port", parse_hostport, {"type": "string"})
DNS_NAME = Kind("dns name", parse_dns_name, {"type": "string"})
DOMAIN = Kind("domain", parse_domain, {"type": "string"})
PORT = Kind("port", _int_range(1, 65535), {"type": "integer", "minimum": 1, "maximum": 65535})
PATH = Kind("path", lambda raw: parse_path_at(raw, ""), {"type": "string", "minLength": 1}, parse_path_at)
VARIABLES = Kind("variables", parse_variables, {"type": "object", "propertyNames": {"pattern": r"^[A-Za-z_]\w*$"},
                                                "additionalProperties": {"type": ["string", "number"]}})
POSITIVE = Kind("positive integer", _int_range(1, 2**31 - 1), {"type": "integer", "minimum": 1})
BLKSIZE = Kind("blksize", _int_range(8, 65464), {"type": "integer", "minimum": 8, "maximum": 65464})  # RFC 2348
WINDOWSIZE = Kind("windowsize", _int_range(1, 65535), {"type": "integer", "minimum": 1, "maximum": 65535})  # 7440
U8 = Kind("u8", _int_range(0, 255), {"type": "integer", "minimum": 0, "maximum": 255})
U16 = Kind("u16", _int_range(0, 65535), {"type": "integer", "minimum": 0, "maximum": 65535})
U32 = Kind("u32", _int_range(0, 2**32 - 1), {"type": "integer", "minimum": 0, "maximum": 2**32 - 1})
I32 = Kind("i32", _int_range(-(2**31), 2**31 - 1), {"type": "integer"})
OPTION_CODE = Kind("option code", _int_range(1, 254), {"type": "integer", "minimum": 1, "maximum": 254})
WORKERS = Kind("workers", _int_range(0, 64), {"type": "integer", "minimum": 0, "maximum": 64})
COUNT = Kind("count", _int_range(1, 100_000), {"type": "integer", "minimum": 1, "maximum": 100_000})
