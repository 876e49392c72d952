"""What the zone says about one question (RFC 1034 section 4.3.2, without wildcards or delegations).

Lookup is separate from writing the reply (as in CoreDNS): it returns a result code and three sections of
records, plus every name it consulted so that a prepared reply can be invalidated when one of those
names changes (a lease coming or going).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from bootstrapd.dns.names import Name, from_labels
from bootstrapd.dns.records import Node, Record
from bootstrapd.dns.wire import QType, Rcode
from bootstrapd.dns.zone import Zone

MAX_CNAME_HOPS = 8  # a bound on chains inside our zones; loops end here too

# RFC 8482 section 4.2: ANY gets one RRset; these come first when a name has several.
_ANY_PREFERENCE = (QType.CNAME, QType.SRV, QType.A, QType.AAAA, QType.PTR, QType.TXT, QType.NS, QType.SOA)


class Result(enum.Enum):
    ANSWER = "answer"  # records of the type asked (possibly after CNAMEs)
    NODATA = "nodata"  # RFC 2308 section 2.2: the name exists, not with this type
    NXDOMAIN = "nxdomain"  # RFC 2308 section 2.1: the name does not exist
    REFUSED = "refused"  # outside every zone we serve: we are never a recursive resolver

    @property
    def rcode(self) -> Rcode:
        return _RCODES[self]


_RCODES = {
    Result.ANSWER: Rcode.NOERROR,
    Result.NODATA: Rcode.NOERROR,
    Result.NXDOMAIN: Rcode.NXDOMAIN,
    Result.REFUSED: Rcode.REFUSED,
}


@dataclass(frozen=True)
class Lookup:
    result: Result
    answer: tuple[Record, ...] = ()
    authority: tuple[Record, ...] = ()
    additional: tuple[Record, ...] = ()
    touched: frozenset[Name] = field(default=frozenset())

    @property
    def authoritative(self) -> bool:
        return self.result is not Result.REFUSED


def lookup(zone: Zone, qname: Name, qtype: int) -> Lookup:
    """Answer `qname`/`qtype` from `zone`, following CNAMEs that stay inside our zones."""
    apex = zone.apex_of(qname)
    if apex is None:
        return Lookup(Result.REFUSED, touched=frozenset([qname]))
    answer: list[Record] = []
    touched: list[Name] = []
    name = qname
    while True:
        touched.append(name)
        node = zone.node(name)
        if not node:
            result = Result.NODATA if zone.is_empty_non_terminal(name) else Result.NXDOMAIN
            break
        rrset = _pick(node, qtype)
        if rrset:
            answer.extend(rrset)
            result = Result.ANSWER
            break
        cname = node.get(QType.CNAME)
        if not cname:
            result = Result.NODATA
            break
        answer.extend(cname)
        target = from_labels(cname[0].rdata.label.label)
        next_apex = zone.apex_of(target)
        if next_apex is None or target in touched or len(touched) > MAX_CNAME_HOPS:
            # RFC 1034 section 3.6.2: the resolver follows a chain that leaves our authority
            result = Result.ANSWER
            break
        name, apex = target, next_apex
    additional = _additional(zone, answer, touched)
    authority = (apex.negative_soa,) if result is not Result.ANSWER else ()
    return Lookup(result, tuple(answer), authority, additional, frozenset(touched))


def _pick(node: Node, qtype: int) -> tuple[Record, ...]:
    if qtype != QType.ANY:
        return node.get(qtype, ())
    for preferred in _ANY_PREFERENCE:
        if preferred in node:
            return node[preferred]
    return next(iter(node.values()), ())


def _additional(zone: Zone, answer: list[Record], touched: list[Name]) -> tuple[Record, ...]:
    """Addresses of SRV targets (RFC 2782) and NS hosts that live in our zones."""
    out: list[Record] = []
    seen: set[Name] = set()
    for rr in answer:
        if rr.rtype == QType.SRV:
            target = rr.rdata.target
        elif rr.rtype == QType.NS:
            target = rr.rdata.label
        else:
            continue
        name = from_labels(target.label) if target.label else None
        if name is None or name in seen or zone.apex_of(name) is None:
            continue
        seen.add(name)
        touched.append(name)
        node = zone.node(name)
        out.extend(node.get(QType.A, ()))
        out.extend(node.get(QType.AAAA, ()))
    return tuple(out)
