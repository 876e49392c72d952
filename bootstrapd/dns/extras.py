"""The records after the question that change how a query is answered: OPT (RFC 6891) and TSIG
(RFC 8945). A walk over the raw message finds them with their offsets, so that the slow path and the
prepared fast path judge the same octets by the same rules (one answer per question).
"""

from __future__ import annotations

from dataclasses import dataclass

from bootstrapd.dns.wire import HEADER_LEN, QType, TsigError

_MAX_HOPS = 32  # compression pointers followed in one name before giving up (loops, RFC 1035 4.1.4)
_COOKIE = 10  # RFC 7873 section 4: COOKIE option code
_RR_FIXED = 10  # TYPE, CLASS, TTL, RDLENGTH
_CLASS_ANY = 255


@dataclass(frozen=True, slots=True)
class Edns:
    """The client's OPT record (RFC 6891 section 6.1.3)."""

    size: int
    version: int
    do: bool


@dataclass(frozen=True, slots=True)
class Tsig:
    """What our unsigned BADKEY reply copies from the client's TSIG (RFC 8945 section 4.2)."""

    key_name: bytes  # uncompressed wire form
    algorithm: bytes  # uncompressed wire form
    time_fudge: bytes  # Time Signed (6 octets) and Fudge (2)
    original_id: bytes


@dataclass(frozen=True, slots=True)
class Extras:
    """`formerr`: a rule of RFC 6891, 7873 or 8945 is broken. `edns` is the client's OPT when the record
    itself is sound (our reply then carries ours, RFC 6891 section 7), even if an option in it is not."""

    edns: Edns | None
    formerr: bool
    tsig: Tsig | None


_NONE = Extras(None, False, None)
MALFORMED = Extras(None, True, None)


def options_fault(data: bytes, at: int, end: int) -> bool:
    """True when the OPT RDATA at data[at:end] is not a sequence of whole options (RFC 6891 section
    6.1.2), or holds a COOKIE of a length RFC 7873 section 5.2.2 makes FORMERR (not 8, nor 16 to 40)."""
    while at < end:
        if at + 4 > end:
            return True
        size = (data[at + 2] << 8) | data[at + 3]
        if data[at] == 0 and data[at + 1] == _COOKIE and size != 8 and not 16 <= size <= 40:
            return True
        at += 4 + size
    return at != end


def _skip_name(data: bytes, at: int) -> int:
    """The offset after the name at `at` (a pointer ends it), -1 when it runs off the end."""
    n = len(data)
    while at < n:
        length = data[at]
        if length == 0:
            return at + 1
        if length >= 0xC0:
            return at + 2 if at + 2 <= n else -1
        if length > 63:
            return -1
        at += 1 + length
    return -1


def read_name(data: bytes, at: int) -> bytes | None:
    """The name at `at`, pointers followed, as uncompressed wire octets; None when malformed."""
    out = bytearray()
    for _ in range(_MAX_HOPS):
        while at < len(data):
            length = data[at]
            if length == 0:
                return bytes(out) + b"\x00" if len(out) < 255 else None
            if length >= 0xC0:
                if at + 2 > len(data):
                    return None
                at = ((length & 0x3F) << 8) | data[at + 1]
                break
            if length > 63 or at + 1 + length > len(data):
                return None
            out += data[at : at + 1 + length]
            at += 1 + length
        else:
            return None
    return None


def _records(data: bytes) -> list[tuple[int, int, int, int]] | None:
    """(section, offset, TYPE, end) of every record after the question: sections 1 answer, 2 authority,
    3 additional."""
    counts = [int.from_bytes(data[i : i + 2], "big") for i in (4, 6, 8, 10)]
    at = HEADER_LEN
    for _ in range(counts[0]):
        at = _skip_name(data, at)
        if at < 0 or at + 4 > len(data):
            return None
        at += 4
    out = []
    for section in (1, 2, 3):
        for _ in range(counts[section]):
            start = at
            at = _skip_name(data, at)
            if at < 0 or at + _RR_FIXED > len(data):
                return None
            rtype = (data[at] << 8) | data[at + 1]
            at += _RR_FIXED + int.from_bytes(data[at + 8 : at + 10], "big")
            if at > len(data):
                return None
            out.append((section, start, rtype, at))
    return out


def extras(data: bytes) -> Extras:
    """The OPT and TSIG of a message (the header already read: at least 12 octets)."""
    records = _records(data)
    if records is None:
        return MALFORMED
    opts = [r for r in records if r[2] == QType.OPT]
    tsigs = [r for r in records if r[2] == QType.TSIG]
    if tsigs and (len(tsigs) > 1 or tsigs[0] != records[-1] or tsigs[0][0] != 3):
        return MALFORMED  # RFC 8945 section 5.1: only as the last additional record
    if not opts and not tsigs:
        return _NONE
    edns: Edns | None = None
    formerr = False
    if opts:
        section, start, _, end = opts[0]
        if len(opts) > 1 or section != 3 or data[start] != 0:
            return MALFORMED  # RFC 6891 section 6.1.1: one, root owner, additional section
        size, version, do = data[start + 3 : start + 5], data[start + 6], bool(data[start + 7] & 0x80)
        edns = Edns(int.from_bytes(size, "big"), version, do)
        if not _whole_options(data, start + 1 + _RR_FIXED, end):
            return MALFORMED  # no OPT we can read: none in our reply
        formerr = options_fault(data, start + 1 + _RR_FIXED, end)  # a bad COOKIE: our OPT still goes
    tsig = _tsig(data, tsigs[0][1], tsigs[0][3]) if tsigs else None
    if tsigs and tsig is None:
        return Extras(edns, True, None)
    return Extras(edns, formerr, tsig)


def _whole_options(data: bytes, at: int, end: int) -> bool:
    """Whether the RDATA is a sequence of whole options, whatever they hold."""
    while at + 4 <= end:
        at += 4 + ((data[at + 2] << 8) | data[at + 3])
    return at == end


def _tsig(data: bytes, start: int, end: int) -> Tsig | None:
    """The parts of a TSIG record (RFC 8945 section 4.2) our reply copies; None when malformed."""
    key_name = read_name(data, start)
    at = _skip_name(data, start)
    if key_name is None or int.from_bytes(data[at + 2 : at + 4], "big") != _CLASS_ANY:
        return None
    rdata = at + _RR_FIXED
    algorithm = read_name(data, rdata)
    at = _skip_name(data, rdata)
    if algorithm is None or at < 0 or at + 10 > end:
        return None
    time_fudge = data[at : at + 8]
    at += 10 + int.from_bytes(data[at + 8 : at + 10], "big")  # past MAC Size and MAC
    if at + 6 > end:
        return None
    original_id = data[at : at + 2]
    if at + 6 + int.from_bytes(data[at + 4 : at + 6], "big") != end:  # Other Len and Other Data
        return None
    return Tsig(key_name, algorithm, time_fudge, original_id)


def tsig_badkey(t: Tsig) -> bytes:
    """Our unsigned TSIG for a key we do not hold (RFC 8945 section 5.3.2): MAC size 0, error BADKEY."""
    rdata = t.algorithm + t.time_fudge + b"\x00\x00" + t.original_id + TsigError.BADKEY.to_bytes(2, "big") + b"\x00\x00"
    head = QType.TSIG.to_bytes(2, "big") + _CLASS_ANY.to_bytes(2, "big") + b"\x00\x00\x00\x00"
    return t.key_name + head + len(rdata).to_bytes(2, "big") + rdata
