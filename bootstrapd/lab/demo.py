"""`bootstrapd lab demo`: the example site served on a private virtual staging LAN, phones booting on it.

Everything lives in network namespaces with 198.18.0.0/15 addresses and is torn down at the end, also on
Ctrl-C or failure. Phones are DHCP clients (busybox udhcpc) sending their model as option 60.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from bootstrapd.lab.daemon import Daemon
from bootstrapd.lab.netns import Host, Lab, lab_available
from bootstrapd.lab.topology import staging_lan

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"
MODELS = ("CP-6841-3PCC", "CP-7832-3PCC", "CP-7841-3PCC", "CP-8841-3PCC", "CP-8851-3PCC", "CP-8865-3PCC")


@dataclass
class PhoneResult:
    mac: str
    model: str
    address: str = "-"
    found_by: str = "-"
    seconds: float = 0.0


def _boot_phone(host: Host, model: str, mac: str, workdir: Path) -> PhoneResult:
    out = workdir / f"{host.name}.env"
    script = workdir / f"{host.name}.sh"
    script.write_text(f'#!/bin/sh\n[ "$1" = bound ] && env > "{out}" && ip addr add "$ip/$mask" dev "$interface"\n'
                      'exit 0\n')
    script.chmod(0o755)
    t0 = time.monotonic()
    host.run(["udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "4", "-T", "1", "-s", str(script),
              "-V", model, "-O", "150", "-O", "159", "-O", "160"], check=False, timeout=30)
    result = PhoneResult(mac, model, seconds=time.monotonic() - t0)
    if out.exists():
        env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
        result.address = env.get("ip", "-")
        if "opt160" in env:
            result.found_by = "option 160: " + bytes.fromhex(env["opt160"]).decode(errors="replace")
        elif "tftp" in env:
            result.found_by = "option 66: " + env["tftp"]
        elif "domain" in env:
            result.found_by = f"SRV via {env['domain']}"
    return result


def _srv(host: Host, name: str) -> list[str]:
    r = host.run(["dig", "+short", "+time=2", "@198.18.0.1", name, "SRV"], check=False, timeout=15)
    return [line for line in r.stdout.splitlines() if line.strip()]


def run_demo(phones: int, site: Path) -> int:
    ok, reason = lab_available()
    if not ok:
        print(f"bootstrapd lab demo: cannot build the lab here: {reason} (run as root)", file=sys.stderr)
        return 1
    for tool in ("udhcpc", "dig"):
        if not shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin"):
            print(f"bootstrapd lab demo: {tool} is missing (scripts/install-deps.sh)", file=sys.stderr)
            return 1
    with tempfile.TemporaryDirectory(prefix="bootstrapd-demo-") as tmp, Lab() as lab:
        work = Path(tmp)
        print(f"lab {lab.prefix}: staging LAN 198.18.0.0/23 on bridge stg0, {phones} phones, site {site.name}")
        lan = staging_lan(lab, clients=0)
        hosts = [(lan.add_client(mac=f"00:56:2b:00:{i // 256:02x}:{i % 256:02x}"), MODELS[i % len(MODELS)])
                 for i in range(phones)]
        hosts.append((lan.add_client(name="laptop"), "MSFT 5.0"))  # not a phone: an address, no provisioning
        daemon = Daemon(lan.server, work, {"extends": str(site.resolve()), "state_dir": str(work / "state"),
                                            "logging": {"format": "json", "level": "info"}})
        t0 = time.monotonic()
        daemon.start()
        print(f"bootstrapd ready in {time.monotonic() - t0:.2f}s (DHCP on stg0, DNS on 198.18.0.1:53)")
        with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
            futures = [pool.submit(_boot_phone, h, model, h.mac("eth0"), work) for h, model in hosts]
            results = [f.result() for f in futures]
        print(f"\n{'MAC':<18} {'model':<13} {'address':<14} {'s':>5}  provisioning found by")
        for r in results:
            print(f"{r.mac:<18} {r.model:<13} {r.address:<14} {r.seconds:5.2f}  {r.found_by}")
        leased = sum(r.address != "-" for r in results)
        distinct = len({r.address for r in results if r.address != "-"})
        provisioned = sum(r.found_by.startswith("option") for r in results)
        print(f"\n{leased}/{len(results)} devices leased, {distinct} distinct addresses, "
              f"{provisioned} given a provisioning URL (the laptop must not be)")
        asker = next((h for (h, _), r in zip(hosts, results, strict=True) if r.address != "-"), None)
        for svc in ("_ciscoprov-https._tls", "_ciscoprov-http._tcp"):
            for line in _srv(asker, f"{svc}.staging.example.net") if asker else []:
                print(f"DNS SRV {svc}: {line}")
        daemon.stop()
        ok_all = leased == distinct == len(results) and provisioned == phones
        print("demo " + ("passed" if ok_all else "FAILED") + "; tearing the lab down")
        return 0 if ok_all else 1


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bootstrapd lab demo", description=__doc__)
    p.add_argument("--phones", type=int, default=12, help="how many phones boot (default 12)")
    p.add_argument("--site", type=Path, default=EXAMPLE, help="site file to serve (default: the example)")
    args = p.parse_args(argv)
    return run_demo(args.phones, args.site)
