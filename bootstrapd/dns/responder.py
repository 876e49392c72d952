"""Query bytes -> reply bytes (or None: drop) plus an Outcome, for one zone.

The error ladder follows dnspython's server practice: fewer than 12 octets or QR set -> drop; bytes
dnslib cannot parse -> FORMERR; opcode other than QUERY -> NOTIMP; a malformed OPT or TSIG -> FORMERR;
EDNS version above 0 -> BADVERS (RFC 6891 section 6.1.3); a TSIG -> NOTAUTH with an unsigned BADKEY
TSIG, as we hold no keys (RFC 8945 section 5.2.2); anything escaping our own code -> SERVFAIL with the
error in the Outcome. Every reply to a query with a sound OPT carries ours (RFC 6891 section 7).

The fast path reads only the header, the question and an optional lone OPT record, and answers from a
prepared reply; everything else (first sight of a question, odd shapes) goes through dnslib. It answers
only what the slow path would answer the same way (bootstrapd.dns.extras judges the OPT for both).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from dnslib import DNSRecord

from bootstrapd.dns.extras import Edns, extras, options_fault, tsig_badkey
from bootstrapd.dns.lookup import Lookup, Result, lookup
from bootstrapd.dns.names import Name, from_labels, to_text, wire_of_labels
from bootstrapd.dns.outcome import DropReason, Outcome, dropped
from bootstrapd.dns.prepared import Prepared, PreparedCache, Variant, fit, prepare
from bootstrapd.dns.wire import (
    CD,
    CLASS_IN,
    HEADER_LEN,
    OPCODE_MASK,
    OPT_DO,
    OPT_LEN,
    OPT_PLAIN,
    OUR_UDP_SIZE,
    PLAIN_UDP_LIMIT,
    QR,
    RD,
    QType,
    Rcode,
    opt_record,
    qtype_label,
)
from bootstrapd.dns.zone import Zone

Reply = tuple[bytes | None, Outcome]

_NO_EDNS = -1
_ONE_QUESTION = b"\x00\x01\x00\x00\x00\x00"  # QDCOUNT 1, ANCOUNT 0, NSCOUNT 0
_NO_AR = b"\x00\x00"
_ONE_AR = b"\x00\x01"
_OPT_HEAD = b"\x00\x00\x29"  # root owner, TYPE OPT
_SHORT_HEADER = dropped(DropReason.SHORT_HEADER)
_NOT_A_QUERY = dropped(DropReason.NOT_A_QUERY)
_REFUSED_TYPES = (QType.AXFR, QType.IXFR)  # zone transfers: nobody secondaries us


class Responder:
    def __init__(self, zone: Zone, *, max_udp_size: int = OUR_UDP_SIZE, cache_entries: int = 20_000) -> None:
        self.zone = zone
        self.max_udp_size = max_udp_size
        self.cache = PreparedCache(cache_entries)
        self._get = self.cache.get

    def lease_changed(self, label: bytes, address: ipaddress.IPv4Address) -> None:
        """LeaseTable listener: forget only the replies that consulted the lease's names. With no prepared
        reply that depends on any name there is nothing to forget, and the names are not worked out (a
        DHCP burst's ACKs before the phones' first queries)."""
        if self.cache.has_dependencies:
            self.cache.invalidate(self.zone.lease_names(label, address))

    def respond(self, data: bytes, tcp: bool = False) -> Reply:
        """The reply to one query message (without the TCP length prefix)."""
        try:
            if len(data) >= 17 and not data[2] & (QR | OPCODE_MASK) and data[4:10] == _ONE_QUESTION:
                end = data.find(0, HEADER_LEN) + 1
                if end:
                    # A key matches only a well-formed name: keys hold no zero octet before their root label.
                    qend = end + 4
                    prepared = self._get(data[HEADER_LEN:end].lower() + data[end:qend])
                    if prepared is not None:
                        v = self._fast_variant(prepared, data, qend, tcp)
                        if v is not None:
                            head = v.heads[(data[2] & RD) | ((data[3] & CD) >> 3)]
                            return b"".join((data[:2], head, data[HEADER_LEN:qend], v.tail)), v.outcome
            return self._slow(data, tcp)
        except Exception as exc:  # design.md convention 3: a bug in our code, answered SERVFAIL
            return _servfail(data, exc)

    def _fast_variant(self, p: Prepared, data: bytes, qend: int, tcp: bool) -> Variant | None:
        """The reply for a query that is exactly header, question and at most one OPT; else None."""
        n = len(data)
        if n == qend:
            return self._variant(p, _NO_EDNS, False, tcp) if data[10:12] == _NO_AR else None
        if (
            n < qend + OPT_LEN
            or data[10:12] != _ONE_AR
            or data[qend : qend + 3] != _OPT_HEAD
            or data[qend + 6]  # EDNS version: BADVERS is the slow path's job
            or n != qend + OPT_LEN + int.from_bytes(data[qend + 9 : qend + 11], "big")
            or (n > qend + OPT_LEN and options_fault(data, qend + OPT_LEN, n))  # FORMERR: the slow path's
        ):
            return None
        size = int.from_bytes(data[qend + 3 : qend + 5], "big")
        return self._variant(p, size, bool(data[qend + 7] & 0x80), tcp)

    def _variant(self, p: Prepared, edns_size: int, do: bool, tcp: bool) -> Variant:
        """Size limits: 512 without EDNS (edns_size -1), else the client's buffer (at least 512) up to
        our maximum; 64 KiB on TCP. `do` is the client's DNSSEC OK bit, echoed in our OPT."""
        if edns_size < 0:
            return p.tcp if tcp else p.udp
        if tcp:
            return p.tcp_do if do else p.tcp_edns
        if edns_size >= self.max_udp_size:
            return p.udp_do if do else p.udp_edns
        return fit(p.encoded, max(edns_size, PLAIN_UDP_LIMIT), OPT_DO if do else OPT_PLAIN)

    def _slow(self, data: bytes, tcp: bool) -> Reply:
        if len(data) < HEADER_LEN:
            return None, _SHORT_HEADER
        if data[2] & QR:
            return None, _NOT_A_QUERY
        ext = extras(data)
        edns = ext.edns
        try:
            message = DNSRecord.parse(data)
        except Exception:  # dnslib's DNSError and whatever odd bytes provoke: not a valid message
            return _error(data, Rcode.NOTIMP if data[2] & OPCODE_MASK else Rcode.FORMERR, None, edns)
        q = _question(message)
        if data[2] & OPCODE_MASK:
            # No question echoed: other opcodes give the sections other meanings (an UPDATE's first
            # section is its zone and must be SOA), so a header-only NOTIMP is the reply every parser reads.
            return _error(data, Rcode.NOTIMP, q, edns, echo=False)
        if q is None or ext.formerr:
            return _error(data, Rcode.FORMERR, q, edns)
        if edns is not None and edns.version > 0:
            return _error(data, Rcode.BADVERS, q, edns)
        if ext.tsig is not None:
            return _error(data, Rcode.NOTAUTH, q, edns, tsig=tsig_badkey(ext.tsig))
        key = q.qname + q.wire[-4:]
        prepared = self._get(key)
        if prepared is None:
            prepared = self._prepare(key, q.qname, q.qtype, q.qclass)
        size, do = (edns.size, edns.do) if edns is not None else (_NO_EDNS, False)
        v = self._variant(prepared, size, do, tcp)
        head = v.heads[(data[2] & RD) | ((data[3] & CD) >> 3)]
        return b"".join((data[:2], head, q.wire, v.tail)), v.outcome

    def _prepare(self, key: bytes, qname: Name, qtype: int, qclass: int) -> Prepared:
        if qtype == QType.OPT:  # RFC 6891 section 6.1.1: a pseudo-RR, not something to ask for
            found = Lookup(Result.REFUSED, touched=frozenset([qname]))
            prepared = prepare(qname, qtype, qclass, found, self.max_udp_size, Rcode.FORMERR)
        elif qclass != CLASS_IN or qtype in _REFUSED_TYPES:
            found = Lookup(Result.REFUSED, touched=frozenset([qname]))
            prepared = prepare(qname, qtype, qclass, found, self.max_udp_size)
        else:
            found = lookup(self.zone, qname, qtype)
            prepared = prepare(qname, qtype, qclass, found, self.max_udp_size)
        self.cache.put(key, prepared, found.touched)
        return prepared


@dataclass(frozen=True, slots=True)
class Question:
    wire: bytes  # as the client wrote it (uncompressed): echoed in the reply
    qname: Name  # lower-case
    qtype: int
    qclass: int


def _question(message: DNSRecord) -> Question | None:
    """The one question (RFC 1035 section 4.1.2), None when there is not exactly one valid question."""
    if len(message.questions) != 1:
        return None
    q = message.questions[0]
    raw = tuple(q.qname.label)
    qtype, qclass = int(q.qtype), int(q.qclass)
    try:
        qname = from_labels(raw)
    except ValueError:
        return None
    wire = wire_of_labels(raw) + qtype.to_bytes(2, "big") + qclass.to_bytes(2, "big")
    return Question(wire, qname, qtype, qclass)


def _error(data: bytes, rcode: Rcode, q: Question | None, edns: Edns | None = None, echo: bool = True,
           tsig: bytes = b"") -> Reply:
    """A reply with no records but ours: the client's ID, opcode and RD, our rcode, the question if
    readable (and `echo`), our OPT when the query had a sound one, then `tsig` (the last record)."""
    flags = bytes((QR | (data[2] & (OPCODE_MASK | RD)), (int(rcode) & 0x0F) | (data[3] & CD)))
    opt = b"" if edns is None else opt_record(edns.do, int(rcode) >> 4)
    question = q.wire if q is not None and echo else b""
    arcount = (edns is not None) + bool(tsig)
    counts = (b"\x00\x01" if question else b"\x00\x00") + b"\x00\x00\x00\x00" + arcount.to_bytes(2, "big")
    if q is None:
        return b"".join((data[:2], flags, counts, opt, tsig)), Outcome(None, None, "other", rcode)
    outcome = Outcome(to_text(q.qname), q.qtype, qtype_label(q.qtype), rcode)
    return b"".join((data[:2], flags, counts, question, opt, tsig)), outcome


def _servfail(data: bytes, exc: Exception) -> Reply:
    error = f"{type(exc).__name__}: {exc}"
    if len(data) < HEADER_LEN:
        return None, Outcome(None, None, "other", None, drop=DropReason.SHORT_HEADER, error=error)
    try:
        edns = extras(data).edns
    except Exception:  # the bug may be in reading the OPT itself
        edns = None
    reply, _ = _error(data, Rcode.SERVFAIL, None, edns)
    return reply, Outcome(None, None, "other", Rcode.SERVFAIL, error=error)

