"""DNS latency while DHCP is busy: the whole daemon, dnsperf and perfdhcp at once (a boot storm's shape).

    python bench/mixed/run.py [--dns-rate 20000] [--dhcp-rate 2000] [--duration 10] [--rounds 3]
                              [--tftp-clients 100]

As root. Two network namespaces joined by one veth (server 198.18.0.1/16, client 198.18.0.2/16); nothing
touches a host interface. Each round starts a fresh `bootstrapd run` (fresh state) and offers it, from the
client namespace:
  1. DNS alone: dnsperf at --dns-rate (SRV 70 %, A 20 %, NXDOMAIN 10 %, as bench/dns);
  2. DNS and DHCP: the same dnsperf load while perfdhcp runs new clients' DORAs at --dhcp-rate, and with
     --tftp-clients N a TFTP storm besides: N lock-step clients (bench/tftp/load.py) fetching a phone's
     first profile, rendered by the daemon's file service, one after another for the whole run.
DNS and DHCP share one event loop in the daemon, so (2) shows how long a query waits behind DHCP work.
The server runs on CPU 1, dnsperf and perfdhcp on CPU 0 (--no-pin: anywhere). Not part of the test suite.
See README.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "dhcp"))
sys.path.insert(0, str(HERE.parents[1]))  # the repository: bench.files.site and its test helpers

from load import PERF_BASE_MAC, Stats, pct, perfdhcp, wait_answering  # noqa: E402
from servers import CLIENT_IP, SERVER_IP  # noqa: E402

from bench.files.site import write_inventory  # noqa: E402
from bootstrapd.config import load_site  # noqa: E402
from bootstrapd.lab import Host, Lab, lab_available, stop_process  # noqa: E402
from tests.integration.daemon import files_section  # noqa: E402


def _dns_bench() -> Any:
    """bench/dns/run.py (its query file and dnsperf parser), loaded under its own name: every bench has a run.py."""
    spec = importlib.util.spec_from_file_location("dns_bench", HERE.parent / "dns" / "run.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


DNS_BENCH = _dns_bench()
PERCENTILES: tuple[float, ...] = DNS_BENCH.PERCENTILES
parse_dnsperf, query_file = DNS_BENCH.parse_dnsperf, DNS_BENCH.query_file
DNS_PORT = 53
DNS_SITE = HERE.parent / "dns" / "site.yaml"
TFTP_LOAD = HERE.parent / "tftp" / "load.py"
TFTP_NAME = "CP-8841-3PCC.cfg"  # the bootstrap profile, rendered per request for the requesting phone


@dataclass
class DnsRun:
    qps: float
    lost: int
    ms: dict[float, float]  # percentile -> milliseconds (100.0: the maximum)


@dataclass
class TftpRun:
    transfers: int
    failures: int
    seconds: float


@dataclass
class Result:
    alone: DnsRun
    mixed: DnsRun
    dhcp: Stats
    tftp: TftpRun | None = None


def site_file(work: Path, workers: int = 0, files: bool = False) -> Path:
    """The bench/dns zone on the server's address, plus a DHCP pool big enough for every perfdhcp client."""
    raw = yaml.safe_load(DNS_SITE.read_text())
    site = {
        "site": "mixed",
        "listen": {"interfaces": ["eth0"], "address": SERVER_IP, "dns_port": DNS_PORT},
        "domain": raw["domain"],
        "state_dir": str(work / "state"),
        "dhcp": {
            "authoritative": True,
            "lease_time": 3600,
            "unknown_devices": "lease",
            "rogue_check_wait": 0,  # nothing else on this link; do not wait 4 s at every start
            "subnets": [{"prefix": "198.18.0.0/16", "pools": ["198.18.1.0-198.18.255.250"], "router": SERVER_IP}],
            "workers": workers,  # 0: DHCP on the main process's event loop; N: N DHCP processes beside it
        },
        "dns": raw["dns"],
        "logging": {"format": "json", "level": "warning"},
    }
    if files:
        (work / "root").mkdir(exist_ok=True)
        write_inventory(work / "inventory.csv", 100)
        site["files"] = files_section(work, work / "root", work / "inventory.csv", SERVER_IP)
    path = work / "site.yaml"
    path.write_text(yaml.safe_dump(site, sort_keys=False))
    return path


def dnsperf(client: Host, queries: Path, rate: int, duration: float, pin: str | None,
            out: Path) -> subprocess.Popen[str]:
    """dnsperf in the background, its per-query lines (-v) going to the file `out` (a pipe would fill up)."""
    argv = ["dnsperf", "-s", SERVER_IP, "-p", str(DNS_PORT), "-d", str(queries), "-l", str(duration),
            "-c", "4", "-q", "200", "-Q", str(rate), "-v"]
    if pin:
        argv = ["taskset", "-c", pin, *argv]
    with open(out, "w") as sink:
        return client.popen(argv, stdout=sink, stderr=subprocess.DEVNULL, text=True)


def dnsperf_result(proc: subprocess.Popen[str], out: Path) -> DnsRun:
    if proc.wait(120) != 0:
        raise RuntimeError(f"dnsperf exited {proc.returncode}")
    with open(out) as lines:
        stats, ms = parse_dnsperf(lines)
    out.unlink()
    return DnsRun(float(stats["Queries per second"]), int(stats["Queries lost"]), ms)


def wait_dns(client: Host, proc: subprocess.Popen[Any], domain: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"bootstrapd exited {proc.returncode}")
        probe = client.run(["dig", "+short", "+time=1", "+tries=1", "-p", str(DNS_PORT), f"@{SERVER_IP}",
                            f"_ciscoprov-https._tls.{domain}", "SRV"], check=False)
        if probe.returncode == 0 and probe.stdout.strip():
            return
        time.sleep(0.2)
    raise RuntimeError("bootstrapd did not answer DNS")


def one_round(server: Host, client: Host, args: argparse.Namespace, queries: Path, domain: str, root: Path
              ) -> Result:
    work = Path(tempfile.mkdtemp(prefix="round-", dir=root))
    argv = [sys.executable, "-m", "bootstrapd", "run", "-c",
            str(site_file(work, args.workers, files=args.tftp_clients > 0))]
    if args.pin:  # the worker processes inherit the affinity
        argv = ["taskset", "-c", args.server_cpus, *argv]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(work / "stdout.log", "w") as log:
        proc = server.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_dns(client, proc, domain)
        wait_answering(client, proc)
        out = work / "dnsperf.out"
        pin = args.load_cpus if args.pin else None
        alone = dnsperf_result(dnsperf(client, queries, args.dns_rate, args.duration, pin, out), out)
        load = dnsperf(client, queries, args.dns_rate, args.duration, pin, out)
        storm = tftp_storm(client, args.tftp_clients, args.duration, pin) if args.tftp_clients else None
        clients = int(args.dhcp_rate * args.duration * 0.9)  # ends inside the DNS run
        dhcp = perfdhcp(client, clients, args.dhcp_rate, base_mac=PERF_BASE_MAC, limit_s=args.duration + 20,
                        pin=pin)
        mixed = dnsperf_result(load, out)
        tftp = tftp_result(storm) if storm is not None else None
        if proc.poll() is not None:
            raise RuntimeError(f"bootstrapd exited {proc.returncode} during the run")
    finally:
        stop_process(proc)
    return Result(alone, mixed, dhcp, tftp)


def tftp_storm(client: Host, clients: int, seconds: float, pin: str | None) -> subprocess.Popen[str]:
    argv = [sys.executable, str(TFTP_LOAD), "--server", SERVER_IP, "--name", TFTP_NAME, "--transfers", "100000000",
            "--concurrency", str(clients), "--seconds", str(seconds)]
    if pin:
        argv = ["taskset", "-c", pin, *argv]
    return client.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def tftp_result(proc: subprocess.Popen[str]) -> TftpRun:
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"the TFTP load exited {proc.returncode}")
    stats = json.loads(out.strip().splitlines()[-1])
    return TftpRun(int(stats["transfers"]), int(stats["failures"]), float(stats["seconds"]))


def line(label: str, runs: list[DnsRun]) -> str:
    ms = [statistics.median(r.ms[p] for r in runs) for p in (*PERCENTILES, 100.0)]
    each = "/".join(f"{r.ms[99.0]:.2f}" for r in runs)
    qps = statistics.median(r.qps for r in runs)
    return (f"{label:<22}{qps:>9.0f}{sum(r.lost for r in runs):>7}" + "".join(f"{v:>8.3f}" for v in ms)
            + f"  {each}")


def report(results: list[Result], args: argparse.Namespace) -> None:
    print(f"\nDNS at {args.dns_rate} q/s offered, alone and with perfdhcp at {args.dhcp_rate} DORA/s; ms, median of"
          f" {args.rounds} rounds (p99 of each round at the right)")
    print(f"{'load':<22}{'q/s':>9}{'lost':>7}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}{'max':>8}"
          "  p99 rounds")
    print(line("DNS alone", [r.alone for r in results]))
    print(line("DNS with DHCP", [r.mixed for r in results]))
    stats = [r.dhcp for r in results]
    rate = statistics.median(s.rate for s in stats)
    delays = [d for s in stats for key in ("DO", "RA") for d in s.delays.get(key, [])]
    p50, p99 = pct(delays, 0.5), pct(delays, 0.99)
    print(f"\nDHCP meanwhile: perfdhcp at {args.dhcp_rate} DORA/s offered: {rate:.0f} DORA/s, "
          f"{sum(s.lost for s in stats)} lost, exchange p50 {p50 or 0:.2f} ms, p99 {p99 or 0:.2f} ms")
    storms = [r.tftp for r in results if r.tftp is not None]
    if storms:
        rate = statistics.median(t.transfers / t.seconds for t in storms)
        print(f"TFTP meanwhile: {args.tftp_clients} lock-step clients fetching {TFTP_NAME}: {rate:.0f} transfers/s,"
              f" {sum(t.failures for t in storms)} failed")


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dns-rate", type=int, default=20_000, help="dnsperf -Q")
    ap.add_argument("--dhcp-rate", type=int, default=2_000, help="perfdhcp -r (new clients per second)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-pin", dest="pin", action="store_false")
    ap.add_argument("--workers", type=int, default=0, help="dhcp.workers of the server (0: DHCP in-process)")
    ap.add_argument("--server-cpus", default="1", help="taskset -c for bootstrapd (its workers inherit it)")
    ap.add_argument("--load-cpus", default="0", help="taskset -c for dnsperf and perfdhcp")
    ap.add_argument("--tftp-clients", type=int, default=0, help="a TFTP storm of N clients beside DHCP (0: none)")
    args = ap.parse_args(argv)
    ok, why = lab_available()
    if not ok:
        print(f"needs the lab (root, ip netns): {why}", file=sys.stderr)
        return 2
    zone = load_site(str(DNS_SITE))  # the bench/dns zone: its domain and query file
    domain = zone.domain
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-mixed-", dir="/var/tmp") as tmp, Lab() as lab:
        root = Path(tmp)
        queries = root / "queries.txt"
        query_file(zone, queries)
        server, client = lab.host("server"), lab.host("client")
        lab.link(server, client, "eth0", "eth0", f"{SERVER_IP}/16", f"{CLIENT_IP}/16")
        for i in range(args.rounds):
            result = one_round(server, client, args, queries, domain, root)
            results.append(result)
            print(f"round {i + 1}: DNS p99 alone {result.alone.ms[99.0]:.2f} ms, with DHCP "
                  f"{result.mixed.ms[99.0]:.2f} ms; DHCP {result.dhcp.rate:.0f}/s, lost {result.dhcp.lost}",
                  file=sys.stderr, flush=True)
    pinned = f"; server on CPU {args.server_cpus}, load on CPU {args.load_cpus}" if args.pin else "; not pinned"
    print(f"host: {os.cpu_count()} CPUs{pinned}; dhcp.workers {args.workers}; tftp clients {args.tftp_clients};"
          f" python {sys.version.split()[0]}")
    report(results, args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
