"""Building the zones from the site file: apexes, SOA, NS addresses, PTR synthesis, the serial, problems."""

from __future__ import annotations

import dataclasses
import ipaddress

import pytest
from dns_site import RECORDS, make_site

from bootstrapd.config.model import Dhcp, Record, RecordType, Soa, Subnet
from bootstrapd.dns import QType, Result, Zone, lookup, site_serial
from bootstrapd.dns.names import from_text, reverse_zone_apexes, to_text
from bootstrapd.errors import ConfigError


def ask(zone: Zone, name: str, qtype: int = QType.A) -> list[str]:
    return [str(rr) for rr in lookup(zone, from_text(name), qtype).answer]


@pytest.mark.parametrize(("prefix", "zones"), [
    ("198.18.0.0/24", ["0.18.198.in-addr.arpa."]),
    ("198.18.0.0/23", ["0.18.198.in-addr.arpa.", "1.18.198.in-addr.arpa."]),
    ("198.18.4.0/22", [f"{i}.18.198.in-addr.arpa." for i in range(4, 8)]),
    ("198.18.0.128/25", ["0.18.198.in-addr.arpa."]),  # the whole /24: no RFC 2317 delegation here
    ("198.18.0.0/16", ["18.198.in-addr.arpa."]),
    ("198.18.0.0/15", ["18.198.in-addr.arpa.", "19.198.in-addr.arpa."]),
])
def test_reverse_zones_are_octet_aligned(prefix: str, zones: list[str]) -> None:
    assert [to_text(z) for z in reverse_zone_apexes(ipaddress.IPv4Network(prefix))] == zones


def test_every_zone_has_soa_and_ns() -> None:
    zone = Zone.from_site(make_site())
    for apex in ("staging.example.net", "0.18.198.in-addr.arpa", "1.18.198.in-addr.arpa"):
        [soa] = ask(zone, apex, QType.SOA)
        assert soa.startswith(f"{apex}. 300 IN SOA ns1.staging.example.net. hostmaster.staging.example.net. ")
        assert soa.endswith(" 3600 600 86400 60")
        assert ask(zone, apex, QType.NS) == [f"{apex}. 300 IN NS ns1.staging.example.net."]


def test_name_server_without_address_is_us() -> None:
    records = tuple(r for r in RECORDS if r.name != "ns1")
    zone = Zone.from_site(make_site(records=records, ns=("ns1", "ns2.example.org.")))
    assert ask(zone, "ns1.staging.example.net") == ["ns1.staging.example.net. 300 IN A 198.18.0.1"]
    assert ask(zone, "1.0.18.198.in-addr.arpa", QType.PTR) == [
        "1.0.18.198.in-addr.arpa. 300 IN PTR ns1.staging.example.net."]
    assert lookup(zone, from_text("ns2.example.org"), QType.A).result is Result.REFUSED


def test_name_server_with_its_own_address_keeps_it() -> None:
    records = (*RECORDS[1:], Record("ns1", RecordType.A, "198.18.0.53"))
    zone = Zone.from_site(make_site(records=records))
    assert ask(zone, "ns1.staging.example.net") == ["ns1.staging.example.net. 300 IN A 198.18.0.53"]


def test_first_a_record_names_a_shared_address() -> None:
    records = (*RECORDS, Record("prov1-alias", RecordType.A, "198.18.0.10"))
    zone = Zone.from_site(make_site(records=records))
    assert ask(zone, "10.0.18.198.in-addr.arpa", QType.PTR) == [
        "10.0.18.198.in-addr.arpa. 300 IN PTR prov1.staging.example.net."]


def test_no_ptr_outside_the_served_subnets() -> None:
    records = (*RECORDS, Record("far", RecordType.A, "198.19.5.5"))
    zone = Zone.from_site(make_site(records=records))
    assert lookup(zone, from_text("5.5.19.198.in-addr.arpa"), QType.PTR).result is Result.REFUSED


def test_records_outside_every_zone_are_listed_not_served() -> None:
    records = (*RECORDS, Record("9.9.9.10.in-addr.arpa.", RecordType.PTR, "x"))
    zone = Zone.from_site(make_site(records=records))
    assert zone.ignored == ("dns.records[14]: 9.9.9.10.in-addr.arpa. is outside the zones we serve",)


def test_serial_follows_the_content() -> None:
    a, b = make_site(), make_site()
    changed = make_site(records=(*RECORDS, Record("new", RecordType.A, "198.18.0.99")))
    assert site_serial(a) == site_serial(b) != site_serial(changed)
    zone = Zone.from_site(a, serial=2024010101)
    assert ask(zone, "staging.example.net", QType.SOA)[0].split()[6] == "2024010101"


def test_soa_fields_from_the_site() -> None:
    soa = Soa(mname="ns9.example.org.", rname="dns-admin", refresh=7200, retry=900, expire=604800, minimum=30)
    zone = Zone.from_site(make_site(soa=soa), serial=7)
    assert ask(zone, "staging.example.net", QType.SOA) == [
        "staging.example.net. 300 IN SOA ns9.example.org. dns-admin.staging.example.net. 7 7200 900 604800 30"]


def test_rrset_gets_one_ttl() -> None:
    records = (Record("multi", RecordType.A, "198.18.0.30", ttl=600), Record("multi", RecordType.A, "198.18.0.31"))
    zone = Zone.from_site(make_site(records=records))
    assert ask(zone, "multi.staging.example.net") == [
        "multi.staging.example.net. 300 IN A 198.18.0.30", "multi.staging.example.net. 300 IN A 198.18.0.31"]


def test_long_txt_split_into_strings() -> None:
    zone = Zone.from_site(make_site(records=(Record("big", RecordType.TXT, "x" * 300),)))
    [rr] = lookup(zone, from_text("big.staging.example.net"), QType.TXT).answer
    assert [len(s) for s in rr.rdata.data] == [255, 45]


def test_apex_record_with_at() -> None:
    zone = Zone.from_site(make_site(records=(Record("@", RecordType.TXT, "v=hello"),)))
    assert ask(zone, "staging.example.net", QType.TXT) == ['staging.example.net. 300 IN TXT "v=hello"']


@pytest.mark.parametrize("records", [
    (Record("x", RecordType.CNAME, "prov1"), Record("x", RecordType.A, "198.18.0.1")),
    (Record("x", RecordType.CNAME, "prov1"), Record("x", RecordType.CNAME, "prov2")),
    (Record("x", RecordType.A, "not-an-address"),),
    (Record("x", RecordType.AAAA, "198.18.0.1"),),
])
def test_unservable_data_is_a_config_error(records: tuple[Record, ...]) -> None:
    with pytest.raises(ConfigError):
        Zone.from_site(make_site(records=records))


def test_no_subnets_no_reverse_zones() -> None:
    site = dataclasses.replace(make_site(), dhcp=Dhcp())
    zone = Zone.from_site(site)
    assert [to_text(a) for a in zone.apexes] == ["staging.example.net."]


def test_overlapping_subnets_share_reverse_zones() -> None:
    subnets = (Subnet(ipaddress.IPv4Network("198.18.0.0/25")), Subnet(ipaddress.IPv4Network("198.18.0.128/25")))
    zone = Zone.from_site(dataclasses.replace(make_site(), dhcp=Dhcp(subnets=subnets)))
    assert [to_text(a) for a in zone.apexes] == ["staging.example.net.", "0.18.198.in-addr.arpa."]


def test_the_example_sites_build() -> None:
    from pathlib import Path

    from bootstrapd.config import load_site

    for path in sorted((Path(__file__).resolve().parents[2] / "config").glob("*.yaml")):
        site = load_site(str(path))
        zone = Zone.from_site(site)
        assert zone.ignored == (), path
        for svc in site.dns.srv:
            name = from_text(f"{svc.service}.{site.domain}")
            found = lookup(zone, name, QType.SRV)
            assert len(found.answer) == len(svc.targets) and found.additional, path
