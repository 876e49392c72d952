"""The whole path on bootstrapd: 1,000 phones powered on within a second on the demo's floor, alone and under
a syslog flood.

    python bench/bootstorm/whole.py [--phones 1000] [--spread 1] [--runs 3] [--floods 0,20000,40000]
                                    [--sources 500] [--flood-seconds 10] [--sims 2] [--workers 32] [--dhcp-workers 0]
                                    [--server-nice 0]
                                    [--json out.json]

As root (network namespaces). Per run: a fresh lab with the demo's floor (`bootstrapd.lab.demo.demo_site`:
the example site, an inventory of every phone, the lab's remote server on prov2 as the provider) on a /21
staging LAN. Every phone's whole path is on bootstrapd: DHCP; option 66 (TFTP), option 160 (HTTP) or DNS
SRV (HTTPS) by class; its first profile rendered by bootstrapd; its own gzipped, encrypted profile from
bootstrapd; the resync to the remote server; its syslog lines to bootstrapd's sink. With `--floods`
rates other than 0, the same storm runs again while 500 made-up phones flood the sink
(bench/bootstorm/syslogflood.py, from a third namespace whose 500 addresses are inside dhcp.subnets but
outside the pool) for `--flood-seconds`.

Measured from the first power-on (bootstrapd's first DHCP event of the storm): all leased (the last
`dhcp.ack`), all fetched (each phone's last file from bootstrapd), all done on bootstrapd (each phone's
`Successful resync` line accepted by the sink, and the floor page's report.json polled until every phone
is `done`), and all done on the phones (the simulator's reports). Checked: every phone `done` in the
sign-off report (`bootstrapd report --json`), no address given twice. Also: syslog accepted vs sent, drops
by reason, the kernel's receive drops on the sink's socket, the daemon's CPU seconds.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import csv
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bootstrapd.lab import Lab, lab_available
from bootstrapd.lab.demo import DEMO_OUIS, EXAMPLE, PROVIDER, REMOTE, demo_site
from bootstrapd.lab.netns import Segment
from bootstrapd.sim.floor import SERVER_ADDRESS, Floor
from bootstrapd.sim.phone import MODELS, make_phones
from bootstrapd.sim.report import PhoneReport

PREFIX = 21  # 198.18.0.0/21
POOL = "198.18.3.0-198.18.7.250"  # 1,275 addresses for the phones
FLOOD_FIRST = IPv4Address("198.18.1.1")  # 500 sources up to 198.18.2.244: in the subnet, outside the pool
ANCHOR = "198.18.2.253"  # the phones' namespace's own primary address on the LAN (see simulate)
METRICS = "http://127.0.0.1:9267"  # the example's metrics.listen, inside the server's namespace
HERE = Path(__file__).resolve().parent


@dataclass
class Result:
    flood_rate: int  # datagrams/s asked of the flood (0: the storm alone)
    phones: int
    all_leased: float  # s from the first power-on (bootstrapd's clock)
    all_fetched: float  # each phone's last file from bootstrapd
    all_done_sink: float  # each phone's `Successful resync` line accepted by the sink
    all_done_report: float  # the first poll of report.json with every phone done
    all_done_phones: float  # the simulator's clock: every phone's resync chain ended
    dora_p50: float
    dora_p99: float
    done: int  # phones `done` in the sign-off report
    resync_done: int  # phones whose simulator report says resync done
    distinct_addresses: int
    files: dict[str, int]  # bootstrapd's files served per protocol
    syslog_sent: int  # phones' lines + flood datagrams
    flood_sent: int
    flood_seconds: float
    syslog_accepted: int
    syslog_drops: dict[str, int]
    kernel_drops: int
    cpu_storm: float  # daemon CPU seconds from the simulator's start until every phone was done
    cpu_total: float  # ... until the end of the flood (or of the storm)
    window: float  # wall seconds of that last window
    first_profile_p99: float = 0.0  # s, a phone's power-on to its first profile
    resync_p99: float = 0.0  # s, its first profile to the end of its resync chain
    load: str = ""
    cpu_sims: float = 0.0  # CPU seconds of every simulator process (sampled every 0.2 s)
    cpu_prov: float = 0.0  # ... of the lab remote server during the storm (its children's included)
    dhcp_resent: int = 0  # the phones' DISCOVER and REQUEST retransmissions (beyond one each)
    dhcp_drops: dict[str, int] = field(default_factory=dict)  # bootstrapd's, by reason
    dhcp_kernel_drops: int = 0
    arp_table_fulls: int = 0  # the machine's neighbour table overflowed this often during the storm
    stuck: dict[str, int] = field(default_factory=dict)


def write_inventory(path: Path, phones: int) -> None:
    """Every phone of the storm in the inventory (the demo leaves one OUI out; here all get their own profile)."""
    rng = random.Random(0)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mac", "serial", "key", "label"])
        for i, p in enumerate(make_phones(phones, 0, MODELS, DEMO_OUIS)):
            w.writerow([p.mac, p.serial, f"{rng.getrandbits(96):024x}", f"desk {i + 1}"])


def floor_site(floor: Floor, work: Path, phones: int, dhcp_workers: int = 0) -> dict[str, Any]:
    site = demo_site(EXAMPLE, work, phones, floor.cert)
    write_inventory(Path(site["files"]["inventory"]), phones)
    site["dhcp"] = {"rogue_check_wait": 0, "workers": dhcp_workers, "subnets": [
        {"prefix": f"198.18.0.0/{PREFIX}", "pools": [POOL], "router": SERVER_ADDRESS}]}
    return site


def start_flood(lab: Lab, floor: Floor, sources: int, rate: int, seconds: float) -> subprocess.Popen[str]:
    """The flood's namespace on stg0 with `sources` addresses; returns the flooder once its sockets are bound."""
    host = lab.host("flood")
    lab.attach(host, Segment("stg0", floor.server, None), "eth0")
    batch = "".join(f"address add {FLOOD_FIRST + i}/{PREFIX} dev eth0\n" for i in range(sources))
    subprocess.run(["ip", "-n", host.netns, "-batch", "-"], input=batch, text=True, check=True, timeout=60)
    # A permanent neighbour entry for the server: the flood never ARPs, so bootstrapd's namespace learns no
    # neighbour per flood source (the kernel's neighbour limit is shared by every namespace).
    link = json.loads(floor.server.run(["ip", "-j", "link", "show", "stg0"]).stdout)[0]
    host.run(["ip", "neigh", "replace", SERVER_ADDRESS, "lladdr", link["address"], "dev", "eth0", "nud", "permanent"])
    proc = host.popen([sys.executable, str(HERE / "syslogflood.py"), "--first", str(FLOOD_FIRST), "--sources",
                       str(sources), "--rate", str(rate), "--duration", str(seconds), "--server", SERVER_ADDRESS],
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if '"ready"' not in ready:
        raise RuntimeError(f"flood did not start: {ready} {proc.stderr.read() if proc.stderr else ''}")
    return proc


def cpu_seconds(pid: int, children: bool = False) -> float:
    """utime + stime (+ cutime + cstime: its reaped children's, e.g. the openssl runs of a server)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15 if children else 13])
    return ticks / 100  # clock ticks (USER_HZ 100)


def arp_table_fulls() -> int:
    """The kernel's count of neighbour-table overflows, all namespaces together (/proc/net/stat/arp_cache):
    another lab's storm on the same machine can fill the shared 1024-entry table, and a reply that finds
    no neighbour entry is lost; a run where this grew says so."""
    with open("/proc/net/stat/arp_cache") as f:
        head, *rows = f.read().split("\n")
    col = head.split().index("table_fulls")
    return sum(int(r.split()[col], 16) for r in rows if r.strip())


def curl(floor: Floor, path: str) -> str:
    return floor.server.run(["curl", "-s", "-m", "10", METRICS + path], check=False, timeout=15).stdout


class CpuSampler(threading.Thread):
    """utime+stime of the simulator and lab remote processes (found by command line; the simulators end
    before the bench could read them, so the last sample counts), every `interval` s."""

    KINDS = (("sim", "bootstrapd simulate"), ("prov", "bootstrapd.sim.provserver"))

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.interval, self.stop = interval, threading.Event()
        self.last: dict[int, tuple[str, float]] = {}
        self.base: dict[int, float] = {}  # CPU at the first sample (the lab remote's start-up is not the storm's)

    def sample(self) -> None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            try:
                kind = self.last[pid][0] if pid in self.last else self._kind(entry)
                if kind is not None:
                    cpu = cpu_seconds(pid, children=True)
                    self.last[pid] = (kind, cpu)
                    self.base.setdefault(pid, cpu if kind == "prov" else 0.0)
            except OSError:
                continue

    def _kind(self, entry: Path) -> str | None:
        cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return next((k for k, needle in self.KINDS if needle in cmdline and "ip netns" not in cmdline), None)

    def run(self) -> None:
        self.sample()
        while not self.stop.wait(self.interval):
            self.sample()

    def totals(self) -> dict[str, float]:
        self.sample()
        out: dict[str, float] = collections.defaultdict(float)
        for pid, (kind, cpu) in self.last.items():
            out[kind] += cpu - self.base.get(pid, 0.0)
        return {k: round(v, 2) for k, v in out.items()}


class ReportPoller(threading.Thread):
    """Polls the floor page's report.json until every one of `macs` is `done`; remembers when."""

    def __init__(self, floor: Floor, macs: set[str], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.floor, self.macs, self.interval = floor, macs, interval
        self.all_done_at: float | None = None  # wall clock
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                doc = json.loads(curl(self.floor, "/report.json"))
            except (json.JSONDecodeError, subprocess.SubprocessError):
                continue
            done = sum(1 for d in doc["devices"] if d["mac"] in self.macs and d["state"] == "done")
            if done == len(self.macs):
                self.all_done_at = time.time()
                return


def stamp(e: dict[str, Any]) -> float:
    return datetime.fromisoformat(e["timestamp"]).timestamp()


def simulate(floor: Floor, phones: int, spread: float, sims: int, workers: int) -> list[PhoneReport]:
    """`sims` simulator processes at once, each powering on its share of the phones (one process is one
    core at most: its fetch threads share one interpreter). Same MACs as the inventory: seed 0, --start."""
    shares = [phones // sims + (i < phones % sims) for i in range(sims)]
    starts = [sum(shares[:i]) for i in range(sims)]
    out: list[list[PhoneReport]] = [[] for _ in range(sims)]

    def one(i: int) -> None:
        out[i] = floor.simulate(shares[i], "--start", str(starts[i]), "--spread", str(spread), "--ouis",
                                ",".join(DEMO_OUIS), "--models", ",".join(MODELS), "--error-retry-delay", "1",
                                *(["--workers", str(workers)] if workers != 32 else []), timeout=60)

    # A simulator takes its addresses off eth0 when it ends. Should one of them be the interface's primary
    # address, the kernel would drop every secondary (the other simulators' phones) with it, unless promoted;
    # and even promoted, it re-creates every secondary's local route, a window in which the phones still
    # fetching get EADDRNOTAVAIL (seen: upgrades failing at the end of a two-process storm). So eth0 gets a
    # primary of its own first, outside the pool and the flood's range, that no simulator removes.
    floor.phones.run(["sysctl", "-qw", "net.ipv4.conf.all.promote_secondaries=1",
                      "net.ipv4.conf.eth0.promote_secondaries=1"])
    floor.phones.add_address("eth0", f"{ANCHOR}/{PREFIX}")
    threads = [threading.Thread(target=one, args=(i,)) for i in range(sims)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return [r for share in out for r in share]


def run_once(phones: int, spread: float, flood_rate: int, sources: int, flood_seconds: float,
             sims: int = 2, workers: int = 32, dhcp_workers: int = 0, server_nice: int = 0) -> Result:
    with tempfile.TemporaryDirectory(prefix="bootstrapd-whole-") as tmp, Lab() as lab:
        floor = Floor(lab, Path(tmp), prefixlen=PREFIX)
        daemon = floor.start_daemon(floor_site(floor, Path(tmp), phones, dhcp_workers))
        floor.start_prov(binds=(REMOTE,), tftp=(), bootstrap=PROVIDER)
        macs = {p.mac for p in make_phones(phones, 0, MODELS, DEMO_OUIS)}
        assert daemon.proc is not None
        if server_nice:
            renice_tree(daemon.proc.pid, server_nice)
        flood = start_flood(lab, floor, sources, flood_rate, flood_seconds) if flood_rate else None
        poller, sampler = ReportPoller(floor, macs), CpuSampler()
        sampler.start()
        fulls = arp_table_fulls()
        cpu0, t0 = cpu_seconds(daemon.proc.pid), time.time()
        poller.start()
        reports = simulate(floor, phones, spread, sims, workers)
        poller.join(30)
        poller.stop.set()
        cpu_storm = cpu_seconds(daemon.proc.pid) - cpu0
        sampler.stop.set()
        others = sampler.totals()
        fulls = arp_table_fulls() - fulls
        flooded: dict[str, Any] = {"sent": 0, "seconds": 0.0}
        if flood is not None:
            out, _ = flood.communicate(timeout=flood_seconds + 60)
            flooded = json.loads(out.strip().splitlines()[-1])
        cpu_total, window = cpu_seconds(daemon.proc.pid) - cpu0, time.time() - t0
        time.sleep(1.5)  # the sink pushes its counts once a second
        metrics = parse_metrics(curl(floor, "/metrics"))
        signoff = json.loads(subprocess.run(
            [sys.executable, "-m", "bootstrapd", "report", "--json", "-c", str(daemon.site_path)],
            capture_output=True, text=True, timeout=60, check=True).stdout)
        events = daemon.events()
        daemon.stop()
    result = summarise(flood_rate, reports, events, signoff, metrics, macs, poller.all_done_at, flooded,
                       (cpu_storm, cpu_total, window))
    result.cpu_sims, result.cpu_prov = others.get("sim", 0.0), others.get("prov", 0.0)
    result.dhcp_resent = sum(r.discovers + r.requests - 2 for r in reports if r.address)
    result.dhcp_drops = {k.split('"')[1]: int(v) for k, v in metrics.items()
                         if k.startswith("bootstrapd_dhcp_drops_total{") and v}
    result.dhcp_kernel_drops = int(metrics.get("bootstrapd_dhcp_kernel_receive_drops", -1))
    result.arp_table_fulls = fulls
    return result


def renice_tree(pid: int, nice: int) -> None:
    """The daemon and its worker processes (children, already spawned, and theirs) at `nice`."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that ended meanwhile
            for child in (task / "children").read_text().split():
                renice_tree(int(child), nice)


def parse_metrics(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def summarise(flood_rate: int, reports: list[PhoneReport], events: list[dict[str, Any]], signoff: dict[str, Any],
              metrics: dict[str, float], macs: set[str], report_done: float | None, flooded: dict[str, Any],
              cpu: tuple[float, float, float]) -> Result:
    ours = [e for e in events if "timestamp" in e]
    acks = {e["chaddr"]: stamp(e) for e in ours if e.get("event") == "dhcp.ack" and e.get("chaddr") in macs}
    owner = {e["address"]: e["chaddr"] for e in ours if e.get("event") == "dhcp.ack" and e.get("chaddr") in macs}
    first = min(stamp(e) for e in ours if str(e.get("event", "")).startswith("dhcp.") and e.get("chaddr") in macs)
    fetched: dict[str, float] = {}
    files: collections.Counter[str] = collections.Counter()
    done_sink: dict[str, float] = {}
    for e in ours:
        if e.get("event") == "files.fetch" and e.get("result") == "ok":
            mac = e.get("mac") if e.get("mac") in macs else owner.get(str(e.get("client")).split(":")[0])
            if mac is not None:
                fetched[mac] = stamp(e)
                files[e["protocol"]] += 1
        elif e.get("event") == "syslog.message" and e.get("kind") == "resync_succeeded" and e.get("mac") in macs:
            done_sink.setdefault(e["mac"], stamp(e))
    inf = float("inf")

    def last(d: dict[str, float]) -> float:
        return max(d.values()) - first if len(d) == len(macs) else inf

    ends = [(r.powered_at or 0) + (r.seconds or 0) + (r.resync_seconds or 0) for r in reports if r.resync == "done"]
    on = min(r.powered_at or 0 for r in reports)
    dora = sorted(r.dhcp_seconds for r in reports if r.dhcp_seconds is not None)
    rows = [d for d in signoff["devices"] if d["mac"] in macs]
    drops = {k.split('"')[1]: int(v) for k, v in metrics.items() if k.startswith("bootstrapd_syslog_drops_total{")}
    accepted = sum(int(v) for k, v in metrics.items() if k.startswith("bootstrapd_syslog_messages_total{"))
    stuck = collections.Counter(f"{d['state']} at {d.get('stage')}" for d in rows if d["state"] != "done")
    stuck.update(f"phone: resync {r.resync}: {r.resync_reason or r.reason} ({r.stage.value}, {r.attempts[-1:]})"
                 for r in reports if r.resync != "done")
    stuck.update(f"phone: upgrade {r.upgrade}: {r.resync_steps[-1:]}" for r in reports if r.upgrade != "done")
    stuck.update(trace(d["mac"], ours, first) for d in rows if d["state"] != "done" and d["mac"] in acks)
    return Result(
        flood_rate, len(reports), last(acks), last(fetched), last(done_sink),
        report_done - first if report_done else inf,
        max(ends) - on if len(ends) == len(reports) else inf,
        statistics.median(dora) if dora else inf, dora[min(len(dora) - 1, int(len(dora) * 0.99))] if dora else inf,
        sum(d["state"] == "done" for d in rows), len(ends), len({r.address for r in reports if r.address}),
        dict(files), sum(r.syslog_sent for r in reports) + int(flooded["sent"]), int(flooded["sent"]),
        float(flooded["seconds"]), accepted, {k: v for k, v in drops.items() if v},
        int(metrics.get("bootstrapd_syslog_kernel_receive_drops", -1)), *cpu,
        p99([r.seconds for r in reports if r.seconds is not None]),
        p99([r.resync_seconds for r in reports if r.resync_seconds is not None]), stuck=dict(stuck))


def trace(mac: str, events: list[dict[str, Any]], first: float) -> str:
    """What bootstrapd logged of one phone the report does not have `done`: its lease, then what came from
    its address (file fetches: result and the MAC they were tied to; syslog lines: kind), times from `first`."""
    address = next((e["address"] for e in events if e.get("event") == "dhcp.ack" and e.get("chaddr") == mac), None)
    steps = []
    for e in events:
        name, t = e.get("event"), stamp(e) - first
        if name == "dhcp.ack" and e.get("chaddr") == mac:
            steps.append(f"ack {address} +{t:.2f}")
        elif name == "files.fetch" and str(e.get("client", "")).split(":")[0] == address:
            steps.append(f"fetch {e.get('path') or e.get('name')} {e.get('result')} mac={e.get('mac')} +{t:.2f}")
        elif name == "syslog.message" and e.get("source") == address:
            steps.append(f"syslog {e.get('kind')} +{t:.2f}")
    return f"{mac}: " + "; ".join(steps[:8])


def p99(values: list[float]) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(len(s) * 0.99))] if s else float("inf")


COLUMNS = ("all_leased", "all_fetched", "all_done_sink", "all_done_report", "all_done_phones", "dora_p50",
           "dora_p99", "cpu_storm", "cpu_sims", "cpu_prov")


def print_result(r: Result) -> None:
    print(f"flood {r.flood_rate:>6}/s: leased {r.all_leased:5.2f}s fetched {r.all_fetched:5.2f}s done(sink) "
          f"{r.all_done_sink:5.2f}s done(report) {r.all_done_report:5.2f}s done(phones) {r.all_done_phones:5.2f}s "
          f"DORA {r.dora_p50:.2f}/{r.dora_p99:.2f}s (resent {r.dhcp_resent}, drops {r.dhcp_drops} kernel "
          f"{r.dhcp_kernel_drops}) | done {r.done}/{r.phones} resync {r.resync_done} "
          f"distinct {r.distinct_addresses} | syslog sent {r.syslog_sent} (flood {r.flood_sent} in "
          f"{r.flood_seconds:.1f}s) accepted {r.syslog_accepted} drops {r.syslog_drops} kernel {r.kernel_drops} "
          f"| CPU: daemon {r.cpu_storm:.1f}s storm, {r.cpu_total:.1f}s in {r.window:.1f}s, simulators "
          f"{r.cpu_sims:.1f}s, remote {r.cpu_prov:.1f}s | first profile p99 "
          f"{r.first_profile_p99:.2f}s, resync p99 {r.resync_p99:.2f}s | load {r.load}"
          + (f" | ARP TABLE FULL {r.arp_table_fulls} times (another storm on the machine?)"
             if r.arp_table_fulls else ""),
          flush=True)
    for reason, n in list(r.stuck.items())[:6]:
        print(f"    not done ({n}): {reason}")


def medians(results: list[Result]) -> None:
    base: dict[str, float] = {}
    for rate in sorted({r.flood_rate for r in results}):
        rs = [r for r in results if r.flood_rate == rate]
        med = {c: statistics.median(getattr(r, c) for r in rs) for c in COLUMNS}
        if rate == 0:
            base = med
        ratio = "  ".join(f"{c} x{med[c] / base[c]:.2f}" for c in COLUMNS if base.get(c)) if rate else ""
        print(f"median flood {rate}/s over {len(rs)}: " + "  ".join(f"{c} {v:.2f}" for c, v in med.items()))
        if ratio:
            print("    flood / alone: " + ratio)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phones", type=int, default=1000)
    p.add_argument("--spread", type=float, default=1.0)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--floods", default="0,20000", help="comma-separated flood rates (0: the storm alone)")
    p.add_argument("--sources", type=int, default=500)
    p.add_argument("--flood-seconds", type=float, default=10.0)
    p.add_argument("--sims", type=int, default=2, help="simulator processes sharing the phones (default 2: "
                   "one process is one core at most, this box has two)")
    p.add_argument("--workers", type=int, default=32, help="each simulator's provisioning threads")
    p.add_argument("--dhcp-workers", type=int, default=0, help="the daemon's dhcp.workers")
    p.add_argument("--server-nice", type=int, default=0, help="nice of the daemon and its workers (e.g. -5: "
                   "the phones and the flood are other machines on a floor, here they share its two cores)")
    p.add_argument("--json", type=Path)
    args = p.parse_args(argv)
    ok, reason = lab_available()
    if not ok:
        print(f"cannot build the lab: {reason}", file=sys.stderr)
        return 2
    results = []
    for _ in range(args.runs):
        for rate in (int(x) for x in args.floods.split(",")):
            for _attempt in range(3):  # on a loaded box the daemon may miss the lab's 15 s start-up budget
                try:
                    r = run_once(args.phones, args.spread, rate, args.sources, args.flood_seconds, args.sims,
                                 args.workers, args.dhcp_workers, args.server_nice)
                    break
                except AssertionError as e:
                    print(f"run failed to start ({str(e).splitlines()[0]}); again", file=sys.stderr)
            else:
                return 2
            with open("/proc/loadavg") as f:
                r.load = " ".join(f.read().split()[:3])
            results.append(r)
            print_result(r)
    medians(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    bad = [r for r in results if r.done != r.phones or r.distinct_addresses != r.phones]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
