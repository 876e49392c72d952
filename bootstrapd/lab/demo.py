"""`bootstrapd lab demo`: a staging floor on a private virtual LAN, 50 simulated MPP phones booting on it.

Builds network namespaces (198.18.0.0/15 addresses only), starts bootstrapd with the example site, starts a
provisioning server (HTTP and HTTPS on prov1/prov2, TFTP), powers on the phones, shows their progress,
prints the staging report and tears everything down at the end, also on Ctrl-C or failure.

Phones with the example's OUI 00:56:2b match a phone class: the 8800 series gets option 160 (HTTP), the
others option 66 (TFTP). Phones with other Cisco OUIs match no class, so they get an address but no
provisioning option (site policy) and find their server through the `_ciscoprov-*` SRV records.
"""

from __future__ import annotations

import argparse
import collections
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from bootstrapd.lab.netns import Lab, lab_available
from bootstrapd.sim.floor import PROV_ADDRESSES, Floor
from bootstrapd.sim.phone import MODELS
from bootstrapd.sim.report import PhoneReport, Stage, format_report, progress_bar

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "site.example.yaml"
DEMO_OUIS = ("00:56:2b", "00:56:2b", "2c:31:24", "00:56:2b", "70:10:5c")  # 3 in 5 match the example's class
REMOTE_KEY = "demo-remote-key"
# The first profiles point the phones at a "remote" provider on prov2 (an encrypted per-phone profile that
# names itself, so one resync ends the chain), and make them log to bootstrapd's syslog sink.
BOOTSTRAP = {"profile_rule": f"--key {REMOTE_KEY} http://198.18.0.11/remote/$MA.xml", "remote_key": REMOTE_KEY,
             "syslog_server": "198.18.0.1", "retry_delay": 1}


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
    lines = ["provisioning server: " + ", ".join(f"{n} over {p}" for p, n in sorted(hits.items()))
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
        _step(t0, f"lab {lab.prefix}: staging LAN 198.18.0.0/23 on bridge stg0; prov1 198.18.0.10, prov2 .11")
        floor.start_daemon({"extends": str(site.resolve())})
        _step(t0, f"bootstrapd ready with {site.name} (DHCP on stg0; DNS for staging.example.net on 198.18.0.1)")
        floor.start_prov(tftp=PROV_ADDRESSES, bootstrap=BOOTSTRAP)  # bootstrapd serves TFTP on .1 (files:)
        _step(t0, "provisioning server ready: HTTP, HTTPS" + (" (lab certificate)" if floor.cert else " (no "
              "openssl: HTTPS off)") + " and TFTP")
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
        if floor.daemon is not None:
            floor.daemon.stop()
        passed = _passed(reports, silent, wrong_key)
        _step(t0, "demo " + ("passed" if passed else "FAILED") + "; tearing the lab down")
    print(f"done in {time.monotonic() - t0:.1f}s; no namespace, interface or process of the demo is left")
    return 0 if passed else 1


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
