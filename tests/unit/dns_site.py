"""The site the DNS unit tests serve, and helpers to ask it questions as wire bytes (dnspython builds and
parses them: an independent codec, so our answers are checked by someone else's reading)."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rdataclass
import dns.rdatatype

from bootstrapd.config.model import (
    Dhcp,
    Dns,
    Listen,
    Record,
    RecordType,
    Site,
    Soa,
    SrvService,
    SrvTarget,
    Subnet,
)
from bootstrapd.dns import Responder, Zone

DOMAIN = "staging.example.net"
A, AAAA, CNAME, TXT, PTR = RecordType.A, RecordType.AAAA, RecordType.CNAME, RecordType.TXT, RecordType.PTR

RECORDS = (
    Record("ns1", A, "198.18.0.1"),
    Record("prov1", A, "198.18.0.10"),
    Record("prov2", A, "198.18.0.11"),
    Record("prov2", AAAA, "2001:db8::11"),
    Record("www", CNAME, "prov1"),
    Record("alias", CNAME, "www"),  # a chain: alias -> www -> prov1
    Record("portal", CNAME, "portal.example.com."),  # leaves our zones
    Record("dangling", CNAME, "nothere"),  # points at a name that does not exist
    Record("loop1", CNAME, "loop2"),
    Record("loop2", CNAME, "loop1"),
    Record("info", TXT, "staging floor 2", ttl=60),
    Record("deep.a.b", A, "198.18.0.20"),  # a.b and b are empty non-terminals
    Record("12.0.18.198.in-addr.arpa.", PTR, "printer"),
    Record("20.0.18.198.in-addr.arpa.", PTR, "named-by-hand"),  # wins over the synthesized one
)

SRV = (
    SrvService(
        "_ciscoprov-https._tls",
        (SrvTarget("prov1", 443, priority=10, weight=60), SrvTarget("prov2", 443, priority=20, weight=0)),
    ),
    SrvService("_ciscoprov-http._tcp", (SrvTarget("prov1", 80, priority=10, weight=0),)),
)


def make_site(**dns_changes: Any) -> Site:
    dns_conf = dataclasses.replace(Dns(ttl=300, soa=Soa(minimum=60), records=RECORDS, srv=SRV), **dns_changes)
    return Site(
        site="unit",
        listen=Listen(("stg0",), ipaddress.IPv4Address("198.18.0.1")),
        domain=DOMAIN,
        dhcp=Dhcp(subnets=(Subnet(ipaddress.IPv4Network("198.18.0.0/23")),)),
        dns=dns_conf,
    )


def responder(site: Site | None = None) -> Responder:
    return Responder(Zone.from_site(site or make_site()))


def query(
    name: str,
    rdtype: str | int = "A",
    *,
    edns: int = -1,
    payload: int = 1232,
    rd: bool = True,
    cd: bool = False,
    do: bool = False,
    rdclass: str = "IN",
    qid: int = 4711,
    options: list[dns.edns.Option] | None = None,
) -> bytes:
    msg = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), rdclass, use_edns=edns, payload=payload,
                                 want_dnssec=do, options=options)
    msg.id = qid
    msg.flags = (dns.flags.RD if rd else 0) | (dns.flags.CD if cd else 0)
    return msg.to_wire()


def parse(wire: bytes | None) -> dns.message.Message:
    assert wire is not None, "expected a reply, got a drop"
    return dns.message.from_wire(wire)


def texts(section: list[dns.rrset.RRset]) -> list[str]:
    """Zone-file lines, one per record, lower-cased owner names, in wire order."""
    out = []
    for rrset in section:
        for rd in rrset:
            rtype = dns.rdatatype.to_text(rrset.rdtype)
            out.append(f"{rrset.name.to_text().lower()} {rrset.ttl} IN {rtype} {rd.to_text()}")
    return out
