"""Lease records: what the DHCP side publishes appears (and disappears) in answers at once."""

from __future__ import annotations

import dataclasses
import ipaddress

import dns.rcode
import pytest
from dns_site import make_site, parse, query, texts

from bootstrapd.config.model import Dhcp, Subnet
from bootstrapd.dns import LeaseTable, Responder, Zone, lease_name

IP = ipaddress.IPv4Address
PHONE = "SEP00562B043615"


@pytest.fixture
def table() -> LeaseTable:
    return LeaseTable()


@pytest.fixture
def r(table: LeaseTable) -> Responder:
    responder = Responder(Zone.from_site(make_site(), lease_records=table))
    table.on_change = responder.lease_changed
    return responder


def ask(r: Responder, name: str, rdtype: str = "A") -> tuple[str, list[str]]:
    reply, _ = r.respond(query(name, rdtype))
    msg = parse(reply)
    return dns.rcode.to_text(msg.rcode()), texts(msg.answer)


def test_lease_publishes_a_and_ptr(r: Responder, table: LeaseTable) -> None:
    # Asked before the lease: NXDOMAIN, and that reply is now prepared...
    assert ask(r, f"{PHONE}.staging.example.net")[0] == "NXDOMAIN"
    assert ask(r, "150.0.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"
    assert table.add(PHONE, IP("198.18.0.150"))
    # ...and must not outlive the lease's arrival.
    assert ask(r, f"{PHONE}.staging.example.net") == (
        "NOERROR", ["sep00562b043615.staging.example.net. 300 IN A 198.18.0.150"])
    assert ask(r, "150.0.18.198.in-addr.arpa", "PTR") == (
        "NOERROR", ["150.0.18.198.in-addr.arpa. 300 IN PTR sep00562b043615.staging.example.net."])


def test_removed_lease_disappears(r: Responder, table: LeaseTable) -> None:
    table.add(PHONE, IP("198.18.0.150"))
    assert ask(r, f"{PHONE}.staging.example.net")[0] == "NOERROR"
    table.remove(PHONE, IP("198.18.0.150"))
    assert ask(r, f"{PHONE}.staging.example.net")[0] == "NXDOMAIN"
    assert ask(r, "150.0.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"


def test_stale_remove_keeps_the_newer_lease(r: Responder, table: LeaseTable) -> None:
    table.add(PHONE, IP("198.18.0.150"))
    table.add(PHONE, IP("198.18.0.151"))  # the device moved
    table.remove(PHONE, IP("198.18.0.150"))  # the old lease's expiry arrives late
    assert ask(r, f"{PHONE}.staging.example.net")[1] == [
        "sep00562b043615.staging.example.net. 300 IN A 198.18.0.151"]
    assert ask(r, "150.0.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"


def test_address_reused_by_another_device(r: Responder, table: LeaseTable) -> None:
    table.add("phone-a", IP("198.18.0.160"))
    table.add("phone-b", IP("198.18.0.160"))
    assert ask(r, "phone-a.staging.example.net")[0] == "NXDOMAIN"
    assert ask(r, "160.0.18.198.in-addr.arpa", "PTR")[1] == [
        "160.0.18.198.in-addr.arpa. 300 IN PTR phone-b.staging.example.net."]


def test_configured_names_win_over_leases(r: Responder, table: LeaseTable) -> None:
    table.add("prov1", IP("198.18.0.170"))
    table.add("intruder", IP("198.18.0.10"))  # prov1's configured address
    assert ask(r, "prov1.staging.example.net")[1] == ["prov1.staging.example.net. 300 IN A 198.18.0.10"]
    assert ask(r, "10.0.18.198.in-addr.arpa", "PTR")[1] == [
        "10.0.18.198.in-addr.arpa. 300 IN PTR prov1.staging.example.net."]
    assert ask(r, "170.0.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"  # would name the configured prov1


@pytest.mark.parametrize("hostname", ["", "has space", "dot.ted", "-lead", "x" * 64, "ünï"])
def test_invalid_host_names_are_not_published(table: LeaseTable, hostname: str) -> None:
    assert not table.add(hostname, IP("198.18.0.180"))
    assert len(table) == 0


def test_lease_name_falls_back_to_sep_mac() -> None:
    assert lease_name("my-phone", "00:56:2b:04:36:15") == "my-phone"
    assert lease_name(None, "00:56:2b:04:36:15") == PHONE
    assert lease_name("not valid!", "00-56-2b-04-36-15") == PHONE


def test_unrelated_prepared_answers_survive_a_lease(r: Responder, table: LeaseTable) -> None:
    ask(r, "_ciscoprov-https._tls.staging.example.net", "SRV")
    ask(r, "elsewhere.staging.example.net")
    before = len(r.cache)
    table.add(PHONE, IP("198.18.0.150"))
    assert len(r.cache) == before  # nothing above consulted the lease's names


def test_empty_non_terminal_in_a_wide_reverse_zone(table: LeaseTable) -> None:
    site = dataclasses.replace(make_site(), dhcp=Dhcp(subnets=(Subnet(ipaddress.IPv4Network("198.18.0.0/16")),)))
    r = Responder(Zone.from_site(site, lease_records=table))
    table.on_change = r.lease_changed
    assert ask(r, "7.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"
    table.add("far-phone", IP("198.18.7.5"))
    assert ask(r, "7.18.198.in-addr.arpa", "PTR")[0] == "NOERROR"  # now an empty non-terminal
    table.remove("far-phone", IP("198.18.7.5"))
    assert ask(r, "7.18.198.in-addr.arpa", "PTR")[0] == "NXDOMAIN"


def test_lease_records_off_publishes_nothing(table: LeaseTable) -> None:
    r = Responder(Zone.from_site(make_site(lease_records=False), lease_records=table))
    table.add(PHONE, IP("198.18.0.150"))
    assert ask(r, f"{PHONE}.staging.example.net")[0] == "NXDOMAIN"
