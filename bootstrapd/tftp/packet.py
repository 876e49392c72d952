"""TFTP packets (RFC 1350 section 5, RFC 2347 OACK): bytes <-> values.

`parse` raises only `TftpParseError` whatever the bytes (hostile datagrams: empty, 1 or 3 bytes, names
without their NUL, hundreds of options, kilobytes of name). Encoders for the server's packets are plain
functions on the hot path (one `struct.pack` and a concatenation per DATA).
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from bootstrapd.errors import ParseError

MAX_REQUEST = 2048  # bytes of an RRQ/WRQ datagram; RFC 1350 requests fit 512, Cisco names are short
MAX_OPTIONS = 32  # option pairs in a request (RFC 2347 names five options; tftp-hpa knows six)
MAX_ERROR_MESSAGE = 255  # bytes of an ERROR message we keep


class Opcode(enum.IntEnum):
    """RFC 1350 section 5; OACK from RFC 2347."""

    RRQ = 1
    WRQ = 2
    DATA = 3
    ACK = 4
    ERROR = 5
    OACK = 6


class ErrorCode(enum.IntEnum):
    """RFC 1350 appendix "Error Codes"; 8 from RFC 2347."""

    NOT_DEFINED = 0  # see the message
    FILE_NOT_FOUND = 1
    ACCESS_VIOLATION = 2
    DISK_FULL = 3  # also "allocation exceeded"
    ILLEGAL_OPERATION = 4
    UNKNOWN_TID = 5
    FILE_EXISTS = 6
    NO_SUCH_USER = 7
    OPTION_REFUSED = 8  # RFC 2347: the transfer should be terminated due to option negotiation


class Mode(enum.Enum):
    """RFC 1350 section 1; "mail" is obsolete and refused."""

    NETASCII = "netascii"
    OCTET = "octet"


class TftpParseError(ParseError):
    """Bytes that are not a TFTP packet; the only exception `parse` raises."""


@dataclass(frozen=True, slots=True)
class Request:
    """RRQ or WRQ; options keep the client's order and spelling of values, names lower-cased."""

    opcode: Opcode
    filename: str  # decoded as latin-1 (every byte maps to one character; the jail refuses controls)
    mode: str  # lower-cased as sent; `Mode(mode)` may fail for "mail" or junk
    options: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Data:
    block: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Ack:
    block: int


@dataclass(frozen=True, slots=True)
class Error:
    code: int  # kept as the integer sent: clients send codes outside the table
    message: str


@dataclass(frozen=True, slots=True)
class Oack:
    options: tuple[tuple[str, str], ...]


Packet = Request | Data | Ack | Error | Oack

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_DATA_HEAD = struct.Struct("!HH")
_ACK_PREFIX = b"\x00\x04"


def parse(data: bytes) -> Packet:
    """One packet from one datagram, or TftpParseError with the offset where it went wrong."""
    if len(data) < 2:
        raise TftpParseError("shorter than an opcode", len(data))
    op = _H.unpack_from(data)[0]
    if op in (Opcode.RRQ, Opcode.WRQ):
        return _request(Opcode(op), data)
    if op in (Opcode.DATA, Opcode.ACK, Opcode.ERROR):
        if len(data) < 4:
            raise TftpParseError("shorter than its header", len(data))
        number = _H.unpack_from(data, 2)[0]
        if op == Opcode.ACK:
            return Ack(number)
        if op == Opcode.DATA:
            return Data(number, bytes(data[4:]))
        # Lenient: some clients omit the message's NUL; the text is only logged.
        text = data[4:4 + MAX_ERROR_MESSAGE].split(b"\x00", 1)[0].decode("latin-1")
        return Error(number, text)
    if op == Opcode.OACK:
        return Oack(_pairs(_strings(data, 2, None, "option")))
    raise TftpParseError(f"unknown opcode {op}", 0)


def ack_block(data: bytes) -> int | None:
    """The block of an ACK datagram without building a packet (the session's hot path), else None."""
    if len(data) == 4 and data[:2] == _ACK_PREFIX:
        return int(_H.unpack_from(data, 2)[0])
    return None


def _request(op: Opcode, data: bytes) -> Request:
    if len(data) > MAX_REQUEST:
        raise TftpParseError(f"request longer than {MAX_REQUEST} bytes", MAX_REQUEST)
    fields = _strings(data, 2, None, "request field")
    if len(fields) < 2:
        raise TftpParseError("request without filename and mode", len(data))
    name, mode = fields[0], fields[1].lower()
    if not name:
        raise TftpParseError("empty filename", 2)
    if not mode:
        raise TftpParseError("empty mode", 3 + len(name))
    return Request(op, name, mode, _pairs(fields[2:]))


def _strings(data: bytes, start: int, count: int | None, what: str) -> list[str]:
    """NUL-terminated latin-1 strings from `start` to the end (or `count` of them); each must end in NUL."""
    body = data[start:]
    if not body.endswith(b"\x00"):
        raise TftpParseError(f"{what} not NUL-terminated", len(data))
    parts = body[:-1].split(b"\x00")
    if count is not None and len(parts) < count:
        raise TftpParseError(f"missing {what}", len(data))
    if len(parts) > 2 + 2 * MAX_OPTIONS:
        raise TftpParseError(f"more than {MAX_OPTIONS} options", start)
    return [p.decode("latin-1") for p in (parts if count is None else parts[:count])]


def _pairs(fields: list[str]) -> tuple[tuple[str, str], ...]:
    """Option name/value pairs (RFC 2347: names case-insensitive); an odd count is malformed."""
    if len(fields) % 2:
        raise TftpParseError("option without a value", 0)
    return tuple((fields[i].lower(), fields[i + 1]) for i in range(0, len(fields), 2))


def encode_data(block: int, payload: bytes) -> bytes:
    return _DATA_HEAD.pack(Opcode.DATA, block & 0xFFFF) + payload


def encode_ack(block: int) -> bytes:
    return _HH.pack(Opcode.ACK, block & 0xFFFF)


def encode_error(code: ErrorCode, message: str) -> bytes:
    text = message.encode("ascii", "replace")[:MAX_ERROR_MESSAGE]
    return _HH.pack(Opcode.ERROR, code) + text + b"\x00"


def encode_oack(options: tuple[tuple[str, str], ...]) -> bytes:
    body = b"".join(n.encode("ascii") + b"\x00" + v.encode("ascii") + b"\x00" for n, v in options)
    return _H.pack(Opcode.OACK) + body


def encode_request(req: Request) -> bytes:
    """For clients and tests: RRQ/WRQ bytes."""
    fields = [req.filename, req.mode] + [x for pair in req.options for x in pair]
    return _H.pack(req.opcode) + b"".join(f.encode("latin-1") + b"\x00" for f in fields)
