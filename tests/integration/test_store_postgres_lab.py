"""The real daemon on the PostgreSQL store: two nodes serving one staging LAN from one database, and a
database outage that the daemon rides out (no reply without a durable lease, then it reconnects).

The database is the session's throwaway cluster (a unix socket in a private directory: the namespaces
share the file system, not the network), one schema per test.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.dns import lease_name
from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.test_dhcp_clients import need, udhcpc
from tests.integration.test_service import METRICS, sample, scrape

SECOND = "198.18.0.2"


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=3)


def node_site(dsn: str, node: str, address: str, partners: list[str], rogue_wait: int = 0,
              **overrides: Any) -> dict[str, Any]:  # fmt: skip
    site = site_config(store={"backend": "postgresql", "dsn": dsn, "node": node, "partners": partners}, **overrides)
    site["listen"]["address"] = address
    site["dhcp"]["rogue_check_wait"] = rogue_wait
    return site


def leases(daemon: Daemon) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", "leases", "-c", str(daemon.site_path), "--json"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    rows: list[dict[str, Any]] = json.loads(proc.stdout)
    return rows


def test_two_nodes_share_one_store_and_never_hand_out_one_address_twice(
    lan: StagingLan, tmp_path: Path, pg_dsn: str
) -> None:
    need("udhcpc")
    second = lan.lab.host("server2")
    lan.lab.attach(second, lan.stg0, "stg0", addr=f"{SECOND}/23")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Daemon(lan.server, tmp_path / "a", node_site(pg_dsn, "floor-a", "198.18.0.1", [SECOND])).start()
    # b's start-up probe hears a's OFFER: a partner, not a rogue server, so b serves.
    b = Daemon(second, tmp_path / "b", node_site(pg_dsn, "floor-b", SECOND, ["198.18.0.1"], rogue_wait=1)).start()
    got = [udhcpc(client, tmp_path, "-V", "CP-8841-3PCC") for client in lan.clients]
    addresses = [env["ip"] for env in got]
    assert all(addresses) and len(set(addresses)) == len(addresses), addresses
    bound = {row["address"]: row for row in leases(a) if row["state"] == "bound"}
    assert set(addresses) <= set(bound)
    assert {env["serverid"] for env in got} <= {"198.18.0.1", SECOND}
    assert leases(b) == leases(a)  # one store, whichever node's site file the CLI reads
    # Each node's DNS publishes every lease, whichever node granted it (b learns a's from the store).
    for row in bound.values():
        name = f"{lease_name(row['hostname'], row['mac'])}.staging.test"
        for server in ("198.18.0.1", SECOND):
            assert resolve(lan.clients[0], server, name) == row["address"], (server, name)
    assert a.stop() == 0 and b.stop() == 0


def resolve(client: Host, server: str, name: str, timeout: float = 5.0) -> str:
    """The A record `server` gives for `name`, waiting for it to appear (the store's idle pull is 1 s)."""
    deadline = time.monotonic() + timeout
    while True:
        out = client.run(["dig", "+short", "+time=1", "+tries=1", f"@{server}", name, "A"], check=False).stdout.strip()
        if out or time.monotonic() > deadline:
            return out
        time.sleep(0.2)


def test_the_daemon_rides_out_a_database_outage(lan: StagingLan, tmp_path: Path, pg_cluster: Any,
                                                pg_dsn: str) -> None:  # fmt: skip
    need("udhcpc")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify.sock"))
    notify.settimeout(10)
    daemon = Daemon(lan.server, tmp_path, node_site(pg_dsn, "floor-a", "198.18.0.1", [], metrics={"listen": METRICS}))
    os.environ["NOTIFY_SOCKET"] = str(tmp_path / "notify.sock")
    try:
        daemon.start()
    finally:
        del os.environ["NOTIFY_SOCKET"]
    try:
        assert notify.recv(4096).decode().startswith("READY=1\nSTATUS=site lab")
        assert sample(scrape(lan.server), "bootstrapd_store_up") == 1
        assert udhcpc(lan.clients[0], tmp_path, "-V", "CP-8841-3PCC")["ip"]
        pg_cluster.stop()
        try:
            assert udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC", timeout=10) == {}  # no durable lease
            daemon.wait_for("dhcp.store_unreachable", timeout=5)
            # Down: the log, the metric and systemd's status line say so; DISCOVERs are not answered.
            assert notify.recv(4096).decode() == "STATUS=store unreachable: new addresses paused; site lab: " \
                "DHCP on stg0:67, DNS 198.18.0.1:53 for staging.test"
            assert sample(text := scrape(lan.server), "bootstrapd_store_up") == 0
            assert sample(text, "bootstrapd_dhcp_drops_total", reason="store_down")
            drops = {e["reason"] for e in daemon.events() if e.get("event") == "dhcp.drop"}
            assert drops <= {"store_failed", "store_down"} and "store_failed" in drops
        finally:
            pg_cluster.start()
        daemon.wait_for("dhcp.store_reconnected", timeout=30)
        assert notify.recv(4096).decode().startswith("STATUS=site lab")
        assert sample(scrape(lan.server), "bootstrapd_store_up") == 1
        assert udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC")["ip"]
        assert daemon.stop() == 0
    finally:
        notify.close()
