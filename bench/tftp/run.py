"""TFTP side by side in one run: bootstrapd's TFTP shell, tftpd-hpa and dnsmasq, in network namespaces.

    sudo PYTHONPATH=. .venv/bin/python -m bench.tftp.run            # full: 1,000 small, 20 x 32 MB
    sudo PYTHONPATH=. .venv/bin/python -m bench.tftp.run --short    # a quick proof that it works

Servers: `bootstrapd-daemon` (`python -m bootstrapd run` on bench/files/site.py's site, daemon defaults),
`bootstrapd` / `bootstrapd-wN` (the TFTP shell alone through tests/integration/tftp_harness.py, default or N
transfer workers), tftpd-hpa, dnsmasq.
Scenarios (the same client, bench/tftp/load.py, in a client namespace, against each server in turn):
  small:   `--small-transfers` downloads of a 4 KB file by 100 concurrent clients (RFC 1350 lock-step)
  large:   20 concurrent downloads of a 32 MB file at blksize 1468
  large-w16: the same with windowsize 16 (servers without RFC 7440 answer without it: lock-step)
Reported: transfers/s, MB/s, failures, server CPU seconds (utime+stime of the server and its reaped
children, /proc/PID/stat: tftpd-hpa forks a child per transfer) and CPU per transfer.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.files.site import daemon_site
from bootstrapd.lab import Lab, lab_available, staging_lan, stop_process

SERVER_IP, CLIENT_ADDR = "198.18.0.1", "198.18.0.2/23"
REPO = Path(__file__).resolve().parents[2]
TICKS = os.sysconf("SC_CLK_TCK")
SERVERS = ("bootstrapd-daemon", "bootstrapd", "tftpd-hpa", "dnsmasq")


def argv_for(name: str, root: Path, work: Path) -> list[str]:
    if name == "bootstrapd-daemon":  # the real daemon, its defaults (2 transfer workers on 2 CPUs)
        site = work / "daemon"
        site.mkdir(exist_ok=True)
        (site / "site.yaml").write_text(yaml.safe_dump(dict(daemon_site(site, root), state_dir=str(site / "state"))))
        return [sys.executable, "-m", "bootstrapd", "run", "-c", str(site / "site.yaml")]
    if name.startswith("bootstrapd"):  # bootstrapd-wN: with N transfer workers (default: CPUs minus one)
        workers = ["--workers", name.split("-w", 1)[1]] if "-w" in name else []
        return [sys.executable, "-m", "tests.integration.tftp_harness", "--root", str(root), "--address",
                SERVER_IP, "--port", "69", "--blksize-max", "1468", *workers]
    if name == "tftpd-hpa":  # foreground, secure (chroot-like -s), this address only, max blksize as ours
        return [shutil.which("in.tftpd") or "/usr/sbin/in.tftpd", "-L", "-s", str(root), "-a",
                f"{SERVER_IP}:69", "-B", "1468"]
    if name == "dnsmasq":  # TFTP only: no DNS (port 0), no DHCP; tftp-max above the concurrency
        return [shutil.which("dnsmasq") or "/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                "--port=0", "--enable-tftp", f"--tftp-root={root}", f"--listen-address={SERVER_IP}",
                "--bind-interfaces", "--tftp-max=1000", "--user=root", "--group=root",
                f"--pid-file={work / 'dnsmasq.pid'}", "--log-facility=-"]
    raise ValueError(name)


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


class CpuMeter:
    """CPU seconds of a server and every process it forks (tftpd-hpa: a child per transfer, not reaped into
    its cutime because it ignores SIGCHLD): a cgroup of its own (v1 cpuacct, else v2), else /proc/PID/stat."""

    def __init__(self, pid: int) -> None:
        self.pid, self.group, self.file = pid, None, ""
        name = f"bench-tftp-{os.getpid()}-{pid}"
        for base, file in (("/sys/fs/cgroup/cpuacct", "cpuacct.usage"), ("/sys/fs/cgroup/unified", "cpu.stat"),
                           ("/sys/fs/cgroup", "cpu.stat")):
            group = Path(base) / name
            try:
                group.mkdir()
                for proc in (pid, *children(pid)):  # bootstrapd's transfer workers are already running
                    (group / "cgroup.procs").write_text(str(proc))
            except OSError:
                with contextlib.suppress(OSError):
                    group.rmdir()
                continue
            self.group, self.file = group, file
            break

    def seconds(self) -> float:
        if self.group is None:
            stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return sum(int(x) for x in stat[11:15]) / TICKS
        text = (self.group / self.file).read_text()
        if self.file == "cpuacct.usage":
            return int(text) / 1e9
        return int(text.split("usage_usec", 1)[1].split()[0]) / 1e6

    def close(self) -> None:
        if self.group is not None:
            with contextlib.suppress(OSError):
                self.group.rmdir()


@dataclass
class Row:
    server: str
    scenario: str
    transfers: int
    failures: int
    seconds: float
    mbytes: float
    cpu: float

    def line(self) -> str:
        per = 1000 * self.cpu / max(1, self.transfers)
        return (f"| {self.scenario:9} | {self.server:13} | {self.transfers:5} | {self.failures:3} | "
                f"{self.transfers / self.seconds:8.1f} | {self.mbytes / self.seconds:7.1f} | {self.cpu:6.2f} | "
                f"{per:7.2f} |")


@dataclass(frozen=True)
class Scenario:
    label: str
    argv: list[str]  # for bench/tftp/load.py, without --transfers/--concurrency
    transfers: int
    concurrency: int


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    small = ["--name", "small.bin", "--size", "4096"]
    large = ["--name", "large.bin", "--size", str(args.large_mb << 20), "--blksize", "1468"]
    n = args.large_clients
    return [Scenario("small", small, args.small_transfers, 100), Scenario("large", large, n, n),
            Scenario("large-w16", [*large, "--windowsize", "16"], n, n)]


def load(client: Any, sc: Scenario, procs: int, env: dict[str, str]) -> dict[str, Any]:
    """Run the load in `procs` client processes at once (one Python client cannot keep a server busy)."""
    running = []
    for i in range(procs):
        share = sc.transfers // procs + (i < sc.transfers % procs)
        conc = max(1, sc.concurrency // procs + (i < sc.concurrency % procs))
        argv = [sys.executable, "-m", "bench.tftp.load", "--server", SERVER_IP, *sc.argv,
                "--transfers", str(share), "--concurrency", str(min(conc, share))]
        running.append(client.popen(argv, stdout=subprocess.PIPE, env=env, cwd=REPO, text=True))
    total: dict[str, Any] = {"transfers": 0, "failures": 0, "bytes": 0, "short": 0, "seconds": 0.0}
    for proc in running:
        out, _ = proc.communicate(timeout=1800)
        r = json.loads(out.strip().splitlines()[-1])
        for key in ("transfers", "failures", "bytes", "short"):
            total[key] += r[key]
        total["seconds"] = max(total["seconds"], r["seconds"])
    return total


def one(lan: Any, client: Any, name: str, root: Path, work: Path, sc: Scenario, procs: int) -> dict[str, Any]:
    log = open(work / f"{name}.log", "a")  # noqa: SIM115 - the child owns it
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = lan.server.popen(argv_for(name, root, work), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    log.close()
    meter: CpuMeter | None = None
    try:
        time.sleep(4.0 if name == "bootstrapd-daemon" else 1.0 if name.startswith("bootstrapd") else 0.3)
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {(work / f'{name}.log').read_text()[-2000:]}")
        meter = CpuMeter(proc.pid)
        before = meter.seconds()
        result = load(client, sc, procs, env)
        result["cpu"] = meter.seconds() - before
        return result
    finally:
        stop_process(proc)
        if meter is not None:
            meter.close()


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--short", action="store_true", help="200 small transfers, 4 x 8 MB")
    p.add_argument("--servers", default=",".join(SERVERS))
    p.add_argument("--scenarios", default="small,large,large-w16")
    p.add_argument("--client-procs", type=int, default=2, help="client processes sharing the load")
    p.add_argument("--small-transfers", type=int, default=1000)
    p.add_argument("--large-clients", type=int, default=20)
    p.add_argument("--large-mb", type=int, default=32)
    args = p.parse_args(argv)
    if args.short:
        args.small_transfers, args.large_clients, args.large_mb = 200, 4, 8
    ok, reason = lab_available()
    if not ok:
        print(f"bench/tftp: {reason}", file=sys.stderr)
        return 2
    work = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-tftp-{os.getpid()}"
    root = work / "root"
    root.mkdir(parents=True)
    (root / "small.bin").write_bytes(os.urandom(4096))
    (root / "large.bin").write_bytes(os.urandom(args.large_mb << 20))
    rows: list[Row] = []
    try:
        with Lab() as lab:
            lan = staging_lan(lab, clients=0)
            client = lan.static_client(CLIENT_ADDR, name="loader")
            for sc in scenarios(args):
                if sc.label not in args.scenarios.split(","):
                    continue
                for name in args.servers.split(","):
                    r = one(lan, client, name, root, work, sc, args.client_procs)
                    rows.append(Row(name, sc.label, r["transfers"], r["failures"] + r["short"], r["seconds"],
                                    r["bytes"] / 1e6, r["cpu"]))
                    print(rows[-1].line(), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("\n| scenario | server | transfers | fail | transfers/s | MB/s | server CPU s | CPU ms/transfer |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
