"""DNS benchmark: bootstrapd against dnsmasq and NSD, same zone, same dnsperf settings, same run.

    python bench/dns/run.py [--duration 10] [--rounds 3] [--servers bootstrapd,dnsmasq,nsd]

Every server listens on 127.0.0.1 (high ports, loopback only: no DHCP anywhere). Query mix: SRV 70 %,
A 20 %, NXDOMAIN 10 %. Rounds are interleaved (bootstrapd, dnsmasq, NSD, bootstrapd, ...) so drifting
machine load hits all alike; the table shows the median round. A second pass offers every server the
same fixed rate (half of bootstrapd's median peak) with per-query latencies (dnsperf -v) for percentiles.
Not part of the test suite. See README.md.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode

from bootstrapd.config import load_site
from bootstrapd.config.model import Site
from bootstrapd.dns import Zone
from bootstrapd.dns.names import to_text
from bootstrapd.dns.wire import QType
from bootstrapd.lab import stop_process

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
PORTS = {"bootstrapd": 5301, "dnsmasq": 5304, "nsd": 5303, "unprepared": 5307, "recvfrom": 5308}
# bootstrapd before its optimisations, for --variants: every reply built by dnslib / one datagram per call
VARIANTS = {"unprepared": ["--unprepared", "--no-mmsg"], "recvfrom": ["--no-mmsg"]}


@dataclass
class Run:
    qps: float
    lost: int
    sent: int
    ms: dict[float, float] = field(default_factory=dict)  # latency percentile -> milliseconds (paced runs)
    cpu: float = 0.0  # the server's CPU seconds (user + system, with its child processes) during the run

    @property
    def cpu_us_per_query(self) -> float:
        return self.cpu / max(1, self.sent - self.lost) * 1e6


def cpu_seconds(pid: int) -> float:
    """User + system time of `pid` and its descendants (NSD serves from a forked child)."""
    tick = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += times.get(current, 0.0)
        todo += [child for child, parent in parents.items() if parent == current]
    return total


def query_file(site: Site, path: Path) -> None:
    """100 queries: SRV 70 %, A 20 %, NXDOMAIN 10 %, shuffled with a fixed seed."""
    d = site.domain
    services = [s.service for s in site.dns.srv]
    hosts = [r.name for r in site.dns.records if r.type.value == "A" and r.name != "ns1"]
    lines = [f"{services[i % len(services)]}.{d} SRV" for i in range(70)]
    lines += [f"{hosts[i % len(hosts)]}.{d} A" for i in range(20)]
    lines += [f"nx{i}.{d} A" for i in range(10)]
    random.Random(4).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")


def nsd_files(site: Site, work: Path, port: int) -> list[str]:
    zone = Zone.from_site(site)
    apex = zone.domain
    lines = [str(r) for r in zone.records() if to_text(r.name).endswith(to_text(apex))]
    (work / "zone").write_text("\n".join(lines) + "\n")
    (work / "nsd.conf").write_text(
        f"""server:
  ip-address: {HOST}
  port: {port}
  server-count: 1
  username: ""
  chroot: ""
  zonesdir: "{work}"
  database: ""
  pidfile: "{work}/nsd.pid"
  xfrdfile: "{work}/xfrd.state"
  zonelistfile: "{work}/zone.list"
  xfrdir: "{work}"
  logfile: "{work}/nsd.log"
  verbosity: 0
  rrl-ratelimit: 0
  rrl-whitelist-ratelimit: 0
remote-control:
  control-enable: no
zone:
  name: {site.domain}
  zonefile: zone
"""
    )
    return ["nsd", "-d", "-c", str(work / "nsd.conf")]


def dnsmasq_argv(site: Site, port: int) -> list[str]:
    zone = Zone.from_site(site)
    argv = ["dnsmasq", "--no-daemon", "-C", "/dev/null", f"--port={port}", f"--listen-address={HOST}",
            "--bind-interfaces", "--no-resolv", "--no-hosts", f"--local=/{site.domain}/"]
    for r in zone.records():
        owner = to_text(r.name).rstrip(".")
        if r.rtype == QType.A and owner.endswith(site.domain):
            argv.append(f"--host-record={owner},{r.rdata}")
        elif r.rtype == QType.SRV:
            target = str(r.rdata.target).rstrip(".")
            argv.append(f"--srv-host={owner},{target},{r.rdata.port},{r.rdata.priority},{r.rdata.weight}")
    return argv


def server_argv(name: str, site_path: Path, site: Site, work: Path) -> list[str]:
    port = PORTS[name]
    if name == "bootstrapd" or name in VARIANTS:
        return [sys.executable, str(HERE / "serve_bootstrapd.py"), str(site_path), HOST, str(port),
                *VARIANTS.get(name, [])]
    if name == "dnsmasq":
        return dnsmasq_argv(site, port)
    sub = work / "nsd"
    sub.mkdir(exist_ok=True)
    return nsd_files(site, sub, port)


def wait_ready(port: int, domain: str, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    query = dns.message.make_query(f"_ciscoprov-https._tls.{domain}", "SRV")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            reply = dns.query.udp(query, HOST, port=port, timeout=0.3)
        except (TimeoutError, OSError, dns.exception.Timeout):
            continue
        if reply.rcode() == dns.rcode.NOERROR and reply.answer:
            return
    raise RuntimeError(f"no SRV answer on port {port}")


def dnsperf(port: int, queries: Path, duration: float, args: argparse.Namespace, server: int,
            rate: float | None = None) -> Run:
    argv = ["dnsperf", "-s", HOST, "-p", str(port), "-d", str(queries), "-l", str(duration),
            "-c", str(args.clients), "-q", str(args.outstanding), "-T", str(args.threads)]
    if rate is not None:
        argv += ["-Q", str(int(rate)), "-v"]
    if args.pin:
        argv = ["taskset", "-c", "0", *argv]
    with tempfile.TemporaryFile("w+") as sink:  # a file, not a pipe: -v writes a line per query
        before = cpu_seconds(server)
        subprocess.run(argv, stdout=sink, stderr=subprocess.DEVNULL, text=True, check=True)
        cpu = cpu_seconds(server) - before
        sink.seek(0)
        stats, ms = parse_dnsperf(sink)
    return Run(float(stats["Queries per second"]), int(stats["Queries lost"]), int(stats["Queries sent"]), ms, cpu)


def parse_dnsperf(lines: Iterable[str]) -> tuple[dict[str, str], dict[float, float]]:
    """dnsperf's report (`key: value` lines) and, with -v, latency percentiles in ms (100.0: the maximum).

    Percentiles are taken here so that rounds do not keep millions of samples around."""
    stats: dict[str, str] = {}
    latencies = []
    for line in lines:
        if line.startswith("> "):
            parts = line.split()
            if parts[1] != "T":  # T: timed out
                latencies.append(float(parts[-1]))
        elif ":" in line:
            key, _, value = line.strip().partition(":")
            stats[key] = value.split()[0] if value.split() else ""
    latencies.sort()
    ms = {p: percentile(latencies, p) * 1000 for p in PERCENTILES}
    ms[100.0] = latencies[-1] * 1000 if latencies else float("nan")
    return stats, ms


PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def percentile(ordered: list[float], p: float) -> float:
    """The p-th percentile of an already sorted list."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def start(name: str, argv: list[str], port: int, domain: str, pin: bool) -> subprocess.Popen[bytes]:
    if pin:
        argv = ["taskset", "-c", "1", *argv]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_ready(port, domain, proc)
    except BaseException:
        stop_process(proc)
        raise
    return proc


def report(names: list[str], peaks: dict[str, list[Run]], paced: dict[str, list[Run]], rate: float) -> None:
    med = {n: statistics.median(r.qps for r in peaks[n]) for n in names}
    refs = [n for n in names if n not in VARIANTS]
    print(f"\nPeak (dnsperf, median of {len(peaks[names[0]])} interleaved rounds):")
    print(f"{'server':<11}{'q/s':>10}{'rounds':>32}{'lost':>7}{'cpu us/q':>10}"
          + "".join(f"{'/' + n:>12}" for n in refs))
    for n in names:
        rounds = "/".join(f"{r.qps / 1000:.0f}k" for r in peaks[n])
        lost = sum(r.lost for r in peaks[n])
        cpu = statistics.median(r.cpu_us_per_query for r in peaks[n])
        ratios = "".join(f"{med[n] / med[m]:>12.2f}" for m in refs)
        print(f"{n:<11}{med[n]:>10.0f}{rounds:>32}{lost:>7}{cpu:>10.1f}{ratios}")
    if paced:
        count = len(next(iter(paced.values())))
        print(f"\nLatency at {rate:.0f} q/s offered (half of bootstrapd's median peak), ms, median of {count}"
              " interleaved rounds (p99 of each round at the right):")
        print(f"{'server':<11}{'q/s':>10}{'lost':>7}{'cpu us/q':>10}{'p50':>8}{'p90':>8}{'p99':>8}{'p99.9':>8}"
              f"{'max':>8}  p99 rounds")
        for n, runs in paced.items():
            ms = [statistics.median(r.ms[p] for r in runs) for p in (*PERCENTILES, 100.0)]
            qps = statistics.median(r.qps for r in runs)
            cpu = statistics.median(r.cpu_us_per_query for r in runs)
            each = "/".join(f"{r.ms[99.0]:.2f}" for r in runs)
            print(f"{n:<11}{qps:>10.0f}{sum(r.lost for r in runs):>7}{cpu:>10.1f}"
                  + "".join(f"{v:>8.3f}" for v in ms) + f"  {each}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--site", default=str(HERE / "site.yaml"))
    ap.add_argument("--servers", default="bootstrapd,dnsmasq,nsd")
    ap.add_argument("--variants", action="store_true",
                    help="also bootstrapd without prepared answers and without recvmmsg (before/after)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per dnsperf run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q")
    ap.add_argument("--threads", type=int, default=1, help="dnsperf -T")
    ap.add_argument("--pin", action="store_true", help="servers on CPU 1, dnsperf on CPU 0")
    ap.add_argument("--no-latency", action="store_true")
    args = ap.parse_args()
    names = []
    wanted = [n for n in args.servers.split(",") if n] + (list(VARIANTS) if args.variants else [])
    for n in wanted:
        if n not in PORTS:
            ap.error(f"unknown server {n!r}")
        if n != "bootstrapd" and n not in VARIANTS and shutil.which(n) is None:
            print(f"{n}: not installed (apt-get install {n}); leaving it out", file=sys.stderr)
        else:
            names.append(n)
    if shutil.which("dnsperf") is None:
        print("dnsperf is not installed: apt-get install dnsperf", file=sys.stderr)
        return 2
    site_path = Path(args.site)
    site = load_site(str(site_path))
    with tempfile.TemporaryDirectory(prefix="dnsbench-") as tmp:
        work = Path(tmp)
        queries = work / "queries.txt"
        query_file(site, queries)
        procs = {}
        try:
            for n in names:
                procs[n] = start(n, server_argv(n, site_path, site, work), PORTS[n], site.domain, args.pin)
            peaks: dict[str, list[Run]] = {n: [] for n in names}
            for i in range(args.rounds):
                for n in names:
                    run = dnsperf(PORTS[n], queries, args.duration, args, procs[n].pid)
                    peaks[n].append(run)
                    print(f"round {i + 1} {n}: {run.qps:.0f} q/s, lost {run.lost}", file=sys.stderr)
            paced: dict[str, list[Run]] = {}
            rate = statistics.median(r.qps for r in peaks.get("bootstrapd", peaks[names[0]])) / 2
            steady = [n for n in names if statistics.median(r.qps for r in peaks[n]) >= rate]  # reach the rate
            for i in range(0 if args.no_latency else args.rounds):
                for n in steady:
                    run = dnsperf(PORTS[n], queries, args.duration, args, procs[n].pid, rate=rate)
                    paced.setdefault(n, []).append(run)
                    print(f"latency round {i + 1} {n}: p99 {run.ms[99.0]:.2f} ms", file=sys.stderr)
        finally:
            for proc in procs.values():
                stop_process(proc)
        print(f"host: {os.cpu_count()} CPUs; dnsperf -c {args.clients} -q {args.outstanding} -T {args.threads}"
              f" -l {args.duration}{'; pinned' if args.pin else ''}; python {sys.version.split()[0]}; "
              f"{socket.gethostname()}")
        report(names, peaks, paced, rate)
    return 0


if __name__ == "__main__":
    sys.exit(main())
