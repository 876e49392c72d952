"""HTTP file service benchmark: bootstrapd's HttpFileServer against nginx, same files, same clients, same run.

    python bench/http/run.py [--bootstrapd daemon|harness] [--duration 10] [--connections 32]
                             [--rss-clients 200] [--rss-seconds 5]

A lab (network namespaces, 198.18.0.0/15 only) with a server host (198.18.0.1) running both servers, one
process each (nginx: one worker), and a client host (198.18.0.200) running wrk:
1. profile requests/s: wrk on keep-alive connections. `--bootstrapd daemon` (the default): the real daemon
   (`python -m bootstrapd run`, bench/files/site.py: example templates, 1,000-row inventory) renders
   `/CP-7841-3PCC.cfg` for the phone of the User-Agent's MAC: one inventory MAC (render cache hit), the
   1,000 inventory MACs in turn, a unique non-inventory MAC per request (every request a render), and the
   encrypted per-device `/$MA.cfg` of the inventory MACs in turn (cached render, fresh salt per request);
   wrk's request() in a Lua script sets the header and path. `--bootstrapd harness`: HttpFileServer through
   tests/integration/http_harness.py with a fixed `Rendered` body. nginx: a static file of a profile's bytes;
2. firmware MB/s: wrk on a 100 MB file (random bytes on disk, page cache warm), sendfile on both;
3. memory: `--rss-clients` connections (one asyncio client process) each fetching the 100 MB file, reading
   slowly for `--rss-seconds`, while the server's VmRSS (nginx: master + worker) is sampled.
Not part of the test suite; see README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.files.site import daemon_site, inventory_mac
from bootstrapd.lab import Host, Lab, staging_lan, stop_process
from bootstrapd.lab.daemon import Daemon

REPO = Path(__file__).resolve().parents[2]
SERVER = "198.18.0.1"
PORTS = {"bootstrapd": 80, "nginx": 8080}
PROFILE_NAME = "SEP00562b043615.cfg"
PROFILE = (b'<flat-profile><Profile_Rule ua="na">http://198.18.0.1/$MA.cfg</Profile_Rule>'
           b"<Upgrade_Rule>http://198.18.0.1/sip78xx.loads</Upgrade_Rule></flat-profile>\n")
FIRMWARE = "sip78xx.12-0-1MPP-1234.loads"
FIRMWARE_SIZE = 100 * 1024 * 1024

NGINX_CONF = """worker_processes 1;
user root root;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_timeout 15;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  types {{ application/xml cfg; }}
  client_body_temp_path {tmp}/ngx-body;
  proxy_temp_path {tmp}/ngx-proxy;
  fastcgi_temp_path {tmp}/ngx-fastcgi;
  uwsgi_temp_path {tmp}/ngx-uwsgi;
  scgi_temp_path {tmp}/ngx-scgi;
  server {{ listen {addr}:{port}; root {root}; }}
}}
"""


def make_files(tmp: Path) -> Path:
    root = tmp / "root"
    root.mkdir()
    (root / PROFILE_NAME).write_bytes(PROFILE)
    (tmp / "profile.xml").write_bytes(PROFILE)
    with open(root / FIRMWARE, "wb") as fh:
        chunk = os.urandom(1 << 20)
        for _ in range(FIRMWARE_SIZE >> 20):
            fh.write(chunk)
    return root


def start_bootstrapd(host: Host, tmp: Path, root: Path) -> subprocess.Popen[bytes]:
    ready = tmp / "ready"
    proc = host.popen([sys.executable, "-m", "tests.integration.http_harness", "--address", SERVER,
                       "--root", str(root), "--ready", str(ready), "--http-port", str(PORTS["bootstrapd"]),
                       "--rendered", f"{PROFILE_NAME}={tmp / 'profile.xml'}", "--limit", "max_connections=4096",
                       "--limit", "idle_timeout=60"],
                      stdout=subprocess.DEVNULL, stderr=open(tmp / "bootstrapd.err", "w"), cwd=REPO,  # noqa: SIM115
                      env={**os.environ, "PYTHONPATH": str(REPO)})
    wait_for(lambda: ready.exists(), proc, "bootstrapd harness")
    return proc


UA = "Cisco-CP-7841-3PCC/12.0.1 ({mac})"
LUA_HEAD = """counter = 0
macs = {{{macs}}}
request = function()
  counter = counter + 1
"""
LUA_CASES = {  # wrk request() bodies: which path and User-Agent each rendered-profile case sends
    "cached": 'return wrk.format("GET", "/CP-7841-3PCC.cfg", {["User-Agent"] = ua(macs[1])})',
    "inventory": 'return wrk.format("GET", "/CP-7841-3PCC.cfg", {["User-Agent"] = ua(macs[counter % #macs + 1])})',
    "unique": ('return wrk.format("GET", "/CP-7841-3PCC.cfg", '
               '{["User-Agent"] = ua(string.format("0a%010x", counter))})'),
    "encrypted": ('local mac = macs[counter % #macs + 1]\n  '
                  'return wrk.format("GET", "/" .. mac .. ".cfg", {["User-Agent"] = ua(mac)})'),
}


def lua_scripts(tmp: Path, rows: int) -> dict[str, Path]:
    """One wrk script per case; `ua(mac)` builds a 7841's User-Agent (mpp-bootstrap.md)."""
    macs = ",".join(f'"{inventory_mac(i)}"' for i in range(rows))
    ua = 'function ua(mac) return "' + UA.format(mac='" .. mac .. "') + '" end\n'
    out = {}
    for case, body in LUA_CASES.items():
        out[case] = tmp / f"{case}.lua"
        out[case].write_text(ua + LUA_HEAD.format(macs=macs) + "  " + body + "\nend\n")
    return out


def start_daemon(host: Host, tmp: Path, root: Path, rows: int) -> subprocess.Popen[bytes]:
    work = tmp / "daemon"
    work.mkdir()
    daemon = Daemon(host, work, daemon_site(work, root, rows))
    daemon.start(timeout=30)
    daemon.wait_for("files.listening", timeout=30)
    assert daemon.proc is not None
    return daemon.proc


def check_rendered(client: Host, tmp: Path) -> dict[str, str]:
    """What each case's first request gets (a rendered flat-profile, encrypted for $MA.cfg), so a 404 storm
    cannot pass for a fast renderer."""
    seen = {}
    for case, path, mac in (("inventory", "/CP-7841-3PCC.cfg", inventory_mac(0)),
                            ("unique", "/CP-7841-3PCC.cfg", "0a0000000001"),
                            ("encrypted", f"/{inventory_mac(0)}.cfg", inventory_mac(0))):
        out = tmp / f"{case}.body"
        client.run(["curl", "-sSf", "-A", UA.format(mac=mac), "-o", str(out), f"http://{SERVER}{path}"], timeout=30)
        body = out.read_bytes()
        seen[case] = body[:90].decode(errors="replace").replace("\n", " ")
        ok = body.startswith(b"Salted__") if case == "encrypted" else b"<flat-profile>" in body
        if not ok or (case == "inventory" and b"--key" not in body):
            raise SystemExit(f"daemon answered {case} with {body[:200]!r}")
    return seen


def start_nginx(host: Host, tmp: Path, root: Path) -> subprocess.Popen[bytes]:
    conf = tmp / "nginx.conf"
    conf.write_text(NGINX_CONF.format(tmp=tmp, addr=SERVER, port=PORTS["nginx"], root=root))
    proc = host.popen(["nginx", "-c", str(conf), "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                      stderr=open(tmp / "nginx.err", "w"))  # noqa: SIM115
    wait_for(lambda: (tmp / "nginx.pid").exists(), proc, "nginx")
    return proc


def wait_for(cond: object, proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 20
    while not cond():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"{what} did not start")
        time.sleep(0.05)
    time.sleep(0.2)


def wrk(client: Host, url: str, connections: int, duration: int, script: Path | None = None) -> dict[str, float]:
    extra = ["-s", str(script)] if script else []
    out = client.run(["wrk", "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "10s", *extra, url],
                     timeout=duration + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    value, unit = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out).groups()  # type: ignore[union-attr]
    mb = float(value) * {"B": 1 / 2**20, "KB": 1 / 2**10, "MB": 1, "GB": 2**10}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "mib_s": mb, "non2xx": float(errors.group(1)) if errors else 0.0}


def pids_of(proc: subprocess.Popen[bytes]) -> list[int]:
    """The process and its children (nginx's worker)."""
    kids = Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
    return [proc.pid, *(int(p) for p in kids.read_text().split())] if kids.exists() else [proc.pid]


def rss_kb(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total


def rss_under_load(client: Host, proc: subprocess.Popen[bytes], port: int, clients: int,
                   seconds: float) -> dict[str, float]:
    base = rss_kb(pids_of(proc))
    loader = client.popen([sys.executable, str(Path(__file__).resolve()), "--slow-clients", str(clients),
                           "--port", str(port), "--rss-seconds", str(seconds)], stdout=subprocess.PIPE, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    peak = main = rss_kb([proc.pid])
    while loader.poll() is None:
        peak, main = max(peak, rss_kb(pids_of(proc))), max(main, rss_kb([proc.pid]))
        time.sleep(0.05)
    assert loader.stdout is not None
    report = json.loads(loader.stdout.read() or b"{}")
    return {"base_mib": base / 1024, "peak_mib": peak / 1024, "peak_main_mib": main / 1024,
            "processes": len(pids_of(proc)), **report}


async def slow_clients(port: int, count: int, seconds: float) -> dict[str, float]:
    """`count` connections each GETting the firmware, reading 64 KiB every 50 ms until `seconds` pass."""
    got = [0] * count
    started = [False] * count
    stop = time.monotonic() + seconds

    async def one(i: int) -> None:
        reader, writer = await asyncio.open_connection(SERVER, port)
        writer.write(f"GET /{FIRMWARE} HTTP/1.1\r\nHost: {SERVER}\r\n\r\n".encode())
        while time.monotonic() < stop:
            data = await reader.read(65536)
            if not data:
                break
            started[i] = True
            got[i] += len(data)
            await asyncio.sleep(0.05)
        writer.close()

    await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)
    return {"clients_receiving": sum(started), "mib_received": sum(got) / 2**20}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bootstrapd", choices=("daemon", "harness"), default="daemon",
                   help="the real daemon rendering templates (default) or the HttpFileServer harness")
    p.add_argument("--inventory", type=int, default=1000, help="inventory rows of the daemon's site")
    p.add_argument("--profile-cases", default="cached,inventory,unique,encrypted",
                   help=f"rendered-profile cases in order, of {','.join(LUA_CASES)}")
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--rss-clients", type=int, default=200)
    p.add_argument("--rss-seconds", type=float, default=5)
    p.add_argument("--slow-clients", type=int, help=argparse.SUPPRESS)  # the loader, inside the client host
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.slow_clients:
        print(json.dumps(asyncio.run(slow_clients(args.port, args.slow_clients, args.rss_seconds))))
        return
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (scripts/install-deps.sh)")
    results = run(args)
    print(json.dumps(results, indent=2))


def run(args: argparse.Namespace) -> dict[str, dict[str, object]]:
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmpdir, Lab() as lab:
        tmp = Path(tmpdir)
        tmp.chmod(0o755)
        root = make_files(tmp)
        lan = staging_lan(lab, clients=0)
        client = lan.static_client("198.18.0.200/23", name="wrk")
        daemon = args.bootstrapd == "daemon"
        procs = {"bootstrapd": start_daemon(lan.server, tmp, root, args.inventory) if daemon
                 else start_bootstrapd(lan.server, tmp, root), "nginx": start_nginx(lan.server, tmp, root)}
        results: dict[str, dict[str, object]] = {}
        try:
            if daemon and args.profile_cases:  # "": none (the RSS of a daemon that rendered nothing yet)
                results["bootstrapd-profiles"] = profile_cases(client, tmp, args)
            for port in PORTS.values():  # warm the page cache for both
                client.run(["curl", "-sS", "-o", "/dev/null", f"http://{SERVER}:{port}/{FIRMWARE}"], timeout=120)
            for name, port in PORTS.items():
                base = f"http://{SERVER}:{port}"
                results[name] = {
                    "static_profile": wrk(client, f"{base}/{PROFILE_NAME}", args.connections, args.duration),
                    "firmware": wrk(client, f"{base}/{FIRMWARE}", 4, args.duration),
                    "rss": rss_under_load(client, procs[name], port, args.rss_clients, args.rss_seconds),
                }
                print(name, json.dumps(results[name]), file=sys.stderr, flush=True)
        finally:
            for proc in procs.values():
                stop_process(proc)
    return results


def profile_cases(client: Host, tmp: Path, args: argparse.Namespace) -> dict[str, object]:
    """Rendered profiles/s of the daemon, one wrk run per case, with the daemon's CPU seconds per case."""
    out: dict[str, object] = {"first_bytes": check_rendered(client, tmp)}
    scripts = lua_scripts(tmp, args.inventory)
    wrk(client, f"http://{SERVER}", args.connections, 2, scripts["unique"])  # warm-up: slow just after start
    for n, case in enumerate(args.profile_cases.split(",")):
        key = case if case not in out else f"{case}#{n}"
        out[key] = wrk(client, f"http://{SERVER}", args.connections, args.duration, scripts[case])
        print("bootstrapd", key, json.dumps(out[key]), file=sys.stderr, flush=True)
    return out


if __name__ == "__main__":
    main()
