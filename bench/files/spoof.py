"""Memory of the real daemon under a flood of spoofed identities (issue 12: RSS under 150 MB).

    python bench/files/spoof.py [--count 50000] [--modes ua,path,firmware] [--inventory 1000] [--render-cache BYTES]

A lab (network namespaces, 198.18.0.0/15 only): the daemon (`python -m bootstrapd run`, bench/files/site.py:
example templates, `--inventory` generated phones) on 198.18.0.1 and one client host running
tests/integration/http_spoof.py, which sends `--count` HTTP requests per mode, each naming a MAC (or, in
`firmware` mode, a firmware) no earlier request named. The daemon's VmRSS and VmHWM are read from /proc
before the first flood and after each, with the render cache and device table gauges from /metrics.
Not part of the test suite; results go to bench/files/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

from bench.files.site import daemon_site, inventory_mac
from bootstrapd.lab import Host, Lab, staging_lan
from bootstrapd.lab.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
SERVER = "198.18.0.1"
METRICS = f"{SERVER}:9267"
GAUGES = ("bootstrapd_files_render_cache_bytes", "bootstrapd_files_render_cache_entries",
          "bootstrapd_files_render_cache_evictions_total", "bootstrapd_devices_tracked")


def memory_kib(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status, re.M)}


def gauges(client: Host) -> dict[str, float]:
    text = client.run(["curl", "-sS", f"http://{METRICS}/metrics"], timeout=30).stdout
    found = {}
    for name in GAUGES:
        m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
        if m:
            found[name.removeprefix("bootstrapd_")] = float(m.group(1))
    return found


def snapshot(pid: int, client: Host) -> dict[str, object]:
    mem = memory_kib(pid)
    return {"rss_mib": round(mem["VmRSS"] / 1024, 1), "hwm_mib": round(mem["VmHWM"] / 1024, 1), **gauges(client)}


def flood(client: Host, mode: str, count: int, start: int) -> dict[str, object]:
    out = client.run([sys.executable, "-m", "tests.integration.http_spoof", SERVER, "80", "--mode", mode,
                      "--count", str(count), "--start", str(start), "--phone", inventory_mac(0)],
                     timeout=count / 50 + 120, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def run(args: argparse.Namespace) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="bench-spoof-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        (tmp / "root").mkdir()
        lan = staging_lan(lab, clients=0)
        client = lan.static_client("198.18.0.200/23", name="spoofer")
        site = daemon_site(tmp, tmp / "root", args.inventory)
        site["metrics"] = {"listen": METRICS}
        if args.render_cache is not None:
            site["files"]["render_cache"] = args.render_cache
        daemon = Daemon(lan.server, tmp, site).start(timeout=30)
        try:
            daemon.wait_for("files.listening", timeout=30)
            assert daemon.proc is not None
            pid = daemon.proc.pid
            flood(client, "ua", 100, 10**9)  # warm-up: imports, first renders, aiohttp's first requests
            results: dict[str, object] = {"before": snapshot(pid, client)}
            print("before", json.dumps(results["before"]), file=sys.stderr, flush=True)
            for n, mode in enumerate(args.modes.split(",")):
                got = flood(client, mode, args.count, n * args.count)
                time.sleep(0.5)
                results[mode] = {**got, "after": snapshot(pid, client)}
                print(mode, json.dumps(results[mode]), file=sys.stderr, flush=True)
        finally:
            daemon.stop()
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=50_000, help="requests per mode, each a new identity")
    p.add_argument("--modes", default="ua,path,firmware", help="floods in order (tests/integration/http_spoof.py)")
    p.add_argument("--inventory", type=int, default=1000, help="inventory rows of the daemon's site")
    p.add_argument("--render-cache", type=int, help="files.render_cache, bytes (0: the device table alone)")
    args = p.parse_args()
    print(json.dumps(run(args), indent=2))


if __name__ == "__main__":
    main()
