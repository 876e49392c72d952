"""`bootstrapd simulate`: boot N simulated MPP phones on an interface of a lab network namespace.

Run it inside the namespace of a client host of the lab (`ip netns exec NS bootstrapd simulate ...`), as
root. It sends DHCP as the phones, puts their leased addresses on the interface while it runs, and takes
them off at the end. It refuses to run outside a named network namespace (`ip netns add`): phones on a
real LAN would take real addresses.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from typing import Any

from bootstrapd.sim.dhcp import Retransmit
from bootstrapd.sim.phone import CISCO_OUIS, MODELS, assign_quirks, make_phones
from bootstrapd.sim.provision import Settings
from bootstrapd.sim.report import PhoneReport, format_report, progress_bar
from bootstrapd.sim.resync import DEFAULT_RETRY_DELAY, ResyncSettings
from bootstrapd.sim.runner import SimConfig, Simulator

NETNS_DIR = "/var/run/netns"


def in_lab_namespace() -> bool:
    """Is this process in a named network namespace (`ip netns add`), as lab hosts are?

    The machine's own namespace has no name there. (PID 1's namespace cannot always be read to compare.)
    """
    try:
        mine = os.stat("/proc/self/ns/net")
        named = [os.stat(os.path.join(NETNS_DIR, n)) for n in os.listdir(NETNS_DIR)]
    except OSError:
        return False
    return any((s.st_dev, s.st_ino) == (mine.st_dev, mine.st_ino) for s in named)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bootstrapd simulate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-n", "--phones", type=int, default=20, help="how many phones (default 20)")
    p.add_argument("-i", "--interface", default="eth0", help="interface on the staging LAN (default eth0)")
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated models, used in turn")
    p.add_argument("--ouis", default=",".join(CISCO_OUIS), help="comma-separated MAC OUIs, used in turn")
    p.add_argument("--start", type=int, default=0, help="index of the first phone (distinct MACs per run)")
    p.add_argument("--seed", type=int, default=0, help="seed of MACs, xids, back-off and SRV choices")
    p.add_argument("--spread", type=float, default=1.0, help="power-on spread in seconds (default 1)")
    p.add_argument("--timeout", type=float, default=60.0, help="give up after this many seconds (default 60)")
    p.add_argument("--retransmit", type=float, default=4.0,
                   help="first DHCP retransmission delay in seconds (RFC 2131: 4, doubling to 64)")
    p.add_argument("--ca", help="CA certificate the phones trust for HTTPS (default: trust any certificate)")
    p.add_argument("--user", help="HTTP user name the phones answer a 401 with")
    p.add_argument("--password", help="HTTP password the phones answer a 401 with")
    p.add_argument("--http-timeout", type=float, default=3.0, help="seconds per HTTP or TFTP fetch")
    p.add_argument("--key", help="key every phone holds already: its IKM_HTTP_Encrypt_Content, for aes128gcm "
                   "responses, until a profile sets one (AES-256-CBC keys come with the rule's --key)")
    p.add_argument("--error-retry-delay", type=float, metavar="S",
                   help="seconds before retrying a failed resync (default: the profile's "
                   f"Resync_Error_Retry_Delay, else {DEFAULT_RETRY_DELAY:g})")
    p.add_argument("--resync-retries", type=int, default=2, help="retries of a failed resync (default 2)")
    p.add_argument("--max-hops", type=int, default=3, help="profile rules followed after the first (default 3)")
    p.add_argument("--silent", type=int, default=0, metavar="N",
                   help="N phones fetch their first profile, then never resync nor log")
    p.add_argument("--fail-resync", type=int, default=0, metavar="N",
                   help="N phones whose first resync 404s (the lab server honours their request), then succeeds "
                   "on the retry")
    p.add_argument("--wrong-key", type=int, default=0, metavar="N", help="N phones decrypt with a wrong key")
    p.add_argument("--workers", type=int, default=32, help="provisioning threads: phones fetching and resyncing "
                   "at once (default 32; the others wait their turn)")
    p.add_argument("--json", action="store_true", help="JSON lines: progress events, then the report")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not in_lab_namespace():
        print("bootstrapd simulate: refusing to run outside a named network namespace (phones on a real LAN "
              "would take real addresses); run it in a lab host: ip netns exec NS bootstrapd simulate ...",
              file=sys.stderr)
        return 2
    try:
        phones = make_phones(args.phones, args.seed, args.models.split(","), args.ouis.split(","), args.start,
                             args.user, args.password, args.key)
        phones = assign_quirks(phones, args.seed, silent=args.silent, fail_resync=args.fail_resync,
                               wrong_key=args.wrong_key)
        if args.resync_retries < 0 or args.max_hops < 0 or (args.error_retry_delay or 0) < 0:
            raise ValueError("--resync-retries, --max-hops and --error-retry-delay cannot be negative")
        if not 1 <= args.workers <= 4096:
            raise ValueError("--workers must be between 1 and 4096")
    except ValueError as e:
        print(f"bootstrapd simulate: {e}", file=sys.stderr)
        return 2
    config = SimConfig(args.interface, args.seed, args.spread, args.timeout,
                       Retransmit(initial=args.retransmit, jitter=min(1.0, args.retransmit / 4)),
                       Settings(args.ca, args.http_timeout), args.workers,
                       resync=ResyncSettings(args.max_hops, args.resync_retries, args.error_retry_delay))
    emit = _json_emit if args.json else _ProgressBar(len(phones)).emit
    emit({"event": "start", "phones": len(phones)})
    try:
        reports = asyncio.run(Simulator(phones, config, emit).run())
    except OSError as e:  # no such interface, or no CAP_NET_RAW
        print(f"bootstrapd simulate: {args.interface}: {e} (needs root and an existing interface)", file=sys.stderr)
        return 2
    if args.json:
        _json_emit({"event": "report", "phones": [r.to_json() for r in reports]})
    else:
        print(file=sys.stderr)
        print(format_report(reports))
    healthy = all(r.stage.value == "fetched" and r.resync not in ("failed", "silent") for r in reports)
    return 0 if healthy else 1


_flushed = 0.0


def _json_emit(event: dict[str, Any]) -> None:
    """One JSON line; flushed at most every 50 ms (a thousand phones write thousands of events)."""
    global _flushed
    sys.stdout.write(json.dumps(event) + "\n")
    now = time.monotonic()
    if now - _flushed > 0.05 or event["event"] in ("start", "report"):
        sys.stdout.flush()
        _flushed = now


class _ProgressBar:
    def __init__(self, total: int) -> None:
        self.total = total
        self.leased = self.done = 0
        self.t0 = time.monotonic()

    def emit(self, event: dict[str, Any]) -> None:
        if event["event"] == "leased":
            self.leased += 1
        elif event["event"] == "done":
            self.done += 1
        if sys.stderr.isatty():
            bar = progress_bar(self.done, self.leased, self.total, time.monotonic() - self.t0)
            sys.stderr.write("\r" + bar)
            sys.stderr.flush()


def load_reports(lines: list[str]) -> list[PhoneReport]:
    """The reports from `simulate --json` output (the last `report` event)."""
    for line in reversed(lines):
        event = json.loads(line)
        if event.get("event") == "report":
            return [PhoneReport.from_json(d) for d in event["phones"]]
    raise ValueError("no report in the simulator's output")
