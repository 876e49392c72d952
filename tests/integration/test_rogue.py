"""The rogue DHCP guard against a real second DHCP server (dnsmasq) on the lab's staging LAN."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.dhcp_client import RawClient, mac
from tests.integration.test_dhcp_clients import need
from tests.integration.test_service import METRICS, sample, scrape

ROGUE = "198.18.0.250"
FOREIGN = "bootstrapd_dhcp_foreign_offers_total"


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=0)


def dnsmasq(host: Host, tmp_path: Path, *extra: str) -> subprocess.Popen[Any]:
    """A second DHCP server on the staging LAN, as an office router would run it; Lab.close() stops it."""
    need("dnsmasq")
    proc = host.popen(["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0",
                       "--bind-interfaces", "--dhcp-range=198.18.1.10,198.18.1.20",
                       f"--dhcp-leasefile={tmp_path / 'dnsmasq.leases'}", *extra],
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while ":67 " not in host.run(["ss", "-Hlun"]).stdout:  # listening on the DHCP port
        assert proc.poll() is None and time.monotonic() < deadline, "dnsmasq did not start"
        time.sleep(0.05)
    return proc


def rogue_host(lan: StagingLan) -> Host:
    return lan.add_client(f"{ROGUE}/23", name="rogue")


def test_refuses_to_start_when_another_server_answers(lan: StagingLan, tmp_path: Path) -> None:
    rogue = rogue_host(lan)
    dnsmasq(rogue, tmp_path)  # as configured out of the box: it pings for 3 s before it offers
    daemon = Daemon(lan.server, tmp_path, site_config(dhcp__rogue_check_wait="4s"))  # the default window
    started = time.monotonic()
    proc = lan.server.run([sys.executable, "-m", "bootstrapd", "run", "-c", str(daemon.site_path)],
                          check=False, timeout=60)
    assert proc.returncode == 1
    assert time.monotonic() - started < 20
    events = {e["event"]: e for e in map(json.loads, proc.stderr.splitlines()) if e.get("event")}
    failed = events["service.start_failed"]["error"]
    assert ROGUE in failed and rogue.mac("eth0") in failed and "allow_other_servers" in failed
    found = events["dhcp.foreign_server"]
    assert (found["server"], found["mac"], found["interface"]) == (ROGUE, rogue.mac("eth0"), "stg0")
    assert found["offered"].startswith("198.18.1.")
    assert "dhcp.listening" not in events  # no DHCP socket was ever opened
    assert not (tmp_path / "state" / "leases.sqlite3").exists()


def test_allowed_other_server_starts_and_is_counted(lan: StagingLan, tmp_path: Path) -> None:
    rogue = rogue_host(lan)
    dnsmasq(rogue, tmp_path, "--no-ping")
    site = site_config(metrics={"listen": METRICS}, logging={"format": "json", "level": "info"})
    site["dhcp"].update(allow_other_servers=True, rogue_check_wait=1)
    daemon = Daemon(lan.server, tmp_path, site).start()
    [found] = daemon.wait_for("dhcp.foreign_server")
    assert (found["level"], found["server"], found["mac"]) == ("warning", ROGUE, rogue.mac("eth0"))
    assert sample(scrape(lan.server), FOREIGN) == 1.0


def test_periodic_probe_ignores_our_offers_and_catches_a_server_that_appears(lan: StagingLan,
                                                                            tmp_path: Path) -> None:
    site = site_config(metrics={"listen": METRICS})
    site["dhcp"].update(rogue_check_interval=1, rogue_check_wait=1)
    daemon = Daemon(lan.server, tmp_path, site).start()
    phones = [mac(0xA0 + i) for i in range(3)]
    with RawClient(lan.add_client(name="phones")) as raw:
        deadline = time.monotonic() + 10
        while len(daemon.wait_for("dhcp.rogue_check", 10)) < 3:  # our OFFERs fly during the probes
            assert len(raw.dora(phones)) == 3
            assert time.monotonic() < deadline
    assert [e for e in daemon.events() if e.get("event") == "dhcp.foreign_server"] == []
    assert sample(scrape(lan.server), FOREIGN) == 0.0
    # The probes went out at layer 2: our own server never saw (nor offered to) the probe's chaddr.
    assert {e["chaddr"] for e in daemon.events() if e.get("event") == "dhcp.offer"} == set(phones)

    rogue = rogue_host(lan)
    dnsmasq(rogue, tmp_path, "--no-ping")
    [found] = daemon.wait_for("dhcp.foreign_server", 10)
    assert (found["level"], found["server"], found["mac"]) == ("warning", ROGUE, rogue.mac("eth0"))
    assert (sample(scrape(lan.server), FOREIGN) or 0.0) >= 1.0
    assert daemon.proc is not None and daemon.proc.poll() is None  # still serving: it only warns
