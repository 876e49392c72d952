"""Boot storm: 1,000 simulated MPP phones powered on within one second against one bootstrapd.

    python bench/bootstorm/run.py [--phones 1000] [--spread 1] [--runs 3] [--discovery option160,option66,srv]
                                  [--json results.json]

As root (network namespaces). Per run: a fresh lab (bootstrapd, the lab provisioning server, one namespace
sending as every phone, `bootstrapd simulate`), phones powered on at uniform random times within
`--spread` seconds, RFC 2131 retransmission (4 s, doubling). Measured from the first power-on: the time
until every phone is leased, and until every phone has fetched its profile. Checked: no address given
twice, both in the phones' reports and in bootstrapd's own `dhcp.ack` log.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bootstrapd.lab import Lab, lab_available
from bootstrapd.sim.floor import Floor
from bootstrapd.sim.report import PhoneReport, Stage

PREFIX = 21  # 198.18.0.0/21: 2,048 addresses
POOL = "198.18.1.0-198.18.7.250"
DISCOVERY = {
    "option160": ({"provisioning_url": "http://prov1.staging.example.net/$PSN.xml"}, []),
    "option66": ({"tftp_server": "198.18.0.10"}, []),
    "srv": ({}, [{"service": "_ciscoprov-https._tls",
                  "targets": [{"target": "prov1", "port": 443, "priority": 10, "weight": 0},
                              {"target": "prov2", "port": 443, "priority": 20, "weight": 0}]}]),
}


def site(discovery: str) -> dict[str, Any]:
    options, srv = DISCOVERY[discovery]
    return {
        "site": "bootstorm",
        "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
        "domain": "staging.example.net",
        "dhcp": {
            "unknown_devices": "lease",
            "rogue_check_wait": 0,
            "options": {"dns_servers": ["198.18.0.1"]},
            "subnets": [{"prefix": f"198.18.0.0/{PREFIX}", "pools": [POOL], "router": "198.18.0.1"}],
            "classes": [{"name": "mpp", "match": {"vendor_class": ["CP-*-3PCC"]}, "options": options}]
            if options else [],
        },
        "dns": {"records": [{"name": "prov1", "type": "A", "value": "198.18.0.10"},
                            {"name": "prov2", "type": "A", "value": "198.18.0.11"}], "srv": srv},
    }


@dataclass
class Result:
    discovery: str
    phones: int
    powered_on_within: float  # s, first to last power-on
    all_leased: float  # s from the first power-on
    all_fetched: float
    dora_p50: float  # s, one phone's power-on to ACK
    dora_p99: float
    fetch_p50: float  # s, one phone's ACK to profile (address set-up, DNS, HTTP/TFTP)
    fetch_p99: float
    leased: int
    fetched: int
    distinct_addresses: int
    acks_reusing_an_address: int  # in bootstrapd's log: an address ACKed to two MACs
    discovers: int
    requests: int
    naks: int
    daemon_drops: dict[str, int]
    stuck: dict[str, int]
    wall: float  # s, the whole simulate run incl. process start


def run_once(discovery: str, phones: int, spread: float, seed: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="bootstrapd-storm-") as tmp, Lab() as lab:
        floor = Floor(lab, Path(tmp), prefixlen=PREFIX)
        daemon = floor.start_daemon(site(discovery))
        floor.start_prov()
        t0 = time.monotonic()
        reports = floor.simulate(phones, "--seed", str(seed), "--spread", str(spread), timeout=120)
        wall = time.monotonic() - t0
        events = daemon.events()
        daemon.stop()
    return summarise(discovery, reports, events, wall)


def summarise(discovery: str, reports: list[PhoneReport], events: list[dict[str, Any]], wall: float) -> Result:
    on = [r.powered_at or 0.0 for r in reports]
    first = min(on)
    leased = [(r.powered_at or 0.0) + r.dhcp_seconds - first for r in reports if r.dhcp_seconds is not None]
    fetched = [(r.powered_at or 0.0) + (r.seconds or 0.0) - first for r in reports if r.stage is Stage.FETCHED]
    owners: dict[str, set[str]] = collections.defaultdict(set)
    for e in events:
        if e.get("event") == "dhcp.ack" and e.get("address"):
            owners[e["address"]].add(e["chaddr"])
    drops = collections.Counter(e.get("reason", "?") for e in events if e.get("event") == "dhcp.drop")
    stuck = collections.Counter(f"{r.stage.value}: {r.reason}" for r in reports if r.stage is not Stage.FETCHED)
    inf = float("inf")
    dora = [r.dhcp_seconds for r in reports if r.dhcp_seconds is not None]
    after = [(r.seconds or 0.0) - (r.dhcp_seconds or 0.0) for r in reports if r.stage is Stage.FETCHED]
    return Result(
        discovery, len(reports), max(on) - first,
        max(leased) if len(leased) == len(reports) else inf,
        max(fetched) if len(fetched) == len(reports) else inf,
        *_p50_p99(dora), *_p50_p99(after),
        len(leased), len(fetched), len({r.address for r in reports if r.address}),
        sum(1 for macs in owners.values() if len(macs) > 1),
        sum(r.discovers for r in reports), sum(r.requests for r in reports), sum(r.naks for r in reports),
        dict(drops), dict(stuck), wall)


def _p50_p99(values: list[float]) -> tuple[float, float]:
    if not values:
        return float("inf"), float("inf")
    s = sorted(values)
    return statistics.median(s), s[min(len(s) - 1, int(len(s) * 0.99))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phones", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0, help="power-on window in seconds")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--discovery", default="option160,option66,srv", help="comma-separated: " + ",".join(DISCOVERY))
    p.add_argument("--json", type=Path, help="write every run's figures here")
    args = p.parse_args(argv)
    ok, reason = lab_available()
    if not ok:
        print(f"cannot build the lab: {reason}", file=sys.stderr)
        return 2
    results: list[Result] = []
    print(f"{'discovery':<10} {'run':>3} {'on within':>9} {'all leased':>10} {'all fetched':>11} "
          f"{'DORA p50/p99':>13} {'fetch p50/p99':>13} {'leased':>6} {'fetched':>7} {'distinct':>8} {'reused':>6} "
          f"{'DISC':>5} {'REQ':>5}")
    for discovery in args.discovery.split(","):
        for run in range(args.runs):
            r = run_once(discovery, args.phones, args.spread, seed=run + 1)
            results.append(r)
            print(f"{r.discovery:<10} {run + 1:>3} {r.powered_on_within:8.2f}s {r.all_leased:9.2f}s "
                  f"{r.all_fetched:10.2f}s {r.dora_p50:6.2f}/{r.dora_p99:.2f}s {r.fetch_p50:6.2f}/{r.fetch_p99:.2f}s "
                  f"{r.leased:>6} {r.fetched:>7} {r.distinct_addresses:>8} {r.acks_reusing_an_address:>6} "
                  f"{r.discovers:>5} {r.requests:>5}", flush=True)
            for reason, count in list(r.stuck.items())[:3]:
                print(f"    stuck ({count}): {reason}")
            if r.daemon_drops:
                print(f"    bootstrapd drops: {r.daemon_drops}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    bad = [r for r in results if r.fetched != r.phones or r.distinct_addresses != r.leased
           or r.acks_reusing_an_address]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
