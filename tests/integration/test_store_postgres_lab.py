"""The real daemon on the PostgreSQL store: two nodes serving one staging LAN from one database, and a
database outage that the daemon rides out (no reply without a durable lease, then it reconnects).

The database is the session's throwaway cluster (a unix socket in a private directory: the namespaces
share the file system, not the network), one schema per test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.test_dhcp_clients import need, udhcpc

SECOND = "198.18.0.2"


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=3)


def node_site(dsn: str, node: str, address: str, partners: list[str], rogue_wait: int = 0) -> dict[str, Any]:
    site = site_config(store={"backend": "postgresql", "dsn": dsn, "node": node, "partners": partners})
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
    assert a.stop() == 0 and b.stop() == 0


def test_the_daemon_rides_out_a_database_outage(lan: StagingLan, tmp_path: Path, pg_cluster: Any,
                                                pg_dsn: str) -> None:  # fmt: skip
    need("udhcpc")
    daemon = Daemon(lan.server, tmp_path, node_site(pg_dsn, "floor-a", "198.18.0.1", [])).start()
    assert udhcpc(lan.clients[0], tmp_path, "-V", "CP-8841-3PCC")["ip"]
    pg_cluster.stop()
    try:
        assert udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC", timeout=10) == {}  # no durable lease
        drops = [e for e in daemon.events() if e.get("event") == "dhcp.drop"]
        assert drops and {e["reason"] for e in drops} == {"store_failed"}
        daemon.wait_for("dhcp.store_unreachable", timeout=5)
    finally:
        pg_cluster.start()
    daemon.wait_for("dhcp.store_reconnected", timeout=30)
    assert udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC")["ip"]
    assert daemon.stop() == 0
