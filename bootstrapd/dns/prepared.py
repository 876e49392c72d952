"""Replies prepared once per (qname, qtype, qclass) and patched per query.

The zone only changes on reload or when a lease comes or goes, so the answer, authority and additional
sections of each reply can be encoded once. A prepared reply is built for the lower-case question at
offset 12; the question as the client wrote it has the same length, so every compression pointer stays
valid when the responder splices in the client's ID, flags and question (RFC 4343 case echo).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dnslib import DNSHeader, DNSQuestion, DNSRecord

from bootstrapd.dns.lookup import Lookup
from bootstrapd.dns.names import Name, to_text
from bootstrapd.dns.outcome import Outcome
from bootstrapd.dns.records import dname
from bootstrapd.dns.wire import (
    AA,
    CD,
    HEADER_LEN,
    OPT_DO,
    OPT_PLAIN,
    PLAIN_UDP_LIMIT,
    QR,
    RD,
    TC,
    TCP_LIMIT,
    Rcode,
    qtype_label,
)


@dataclass(frozen=True, slots=True)
class Sections:
    """Counts (QDCOUNT..ARCOUNT, 8 octets) and the encoded sections after the question."""

    counts: bytes
    tail: bytes

    def with_opt(self, opt: bytes) -> Sections:
        """The same with our OPT record appended to the additional section."""
        if not opt:
            return self
        arcount = int.from_bytes(self.counts[6:8], "big") + 1
        return Sections(self.counts[:6] + arcount.to_bytes(2, "big"), self.tail + opt)


@dataclass(frozen=True, slots=True)
class Encoded:
    """One answer, encoded once; `fit` cuts it to a size limit."""

    flags2: int  # header byte 2: QR, AA (RD is copied per query)
    flags3: int  # header byte 3: the rcode (CD is copied per query)
    qlen: int  # octets of the question (the client's spelling has the same length)
    full: Sections
    short: Sections  # without the additional section (RFC 2181 section 9: that alone is no reason for TC)
    outcome: Outcome
    truncated: Outcome


@dataclass(frozen=True, slots=True)
class Variant:
    """A reply ready to splice: `heads[flag_index(query)]` is header octets 2-11, then the client's
    question, then `tail` (answer, authority, additional, and our OPT when the query had one)."""

    heads: tuple[bytes, bytes, bytes, bytes]
    tail: bytes
    outcome: Outcome


def flag_index(byte2: int, byte3: int) -> int:
    """Which of a Variant's heads fits a query: its RD and CD bits (both copied into the reply)."""
    return (byte2 & RD) | ((byte3 & CD) >> 3)


def fit(enc: Encoded, limit: int, opt: bytes) -> Variant:
    """The largest reply within `limit` octets: everything, else without additional records, else empty
    with TC set (the client retries over TCP)."""
    room = limit - HEADER_LEN - enc.qlen
    for sections in (enc.full, enc.short):
        cut = sections.with_opt(opt)
        if len(cut.tail) <= room:
            return Variant(_heads(enc.flags2, enc.flags3, cut.counts), cut.tail, enc.outcome)
    empty = Sections(b"\x00\x01\x00\x00\x00\x00\x00\x00", b"").with_opt(opt)
    return Variant(_heads(enc.flags2 | TC, enc.flags3, empty.counts), empty.tail, enc.truncated)


def _heads(flags2: int, flags3: int, counts: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    return (
        bytes((flags2, flags3)) + counts,
        bytes((flags2 | RD, flags3)) + counts,
        bytes((flags2, flags3 | CD)) + counts,
        bytes((flags2 | RD, flags3 | CD)) + counts,
    )


@dataclass(frozen=True, slots=True)
class Prepared:
    """An answer with its replies for the common shapes of query already cut to size."""

    encoded: Encoded
    udp: Variant  # no EDNS: 512 octets (RFC 1035 section 4.2.1)
    udp_edns: Variant  # EDNS with a buffer of at least our maximum, DO clear / set
    udp_do: Variant
    tcp: Variant
    tcp_edns: Variant
    tcp_do: Variant


def prepare(
    qname: Name, qtype: int, qclass: int, found: Lookup, max_udp: int, rcode: Rcode | None = None
) -> Prepared:
    """Encode the sections of `found` once, with dnslib as the codec."""
    code = found.result.rcode if rcode is None else rcode
    record = DNSRecord(
        DNSHeader(id=0, qr=1, aa=int(found.authoritative), ra=0, rcode=code),
        q=DNSQuestion(dname(qname), qtype, qclass),
        rr=[rr.to_dnslib() for rr in found.answer],
        auth=[rr.to_dnslib() for rr in found.authority],
        ar=[rr.to_dnslib() for rr in found.additional],
    )
    qlen = len(qname) + 4
    full = _sections(record.pack(), qlen)
    record.ar = []
    short = _sections(record.pack(), qlen) if found.additional else full
    outcome = Outcome(to_text(qname), qtype, qtype_label(qtype), code)
    truncated = Outcome(outcome.qname, qtype, outcome.qtype_label, code, truncated=True)
    flags2 = QR | (AA if found.authoritative else 0)
    enc = Encoded(flags2, int(code), qlen, full, short, outcome, truncated)
    return Prepared(
        enc,
        udp=fit(enc, PLAIN_UDP_LIMIT, b""),
        udp_edns=fit(enc, max_udp, OPT_PLAIN),
        udp_do=fit(enc, max_udp, OPT_DO),
        tcp=fit(enc, TCP_LIMIT, b""),
        tcp_edns=fit(enc, TCP_LIMIT, OPT_PLAIN),
        tcp_do=fit(enc, TCP_LIMIT, OPT_DO),
    )


def _sections(wire: bytes, qlen: int) -> Sections:
    return Sections(wire[4:HEADER_LEN], wire[HEADER_LEN + qlen :])


class PreparedCache:
    """Prepared replies by key (lower-case wire qname + QTYPE + QCLASS), with the names each depends on.

    Bounded: when full it starts over, so random names cannot grow it (rebuilding is cheap and lazy).
    """

    def __init__(self, max_entries: int = 20_000) -> None:
        self.max_entries = max_entries
        self._entries: dict[bytes, Prepared] = {}
        self._keys_by_name: dict[Name, set[bytes]] = {}
        self.get = self._entries.get  # bound once: the hot path's only call

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, key: bytes, prepared: Prepared, depends_on: Iterable[Name]) -> None:
        if not self.max_entries:  # preparation off: every query is parsed and built (for measurement)
            return
        if len(self._entries) >= self.max_entries:
            self.clear()
        self._entries[key] = prepared
        for name in depends_on:
            self._keys_by_name.setdefault(name, set()).add(key)

    @property
    def has_dependencies(self) -> bool:
        """Some prepared reply depends on a name (invalidate() could drop something)."""
        return bool(self._keys_by_name)

    def invalidate(self, names: Iterable[Name]) -> int:
        """Forget the replies that consulted any of `names`; returns how many were dropped."""
        dropped = 0
        for name in names:
            for key in self._keys_by_name.pop(name, ()):
                dropped += self._entries.pop(key, None) is not None
        return dropped

    def clear(self) -> None:
        self._entries.clear()  # in place: `get` stays bound to this dict
        self._keys_by_name.clear()
