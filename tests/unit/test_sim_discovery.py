"""The phone's use of DHCP options: the order 66,160,159,150,60,43,125, profile rules, SRV fallback."""

from __future__ import annotations

import ipaddress

import pytest

from bootstrapd.sim.discovery import OPTION_ORDER, Source, SrvDiscovery, Stuck, choose_source, parse_rule
from bootstrapd.sim.phone import Phone

P8841 = Phone("00:56:2b:04:36:15", "CP-8841-3PCC")
P6841 = Phone("00:56:2b:04:36:16", "CP-6841-3PCC")
IP = "198.18.0.7"
BASE = {6: ipaddress.IPv4Address("198.18.0.1").packed, 15: b"staging.example.net"}
OPT = {
    66: b"198.18.0.10",
    160: b"https://prov.staging.example.net/$MA.xml",
    159: b"http://198.18.0.11",
    150: ipaddress.IPv4Address("198.18.0.12").packed + ipaddress.IPv4Address("198.18.0.13").packed,
}


def urls(found: Source | SrvDiscovery | Stuck) -> list[str]:
    assert isinstance(found, Source), found
    return [str(u) for u in found.urls]


def test_the_default_order() -> None:
    assert OPTION_ORDER == (66, 160, 159, 150, 60, 43, 125)


@pytest.mark.parametrize(("present", "winner", "expected"), [
    ((66, 160, 159, 150), 66, ["tftp://198.18.0.10/8841-3PCC.xml"]),
    ((160, 159, 150), 160, ["https://prov.staging.example.net/00562b043615.xml"]),
    ((159, 150), 159, ["http://198.18.0.11/8841-3PCC.xml"]),
    ((150,), 150, ["tftp://198.18.0.12/8841-3PCC.xml", "tftp://198.18.0.13/8841-3PCC.xml"]),
    ((150, 66), 66, ["tftp://198.18.0.10/8841-3PCC.xml"]),
    ((159, 160), 160, ["https://prov.staging.example.net/00562b043615.xml"]),
])
def test_first_present_option_wins(present: tuple[int, ...], winner: int, expected: list[str]) -> None:
    found = choose_source({**BASE, **{c: OPT[c] for c in present}}, P8841, IP)
    assert isinstance(found, Source) and found.option == winner
    assert urls(found) == expected


def test_a_custom_order_is_honoured() -> None:
    found = choose_source({**BASE, **OPT}, P8841, IP, order=(159, 66))
    assert isinstance(found, Source) and found.option == 159


def test_option_66_gives_the_6800_its_model_file_by_tftp() -> None:
    assert urls(choose_source({66: b"198.18.0.10"}, P6841, IP)) == ["tftp://198.18.0.10/CP-6841-3PCC.cfg"]


@pytest.mark.parametrize(("value", "expected"), [
    (b"tftp.staging.example.net", "tftp://tftp.staging.example.net/8841-3PCC.xml"),  # a name, not only an IP
    (b"http://198.18.0.10", "http://198.18.0.10/8841-3PCC.xml"),  # a URL without path: the default rule
    (b"https://198.18.0.10:8443/p/$PN.xml", "https://198.18.0.10:8443/p/CP-8841-3PCC.xml"),
    (b"198.18.0.10\x00", "tftp://198.18.0.10/8841-3PCC.xml"),  # a trailing NUL is tolerated
])
def test_option_66_forms(value: bytes, expected: str) -> None:
    assert urls(choose_source({66: value}, P8841, IP)) == [expected]


def test_unusable_option_falls_through_to_the_next() -> None:
    # A 160 without a server (and no 66 to supply one) cannot be fetched: the phone moves on to 159.
    found = choose_source({**BASE, 160: b"/$PSN.xml", 159: b"http://198.18.0.11"}, P8841, IP)
    assert isinstance(found, Source) and found.option == 159


def test_acs_only_for_the_tr069_vendor_class() -> None:
    url = b"https://acs.example.net/cwmp"
    acs = bytes([2, 7]) + b"staging" + bytes([1, len(url)]) + url
    assert isinstance(choose_source({**BASE, 43: acs}, P8841, IP), SrvDiscovery)
    found = choose_source({**BASE, 43: acs, 60: b"dslforum.org"}, P8841, IP)
    assert isinstance(found, Source) and found.option == 43 and found.value == "https://acs.example.net/cwmp"


def test_no_option_means_srv_lookup_https_first() -> None:
    found = choose_source({**BASE, 125: b"\x00\x00\x0d\xe9\x00"}, P8841, IP)
    assert found == SrvDiscovery(("_ciscoprov-https._tls.staging.example.net",
                                  "_ciscoprov-http._tcp.staging.example.net"), ("198.18.0.1",))


@pytest.mark.parametrize(("options", "why"), [
    ({6: BASE[6]}, "no domain (15)"),
    ({15: BASE[15]}, "no DNS server (6)"),
    ({}, "no domain (15) or DNS server (6)"),
])
def test_stuck_after_dhcp_says_why(options: dict[int, bytes], why: str) -> None:
    found = choose_source(options, P8841, IP)
    assert isinstance(found, Stuck)
    assert why in found.reason and "no provisioning option (66/160/159/150)" in found.reason


@pytest.mark.parametrize(("rule", "default", "expected"), [
    ("http://prov/$PSN.xml", None, "http://prov/8841-3PCC.xml"),
    ("prov.example.net/x.cfg", None, "tftp://prov.example.net/x.cfg"),  # no scheme: TFTP
    ("/$PN.cfg", "198.18.0.10", "tftp://198.18.0.10/CP-8841-3PCC.cfg"),  # no server: option 66's
    ("$PN.cfg", "198.18.0.10", "tftp://198.18.0.10/CP-8841-3PCC.cfg"),
    ("/$PN.cfg", None, None),
    ("ftp://prov/x", None, None),
    ("http://prov:99999/x", None, None),
])
def test_profile_rule(rule: str, default: str | None, expected: str | None) -> None:
    url = parse_rule(rule, P8841, IP, default)
    assert (str(url) if url else None) == expected


def test_profile_rule_credentials() -> None:
    url = parse_rule("--uid alice --pwd s3cret https://prov/$MA.cfg", P8841, IP)
    assert url is not None and (url.username, url.password, url.port) == ("alice", "s3cret", 443)


@pytest.mark.parametrize(("rule", "expected"), [
    ("--key s3cret https://prov/$MA.xml", ("https://prov/00562b043615.xml", "s3cret", False)),
    ('--key "two words" http://prov/x.cfg', ("http://prov/x.cfg", "two words", False)),
    ("--post --key k http://prov:8080/x.cfg", ("http://prov:8080/x.cfg", "k", True)),
    ("--srv https://prov/x.cfg", ("https://prov/x.cfg", None, False)),  # accepted, not simulated
    ("--key k --uid u --pwd p /x.cfg", ("tftp://198.18.0.10/x.cfg", "k", False)),
])
def test_rule_options(rule: str, expected: tuple[str, str | None, bool]) -> None:
    url = parse_rule(rule, P8841, IP, "198.18.0.10")
    assert url is not None
    assert (str(url), url.key, url.post) == expected


@pytest.mark.parametrize("rule", ["--key", "--key k", '--key "open http://prov/x', "--uid u http://a/x http://b/y"])
def test_unusable_rules(rule: str) -> None:
    assert parse_rule(rule, P8841, IP, "198.18.0.10") is None
