"""Lookup, table-driven (CoreDNS style): question -> result, answer, authority, additional."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from dns_site import make_site

from bootstrapd.dns import QType, Result, Zone, lookup
from bootstrapd.dns.names import from_text

SOA = "staging.example.net. 60 IN SOA ns1.staging.example.net. hostmaster.staging.example.net. {serial} 3600 600 86400 60"
REV_SOA = (
    "0.18.198.in-addr.arpa. 60 IN SOA ns1.staging.example.net. hostmaster.staging.example.net. "
    "{serial} 3600 600 86400 60"
)
HTTPS_SRV = [
    "_ciscoprov-https._tls.staging.example.net. 300 IN SRV 10 60 443 prov1.staging.example.net.",
    "_ciscoprov-https._tls.staging.example.net. 300 IN SRV 20 0 443 prov2.staging.example.net.",
]
PROV1_A = "prov1.staging.example.net. 300 IN A 198.18.0.10"
PROV2_A = "prov2.staging.example.net. 300 IN A 198.18.0.11"
PROV2_AAAA = "prov2.staging.example.net. 300 IN AAAA 2001:db8::11"


@dataclass(frozen=True)
class Case:
    qname: str
    qtype: int
    result: Result
    answer: tuple[str, ...] = ()
    authority: tuple[str, ...] = ()
    additional: tuple[str, ...] = ()


CASES = {
    "srv https with both targets' addresses as glue": Case(
        "_ciscoprov-https._tls.staging.example.net", QType.SRV, Result.ANSWER,
        tuple(HTTPS_SRV), (), (PROV1_A, PROV2_A, PROV2_AAAA)),
    "srv http": Case(
        "_ciscoprov-http._tcp.staging.example.net", QType.SRV, Result.ANSWER,
        ("_ciscoprov-http._tcp.staging.example.net. 300 IN SRV 10 0 80 prov1.staging.example.net.",),
        (), (PROV1_A,)),
    "mixed case matches": Case(
        "_CiscoProv-HTTPS._TLS.Staging.Example.NET", QType.SRV, Result.ANSWER,
        tuple(HTTPS_SRV), (), (PROV1_A, PROV2_A, PROV2_AAAA)),
    "a record": Case("prov1.staging.example.net", QType.A, Result.ANSWER, (PROV1_A,)),
    "aaaa record": Case("prov2.staging.example.net", QType.AAAA, Result.ANSWER, (PROV2_AAAA,)),
    "nxdomain carries the soa with the negative ttl": Case(
        "nope.staging.example.net", QType.A, Result.NXDOMAIN, (), (SOA,)),
    "nodata: name exists, type does not": Case(
        "prov1.staging.example.net", QType.AAAA, Result.NODATA, (), (SOA,)),
    "nodata for srv asked as A": Case(
        "_ciscoprov-https._tls.staging.example.net", QType.A, Result.NODATA, (), (SOA,)),
    "empty non-terminal is nodata, not nxdomain (RFC 8020)": Case(
        "_tls.staging.example.net", QType.A, Result.NODATA, (), (SOA,)),
    "deeper empty non-terminal": Case("a.b.staging.example.net", QType.TXT, Result.NODATA, (), (SOA,)),
    "below an existing name is nxdomain": Case(
        "x.prov1.staging.example.net", QType.A, Result.NXDOMAIN, (), (SOA,)),
    "outside our zones: refused": Case("example.com", QType.A, Result.REFUSED),
    "parent of our zone: refused": Case("example.net", QType.SOA, Result.REFUSED),
    "root: refused": Case(".", QType.NS, Result.REFUSED),
    "cname chain followed inside the zone": Case(
        "alias.staging.example.net", QType.A, Result.ANSWER,
        ("alias.staging.example.net. 300 IN CNAME www.staging.example.net.",
         "www.staging.example.net. 300 IN CNAME prov1.staging.example.net.", PROV1_A)),
    "cname asked as cname is not followed": Case(
        "www.staging.example.net", QType.CNAME, Result.ANSWER,
        ("www.staging.example.net. 300 IN CNAME prov1.staging.example.net.",)),
    "cname to a type the target lacks: nodata after the chain": Case(
        "www.staging.example.net", QType.TXT, Result.NODATA,
        ("www.staging.example.net. 300 IN CNAME prov1.staging.example.net.",), (SOA,)),
    "cname to a missing name: nxdomain after the chain (RFC 6604)": Case(
        "dangling.staging.example.net", QType.A, Result.NXDOMAIN,
        ("dangling.staging.example.net. 300 IN CNAME nothere.staging.example.net.",), (SOA,)),
    "cname leaving our zones: the resolver follows it": Case(
        "portal.staging.example.net", QType.A, Result.ANSWER,
        ("portal.staging.example.net. 300 IN CNAME portal.example.com.",)),
    "cname loop stops after one turn": Case(
        "loop1.staging.example.net", QType.A, Result.ANSWER,
        ("loop1.staging.example.net. 300 IN CNAME loop2.staging.example.net.",
         "loop2.staging.example.net. 300 IN CNAME loop1.staging.example.net.")),
    "txt with its own ttl": Case(
        "info.staging.example.net", QType.TXT, Result.ANSWER,
        ('info.staging.example.net. 60 IN TXT "staging floor 2"',)),
    "apex soa": Case(
        "staging.example.net", QType.SOA, Result.ANSWER, (SOA.replace(" 60 IN SOA", " 300 IN SOA"),)),
    "apex ns with the name server's address": Case(
        "staging.example.net", QType.NS, Result.ANSWER,
        ("staging.example.net. 300 IN NS ns1.staging.example.net.",), (),
        ("ns1.staging.example.net. 300 IN A 198.18.0.1",)),
    "any is answered with one rrset (RFC 8482)": Case(
        "prov2.staging.example.net", QType.ANY, Result.ANSWER, (PROV2_A,)),
    "any at a cname gives the cname": Case(
        "www.staging.example.net", QType.ANY, Result.ANSWER,
        ("www.staging.example.net. 300 IN CNAME prov1.staging.example.net.",)),
    "ptr synthesized from an a record": Case(
        "10.0.18.198.in-addr.arpa", QType.PTR, Result.ANSWER,
        ("10.0.18.198.in-addr.arpa. 300 IN PTR prov1.staging.example.net.",)),
    "configured ptr wins over the synthesized one": Case(
        "20.0.18.198.in-addr.arpa", QType.PTR, Result.ANSWER,
        ("20.0.18.198.in-addr.arpa. 300 IN PTR named-by-hand.staging.example.net.",)),
    "reverse nxdomain carries the reverse zone's soa": Case(
        "99.0.18.198.in-addr.arpa", QType.PTR, Result.NXDOMAIN, (), (REV_SOA,)),
    "reverse zone of the subnet's second /24": Case(
        "1.18.198.in-addr.arpa", QType.NS, Result.ANSWER,
        ("1.18.198.in-addr.arpa. 300 IN NS ns1.staging.example.net.",), (),
        ("ns1.staging.example.net. 300 IN A 198.18.0.1",)),
    "reverse space outside the subnets: refused": Case("1.2.18.198.in-addr.arpa", QType.PTR, Result.REFUSED),
    "unknown type at an existing name: nodata": Case(
        "prov1.staging.example.net", 65280, Result.NODATA, (), (SOA,)),
}


@pytest.fixture(scope="module")
def zone() -> Zone:
    return Zone.from_site(make_site())


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_lookup(zone: Zone, case: Case) -> None:
    serial = zone.apexes[zone.domain].soa.rdata.times[0]
    found = lookup(zone, from_text(case.qname), case.qtype)
    assert found.result is case.result
    assert [str(rr) for rr in found.answer] == [s.format(serial=serial) for s in case.answer]
    assert [str(rr) for rr in found.authority] == [s.format(serial=serial) for s in case.authority]
    assert [str(rr) for rr in found.additional] == list(case.additional)
    assert found.authoritative is (case.result is not Result.REFUSED)


def test_refused_has_no_records(zone: Zone) -> None:
    found = lookup(zone, from_text("prov1.staging.example.net.example.com"), QType.A)
    assert (found.result, found.answer, found.authority, found.additional) == (Result.REFUSED, (), (), ())
