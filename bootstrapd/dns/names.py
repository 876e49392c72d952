"""Domain names as lower-case wire-format bytes (RFC 1035 section 3.1).

A `Name` is the uncompressed wire encoding, lower-cased and absolute (it ends with the root label
`b"\\x00"`). Wire format is unambiguous (a dot inside a label stays distinct), is what the responder's
fast path sees in a query, and compares case-insensitively after `bytes.lower()`, which only touches
ASCII letters as RFC 4343 requires.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from typing import NewType

Name = NewType("Name", bytes)

ROOT = Name(b"\x00")
MAX_NAME = 255  # RFC 1035 section 2.3.4, wire octets
MAX_LABEL = 63
IN_ADDR_ARPA = Name(b"\x07in-addr\x04arpa\x00")

_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def from_labels(labels: list[bytes] | tuple[bytes, ...]) -> Name:
    """Wire name from labels (as received, any case); raises ValueError when too long."""
    out = bytearray()
    for label in labels:
        if not 0 < len(label) <= MAX_LABEL:
            raise ValueError(f"bad label length {len(label)}")
        out.append(len(label))
        out += label
    out.append(0)
    if len(out) > MAX_NAME:
        raise ValueError(f"name of {len(out)} octets is longer than {MAX_NAME}")
    return Name(bytes(out).lower())


def wire_of_labels(labels: list[bytes] | tuple[bytes, ...]) -> bytes:
    """Uncompressed wire encoding keeping the labels' case (the question as the client wrote it)."""
    return b"".join(bytes((len(lbl),)) + lbl for lbl in labels) + b"\x00"


def from_text(text: str) -> Name:
    """`prov1.staging.example.net` (absolute whether or not it ends with a dot)."""
    body = text.rstrip(".")
    if not body:
        return ROOT
    return from_labels([part.encode("ascii") for part in body.split(".")])


def resolve(name: str, domain: str) -> Name:
    """A configured name: relative to `domain` unless it ends with a dot; `@` is the apex, `.` the root."""
    if name == "@":
        return from_text(domain)
    if name.endswith("."):
        return from_text(name)
    return from_text(f"{name}.{domain.rstrip('.')}")


def labels(name: bytes) -> list[bytes]:
    out = []
    i = 0
    while name[i]:
        out.append(name[i + 1 : i + 1 + name[i]])
        i += 1 + name[i]
    return out


def parent(name: Name) -> Name | None:
    """The name one label up; None for the root."""
    if name == ROOT:
        return None
    return Name(name[name[0] + 1 :])


def ancestors(name: Name) -> Iterator[Name]:
    """The name itself, then each parent up to and including the root (label-aligned suffixes)."""
    current: Name | None = name
    while current is not None:
        yield current
        current = parent(current)


def is_below(name: Name, apex: Name) -> bool:
    """True when `name` is `apex` or a descendant of it (label-aligned, unlike bytes.endswith)."""
    return any(a == apex for a in ancestors(name))


def to_text(name: bytes) -> str:
    """Presentation format with RFC 1035 section 5.1 escapes, e.g. for logs."""
    parts = []
    for label in labels(name):
        chars = []
        for byte in label:
            ch = chr(byte)
            if ch in '.\\"();@$':
                chars.append("\\" + ch)
            elif 0x21 <= byte <= 0x7E:
                chars.append(ch)
            else:
                chars.append(f"\\{byte:03d}")
        parts.append("".join(chars))
    return ".".join(parts) + "."


# Each octet's decimal label in wire form (length + digits): reverse names are built for every lease
# change (cache invalidation), where going through from_labels cost several microseconds.
_OCTET_LABELS = tuple(bytes((len(str(i)),)) + str(i).encode() for i in range(256))


def reverse_name(address: ipaddress.IPv4Address) -> Name:
    """`d.c.b.a.in-addr.arpa.` for a.b.c.d (RFC 1035 section 3.5)."""
    a, b, c, d = address.packed
    return Name(b"".join((_OCTET_LABELS[d], _OCTET_LABELS[c], _OCTET_LABELS[b], _OCTET_LABELS[a], IN_ADDR_ARPA)))


def reverse_octets(name: Name) -> tuple[int, ...] | None:
    """The address octets (most significant first) a name under in-addr.arpa stands for, else None."""
    if not is_below(name, IN_ADDR_ARPA) or name == IN_ADDR_ARPA:
        return None
    parts = labels(name)[:-2]
    if len(parts) > 4 or not all(p.isdigit() and len(p) <= 3 for p in parts):
        return None
    octets = tuple(int(p) for p in reversed(parts))
    # "01" is not the canonical spelling of 1, so it names nothing we serve
    if any(o > 255 or str(o).encode() != p for o, p in zip(octets, reversed(parts), strict=True)):
        return None
    return octets


def reverse_zone_apexes(network: ipaddress.IPv4Network) -> list[Name]:
    """Octet-aligned in-addr.arpa zones covering a subnet.

    A /23 becomes its two /24 zones; a prefix longer than /24 is served from its whole /24 zone (classless
    RFC 2317 delegation needs a parent to delegate; on a staging LAN we are the only server).
    """
    aligned = min(24, -(-network.prefixlen // 8) * 8)
    base = network if network.prefixlen <= aligned else network.supernet(new_prefix=aligned)
    zones = []
    for sub in base.subnets(new_prefix=aligned):
        octets = sub.network_address.packed[: aligned // 8]
        zones.append(from_labels([*(str(o).encode() for o in reversed(octets)), b"in-addr", b"arpa"]))
    return zones


def host_label(hostname: str) -> bytes | None:
    """A lease's host name as one lower-case DNS label (RFC 952/1123 letters, digits, hyphen), else None."""
    text = hostname.rstrip("\x00").strip()
    if not _HOST_LABEL.match(text):
        return None
    return text.lower().encode("ascii")
