"""The servers under test: how each one is configured, started, and preloaded with leases.

Each setup function writes the server's configuration into a fresh work directory (copying a preloaded
lease store in, if given) and returns the argv that runs the server in the foreground.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from bootstrapd.dhcp.leases import Lease, LeaseState, client_identity
from bootstrapd.dhcp.store_sqlite import DB_NAME, open_store

SERVER_IP, CLIENT_IP = "198.18.0.1", "198.18.0.2"
SUBNET = "198.18.0.0/16"
POOL_FIRST, POOL_LAST = "198.18.0.10", "198.18.255.250"
LEASE_TIME = 3600
PRELOAD_OUI = (0x02, 0xAA)  # preloaded clients: 02:aa:00:xx:xx:xx, never one of perfdhcp's
SERVERS = ("bootstrapd", "bootstrapd-w1", "bootstrapd-w2", "kea", "kea-mt", "dnsmasq", "bootstrapd-pg",
           "kea-pg")
PG_SERVERS = ("bootstrapd-pg", "kea-pg")
# The PostgreSQL cluster of the -pg servers (run.py starts it: unix socket only, fsync on): its socket
# directory. Each run gets a database of its own.
PG: dict[str, str] = {"host": ""}
DEFAULT_SERVERS = ("bootstrapd", "kea", "dnsmasq")


# -- preloaded leases -----------------------------------------------------------------------------------
def preload_clients(n: int) -> list[tuple[str, bytes, str]]:
    """(mac text, mac bytes, address) of n clients bound to the first n pool addresses."""
    first = int(ipaddress.IPv4Address(POOL_FIRST))
    out = []
    for i in range(n):
        mac = bytes((*PRELOAD_OUI, 0, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
        out.append((mac.hex(":"), mac, str(ipaddress.IPv4Address(first + i))))
    return out


def preload_bootstrapd(state_dir: Path, n: int, now: float) -> None:
    store = open_store(state_dir)
    try:
        for _, mac, addr in preload_clients(n):
            store.put(Lease(address=ipaddress.IPv4Address(addr), client_id=client_identity(None, 1, mac),
                            chaddr=mac, state=LeaseState.BOUND, subnet=SUBNET, expires=now + LEASE_TIME,
                            first_seen=now, updated=now))
        store.flush()
    finally:
        store.close()
    with sqlite3.connect(state_dir / DB_NAME) as conn:  # fold the WAL in: each copy starts clean
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def preload_kea(csv: Path, n: int, now: float) -> None:
    lines = ["address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,"
             "user_context"]
    expire = int(now) + LEASE_TIME
    lines += [f"{addr},{mac},01:{mac},{LEASE_TIME},{expire},1,0,0,,0," for mac, _, addr in preload_clients(n)]
    csv.write_text("\n".join(lines) + "\n")


def preload_dnsmasq(path: Path, n: int, now: float) -> None:
    expire = int(now) + LEASE_TIME
    path.write_text("".join(f"{expire} {mac} {addr} * 01:{mac}\n" for mac, _, addr in preload_clients(n)))


# -- servers --------------------------------------------------------------------------------------------
@dataclass
class Server:
    """How to prepare state for, and start, one DHCP server in `work` (a fresh directory per run)."""

    name: str
    setup: Callable[[Path, Path | None], list[str]]  # (work, preloaded template or None) -> argv
    preload: Callable[[Path, int, float], None]  # (template path, n, now)
    template_is_dir: bool = False


def fresh_database(work: Path) -> str:
    """A new, empty database on the bench cluster for one run; its name."""
    import psycopg

    name = "bench_" + work.name.replace("-", "_").lower()[:50]
    with psycopg.connect(f"host={PG['host']} port=5432 user=bootstrapd dbname=postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return name


def bootstrapd_setup(work: Path, template: Path | None, postgres: bool = False, workers: int = 0) -> list[str]:
    state = work / "state"
    if template is not None:
        shutil.copytree(template, state)
    site = {
        "site": "bench",
        "listen": {"interfaces": ["eth0"], "address": SERVER_IP},
        "domain": "bench.example.net",
        "state_dir": str(state),
        "dhcp": {
            "authoritative": True,
            "lease_time": LEASE_TIME,
            "unknown_devices": "lease",
            "subnets": [{"prefix": SUBNET, "pools": [f"{POOL_FIRST}-{POOL_LAST}"], "router": SERVER_IP}],
            "workers": workers,
        },
        "logging": {"format": "json", "level": "warning"},
    }
    if postgres:
        dsn = f"host={PG['host']} port=5432 user=bootstrapd dbname={fresh_database(work)}"
        site["store"] = {"backend": "postgresql", "dsn": dsn, "node": "bench"}
    (work / "site.yaml").write_text(yaml.safe_dump(site, sort_keys=False))
    return [sys.executable, "-m", "bootstrapd", "run", "-c", str(work / "site.yaml")]


def kea_pg_database(work: Path) -> dict[str, object]:
    """A fresh database with Kea's schema (`kea-admin db-init pgsql`), as Kea's lease-database map."""
    name = fresh_database(work)
    subprocess.run(["kea-admin", "db-init", "pgsql", "-h", PG["host"], "-u", "bootstrapd", "-p", "", "-n", name],
                   check=True, capture_output=True, timeout=120)
    return {"type": "postgresql", "name": name, "host": PG["host"], "user": "bootstrapd", "password": ""}


def kea_setup(work: Path, template: Path | None, threads: int = 0, postgres: bool = False) -> list[str]:
    leases = work / "kea-leases4.csv"
    if template is not None:
        shutil.copy(template, leases)
    database = kea_pg_database(work) if postgres else {
        "type": "memfile", "persist": True, "name": str(leases), "lfc-interval": 0}
    conf = {"Dhcp4": {
        "interfaces-config": {"interfaces": ["eth0"]},
        "lease-database": database,
        # Kea 2.2 defaults to one thread; 2.4+ to several. "kea" runs the former, "kea-mt" 2 threads.
        "multi-threading": {"enable-multi-threading": threads > 0, "thread-pool-size": threads,
                            "packet-queue-size": 256},
        "valid-lifetime": LEASE_TIME,
        "authoritative": True,
        "subnet4": [{"id": 1, "subnet": SUBNET, "pools": [{"pool": f"{POOL_FIRST} - {POOL_LAST}"}],
                     "option-data": [{"name": "routers", "data": SERVER_IP}]}],
        "loggers": [{"name": "kea-dhcp4", "output_options": [{"output": str(work / "kea.log")}],
                     "severity": "WARN"}],
    }}
    (work / "kea-dhcp4.json").write_text(json.dumps(conf, indent=1))
    return ["kea-dhcp4", "-c", str(work / "kea-dhcp4.json")]


def dnsmasq_setup(work: Path, template: Path | None) -> list[str]:
    leases = work / "dnsmasq.leases"
    if template is not None:
        shutil.copy(template, leases)
    return ["dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--port=0", "--interface=eth0", "--bind-interfaces",
            f"--dhcp-range={POOL_FIRST},{POOL_LAST},255.255.0.0,{LEASE_TIME}", f"--dhcp-leasefile={leases}",
            "--dhcp-lease-max=100000", "--dhcp-authoritative", "--no-ping", "--quiet-dhcp",
            f"--dhcp-option=option:router,{SERVER_IP}", f"--log-facility={work / 'dnsmasq.log'}"]


SERVER_DEFS = {
    "bootstrapd": Server("bootstrapd", bootstrapd_setup, preload_bootstrapd, template_is_dir=True),
    # dhcp.workers: 1 (DHCP in one process beside the main one), 2 (two processes, split by RFC 3074 hash)
    **{f"bootstrapd-w{n}": Server(f"bootstrapd-w{n}", functools.partial(bootstrapd_setup, workers=n),
                                  preload_bootstrapd, template_is_dir=True) for n in (1, 2)},
    "kea": Server("kea", kea_setup, preload_kea),
    "kea-mt": Server("kea-mt", functools.partial(kea_setup, threads=2), preload_kea),
    "dnsmasq": Server("dnsmasq", dnsmasq_setup, preload_dnsmasq),
    # Empty scenario only (run with --preload 0): no preloaded PostgreSQL stores.
    "bootstrapd-pg": Server("bootstrapd-pg", functools.partial(bootstrapd_setup, postgres=True), preload_bootstrapd),
    "kea-pg": Server("kea-pg", functools.partial(kea_setup, postgres=True), preload_kea),
}
