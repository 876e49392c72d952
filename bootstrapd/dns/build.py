"""Site file -> resource records of every zone we serve (the rules are listed in zone.py)."""

from __future__ import annotations

import ipaddress
from typing import Any

from dnslib import AAAA, CNAME, NS, PTR, SOA, SRV, TXT, A

from bootstrapd.config.model import RecordType, Site
from bootstrapd.dns.names import (
    ROOT,
    Name,
    ancestors,
    from_text,
    resolve,
    reverse_name,
    reverse_zone_apexes,
    to_text,
)
from bootstrapd.dns.records import Apex, Node, Record, dname
from bootstrapd.dns.wire import QType
from bootstrapd.errors import ConfigError

_TXT_CHUNK = 255  # RFC 1035 section 3.3.14: one character-string


class ZoneBuilder:
    """Collects records per owner and type, checking what would make the zone unservable."""

    def __init__(self, site: Site, serial: int) -> None:
        self.site = site
        self.serial = serial
        self.domain = from_text(site.domain)
        self.apexes: dict[Name, Apex] = {}
        self._nodes: dict[Name, dict[int, list[Record]]] = {}
        self._problems: list[str] = []
        self.ignored: list[str] = []  # records no query can reach (outside our zones): for a warning
        for apex in [self.domain, *self._reverse_apexes()]:
            self._add_apex(apex)

    def build(self) -> dict[Name, Node]:
        """Every owner's RRsets; raises ConfigError listing each problem found."""
        self._add_ns()
        self._add_records()
        self._add_srv()
        self._add_ns_addresses()
        self._add_ptrs()
        self._check_cnames()
        if self._problems:
            raise ConfigError(list(self._problems))
        return {name: {t: _same_ttl(rrs) for t, rrs in node.items()} for name, node in self._nodes.items()}

    def _reverse_apexes(self) -> list[Name]:
        seen: dict[Name, None] = {}
        for subnet in self.site.dhcp.subnets:
            for apex in reverse_zone_apexes(subnet.prefix):
                seen.setdefault(apex, None)
        return [a for a in seen if a != self.domain]

    def _name(self, text: str, where: str) -> Name | None:
        try:
            return resolve(text, self.site.domain)
        except ValueError as e:
            self._problems.append(f"{where}: not a valid DNS name {text!r}: {e}")
            return None

    def _add_apex(self, apex: Name) -> None:
        dns = self.site.dns
        soa = dns.soa
        mname = self._name(soa.mname, "dns.soa.mname") or ROOT
        rname = self._name(soa.rname, "dns.soa.rname") or ROOT
        rdata = SOA(dname(mname), dname(rname), (self.serial, soa.refresh, soa.retry, soa.expire, soa.minimum))
        record = Record(apex, QType.SOA, dns.ttl, rdata)
        self.apexes[apex] = Apex(apex, record, Record(apex, QType.SOA, min(dns.ttl, soa.minimum), rdata))
        self._nodes.setdefault(apex, {})[QType.SOA] = [record]

    def _in_zone(self, name: Name) -> bool:
        return any(a in self.apexes for a in ancestors(name))

    def _add(self, name: Name, rtype: int, ttl: int, rdata: Any, where: str) -> None:
        if not self._in_zone(name):
            self.ignored.append(f"{where}: {to_text(name)} is outside the zones we serve")
            return
        rrset = self._nodes.setdefault(name, {}).setdefault(rtype, [])
        if all(str(rr.rdata) != str(rdata) for rr in rrset):
            rrset.append(Record(name, rtype, ttl, rdata))

    def _add_ns(self) -> None:
        for i, ns in enumerate(self.site.dns.ns):
            target = self._name(ns, f"dns.ns[{i}]")
            if target is not None:
                for apex in self.apexes:
                    self._add(apex, QType.NS, self.site.dns.ttl, NS(dname(target)), f"dns.ns[{i}]")

    def _add_records(self) -> None:
        for i, rec in enumerate(self.site.dns.records):
            where = f"dns.records[{i}]"
            owner = self._name(rec.name, where + ".name")
            try:
                rtype, rdata = self._rdata(rec.type, rec.value)
            except ValueError as e:
                self._problems.append(f"{where}.value: {e}")
                continue
            if owner is not None:
                self._add(owner, rtype, rec.ttl if rec.ttl is not None else self.site.dns.ttl, rdata, where)

    def _rdata(self, rtype: RecordType, value: str) -> tuple[int, Any]:
        if rtype is RecordType.A:
            return QType.A, A(str(ipaddress.IPv4Address(value)))
        if rtype is RecordType.AAAA:
            return QType.AAAA, AAAA(str(ipaddress.IPv6Address(value)))
        if rtype is RecordType.TXT:
            raw = value.encode()
            chunks = [raw[i : i + _TXT_CHUNK] for i in range(0, len(raw), _TXT_CHUNK)] or [b""]
            return QType.TXT, TXT(chunks)
        target = dname(resolve(value, self.site.domain))
        if rtype is RecordType.CNAME:
            return QType.CNAME, CNAME(target)
        return QType.PTR, PTR(target)

    def _add_srv(self) -> None:
        for i, svc in enumerate(self.site.dns.srv):
            owner = self._name(svc.service, f"dns.srv[{i}].service")
            ttl = svc.ttl if svc.ttl is not None else self.site.dns.ttl
            for j, t in enumerate(svc.targets):
                where = f"dns.srv[{i}].targets[{j}]"
                target = self._name(t.target, where + ".target")
                if owner is not None and target is not None:
                    self._add(owner, QType.SRV, ttl, SRV(t.priority, t.weight, t.port, dname(target)), where)

    def _add_ns_addresses(self) -> None:
        """An in-zone name server without an address is us: A listen.address."""
        for i, ns in enumerate(self.site.dns.ns):
            try:
                target = resolve(ns, self.site.domain)
            except ValueError:
                continue  # reported by _add_ns
            node = self._nodes.get(target, {})
            if self._in_zone(target) and not {QType.A, QType.AAAA, QType.CNAME} & node.keys():
                self._add(target, QType.A, self.site.dns.ttl, A(str(self.site.listen.address)), f"dns.ns[{i}]")

    def _add_ptrs(self) -> None:
        """PTR for every A record inside a reverse zone we serve, first owner per address wins."""
        for owner, node in list(self._nodes.items()):
            for rr in node.get(QType.A, []):
                rev = reverse_name(ipaddress.IPv4Address(str(rr.rdata)))
                if self._in_zone(rev) and QType.PTR not in self._nodes.get(rev, {}):
                    self._add(rev, QType.PTR, rr.ttl, PTR(dname(owner)), "dns.records")

    def _check_cnames(self) -> None:
        """RFC 1034 section 3.6.2 / RFC 2181 section 10.1: a CNAME owner has no other data, one CNAME."""
        for name, node in self._nodes.items():
            cnames = node.get(QType.CNAME, [])
            if cnames and len(node) > 1:
                self._problems.append(f"dns.records: {to_text(name)} has a CNAME and other records")
            if len(cnames) > 1:
                self._problems.append(f"dns.records: {to_text(name)} has more than one CNAME")


def _same_ttl(rrs: list[Record]) -> tuple[Record, ...]:
    """RFC 2181 section 5.2: one TTL per RRset; the lowest configured wins."""
    ttl = min(rr.ttl for rr in rrs)
    return tuple(rr if rr.ttl == ttl else Record(rr.name, rr.rtype, ttl, rr.rdata) for rr in rrs)
