"""The staging report: one line per phone, a summary, and the live progress bar (shared by simulate and demo)."""

from __future__ import annotations

import collections
import enum
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


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
    return line


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
