"""The cost of one DORA in bootstrapd's DHCP path, measured in a way a busy shared machine cannot disturb.

    sudo python bench/dhcp/cost.py [--dora 2000] [--wave 64] [--callgrind] [--profile]

It builds one lab namespace whose `lo` carries 198.18.0.1/16 (the server) and 198.18.0.2/16 (a relay), and
runs in it the real shell exactly as `bootstrapd run` wires it: DhcpServer on a SQLite store in a temp dir
(on /var/tmp, fsync'd commits), the device tracker as `on_outcome`, Service._lease_event feeding DNS's
lease table. A client process (never traced) plays perfdhcp's relay: waves of `--wave` DISCOVERs, then
the waves' REQUESTs, each wave answered before the next one starts, so the server sees bursts of that
size through its socket path (receive, parse, engine, store, commit, send, tracker, DNS records).

- `--callgrind`: the server runs under valgrind's callgrind, once with `--dora` exchanges and once with
  none; the difference of the two instruction counts divided by `--dora` is the instructions per DORA
  (user space: system calls count only their user-side wrappers).
- `--profile`: cProfile over the server's run, the top functions by own time.
Without either it prints the wall time per DORA (noisy on a shared machine).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import ipaddress
import os
import pstats
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SERVER_IP, RELAY_IP = "198.18.0.1", "198.18.0.2"
PORT = 67


# -- the client (a relay, like perfdhcp) ------------------------------------------------------------------
def _discover(i: int) -> bytes:
    from bootstrapd.dhcp.codec import Message, build

    mac = bytes((0x00, 0x0C, 0x01, (i >> 16) & 0xFF, (i >> 8) & 0xFF, i & 0xFF))
    options = ((53, b"\x01"), (55, bytes((1, 3, 6, 15, 42, 66, 150, 159, 160))), (60, b"Cisco CP-8851-3PCC"))
    return build(Message(xid=i + 1, giaddr=ipaddress.IPv4Address(RELAY_IP), chaddr=mac, options=options))


def _request(discover: bytes, offer: bytes) -> bytes:
    """The DISCOVER turned REQUEST for the OFFER's yiaddr (option 53 is first: its value sits at 242)."""
    extra = b"\x32\x04" + offer[16:20] + b"\x36\x04" + ipaddress.IPv4Address(SERVER_IP).packed
    end = discover.index(b"\xff", 240)
    return discover[:242] + b"\x03" + discover[243:end] + extra + b"\xff" + bytes(max(0, 299 - end - len(extra)))


def client(dora: int, wave: int) -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((RELAY_IP, PORT))
    sock.settimeout(30)
    server = (SERVER_IP, PORT)
    discovers = [_discover(i) for i in range(dora)]
    acked = 0
    start = time.perf_counter()
    for base in range(0, dora, wave):
        batch = discovers[base:base + wave]
        for d in batch:
            sock.sendto(d, server)
        offers: dict[bytes, bytes] = {}
        while len(offers) < len(batch):
            data = sock.recv(2048)
            if data[242:243] == b"\x02":
                offers[data[4:8]] = data
        for d in batch:
            sock.sendto(_request(d, offers[d[4:8]]), server)
        got = 0
        while got < len(batch):
            data = sock.recv(2048)
            if data[242:243] == b"\x05":
                got += 1
        acked += got
    elapsed = time.perf_counter() - start
    print(f"client: {acked} DORA in {elapsed:.2f} s", file=sys.stderr)
    return 0 if acked == dora else 1


# -- the server --------------------------------------------------------------------------------------------
def _site(state: Path):  # type: ignore[no-untyped-def]
    import yaml

    from bootstrapd.config.loader import load_site

    doc = {
        "site": "cost",
        "listen": {"interfaces": ["lo"], "address": SERVER_IP},
        "domain": "cost.example.net",
        "state_dir": str(state),
        "dhcp": {"authoritative": True, "lease_time": 3600, "unknown_devices": "lease",
                 "subnets": [{"prefix": "198.18.0.0/16", "pools": ["198.18.0.10-198.18.255.250"],
                              "router": SERVER_IP}]},
        "logging": {"format": "json", "level": "warning"},
    }
    path = state / "site.yaml"
    path.write_text(yaml.safe_dump(doc))
    return load_site(path)


async def serve(dora: int, wave: int, without: frozenset[str] = frozenset()) -> None:
    from bootstrapd import heap
    from bootstrapd.config.model import LogFormat, LogLevel
    from bootstrapd.dhcp.store_sqlite import open_store
    from bootstrapd.observability.devices import DeviceTracker
    from bootstrapd.observability.logging import configure, get_logger
    from bootstrapd.observability.metrics import Metrics
    from bootstrapd.service import Service
    from bootstrapd.transport import dhcp as shell
    from bootstrapd.transport.dns import DnsServer

    shell_bound = getattr(shell, "ADMISSION_S", None)
    if shell_bound is not None:  # under callgrind the loop is ~50x slower: nothing here is overload
        shell.ADMISSION_S = 1e6
    shell.STALE_DISCOVER_S = 1e6
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        state = Path(tmp)
        site = _site(state)
        configure(LogFormat.JSON, LogLevel.WARNING)
        log = get_logger(site=site.site)
        metrics = Metrics()
        devices = DeviceTracker(state, lambda: site, log, metrics=metrics)
        wiring = Service.__new__(Service)  # only its lease hook: the DNS records of leases, as the daemon does
        wiring.site, wiring.dns = site, DnsServer(site, metrics, log)
        store = open_store(state)
        server = shell.DhcpServer(site, store, metrics, log,
                                  on_lease=None if "dns" in without else wiring._lease_event,
                                  on_outcome=None if "tracker" in without else devices.dhcp_outcome)
        await server.start()
        bursts = [0]
        process = server._process

        def counted(burst: list) -> None:  # type: ignore[type-arg]
            bursts[0] += 1
            process(burst)

        server._process = counted  # type: ignore[method-assign]
        # The 5-second housekeeping (gauges: a count of every lease) costs per second, not per DORA; under
        # callgrind's 50x slow-down it would run 50 times as often and make the count depend on the load.
        for task in server._tasks:
            task.cancel()
        heap.settle()  # as Service.main does once everything is started
        if dora:
            proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--client", "--dora", str(dora),
                                                        "--wave", str(wave))
            rc = await proc.wait()
            if rc != 0:
                raise SystemExit(f"client failed ({rc})")
            print(f"server: {bursts[0]} bursts ({2 * dora / max(bursts[0], 1):.1f} packets each)", file=sys.stderr)
        devices.flush()
        await server.stop()
        devices.close()
        store.close()


def serve_main(args: argparse.Namespace) -> None:
    without = frozenset(args.without.split(",")) if args.without else frozenset()
    if not args.profile:
        asyncio.run(serve(args.dora, args.wave, without))
        return
    profile = cProfile.Profile()
    profile.enable()
    asyncio.run(serve(args.dora, args.wave, without))
    profile.disable()
    if args.profile_out:
        profile.dump_stats(args.profile_out)
    stats = pstats.Stats(profile, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(35)
    stats.sort_stats("cumulative").print_stats(45)


# -- the lab and the measurements ---------------------------------------------------------------------------
def _run_server(host, args: argparse.Namespace, dora: int, extra: list[str]) -> str:  # type: ignore[no-untyped-def]
    argv = [sys.executable, __file__, "--serve", "--dora", str(dora), "--wave", str(args.wave), *extra]
    if args.without:
        argv += ["--without", args.without]
    if args.callgrind:
        out = Path(tempfile.mkdtemp()) / "callgrind.out"
        argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv]
    proc = host.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                      env={**os.environ, "PYTHONPATH": str(ROOT)})
    stdout, stderr = proc.communicate(timeout=3600)
    if proc.returncode != 0:
        raise SystemExit(f"server failed ({proc.returncode}): {stderr[-2000:]}")
    sys.stderr.write("".join(line + "\n" for line in stderr.splitlines() if line.startswith(("client", "server:"))))
    return stdout + stderr


def _instructions(output: str) -> int:
    found = re.search(r"Collected : (\d+)", output)
    if found is None:
        raise SystemExit("no callgrind total in the output")
    return int(found.group(1))


def measure(args: argparse.Namespace) -> None:
    from bootstrapd.lab.netns import Lab

    with Lab() as lab:
        host = lab.host("cost")
        host.add_address("lo", f"{SERVER_IP}/16")
        host.add_address("lo", f"{RELAY_IP}/16")
        if args.callgrind:
            full = _instructions(_run_server(host, args, args.dora, []))
            idle = _instructions(_run_server(host, args, 0, []))
            print(f"instructions: {full:,} with {args.dora} DORA, {idle:,} without; "
                  f"{(full - idle) / args.dora:,.0f} per DORA (wave {args.wave})")
            return
        if args.profile:
            extra = ["--profile", *(["--profile-out", args.profile_out] if args.profile_out else [])]
            print(_run_server(host, args, args.dora, extra))
            return
        start = time.perf_counter()
        _run_server(host, args, args.dora, [])
        print(f"wall: {(time.perf_counter() - start) / args.dora * 1e6:.0f} us per DORA incl. start-up")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dora", type=int, default=2000)
    p.add_argument("--wave", type=int, default=64)
    p.add_argument("--callgrind", action="store_true")
    p.add_argument("--profile", action="store_true")
    p.add_argument("--profile-out", help="with --profile: also write the raw cProfile data here")
    p.add_argument("--without", default="", help="leave out hooks, for attribution: tracker,dns")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.client:
        return client(args.dora, args.wave)
    if args.serve:
        serve_main(args)
        return 0
    measure(args)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
