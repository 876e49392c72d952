"""Two bootstrapd nodes on one PostgreSQL store against one node on it: is the pair no slower than one?

    python bench/dhcp/twonode.py [--rate 1500] [--clients 3000] [--limit 20]

As root. One throwaway PostgreSQL cluster (tests/pgcluster.py: fsync on, unix socket only). Node a in
namespace server-a (198.18.0.1) with perfdhcp in client-a, node b in server-b (198.18.0.3) with its own
perfdhcp in client-b; each pair is one veth, so each perfdhcp talks to its own node only, and the nodes meet
only in the database (one pool, one table: every address either node hands out is a conditional write the
other one may race). Runs, each on a fresh database:
  one  node a alone, perfdhcp at --rate;
  two  nodes a and b at once, each perfdhcp at --rate with its own --clients MACs (twice the offered load).
No CPU pinning: with 2 CPUs, two daemons, two perfdhcp and PostgreSQL share them (the report says so).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from load import Stats, pct, perfdhcp, wait_answering
from servers import LEASE_TIME, PG, POOL_FIRST, POOL_LAST, SUBNET, fresh_database

from bootstrapd.lab import Host, Lab, lab_available, stop_process

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tests import pgcluster

NODES = {"a": ("198.18.0.1", "00:0c:01:00:00:00"), "b": ("198.18.0.3", "00:0c:02:00:00:00")}
CLIENT_IP = "198.18.0.2"
METRICS = "127.0.0.1:9267"  # in each server namespace


def lost_races(server: Host) -> int:
    """bootstrapd_dhcp_drops_total{reason="lost_race"} of the node in `server`."""
    url = f"http://{METRICS}/metrics"
    code = f"import urllib.request; print(urllib.request.urlopen('{url}', timeout=5).read().decode())"
    text = server.run([sys.executable, "-c", code], timeout=15).stdout
    for row in text.splitlines():
        if row.startswith('bootstrapd_dhcp_drops_total{reason="lost_race"}'):
            return int(float(row.split()[-1]))
    return 0


def site(work: Path, node: str, dsn: str) -> Path:
    address = NODES[node][0]
    partner = [a for n, (a, _) in NODES.items() if n != node]
    doc = {
        "site": "bench", "listen": {"interfaces": ["eth0"], "address": address}, "domain": "bench.example.net",
        "state_dir": str(work / node),
        "dhcp": {"authoritative": True, "lease_time": LEASE_TIME, "unknown_devices": "lease",
                 "subnets": [{"prefix": SUBNET, "pools": [f"{POOL_FIRST}-{POOL_LAST}"], "router": "198.18.0.1"}]},
        "store": {"backend": "postgresql", "dsn": dsn, "node": f"bench-{node}", "partners": partner},
        "logging": {"format": "json", "level": "warning"},
        "metrics": {"listen": METRICS},
    }  # fmt: skip
    path = work / f"{node}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def start(server: Host, client: Host, node: str, work: Path, dsn: str) -> subprocess.Popen[Any]:
    argv = [sys.executable, "-m", "bootstrapd", "run", "-c", str(site(work, node, dsn))]
    with open(work / f"{node}.log", "w") as log:
        proc = server.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    wait_answering(client, proc, server=NODES[node][0])
    return proc


def run(hosts: dict[str, tuple[Host, Host]], nodes: list[str], args: argparse.Namespace, root: Path,
        label: str) -> list[str]:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=f"{label}-", dir=root))
    dsn = f"host={PG['host']} port=5432 user=bootstrapd dbname={fresh_database(work)}"
    procs = {n: start(*hosts[n], n, work, dsn) for n in nodes}
    try:
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            futures = {n: pool.submit(perfdhcp, hosts[n][1], args.clients, args.rate, base_mac=NODES[n][1],
                                      limit_s=args.limit, pin=None, server=NODES[n][0]) for n in nodes}
            stats = {n: f.result() for n, f in futures.items()}
        races = sum(lost_races(hosts[n][0]) for n in nodes)
    finally:
        for proc in procs.values():
            stop_process(proc)
    rows = [line(label, n, args.rate, s) for n, s in stats.items()]
    return [*rows, total(label, args.rate, list(stats.values()), races)]


def line(label: str, node: str, offered: int, s: Stats) -> str:
    ra = s.delays.get("RA", [])
    return (f"| {label:<4} | {node:<5} | {offered:>7} | {s.rate:>7.0f} | {s.completed:>6} | {s.lost:>5} | "
            f"{pct(ra, .5) or 0:>6.2f} | {pct(ra, .99) or 0:>7.2f} |")


def total(label: str, offered: int, stats: list[Stats], lost_race: int) -> str:
    """The pair's rate: the sum of each run's DORA/s (the runs overlap: both start together)."""
    return (f"| {label:<4} | total | {offered * len(stats):>7} | {sum(s.rate for s in stats):>7.0f} | "
            f"{sum(s.completed for s in stats):>6} | {sum(s.lost for s in stats):>5} | lost_race drops {lost_race} |")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rate", type=int, default=1500, help="offered DORA/s per perfdhcp")
    p.add_argument("--clients", type=int, default=3000, help="new clients per perfdhcp")
    p.add_argument("--limit", type=float, default=20.0, help="seconds one perfdhcp run may last")
    args = p.parse_args(argv)
    ok, reason = lab_available()
    if not ok:
        sys.exit(f"bench/dhcp/twonode: cannot build the lab: {reason}")
    with tempfile.TemporaryDirectory(prefix="bench-twonode-", dir="/var/tmp") as tmp, Lab() as lab, \
            pgcluster.cluster(fsync=True) as cluster:
        PG["host"] = cluster.base
        hosts = {}
        for n, (address, _) in NODES.items():
            server, client = lab.host(f"server-{n}"), lab.host(f"client-{n}")
            lab.link(server, client, "eth0", "eth0", f"{address}/16", f"{CLIENT_IP}/16")
            hosts[n] = (server, client)
        print("| run  | node  | offered |  DORA/s |  acked |  lost | RA p50 |  RA p99 |")
        print("|------|-------|--------:|--------:|-------:|------:|-------:|--------:|")
        t0 = time.monotonic()
        for label, nodes in (("one", ["a"]), ("two", ["a", "b"])):
            print("\n".join(run(hosts, nodes, args, Path(tmp), label)), flush=True)
    print(f"\ntotal {time.monotonic() - t0:.0f}s; machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
