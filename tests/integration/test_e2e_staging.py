"""End to end on a virtual staging floor: bootstrapd, a provisioning server, and 20 simulated MPP phones.

Every discovery path of mpp-bootstrap.md ends in "profile fetched"; a dead priority-10 target moves the
phones to priority 20; weights split the phones; a floor that gives phones nothing to go on leaves them
stuck after DHCP, and the report says why.
"""

from __future__ import annotations

import collections
import math
import re
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Lab
from bootstrapd.sim.floor import Floor
from bootstrapd.sim.report import PhoneReport, Stage, format_report
from tests.labreq import require_lab

PHONES = 20
UA = re.compile(r"^Cisco-(CP-\d{4}-3PCC)/[\d.]+ \(([0-9a-f]{12})\)$")


def site(options: dict[str, Any] | None = None, srv: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    classes = [{"name": "mpp", "match": {"vendor_class": ["CP-*-3PCC"]}, "options": options}] if options else []
    return {
        "site": "e2e",
        "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
        "domain": "staging.example.net",
        "dhcp": {
            "unknown_devices": "lease",
            "rogue_check_wait": 0,
            "options": {"dns_servers": ["198.18.0.1"]},
            "subnets": [{"prefix": "198.18.0.0/23", "pools": ["198.18.0.100-198.18.1.250"], "router": "198.18.0.1"}],
            "classes": classes,
        },
        "dns": {
            "records": [{"name": "prov1", "type": "A", "value": "198.18.0.10"},
                        {"name": "prov2", "type": "A", "value": "198.18.0.11"}],
            "srv": srv or [],
        },
    }


def https_srv(*targets: tuple[str, int, int]) -> dict[str, Any]:
    return {"service": "_ciscoprov-https._tls",
            "targets": [{"target": t, "port": 443, "priority": p, "weight": w} for t, p, w in targets]}


TWO_PRIORITIES = [https_srv(("prov1", 10, 0), ("prov2", 20, 0)),
                  {"service": "_ciscoprov-http._tcp", "targets": [{"target": "prov1", "port": 80}]}]


@pytest.fixture(scope="module")
def floor() -> Iterator[Floor]:
    require_lab()
    with tempfile.TemporaryDirectory(prefix="bootstrapd-e2e-") as tmp, Lab() as lab:
        yield Floor(lab, Path(tmp))


def boot(floor: Floor, seed: int, *args: str) -> list[PhoneReport]:
    reports = floor.simulate(PHONES, "--seed", str(seed), "--spread", "0.5", *args, timeout=30)
    assert len(reports) == PHONES
    assert len({r.address for r in reports}) == PHONES, format_report(reports)
    return reports


def assert_all_fetched(reports: list[PhoneReport], found_by: str) -> None:
    assert all(r.stage is Stage.FETCHED and r.found_by == found_by for r in reports), format_report(reports)


def assert_server_saw_each_phone_as_itself(floor: Floor, reports: list[PhoneReport], proto: str) -> None:
    """One hit per phone, from the phone's own address, with its own User-Agent; no misses."""
    events = floor.prov_events()
    assert [e for e in events if e["event"] == "prov.miss"] == []
    hits = [e for e in events if e["event"] == "prov.hit"]
    assert sorted(e["client"] for e in hits) == sorted(r.address or "" for r in reports)
    by_address = {r.address: r for r in reports}
    for e in hits:
        assert e["proto"] == proto
        if proto != "tftp":  # TFTP has no User-Agent
            m = UA.match(e["ua"])
            assert m, e["ua"]
            phone = by_address[e["client"]]
            assert (m.group(1), m.group(2)) == (phone.model, phone.mac.replace(":", ""))


def test_option_160_url(lab_support: None, floor: Floor) -> None:
    floor.start_daemon(site({"provisioning_url": "http://prov1.staging.example.net/$PSN.xml"}))
    floor.start_prov()
    reports = boot(floor, 1)
    assert_all_fetched(reports, "option 160")
    for r in reports:
        assert r.url == f"http://prov1.staging.example.net/{r.model.removeprefix('CP-')}.xml"
        assert r.dhcp_seconds is not None and r.fetch_seconds is not None and r.seconds is not None
    assert_server_saw_each_phone_as_itself(floor, reports, "http")


def test_option_66_and_the_model_file(lab_support: None, floor: Floor) -> None:
    floor.start_daemon(site({"tftp_server": "198.18.0.10"}))
    floor.start_prov()
    reports = boot(floor, 2)
    assert_all_fetched(reports, "option 66")
    for r in reports:
        name = f"{r.model}.cfg" if r.model.startswith("CP-68") else f"{r.model.removeprefix('CP-')}.xml"
        assert r.url == f"tftp://198.18.0.10/{name}"
    assert_server_saw_each_phone_as_itself(floor, reports, "tftp")


def test_srv_with_two_priorities(lab_support: None, floor: Floor) -> None:
    floor.start_daemon(site(srv=TWO_PRIORITIES))
    floor.start_prov()
    reports = boot(floor, 3)
    assert_all_fetched(reports, "SRV https, priority 10")
    assert {r.url.split("/")[2] for r in reports if r.url} == {"prov1.staging.example.net"}
    assert_server_saw_each_phone_as_itself(floor, reports, "https")
    assert {e["server"] for e in floor.prov_events() if e["event"] == "prov.hit"} == {"198.18.0.10:443"}


def test_priority_10_target_down_phones_use_priority_20(lab_support: None, floor: Floor) -> None:
    floor.start_daemon(site(srv=TWO_PRIORITIES))
    floor.start_prov(binds=["198.18.0.11"])  # prov1 (198.18.0.10) serves nothing
    reports = boot(floor, 4)
    assert_all_fetched(reports, "SRV https, priority 20")
    for r in reports:
        assert r.url is not None and r.url.startswith("https://prov2.staging.example.net/")
        assert any("prov1.staging.example.net" in a and "connection refused" in a for a in r.attempts), r.attempts
    assert {e["server"] for e in floor.prov_events() if e["event"] == "prov.hit"} == {"198.18.0.11:443"}


def test_srv_weights_60_20_split_the_phones(lab_support: None, floor: Floor) -> None:
    # The 500-selection statistics are in tests/unit/test_sim_srv.py; this is the live check.
    floor.start_daemon(site(srv=[https_srv(("prov1", 10, 60), ("prov2", 10, 20))]))
    floor.start_prov()
    reports = boot(floor, 5)
    assert_all_fetched(reports, "SRV https, priority 10")
    hosts = collections.Counter(r.url.split("/")[2] for r in reports if r.url)
    prov1 = hosts["prov1.staging.example.net"]
    assert hosts["prov2.staging.example.net"] == PHONES - prov1 > 0
    assert abs(prov1 - PHONES * 0.75) <= 4 * math.sqrt(PHONES * 0.75 * 0.25), hosts


def test_no_provisioning_option_and_no_srv_record_stuck_after_dhcp(lab_support: None, floor: Floor) -> None:
    floor.start_daemon(site())
    floor.start_prov()
    reports = boot(floor, 6)
    assert all(r.stage is Stage.LEASED for r in reports), format_report(reports)
    text = format_report(reports)
    assert text.count("stuck at leased: no provisioning option and no SRV target: "
                      "_ciscoprov-https._tls.staging.example.net: NXDOMAIN") == PHONES, text
    assert f"0/{PHONES} phones fetched their profile; {PHONES}/{PHONES} leased" in text


def test_no_domain_and_no_provisioning_option_stuck_after_dhcp(lab_support: None, floor: Floor) -> None:
    """bootstrapd always sends option 15 (the site's domain), so this floor's DHCP server is dnsmasq."""
    if floor.daemon is not None:
        floor.daemon.stop()
    leases, log = floor.workdir / "dnsmasq.leases", floor.workdir / "dnsmasq.log"
    dnsmasq = floor.server.popen(["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--user=root",
                        "--interface=stg0", "--bind-interfaces", "--dhcp-authoritative", "--no-ping",
                        f"--dhcp-leasefile={leases}", "--dhcp-range=198.18.0.100,198.18.1.250,255.255.254.0,1h",
                        f"--log-facility={log}"])
    try:
        deadline = time.monotonic() + 10
        while "DHCP, IP range" not in (log.read_text() if log.exists() else ""):
            assert time.monotonic() < deadline, "dnsmasq did not start"
            time.sleep(0.05)
        reports = boot(floor, 7)
    finally:
        dnsmasq.terminate()
        dnsmasq.wait(5)
    assert all(r.stage is Stage.LEASED for r in reports), format_report(reports)
    text = format_report(reports)
    assert text.count("stuck at leased: no provisioning option (66/160/159/150) and no domain (15)") == PHONES, text
