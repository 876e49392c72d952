"""Simulated phones after their first profile, on a virtual staging floor (bootstrapd for DHCP and DNS, the
lab provisioning server as bootstrap and remote server, a UDP socket on prov1 as the syslog server).

Option 160 carries `--key`: the first profile is `openssl enc` encrypted. It points the phones at the remote
server over HTTPS (another key), sets Syslog_Server, our log templates and an Upgrade_Rule. Each phone resyncs
and upgrades, saying so in syslog from its leased address; a silent phone never comes back, a fail-resync
phone's first resync 404s and the retry succeeds, a wrong-key phone's resync fails with `decryption failed`.
"""

from __future__ import annotations

import collections
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Lab
from bootstrapd.sim.floor import Floor
from bootstrapd.sim.report import PhoneReport, Stage, format_report
from bootstrapd.syslog import Kind, parse
from tests.labreq import require_lab

PHONES = 8
FIRST_KEY = "first key, from option 160"
REMOTE_KEY = "K2-remote"
REMOTE = "https://prov2.staging.example.net/remote/$MA.xml"
LOADS = "http://prov2.staging.example.net/sip88xx.12-0-1MPP-1234.loads"
SITE: dict[str, Any] = {
    "site": "resync",
    "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
    "domain": "staging.example.net",
    "dhcp": {
        "unknown_devices": "lease",
        "rogue_check_wait": 0,
        "options": {"dns_servers": ["198.18.0.1"]},
        "subnets": [{"prefix": "198.18.0.0/23", "pools": ["198.18.0.100-198.18.1.250"], "router": "198.18.0.1"}],
        "classes": [{"name": "mpp", "match": {"vendor_class": ["CP-*-3PCC"]},
                     "options": {"provisioning_url": f'--key "{FIRST_KEY}" http://prov1.staging.example.net/$PSN.xml'}}],
    },
    "dns": {"records": [{"name": "prov1", "type": "A", "value": "198.18.0.10"},
                        {"name": "prov2", "type": "A", "value": "198.18.0.11"}]},
}
BOOTSTRAP = {"key": FIRST_KEY, "remote_key": REMOTE_KEY, "profile_rule": f"--key {REMOTE_KEY} {REMOTE}",
             "syslog_server": "prov1.staging.example.net", "retry_delay": 3600, "upgrade_rule": LOADS}
RESYNC = [Kind.RESYNC_REQUESTED, Kind.RESYNC_SUCCEEDED]
UPGRADE = [Kind.UPGRADE_REQUESTED, Kind.UPGRADE_SUCCEEDED]


@pytest.fixture(scope="module")
def run() -> Iterator[tuple[Floor, list[PhoneReport], list[dict[str, Any]], list[dict[str, Any]]]]:
    require_lab()
    with tempfile.TemporaryDirectory(prefix="bootstrapd-resync-") as tmp, Lab() as lab:
        floor = Floor(lab, Path(tmp))
        if floor.cert is None:
            pytest.skip("no openssl: no lab certificate and no encrypted profiles")
        floor.start_daemon(SITE)
        floor.start_prov(bootstrap=BOOTSTRAP)
        listener = floor.listen_syslog("198.18.0.10", 514)
        events: list[dict[str, Any]] = []
        try:
            reports = floor.simulate(PHONES, "--seed", "11", "--spread", "0.5", "--silent", "1", "--fail-resync", "1",
                                     "--wrong-key", "1", "--error-retry-delay", "0.3", on_event=events.append,
                                     timeout=30)
            datagrams = listener.datagrams()
        finally:
            listener.stop()
        yield floor, reports, datagrams, events


def by_resync(reports: list[PhoneReport]) -> dict[str, list[PhoneReport]]:
    out: dict[str, list[PhoneReport]] = collections.defaultdict(list)
    for r in reports:
        out[r.resync or "-"].append(r)
    return out


def test_every_phone_fetched_its_encrypted_first_profile(lab_support: None, run: Any) -> None:
    _, reports, _, _ = run
    assert all(r.stage is Stage.FETCHED and r.found_by == "option 160" for r in reports), format_report(reports)


def test_resync_results_per_phone(lab_support: None, run: Any) -> None:
    _, reports, _, _ = run
    groups = by_resync(reports)
    text = format_report(reports)
    assert {k: len(v) for k, v in groups.items()} == {"done": PHONES - 2, "failed": 1, "silent": 1}, text
    for r in groups["done"]:
        assert r.resync_url == f"https://prov2.staging.example.net/remote/{r.mac.replace(':', '')}.xml"
        assert (r.resync_hops, r.upgrade, r.upgrade_url) == (1, "done", LOADS)
        assert r.syslog_server == "198.18.0.10:514"
    assert sorted(r.resync_retries for r in groups["done"]) == [0] * (PHONES - 3) + [1]
    assert groups["failed"][0].resync_reason == "class C: decryption failed"
    assert f"resync: {PHONES - 2} done, 1 failed, 1 silent; upgrade: {PHONES - 1} done, 0 failed" in text
    assert "resync: silent (never came back after its first profile)" in text


def test_syslog_lines_arrive_from_each_phones_address(lab_support: None, run: Any) -> None:
    _, reports, datagrams, _ = run
    by_address = {r.address: r for r in reports}
    seen: dict[str, list[Kind]] = collections.defaultdict(list)
    errors: dict[str, list[str | None]] = collections.defaultdict(list)
    for d in datagrams:
        msg = parse(d["data"].encode())
        phone = by_address[d["from"]]  # sent from the phone's leased address
        assert (msg.mac, msg.model) == (phone.mac, phone.model), d
        assert d["data"].split(" -- ")[0].endswith(f"bootstrapd {phone.mac.replace(':', '')} {phone.model}")
        seen[phone.mac].append(msg.kind)
        errors[phone.mac].append(msg.error)
    groups = by_resync(reports)
    assert groups["silent"][0].mac not in seen
    failed = groups["failed"][0].mac
    assert seen[failed] == [Kind.RESYNC_REQUESTED, Kind.RESYNC_FAILED, *UPGRADE]
    assert "decryption failed" in errors[failed]
    for r in groups["done"]:
        expected = [Kind.RESYNC_REQUESTED, Kind.RESYNC_FAILED] * r.resync_retries + RESYNC + UPGRADE
        assert seen[r.mac] == expected, (r.mac, seen[r.mac])
        assert r.syslog_sent == len(expected)
    headers = {d["data"].startswith("<134>") for d in datagrams}
    assert headers == {True, False}  # RFC 3164 and bare lines both


def test_the_remote_server_saw_the_resyncs_over_https(lab_support: None, run: Any) -> None:
    floor, _, _, _ = run
    remote = [e for e in floor.prov_events() if e.get("path", "").startswith("/remote/")]
    assert {e["proto"] for e in remote} == {"https"}
    assert [e["status"] for e in remote].count(404) == 1  # the fail-resync phone's first try
    clients = collections.Counter(e["client"] for e in remote)
    assert sorted(clients.values()) == [1] * (PHONES - 2) + [2]  # the silent phone never asked
    firmware = [e for e in floor.prov_events() if e.get("kind") == "firmware"]
    assert len(firmware) == PHONES - 1


def test_progress_events_for_resync(lab_support: None, run: Any) -> None:
    _, reports, _, events = run
    names = collections.Counter(e["event"] for e in events)
    assert names["fetched"] == PHONES
    assert names["resync_requested"] == PHONES - 1 + 1  # the retry asks again
    assert names["resync_succeeded"] == PHONES - 2
    assert names["upgrade_succeeded"] == PHONES - 1
    done = {e["mac"]: e["resync"] for e in events if e["event"] == "done"}
    assert done == {r.mac: r.resync for r in reports}
