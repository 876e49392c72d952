"""The staging report: one line per phone, a summary, and the live progress bar (shared by simulate and demo)."""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bootstrapd.sim.resync import Resync


class Stage(enum.Enum):
    """How far a phone got, in order."""

    OFF = "off"            # never powered on (the run ended first)
    DHCP = "dhcp"          # no lease
    LEASED = "leased"      # leased, but found no provisioning server
    FOUND = "found"        # found a server, but no profile came back
    FETCHED = "fetched"    # profile fetched: the phone is provisioned


@dataclass
class PhoneReport:
    mac: str
    model: str
    stage: Stage = Stage.OFF
    address: str | None = None
    found_by: str | None = None
    url: str | None = None
    size: int = 0
    reason: str | None = None
    attempts: list[str] = field(default_factory=list)
    powered_at: float | None = None  # seconds from the start of the run to this phone's power-on
    dhcp_seconds: float | None = None  # power-on to ACK
    discovery_seconds: float | None = None  # ACK to the first fetch attempt (address set-up, DNS SRV)
    fetch_seconds: float | None = None  # the fetch itself, failovers included
    seconds: float | None = None  # power-on to the last stage reached
    discovers: int = 0
    requests: int = 0
    naks: int = 0
    # After the first profile (sim/resync.py): "none" (no other profile named), "done", "failed", "silent";
    # None when the phone never got a profile.
    resync: str | None = None
    resync_url: str | None = None  # the last resync URL requested
    resync_reason: str | None = None  # why it failed ("decryption failed", "404 file not found", ...)
    resync_hops: int = 0
    resync_retries: int = 0
    resync_seconds: float | None = None  # first profile to the end of the chain (retry delays included)
    upgrade: str | None = None  # "done" | "failed"; None without an Upgrade_Rule
    upgrade_url: str | None = None
    syslog_server: str | None = None  # where its lines went ("198.18.0.1:514")
    syslog_sent: int = 0
    resync_steps: list[str] = field(default_factory=list)

    def add_resync(self, r: Resync) -> None:
        self.resync, self.resync_url, self.resync_hops, self.resync_retries = (r.state.value, r.url, r.hops,
                                                                             r.retries)
        self.resync_reason = r.reason
        self.resync_seconds = r.seconds
        self.upgrade, self.upgrade_url = r.upgrade, r.upgrade_url
        self.syslog_server, self.syslog_sent, self.resync_steps = r.syslog_server, r.syslog_sent, r.steps

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "stage": self.stage.value}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PhoneReport:
        return cls(**{**d, "stage": Stage(d["stage"])})


def format_line(r: PhoneReport) -> str:
    fetched = r.url if r.stage is Stage.FETCHED and r.url else "NOT FETCHED"
    secs = f"{r.seconds:6.2f}" if r.seconds is not None else "     -"
    line = f"{r.mac:<17}  {r.model:<12}  {r.address or '-':<13}  {r.found_by or '-':<22}  {fetched:<48} {secs}"
    if r.stage is not Stage.FETCHED:
        line += f"\n{'':<19}stuck at {r.stage.value}: {r.reason or 'unknown'}"
    elif r.resync not in (None, "none"):
        line += f"\n{'':<19}{_resync_text(r)}"
    return line


def _resync_text(r: PhoneReport) -> str:
    if r.resync == "silent":
        text = "resync: silent (never came back after its first profile)"
    elif r.resync == "done":
        text = f"resync: done, {r.resync_url} ({r.resync_hops} hop{'s' * (r.resync_hops != 1)}"
        text += f", {r.resync_retries} retr{'ies' if r.resync_retries != 1 else 'y'})" if r.resync_retries else ")"
    else:
        text = f"resync: FAILED, {r.resync_url or '-'}: {r.resync_reason or 'unknown'}"
    if r.upgrade:
        text += f"; upgrade {r.upgrade}"
    if r.syslog_sent:
        text += f"; {r.syslog_sent} syslog line{'s' * (r.syslog_sent != 1)} to {r.syslog_server}"
    return text


HEADER = (f"{'MAC':<17}  {'model':<12}  {'address':<13}  {'found its server by':<22}  {'profile fetched':<48} "
          f"{'s':>6}")


def summary(reports: Sequence[PhoneReport]) -> list[str]:
    n = len(reports)
    by_stage = collections.Counter(r.stage for r in reports)
    leased = [r for r in reports if r.address]
    addresses = collections.Counter(r.address for r in leased)
    dupes = sorted(a for a, c in addresses.items() if a and c > 1)
    lines = [f"{by_stage[Stage.FETCHED]}/{n} phones fetched their profile; {len(leased)}/{n} leased, "
             f"{len(addresses)} distinct addresses" + (f", DUPLICATES: {', '.join(dupes)}" if dupes else "")]
    paths = collections.Counter(_path(r.found_by) for r in reports if r.stage is Stage.FETCHED)
    if paths:
        lines.append("found their server by: " + ", ".join(f"{k} {v}" for k, v in sorted(paths.items())))
    dhcp = [r.dhcp_seconds for r in leased if r.dhcp_seconds is not None]
    done = [r.seconds for r in reports if r.stage is Stage.FETCHED and r.seconds is not None]
    if dhcp:
        extra = sum(max(0, r.discovers - 1) + max(0, r.requests - 1) for r in reports)
        lines.append(f"time to lease: median {_median(dhcp):.3f}s, last {max(dhcp):.3f}s; "
                     f"DHCP retransmissions and restarts: {extra}")
    if done:
        lines.append(f"power-on to profile: median {_median(done):.3f}s, last {max(done):.3f}s")
    resyncs = collections.Counter(r.resync for r in reports if r.resync not in (None, "none"))
    if resyncs:
        upgrades = collections.Counter(r.upgrade for r in reports if r.upgrade)
        lines.append(f"resync: {resyncs['done']} done, {resyncs['failed']} failed, {resyncs['silent']} silent"
                     + (f"; upgrade: {upgrades['done']} done, {upgrades['failed']} failed" if upgrades else ""))
        failed = collections.Counter(r.resync_reason for r in reports if r.resync == "failed")
        lines += [f"resync failed ({n}): {why}" for why, n in failed.most_common()]
    stuck = collections.Counter(f"{r.stage.value}: {r.reason}" for r in reports if r.stage is not Stage.FETCHED)
    for reason, count in stuck.most_common():
        lines.append(f"stuck ({count}) at {reason}")
    return lines


def _path(found_by: str | None) -> str:
    """"SRV https, priority 10" -> "SRV https"."""
    return found_by.split(",")[0] if found_by else "-"


def _median(values: list[float]) -> float:
    s = sorted(values)
    return s[len(s) // 2]


def format_report(reports: Iterable[PhoneReport]) -> str:
    items = list(reports)
    return "\n".join([HEADER, *(format_line(r) for r in items), "", *summary(items)])


def progress_bar(done: int, leased: int, total: int, elapsed: float, width: int = 40) -> str:
    """`[#####+++.....]  12 fetched  30 leased / 50  3.2s`: # fetched (or given up), + leased."""
    if total <= 0:
        return ""
    full = round(width * done / total)
    part = max(0, round(width * leased / total) - full)
    bar = "#" * full + "+" * part + "." * (width - full - part)
    return f"[{bar}] {done:4d} done {leased:4d} leased / {total}  {elapsed:5.1f}s"
