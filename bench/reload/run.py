"""How long a SIGHUP reload takes with 50,000 leases (issue 5 target: under 1 s).

Times the same steps the service runs on SIGHUP: `check_site` (parse + validate), `Engine.reload` (new plan,
allocators rebuilt over the store) and `DnsServer.reload` (new zone, 50,000 lease A/PTR records carried over).
No sockets: run anywhere, `python bench/reload/run.py [--leases N]`.
"""

from __future__ import annotations

import argparse
import ipaddress
import resource
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from bootstrapd.config import check_site
from bootstrapd.dhcp.engine import Engine
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.store_sqlite import open_store
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.dns import DnsServer

SITE = {
    "site": "bench", "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"}, "domain": "staging.test",
    "dhcp": {"unknown_devices": "lease",
             "subnets": [{"prefix": "198.18.0.0/15", "pools": ["198.18.1.0-198.19.254.254"]}]},
    "dns": {"records": [{"name": "prov1", "type": "A", "value": "198.18.0.10"}]},
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--leases", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        site_path = Path(tmp) / "site.yaml"
        site_path.write_text(yaml.safe_dump(dict(SITE, state_dir=tmp)))
        site = check_site(str(site_path)).site
        assert site is not None
        store = open_store(tmp)
        now = time.time()
        first = int(ipaddress.IPv4Address("198.18.1.0"))
        for i in range(args.leases):
            store.put(Lease(address=ipaddress.IPv4Address(first + i), client_id=b"\x01" + i.to_bytes(6, "big"),
                            chaddr=i.to_bytes(6, "big"), state=LeaseState.BOUND, subnet="198.18.0.0/15",
                            expires=now + 3600, first_seen=now, updated=now))
        store.flush()
        engine = Engine(site, store)
        dns = DnsServer(site, Metrics())
        for i in range(args.leases):
            dns.lease_records.add(f"SEP{i:012X}", ipaddress.IPv4Address(first + i))
        times: dict[str, list[float]] = {"check_site": [], "engine.reload": [], "dns.reload": [], "total": []}
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            new = check_site(str(site_path)).site
            t1 = time.perf_counter()
            assert new is not None
            engine.reload(new)
            t2 = time.perf_counter()
            dns.reload(new)
            t3 = time.perf_counter()
            for key, spent in zip(times, (t1 - t0, t2 - t1, t3 - t2, t3 - t0), strict=True):
                times[key].append(spent)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"reload with {args.leases} leases ({args.rounds} rounds), max RSS {rss:.0f} MB")
        for k, v in times.items():
            print(f"  {k:<14} median {statistics.median(v) * 1000:7.1f} ms   max {max(v) * 1000:7.1f} ms")


if __name__ == "__main__":
    main()
