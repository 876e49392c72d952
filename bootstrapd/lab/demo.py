"""`bootstrapd lab demo`: a staging floor on a private virtual LAN, 50 simulated MPP phones booting on it.

Builds network namespaces (198.18.0.0/15 addresses only), starts bootstrapd with the example site, powers
on the phones, shows their progress, prints the staging report and the sign-off report, and tears
everything down at the end, also on Ctrl-C or failure.

bootstrapd serves the whole first hop: DHCP, DNS (the example's prov1 is bootstrapd itself), the phones'
first profile over TFTP (option 66), HTTP (option 160) or HTTPS (DNS SRV), rendered for each phone from the
example's templates and an inventory of the demo's phones, then each inventory phone's own profile,
gzipped and encrypted with its key; and it hears their syslog. Phones with the example's OUI 00:56:2b
match a phone class: the 8800 series gets option 160, the others option 66. Phones with other Cisco OUIs
match no class and find their server through the `_ciscoprov-*` SRV records. A lab server on prov2
(198.18.0.11) stands in for the provider's remote server, where every phone's resync chain ends.
Phones with OUI 70:10:5c are left out of the inventory (`unexpected`), and one inventory row has no phone
(`missing`).
"""

from __future__ import annotations

import argparse
import collections
import csv
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from bootstrapd.lab.netns import Lab, lab_available
from bootstrapd.sim.floor import PROV_ADDRESSES, Floor
from bootstrapd.sim.phone import MODELS, make_phones
from bootstrapd.sim.report import PhoneReport, Stage, format_report, progress_bar

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"
DEMO_OUIS = ("00:56:2b", "00:56:2b", "2c:31:24", "00:56:2b", "70:10:5c")  # 3 in 5 match the example's class
UNLISTED_OUI = "70:10:5c"  # these phones are not in the demo's inventory: `unexpected` in the report
MISSING_MAC = "00:56:2b:ff:ff:01"  # an inventory row whose phone never boots: `missing`
REMOTE = PROV_ADDRESSES[1]  # prov2: the provider's remote server
REMOTE_KEY = "demo-remote-key"
# The lab's remote server answers /remote/<name> with a profile encrypted with REMOTE_KEY that names itself,
# so the resync chain ends there, and *.loads with a firmware stub.
PROVIDER = {"remote_key": REMOTE_KEY}


def demo_site(site: Path, work: Path, phones: int, cert: tuple[str, str] | None) -> dict[str, Any]:
    """The example (`site`), with the demo's inventory, the lab's remote server and certificate, no auth."""
    inventory = work / "inventory.csv"
    rng = random.Random(0)
    with open(inventory, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["mac", "serial", "key", "label"])
        for i, p in enumerate(make_phones(phones, 0, MODELS, DEMO_OUIS)):
            if not p.mac.startswith(UNLISTED_OUI):
                w.writerow([p.mac, p.serial, f"{rng.getrandbits(96):024x}", f"desk {i + 1}"])
        w.writerow([MISSING_MAC, "FCH00000MISS", f"{rng.getrandbits(96):024x}", "never powered on"])
    files: dict[str, Any] = {
        "auth": None,  # factory-fresh phones hold no credentials
        "inventory": str(inventory),
        "variables": {"remote_profile_rule": f"--key {REMOTE_KEY} http://{REMOTE}/remote/$MA.xml",
                      "firmware_server": f"http://{REMOTE}", "retry_delay": "1"},
    }
    if cert is not None:  # the lab certificate, which the phones trust
        files["https"] = {"cert": cert[0], "key": cert[1]}
    return {"extends": str(site.resolve()), "files": files}


class Progress:
    """The live progress bar (redrawn in place on a terminal; one final line otherwise)."""

    def __init__(self, total: int, out: TextIO) -> None:
        self.total, self.out = total, out
        self.leased = self.done = 0
        self.t0 = time.monotonic()
        self.tty = out.isatty()
        self._drawn = 0.0

    def __call__(self, event: dict[str, Any]) -> None:
        if event.get("event") == "leased":
            self.leased += 1
        elif event.get("event") == "done":
            self.done += 1
        now = time.monotonic()
        if self.tty and (now - self._drawn > 0.05 or self.done == self.total):
            self._drawn = now
            self.out.write("\r" + progress_bar(self.done, self.leased, self.total, now - self.t0))
            self.out.flush()

    def close(self) -> None:
        line = progress_bar(self.done, self.leased, self.total, time.monotonic() - self.t0)
        self.out.write(("\r" + line if self.tty else line) + "\n")


def _step(t0: float, text: str) -> None:
    print(f"[{time.monotonic() - t0:5.1f}s] {text}", flush=True)


def _files_view(floor: Floor) -> list[str]:
    """What bootstrapd's own file service served (its `files.fetch` events)."""
    events = [e for e in floor.daemon.events() if e.get("event") == "files.fetch"] if floor.daemon else []
    served = collections.Counter(e["protocol"] for e in events if e.get("result") == "ok")
    refused = collections.Counter(e.get("result") for e in events if e.get("result") != "ok")
    return ["bootstrapd file service: " + (", ".join(f"{n} over {p}" for p, n in sorted(served.items())) or "nothing")
            + (f"; refused: {', '.join(f'{n} {r}' for r, n in sorted(refused.items()))}" if refused else "")]


def _server_view(floor: Floor) -> list[str]:
    events = floor.prov_events()
    hits = collections.Counter(e["proto"] for e in events if e["event"] == "prov.hit")
    misses = [e for e in events if e["event"] == "prov.miss"]
    agents = sorted({e["ua"] for e in events if e.get("ua")})
    lines = ["remote server (lab): " + ", ".join(f"{n} over {p}" for p, n in sorted(hits.items()))
             + f", {len(misses)} misses"]
    lines += [f"  miss: {e['proto']} {e['path']} from {e['client']}" for e in misses[:5]]
    if agents:
        lines.append(f"  User-Agent, e.g.: {agents[0]}")
    if floor.daemon is not None:
        logged = [e for e in floor.daemon.events() if e.get("event") == "syslog.message"]
        kinds = collections.Counter(str(e.get("kind")) for e in logged)
        lines.append(f"bootstrapd's syslog sink: {len(logged)} lines from {len({e.get('source') for e in logged})} "
                     "phones (" + ", ".join(f"{k} {n}" for k, n in sorted(kinds.items())) + ")")
    return lines


def run_demo(phones: int, site: Path, out: TextIO | None = None, silent: int = 0, fail_resync: int = 0,
             wrong_key: int = 0) -> int:
    out = out or sys.stdout
    ok, reason = lab_available()
    if not ok:
        print(f"bootstrapd lab demo: cannot build the lab here: {reason} (run as root)", file=sys.stderr)
        return 1
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bootstrapd-demo-") as tmp, Lab() as lab:
        floor = Floor(lab, Path(tmp))
        _step(t0, f"lab {lab.prefix}: staging LAN 198.18.0.0/23 on bridge stg0; bootstrapd (and prov1) 198.18.0.1, "
              f"prov2 {REMOTE}")
        daemon = floor.start_daemon(demo_site(site, Path(tmp), phones, floor.cert))
        _step(t0, f"bootstrapd ready with {site.name}: DHCP on stg0, DNS for staging.example.net, TFTP/HTTP/HTTPS "
              "files and syslog on 198.18.0.1")
        _step(t0, f"floor page: http://127.0.0.1:9267/ inside namespace {floor.server.netns} (e.g. "
              f"`ip netns exec {floor.server.netns} curl -s http://127.0.0.1:9267/report.json`)")
        floor.start_prov(binds=(REMOTE,), tftp=(), bootstrap=PROVIDER)
        _step(t0, f"the provider's remote server (lab) on prov2 {REMOTE}")
        _step(t0, f"powering on {phones} phones")
        progress = Progress(phones, out)
        misbehaving = ["--silent", str(silent), "--fail-resync", str(fail_resync), "--wrong-key", str(wrong_key)]
        reports = floor.simulate(phones, "--spread", "3", "--ouis", ",".join(DEMO_OUIS),
                                 "--models", ",".join(MODELS), "--error-retry-delay", "1", *misbehaving,
                                 on_event=progress, timeout=40)
        progress.close()
        print("\n" + format_report(reports), file=out)
        time.sleep(0.3)  # the sink logs the last lines a moment after the phones sent them
        for line in _files_view(floor) + _server_view(floor):
            print(line, file=out)
        daemon.stop()  # writes the funnel's last second; the report reads the database read-only
        print("\n" + _signoff(daemon.site_path), file=out)
        passed = _passed(reports, silent, wrong_key)
        _step(t0, "demo " + ("passed" if passed else "FAILED") + "; tearing the lab down")
    print(f"done in {time.monotonic() - t0:.1f}s; no namespace, interface or process of the demo is left")
    return 0 if passed else 1


def _signoff(site_path: Path) -> str:
    """`bootstrapd report`: what the technician signs."""
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", "report", "-c", str(site_path)],
                          capture_output=True, text=True, timeout=30)
    return proc.stdout + proc.stderr


def _passed(reports: list[PhoneReport], silent: int, wrong_key: int) -> bool:
    """Every phone fetched its profile at its own address, and resynced unless scripted not to."""
    addresses = [r.address for r in reports if r.address]
    resyncs = collections.Counter(r.resync for r in reports)
    expected = {"done": len(reports) - silent - wrong_key, "silent": silent, "failed": wrong_key}
    return (all(r.stage is Stage.FETCHED for r in reports) and len(set(addresses)) == len(reports)
            and all(resyncs[k] == n for k, n in expected.items()))


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bootstrapd lab demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--phones", type=int, default=50, help="how many phones boot (default 50)")
    p.add_argument("--site", type=Path, default=EXAMPLE, help="site file to serve (default: the example)")
    p.add_argument("--silent", type=int, default=0, metavar="N", help="N phones never come back after their "
                   "first profile")
    p.add_argument("--fail-resync", type=int, default=0, metavar="N", help="N phones' first resync 404s")
    p.add_argument("--wrong-key", type=int, default=0, metavar="N", help="N phones hold a wrong key")
    args = p.parse_args(argv)
    try:
        return run_demo(args.phones, args.site, silent=args.silent, fail_resync=args.fail_resync,
                        wrong_key=args.wrong_key)
    except KeyboardInterrupt:
        print("\ninterrupted; the lab is torn down", file=sys.stderr)
        return 130
