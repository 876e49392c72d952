"""DHCP benchmark: perfdhcp against bootstrapd, Kea and dnsmasq in one run, same link, same load.

    python bench/dhcp/run.py [--rates 1000,3000,5000,10000] [--clients 10000] [--preload 50000]
                             [--servers bootstrapd,kea,dnsmasq] [--profile DIR] [--out FILE]

As root. Builds two network namespaces joined by one veth (server 198.18.0.1/16, client 198.18.0.2/16) and
runs each server there in turn; nothing touches a host interface. perfdhcp (Kea's, Debian kea-admin) plays
a relay at 198.18.0.2 for `--clients` distinct simulated clients: full DORA, one exchange per client.
Every (server, scenario, offered rate) starts from a fresh copy of the server's state: empty, or
`--preload` bound leases of other clients written straight into its lease store. Latency percentiles come
from perfdhcp's per-exchange timestamps (`-x t`). RSS is the server's VmRSS after the run. See README.md.
Modules: servers.py (configurations, preloaded stores), load.py (perfdhcp), this file (runs and tables).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from load import PERF_BASE_MAC, Stats, pct, perfdhcp, wait_answering
from servers import CLIENT_IP, DEFAULT_SERVERS, PG, PG_SERVERS, SERVER_DEFS, SERVER_IP, SERVERS, Server

from bootstrapd.lab import Host, Lab, lab_available, stop_process

PATHS = "/usr/sbin:/usr/bin:/sbin:/bin"
TICKS = os.sysconf("SC_CLK_TCK")
TARGET = 3000  # issue 3: DORA/s with zero drops at this offered rate, empty and with 50,000 leases


@dataclass
class Row:
    server: str
    scenario: str
    offered: int
    stats: Stats
    rss_mb: float
    ready_s: float
    note: str = ""
    server_cpu: float = 0.0  # CPU seconds the server used during the perfdhcp run
    other_cpu: float = 0.0  # % of the machine's CPUs (user time) used by processes neither ours nor theirs
    kernel_drops: int = 0  # datagrams the server namespace's kernel dropped on UDP port 67 (full socket buffer)
    threads: str = ""  # per thread of the server's main process: user/sys CPU seconds during the run



# -- process hygiene ------------------------------------------------------------------------------------
def foreign_kea() -> list[int]:
    """kea-dhcp4 processes running now (before we start any: someone else's, e.g. the Debian service)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip().startswith("kea-dhcp4"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


@dataclass(frozen=True)
class CpuSample:
    """Clock ticks: user time of the whole machine, of the server, and of our reaped children (perfdhcp)."""

    wall: float
    machine_user: int
    server: int
    children: float

    @staticmethod
    def take(pid: int) -> CpuSample:
        """`pid` and its child processes (bootstrapd's DHCP workers)."""
        fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()
        server = 0
        for p in (pid, *child_pids(pid)):
            ticks = cpu_ticks(Path(f"/proc/{p}/stat"))
            if ticks is not None:
                server += sum(ticks)
        t = os.times()
        return CpuSample(time.monotonic(), int(fields[1]) + int(fields[2]), server,
                         (t.children_user + t.children_system) * TICKS)

    def minus(self, before: CpuSample) -> tuple[float, float]:
        """(server CPU seconds, others' user CPU as % of all CPUs) between two samples."""
        server = (self.server - before.server) / TICKS
        ours = (self.server - before.server) + (self.children - before.children)
        others = max(0.0, (self.machine_user - before.machine_user) - ours) / TICKS
        return server, 100 * others / max(1e-3, (self.wall - before.wall) * (os.cpu_count() or 1))


def cpu_ticks(stat: Path) -> tuple[int, int] | None:
    """(utime, stime) in clock ticks from a /proc/.../stat file, or None when it is gone."""
    try:
        fields = stat.read_text().rsplit(")", 1)[1].split()
        return int(fields[11]), int(fields[12])
    except (OSError, IndexError):
        return None


def child_pids(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def thread_times(pid: int) -> dict[str, tuple[int, int]]:
    """Clock ticks (user, sys) per thread of `pid`, by the thread's kernel name (bootstrapd names its own:
    bootstrapd/threads.py) and id."""
    out: dict[str, tuple[int, int]] = {}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        ticks = cpu_ticks(task / "stat")
        try:
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        if ticks is not None:
            out[f"{comm}/{task.name}"] = ticks
    return out


def thread_line(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> str:
    """`name user/sys` in seconds for each thread that ran during the run, the busiest first."""
    used = []
    for key, (user, sys_) in after.items():
        u0, s0 = before.get(key, (0, 0))
        if user - u0 + sys_ - s0 > 0:
            used.append((user - u0 + sys_ - s0, key.split("/")[0], (user - u0) / TICKS, (sys_ - s0) / TICKS))
    return ", ".join(f"{name} {u:.2f}/{s:.2f}" for _, name, u, s in sorted(used, reverse=True))


def namespace_pids(host: Host) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", host.netns], capture_output=True, text=True, timeout=10).stdout
    return [int(tok) for tok in out.split()]


def udp_drops(host: Host, port: int = 67) -> int:
    """Receive-buffer drops of the namespace's UDP sockets on `port` (/proc/net/udp, last column)."""
    total = 0
    for line in host.run(["cat", "/proc/net/udp"]).stdout.splitlines()[1:]:
        cols = line.split()
        if len(cols) > 12 and int(cols[1].rsplit(":", 1)[1], 16) == port:
            total += int(cols[-1])
    return total


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[Any] | None:
    """py-spy record of the running daemon (host namespace: py-spy needs only the PID)."""
    spy = shutil.which("py-spy")
    if spy is None:
        print("  (py-spy not installed: pip install py-spy; no profile)")
        return None
    return subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "250", "-f",
                             "speedscope", "-o", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


# -- one run --------------------------------------------------------------------------------------------
def one_run(server: Host, client: Host, sdef: Server, template: Path | None, scenario: str, rate: int,
            args: argparse.Namespace, root: Path) -> Row:
    if left := namespace_pids(server):  # a previous server still answering would skew this run
        raise RuntimeError(f"processes still running in {server.netns}: {left}")
    work = Path(tempfile.mkdtemp(prefix=f"{sdef.name}-{scenario}-{rate}-", dir=root))
    argv = sdef.setup(work, template)
    if args.pin:
        argv = ["taskset", "-c", args.server_cpus, *argv]
    env = dict(os.environ, KEA_PIDFILE_DIR=str(work), KEA_LOCKFILE_DIR=str(work), PYTHONUNBUFFERED="1")
    with open(work / "stdout.log", "w") as log:
        proc = server.popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        ready = wait_answering(client, proc)
        spy = None
        if args.profile and sdef.name == "bootstrapd":
            args.profile.mkdir(parents=True, exist_ok=True)
            out = args.profile / f"bootstrapd-{scenario}-{rate}.speedscope.json"
            spy = profile(proc.pid, args.clients / rate + 2, out)
            time.sleep(1.0)  # py-spy attaches
        before = CpuSample.take(proc.pid), udp_drops(server)
        threads_before = thread_times(proc.pid)
        stats = perfdhcp(client, args.clients, rate, base_mac=PERF_BASE_MAC, limit_s=args.limit,
                         pin=args.load_cpus if args.pin else None)
        after = CpuSample.take(proc.pid), udp_drops(server)
        threads = thread_line(threads_before, thread_times(proc.pid))
        if args.stamps:
            args.stamps.mkdir(parents=True, exist_ok=True)
            with open(args.stamps / f"{sdef.name}-{scenario}-{rate}.txt", "w") as f:
                for key, pairs in stats.stamps.items():
                    f.writelines(f"{key} {t:.6f} {d:.3f}\n" for t, d in pairs)
        rss = rss_mb(proc.pid)
        if spy is not None:
            spy.wait(60)
        note = "" if proc.poll() is None else f"server exited {proc.returncode}"
    finally:
        stop_process(proc)
    server_cpu, other_cpu = after[0].minus(before[0])
    return Row(sdef.name, scenario, rate, stats, rss, ready, note, server_cpu=server_cpu, other_cpu=other_cpu,
               kernel_drops=after[1] - before[1], threads=threads)


def fmt(v: float | None, spec: str = ".1f") -> str:
    return "-" if v is None else format(v, spec)


def row_line(r: Row) -> str:
    s = r.stats
    d = s.delays
    return (f"| {r.server:<13} | {r.scenario:<9} | {r.offered:>7} | {s.rate:>8.0f} | {s.completed:>6} | "
            f"{s.lost:>6} | {fmt(pct(d.get('DO', []), .5), '.2f'):>6} | {fmt(pct(d.get('DO', []), .99), '.2f'):>7} | "
            f"{fmt(pct(d.get('RA', []), .5), '.2f'):>6} | {fmt(pct(d.get('RA', []), .99), '.2f'):>7} | "
            f"{r.kernel_drops:>6} | {r.server_cpu:>6.1f} | {r.other_cpu:>6.0f} | {r.rss_mb:>6.1f} | {r.ready_s:>5.1f} |"
            f"{(' ' + r.note) if r.note else ''}")


HEADER = ("| server        | leases    | offered |   DORA/s |  acked |   lost | DO p50 |  DO p99 | RA p50 |  RA p99 |"
          "  kdrop |  cpu s | other% | RSS MB | ready |\n"
          "|---------------|-----------|--------:|---------:|-------:|-------:|-------:|--------:|-------:|--------:|"
          "-------:|-------:|-------:|-------:|------:|")


def ratios(rows: list[Row]) -> list[str]:
    """bootstrapd/peer for each (scenario, offered): DORA/s and RA p99."""
    out = ["| server        | leases    | offered | peer       | DORA/s ratio | RA p99 ratio | RSS ratio |",
           "|---------------|-----------|--------:|------------|-------------:|-------------:|----------:|"]
    by = {(r.server, r.scenario, r.offered): r for r in rows}
    for (name, scenario, offered), b in by.items():
        if not name.startswith("bootstrapd"):
            continue
        for peer in SERVERS:
            if (peer.startswith("bootstrapd") and peer != "bootstrapd") or peer == name:
                continue
            p = by.get((peer, scenario, offered))
            if p is None:
                continue
            rate = f"{b.stats.rate / p.stats.rate:.2f}" if p.stats.rate else "inf"
            bp99, pp99 = pct(b.stats.delays.get("RA", []), .99), pct(p.stats.delays.get("RA", []), .99)
            lat = f"{bp99 / pp99:.2f}" if bp99 and pp99 else "-"
            out.append(f"| {name:<13} | {scenario:<9} | {offered:>7} | {peer:<10} | {rate:>12} | {lat:>12} | "
                       f"{b.rss_mb / p.rss_mb:>9.2f} |")
    return out


def peak(rows: list[Row]) -> list[str]:
    """Per server and scenario: highest DORA/s reached, and the highest offered rate with nothing lost."""
    out = ["| server     | leases    | peak DORA/s | highest offered rate with 0 lost |",
           "|------------|-----------|------------:|---------------------------------:|"]
    keys = dict.fromkeys((r.server, r.scenario) for r in rows)
    for server, scenario in keys:
        mine = [r for r in rows if r.server == server and r.scenario == scenario]
        clean = [r.offered for r in mine if r.stats.lost == 0 and r.stats.completed > 0]
        out.append(f"| {server:<10} | {scenario:<9} | {max(r.stats.rate for r in mine):>11.0f} | "
                   f"{(max(clean) if clean else 'none'):>32} |")
    return out


# -- main -----------------------------------------------------------------------------------------------
def preflight(servers: list[str]) -> None:
    ok, reason = lab_available()
    if not ok:
        sys.exit(f"bench/dhcp: cannot build the lab: {reason}")
    tools = {"kea": "kea-dhcp4", "kea-mt": "kea-dhcp4", "dnsmasq": "dnsmasq"}
    need = {"perfdhcp", "taskset"} | {tools[s] for s in servers if s in tools}
    missing = [t for t in sorted(need) if shutil.which(t, path=PATHS) is None]
    if missing:
        sys.exit(f"bench/dhcp: missing {', '.join(missing)} (apt-get install kea-admin kea-dhcp4-server dnsmasq)")
    if pids := foreign_kea():
        sys.exit(f"bench/dhcp: kea-dhcp4 already running (PIDs {pids}); stop it first "
                 "(systemctl disable --now kea-dhcp4-server)")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rates", default="1000,3000,5000,10000", help="offered DORA/s steps")
    p.add_argument("--clients", type=int, default=10_000, help="distinct new clients per run")
    p.add_argument("--preload", type=int, default=50_000, help="bound leases in the store for the 2nd scenario")
    p.add_argument("--servers", default=",".join(DEFAULT_SERVERS), help=f"any of {','.join(SERVERS)}")
    p.add_argument("--limit", type=float, default=30.0, help="seconds one perfdhcp run may last")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not pin perfdhcp to CPU 0 and the server to CPU 1")
    p.add_argument("--server-cpus", default="1", help="taskset -c for the server (and its worker processes)")
    p.add_argument("--load-cpus", default="0", help="taskset -c for perfdhcp")
    p.add_argument("--threads", action="store_true", help="after each run, the CPU of each server thread")
    p.add_argument("--stamps", type=Path, metavar="DIR",
                   help="per exchange (DO/RA, sent s, delay ms) of each run to DIR, for bench/dhcp/tail.py")
    p.add_argument("--profile", type=Path, metavar="DIR",
                   help="py-spy record bootstrapd during each run; speedscope files go to DIR")
    p.add_argument("--out", type=Path, help="also write the tables (markdown) here")
    args = p.parse_args(argv)
    rates = [int(r) for r in args.rates.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    preflight(servers)
    scenarios = [("empty", 0), (f"{args.preload // 1000}k", args.preload)] if args.preload else [("empty", 0)]
    rows: list[Row] = []
    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-dhcp-", dir="/var/tmp") as tmp, Lab() as lab, \
            postgres(servers) as pg_host:
        PG["host"] = pg_host
        root = Path(tmp)
        server, client = lab.host("server"), lab.host("client")
        lab.link(server, client, "eth0", "eth0", f"{SERVER_IP}/16", f"{CLIENT_IP}/16")
        templates = make_templates(servers, args.preload, root)
        print(HEADER, flush=True)
        for scenario, n in scenarios:
            for rate in rates:
                for name in servers:  # interleaved: drifting machine load hits every server alike
                    template = templates[name] if n else None
                    row = one_run(server, client, SERVER_DEFS[name], template, scenario, rate, args, root)
                    rows.append(row)
                    print(row_line(row), flush=True)
                    if args.threads and row.threads:
                        print(f"  threads, user/sys s: {row.threads}", flush=True)
    leftovers = foreign_kea()
    summary = ["", *peak(rows), "", *ratios(rows), "", *targets(rows, scenarios)]
    print("\n".join(summary))
    print(f"\ntotal {time.monotonic() - t_start:.0f}s; kea-dhcp4 left running: {leftovers or 'none'}")
    if args.out:
        head = [f"{datetime.datetime.now():%Y-%m-%d %H:%M}", *machine(), "", "    " + " ".join(sys.argv), ""]
        args.out.write_text("\n".join([*head, HEADER, *map(row_line, rows), *summary]) + "\n")
    return 0 if not leftovers else 1


@contextlib.contextmanager
def postgres(servers: list[str]) -> Iterator[str]:
    """The throwaway cluster of the -pg servers (tests/pgcluster.py, fsync on; unix socket only): its socket
    directory, or "" when no -pg server runs."""
    if not set(servers) & set(PG_SERVERS):
        yield ""
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests import pgcluster

    with pgcluster.cluster(fsync=True) as cluster:
        yield cluster.base


def machine() -> list[str]:
    """What the numbers were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    versions = []
    for argv in (["kea-dhcp4", "-v"], ["dnsmasq", "--version"], ["perfdhcp", "-v"]):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip()
            versions.append(f"{argv[0]} {' '.join(out.splitlines()[0].split()[:3]) if out else '?'}")
        except (OSError, subprocess.TimeoutExpired):
            versions.append(f"{argv[0]} missing")
    return [f"machine: {os.cpu_count()} CPUs ({cpu}), Linux {os.uname().release}, Python {sys.version.split()[0]}",
            "; ".join(versions)]


def targets(rows: list[Row], scenarios: list[tuple[str, int]]) -> list[str]:
    """issue 3's targets, checked against this run."""
    out = []
    for scenario, _ in scenarios:
        r = next((r for r in rows if r.server == "bootstrapd" and r.scenario == scenario and r.offered == TARGET),
                 None)
        if r is not None:
            ok = r.stats.lost == 0 and r.stats.rate >= 0.97 * TARGET
            out.append(f"target {TARGET} DORA/s, 0 lost, leases {scenario}: {'met' if ok else 'NOT met'} "
                       f"({r.stats.rate:.0f} DORA/s, {r.stats.lost} lost)")
        big = [r.rss_mb for r in rows if r.server == "bootstrapd" and r.scenario == scenario]
        if big and scenario != "empty":
            out.append(f"target RSS < 150 MB, leases {scenario}: {'met' if max(big) < 150 else 'NOT met'} "
                       f"(max {max(big):.1f} MB)")
    return out


def make_templates(servers: list[str], n: int, root: Path) -> dict[str, Path]:
    """Each server's lease store holding n bound leases, written once and copied into every run."""
    templates: dict[str, Path] = {}
    if not n:
        return templates
    now = time.time()
    for name in servers:
        sdef = SERVER_DEFS[name]
        path = root / f"preload-{name}"
        t0 = time.monotonic()
        sdef.preload(path, n, now)
        templates[name] = path
        print(f"preloaded {n} leases for {name} in {time.monotonic() - t0:.1f}s", flush=True)
    return templates


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
