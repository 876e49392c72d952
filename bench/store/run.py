"""DORA/s of the engine in-process on each lease store, and the store's round trips per burst.

    PYTHONPATH=. python bench/store/run.py [--clients 4096] [--burst 64]

SQLite in a temporary directory (synchronous=FULL, as the daemon runs it) against PostgreSQL on a throwaway
local cluster over a unix socket (fsync on, synchronous_commit on: the same promise, durable before the ACK).
Each burst: DISCOVERs of `burst` clients, one flush, their REQUESTs, one flush; as the shell does it.
Run by hand, never by CI; the numbers depend on the disk and the machine's load.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "unit"))

from fake_client import FakeClient, make_site

from bootstrapd.dhcp.codec import MessageType, build, parse
from bootstrapd.dhcp.engine import Engine, Reply, Rx
from bootstrapd.dhcp.leases import LeaseStore


def run(store: LeaseStore, tmp: Path, clients: int, burst: int) -> tuple[float, int]:
    site = make_site(tmp, {"dhcp": {"subnets": [
        {"prefix": "198.18.0.0/16", "pools": ["198.18.1.0-198.18.255.250"], "router": "198.18.0.1"}]}})
    engine = Engine(site, store)
    rx = Rx("stg0", site.listen.address, site.listen.address.__class__(0), 68, True)
    devices = [FakeClient(None, mac=f"00:56:2b:{n >> 16 & 255:02x}:{n >> 8 & 255:02x}:{n & 255:02x}")  # type: ignore[arg-type]
               for n in range(clients)]
    now = 1_700_000_000.0
    acks = 0
    t0 = time.perf_counter()
    for start in range(0, clients, burst):
        group = devices[start:start + burst]
        offers = [engine.handle(parse(build(d.message(MessageType.DISCOVER), 1400)), rx, now) for d in group]
        store.flush()
        requests = [d.message(MessageType.REQUEST, requested=o.message.yiaddr, server_id=o.message.server_id)
                    for d, o in zip(group, offers, strict=True) if isinstance(o, Reply)]
        out = [engine.handle(parse(build(m, 1400)), rx, now) for m in requests]
        store.flush()
        acks += sum(1 for o in out if isinstance(o, Reply) and o.msg_type is MessageType.ACK)
        now += 0.01
    return time.perf_counter() - t0, acks


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clients", type=int, default=4096)
    ap.add_argument("--burst", type=int, default=64)
    args = ap.parse_args()
    bursts = 2 * -(-args.clients // args.burst)
    with tempfile.TemporaryDirectory() as tmp:
        from bootstrapd.dhcp.store_sqlite import open_store

        store = open_store(Path(tmp) / "state")
        took, acks = run(store, Path(tmp), args.clients, args.burst)
        store.close()
        print(f"sqlite      {acks} ACKs in {took:.2f}s: {acks / took:7.0f} DORA/s ({bursts} flushes)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from bootstrapd.dhcp.store_postgres import open_postgres_store
    from tests import pgcluster

    with pgcluster.cluster(fsync=True) as cluster, pgcluster.schema(cluster.dsn) as dsn, \
            tempfile.TemporaryDirectory() as tmp:
        pg = open_postgres_store(dsn, "bench")
        trips = pg.round_trips
        took, acks = run(pg, Path(tmp), args.clients, args.burst)
        trips = pg.round_trips - trips
        pg.close()
        print(f"postgresql  {acks} ACKs in {took:.2f}s: {acks / took:7.0f} DORA/s ({bursts} flushes, "
              f"{trips} round trips: {trips / bursts:.2f} per flush)")


if __name__ == "__main__":
    main()
