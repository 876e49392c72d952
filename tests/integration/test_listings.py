"""`bootstrapd leases`, `devices` and `report` read the databases of the running daemon in the lab."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.dhcp_client import RawClient, mac, packet
from tests.integration.test_dhcp_clients import need, udhcpc

SERVER = "198.18.0.1"


def site() -> dict[str, Any]:
    """The lab site; no other DHCP server here, so the start-up probe need not wait for slow ones."""
    config = site_config()
    config["dhcp"]["rogue_check_wait"] = 1
    return config


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=2)


def listing(daemon: Daemon, command: str, fmt: str) -> str:
    """The CLI as a user runs it beside the daemon: another process, the same site file."""
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", command, "-c", str(daemon.site_path), f"--{fmt}"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def devices(daemon: Daemon) -> dict[str, dict[str, Any]]:
    return {d["mac"]: d for d in json.loads(listing(daemon, "devices", "json"))}


def wait_devices(daemon: Daemon, expected: dict[str, str], timeout: float = 5.0) -> dict[str, dict[str, Any]]:
    """Poll until every MAC in `expected` shows its stage (the tracker writes once a second)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = devices(daemon)
        if all(seen.get(m, {}).get("stage") == stage for m, stage in expected.items()):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"expected stages {expected}, listed {seen}")
        time.sleep(0.2)


def test_leases_listed_as_json_and_csv_while_the_daemon_runs(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc")
    daemon = Daemon(lan.server, tmp_path, site()).start()
    client = lan.clients[0]
    env = udhcpc(client, tmp_path, "-V", "CP-8841-3PCC", "-x", "hostname:phone1")
    assert env, "udhcpc got no lease"
    client_mac = client.mac("eth0")

    rows = json.loads(listing(daemon, "leases", "json"))
    [row] = [r for r in rows if r["mac"] == client_mac]
    assert row["address"] == env["ip"]
    assert row["state"] == "bound"
    assert row["subnet"] == "198.18.0.0/23"
    assert row["hostname"] == "phone1"
    assert row["vendor_class"] == "CP-8841-3PCC"
    assert row["device_class"] == "mpp"
    assert row["client_id"].endswith(client_mac)  # udhcpc sends option 61 = 01:<mac>
    expires = time.mktime(time.strptime(row["expires"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(expires - (time.time() + 3600)) < 60

    csv_rows = list(csv.DictReader(io.StringIO(listing(daemon, "leases", "csv"))))
    assert [r for r in csv_rows if r["mac"] == client_mac] == [{k: v or "" for k, v in row.items()}]
    assert daemon.proc is not None and daemon.proc.poll() is None  # still serving


def test_devices_listed_with_the_furthest_stage_each_reached(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc", "dig")
    daemon = Daemon(lan.server, tmp_path, site()).start()
    phone, leased_only = lan.clients
    # The phone: lease, then SRV and the target's A record from its leased address, as MPP firmware does.
    assert udhcpc(phone, tmp_path, "-V", "CP-8841-3PCC", "-x", "hostname:SEP0A0B0C0D0E0F")
    for qname, qtype in (("_ciscoprov-http._tcp.staging.test", "SRV"), ("prov1.staging.test", "A")):
        out = phone.run(["dig", f"@{SERVER}", "+time=2", "+tries=1", "+short", qname, qtype]).stdout
        assert out.strip(), f"no answer to {qname} {qtype}"
    # A device that got a lease and looked nothing up.
    assert udhcpc(leased_only, tmp_path, "-V", "SomeLaptop")
    # A device that only sent a DISCOVER.
    offered_only = mac(0xD1)
    with RawClient(lan.add_client(name="scapy")) as raw:
        [offer] = raw.exchange([packet("discover", offered_only, vendor_class="CP-7841-3PCC")])
    assert offer.type == "offer"

    seen = wait_devices(daemon, {phone.mac("eth0"): "targets_resolved", leased_only.mac("eth0"): "leased",
                                 offered_only: "offered"})
    p = seen[phone.mac("eth0")]
    assert (p["class"], p["model"], p["hostname"]) == ("mpp", "CP-8841-3PCC", "SEP0A0B0C0D0E0F")
    assert p["address"] == phone.addresses("eth0")[0].split("/")[0]
    assert p["first_seen"] <= p["last_seen"]
    laptop = seen[leased_only.mac("eth0")]
    assert (laptop["class"], laptop["model"], laptop["vendor_class"]) == (None, None, "SomeLaptop")
    assert seen[offered_only]["address"] == offer.yiaddr
    assert seen[offered_only]["model"] == "CP-7841-3PCC"

    table = subprocess.run([sys.executable, "-m", "bootstrapd", "devices", "-c", str(daemon.site_path)],
                           capture_output=True, text=True, timeout=30, check=True).stdout.splitlines()
    assert table[0].split() == ["MAC", "ADDRESS", "CLASS", "MODEL", "VENDOR_CLASS", "HOSTNAME", "FIRST_SEEN",
                                "LAST_SEEN", "STAGE"]
    assert any(line.split()[0] == offered_only and line.split()[-1] == "offered" for line in table[1:])

    # The sign-off report is a view of the same table: nobody done yet, nobody stalled within seconds.
    report = json.loads(listing(daemon, "report", "json"))
    rows = {r["mac"]: r for r in report["devices"]}
    assert report["summary"]["seen"] == len(rows) >= 3 and report["summary"]["done"] == 0
    assert (rows[phone.mac("eth0")]["stage"], rows[phone.mac("eth0")]["state"]) == ("targets_resolved", "in_progress")
    assert rows[phone.mac("eth0")]["model"] == "CP-8841-3PCC" and rows[offered_only]["stage"] == "offered"
    assert rows[offered_only]["address"] == offer.yiaddr

    # Stages survive a restart (flushed at stop), and DNS attribution too: the phone is still known by address.
    daemon.stop()
    daemon.start()
    assert devices(daemon)[phone.mac("eth0")]["stage"] == "targets_resolved"
