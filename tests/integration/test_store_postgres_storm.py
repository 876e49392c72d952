"""The duplicate-address proof: two bootstrapd nodes on one staging LAN, one PostgreSQL in a namespace of its
own (TCP over a veth per node; `tc netem` delay 2 ms where the kernel has sch_netem), twice as many clients
as addresses with 30 s leases (renew, rebind, release, vanish and reboot mixes), and faults while the storm
runs: SIGKILL of either node (and its restart), a PostgreSQL restart, one node's database link cut (netem
loss 100 %, or link down without netem) and restored. The checker (tests/integration/storm.py) over every
ACK the clients saw finds no address held by two clients at overlapping times. Negative control: the
store's race guard switched off (a test hook: the daemon run with the unguarded statement the unit race
test uses), and the checker finds an address held twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("BOOTSTRAPD_REQUIRE_LAB") != "1":  # CI: a missing driver fails, never skips
    pytest.importorskip("psycopg")

from bootstrapd.lab import Host, Lab, staging_lan
from tests import pgcluster
from tests.integration.daemon import Daemon, site_config
from tests.integration.storm import duplicates

A, B = "198.18.0.1", "198.18.0.2"
DB_A, DB_B = "198.18.4.1", "198.18.4.5"  # the database's end of each node's link
POOL = 24
CLIENTS = 2 * POOL
# One pool of POOL addresses, its halves in opposite order on the two nodes: twins fed the same broadcasts
# would otherwise pick the same address for the same client, and only a lagging mirror would make them race.
def pools(size: int) -> list[str]:
    return [f"198.18.0.100-198.18.0.{99 + size // 2}", f"198.18.0.{100 + size // 2}-198.18.0.{99 + size}"]


# The negative control's floor: a bigger rush, more crossing choices, a double grant in nearly every rush.
CONTROL_POOL = 96
REPO = Path(__file__).resolve().parents[2]
# The negative control's daemon: the store writes without its version check (the unit race test's switch)
# and pulls nothing of the other node's writes (its pull joins no row), so the two nodes, blind to each
# other, must come to grant one address twice once their pool orders cross: the checker has to see it.
UNGUARDED = ("-c", "import sys; import bootstrapd.dhcp.store_postgres_sql as s; s.WRITE = s.WRITE_UNGUARDED; "
             "s.PULL = s.PULL.replace(' ON l.txid', ' ON false AND l.txid'); "
             "from bootstrapd.cli import main; sys.argv[0] = 'bootstrapd'; sys.exit(main())")


class UnguardedDaemon(Daemon):
    python_args = UNGUARDED


@dataclass
class Floor:
    lab: Lab
    nodes: dict[str, Daemon]
    db: Host
    cluster: pgcluster.Cluster
    client: Host
    macs: dict[str, str]


def site(dsn: str, node: str, address: str, partner: str, pools: list[str]) -> dict[str, Any]:
    s = site_config(store={"backend": "postgresql", "dsn": dsn, "node": node, "partners": [partner]},
                    logging={"format": "json", "level": "info"})
    s["listen"]["address"] = address
    s["dhcp"]["lease_time"] = "30s"
    s["dhcp"]["subnets"] = [{"prefix": "198.18.0.0/23", "pools": pools, "router": "198.18.0.1"}]
    return s


@contextmanager
def floor(lab: Lab, tmp_path: Path, daemon: type[Daemon] = Daemon, size: int = POOL) -> Iterator[Floor]:
    lan = staging_lan(lab, clients=1)
    server2 = lab.host("server2")
    lab.attach(server2, lan.stg0, "stg0", addr=f"{B}/23")
    db = lab.host("db")
    lab.link(lan.server, db, "dbl", "dba", f"{DB_A[:-1]}2/30", f"{DB_A}/30")
    lab.link(server2, db, "dbl", "dbb", f"{DB_B[:-1]}6/30", f"{DB_B}/30")
    for host, ifname in ((lan.server, "dbl"), (server2, "dbl"), (db, "dba"), (db, "dbb")):
        # A kernel without sch_netem (some CI and container kernels) gets no delay, and cuts by link down.
        host.run(["tc", "qdisc", "add", "dev", ifname, "root", "netem", "delay", "2ms", "1ms"], check=False)
    with pgcluster.cluster(netns=db.netns, listen=f"{DB_A},{DB_B}") as cluster:
        dsn = "port=5432 user=bootstrapd dbname=postgres connect_timeout=2"
        nodes = {}
        for name, host, addr, partner, db_addr, ranges in (("a", lan.server, A, B, DB_A, pools(size)),
                                                           ("b", server2, B, A, DB_B, pools(size)[::-1])):
            (tmp_path / name).mkdir()
            dsn_node = f"host={db_addr} {dsn}"
            nodes[name] = daemon(host, tmp_path / name, site(dsn_node, f"floor-{name}", addr, partner, ranges))
        try:
            for d in nodes.values():
                d.start()
            macs = {A: lan.server.mac("stg0"), B: server2.mac("stg0")}
            yield Floor(lab, nodes, db, cluster, lan.clients[0], macs)
        finally:
            for d in nodes.values():
                d.stop()


def storm(f: Floor, seconds: float, faults: list[tuple[float, Callable[[], None]]], seed: int = 7,
          clients: int = CLIENTS) -> list[list[Any]]:  # fmt: skip
    """Run the clients for `seconds`, applying each fault at its time; every ACK, NAK and RELEASE seen."""
    proc = f.client.popen([sys.executable, "-m", "tests.integration.storm", "eth0", str(clients), str(seconds),
                           json.dumps(f.macs), str(seed)], stdout=subprocess.PIPE, text=True, cwd=str(REPO),
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": True}
        t0 = time.monotonic()
        for at, fault in faults:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            fault()
        out, _ = proc.communicate(timeout=seconds + 30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    events: list[list[Any]] = json.loads(out)
    return events


def restart(d: Daemon) -> Callable[[], None]:
    def start() -> None:
        d.start(timeout=20)
    return start


def sigkill(d: Daemon) -> Callable[[], None]:
    return lambda: d.signal(signal.SIGKILL)


def has_netem(host: Host, ifname: str) -> bool:
    return "netem" in host.run(["tc", "qdisc", "show", "dev", ifname]).stdout


def cut(host: Host, ifname: str) -> Callable[[], None]:
    """The link silently loses everything (netem loss 100%), or without netem goes down."""
    def change() -> None:
        if has_netem(host, ifname):
            host.run(["tc", "qdisc", "change", "dev", ifname, "root", "netem", "loss", "100%"])
        else:
            host.ip("link", "set", ifname, "down")
    return change


def mend(host: Host, ifname: str) -> Callable[[], None]:
    def change() -> None:
        if has_netem(host, ifname):
            host.run(["tc", "qdisc", "change", "dev", ifname, "root", "netem", "delay", "2ms", "1ms"])
        else:
            host.ip("link", "set", ifname, "up")
    return change


def all_events(d: Daemon) -> list[str]:
    """Every event the daemon logged, across its restarts."""
    out = []
    for line in d.log_path.read_text().splitlines():
        try:
            out.append(json.loads(line).get("event", ""))
        except json.JSONDecodeError:
            continue
    return out


def acks(events: list[list[Any]]) -> list[list[Any]]:
    return [e for e in events if e[0] == "ack"]


def test_no_address_is_held_twice_while_nodes_die_and_the_database_goes_away(lab: Lab, tmp_path: Path) -> None:
    if pgcluster.initdb_path() is None:
        pytest.skip("no PostgreSQL server binaries (Debian package postgresql)")
    with floor(lab, tmp_path) as f:
        a, b = f.nodes["a"], f.nodes["b"]
        db_b = f.lab.hosts["server2"]
        events = storm(f, 32, [
            (3, sigkill(a)), (5, restart(a)),
            (10, f.cluster.stop), (11, f.cluster.start),
            (16, cut(db_b, "dbl")), (16, cut(f.db, "dbb")),
            (22, mend(db_b, "dbl")), (22, mend(f.db, "dbb")),
            (25, sigkill(b)), (26, restart(b)),
        ])
        assert a.proc is not None and a.proc.poll() is None and b.proc is not None and b.proc.poll() is None
        b_events = all_events(b)
    got = acks(events)
    assert len(got) >= POOL, f"only {len(got)} ACKs: the storm did not run"
    assert len({e[1] for e in got}) > POOL, "no address changed hands"
    assert {e[2] for e in got} <= {f"198.18.0.{100 + i}" for i in range(POOL)}
    assert duplicates(events) == []
    print(f"{len(got)} ACKs to {len({e[1] for e in got})} clients; {len(events) - len(got)} NAKs and RELEASEs")
    # b noticed its cut link, paused and came back (while a kept serving).
    assert "dhcp.store_unreachable" in b_events and "dhcp.store_reconnected" in b_events


def test_the_checker_finds_duplicates_when_the_race_guard_is_off(lab: Lab, tmp_path: Path) -> None:
    if pgcluster.initdb_path() is None:
        pytest.skip("no PostgreSQL server binaries (Debian package postgresql)")
    # Blind and unguarded, the nodes grant addresses twice in the first rush; the further rushes (each on an
    # empty store) are a margin, not a need.
    with floor(lab, tmp_path, UnguardedDaemon, size=CONTROL_POOL) as f:
        for attempt in range(6):
            if attempt:
                empty_store(f)
            events = storm(f, 4, [], seed=attempt, clients=2 * CONTROL_POOL)
            assert len(acks(events)) >= CONTROL_POOL // 2
            if duplicates(events):
                break
    print(f"{len(duplicates(events))} duplicate holdings without the race guard (rush {attempt + 1})")
    assert duplicates(events), "the race guard off, yet no address was held twice: the checker cannot fail"


def empty_store(f: Floor) -> None:
    """Both nodes stopped, every lease deleted, both started again: a fresh floor on the same lab."""
    import psycopg

    for d in f.nodes.values():
        d.stop()
    with psycopg.connect(f.cluster.dsn, autocommit=True) as conn:
        conn.execute("DELETE FROM bootstrapd_leases")
    for d in f.nodes.values():
        d.start()
