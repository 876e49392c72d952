"""The funnel: events folded into each device's state by one transition table (design.md, "The funnel").

Every protocol's outcome becomes an `Event(time, mac, kind, detail)`; `apply` folds it into the device's
`DeviceState`. Main track, in boot order:

    offered -> leased -> srv_looked_up -> targets_resolved -> profile_fetched -> resync_requested
            -> resync_succeeded | resync_failed

An event for a later stage moves the device there, skipping what was not observed (a phone fetching by a
URL from option 160 never looks up SRV; a phone already configured logs a resync before any fetch). An
event for an earlier stage never moves it back (a reboot's DHCP does not undo a resync). The resync part
is a cycle: a new `resync_requested` after a result starts a new attempt (the retry after a failure, or a
periodic resync), and the latest result is the device's result.

Side track: a firmware upgrade (`upgrade_requested -> upgrade_succeeded | upgrade_failed`, from syslog)
has its own state and never moves the main stage; the phone reboots afterwards and its DHCP events then
fold into the main track as above. A device is `done` when its resync succeeded and no upgrade is pending
or failed (report.py).

Stalls: a device that stays in a stage longer than that stage's budget is stalled there; time is a
parameter. Terminal stages (the resync and upgrade results) never stall.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MAX_CONFLICTS = 8  # MAC disagreements kept per device (the most recent)
MAX_TEXT = 256  # longest URL, error or file name kept


class Stage(enum.IntEnum):
    """The main track, in boot order; the lower-case name is what the database, CLI and metrics show."""

    OFFERED = 1  # we sent it a DHCPOFFER (RFC 2131 4.3.1)
    LEASED = 2  # we sent it a DHCPACK (RFC 2131 4.3.2)
    SRV_LOOKED_UP = 3  # a _ciscoprov SRV query from its leased address was answered (RFC 2782)
    TARGETS_RESOLVED = 4  # then an A/AAAA query for an SRV target from that address was answered
    PROFILE_FETCHED = 5  # a profile (rendered, or a static .xml/.cfg) was sent to it whole
    RESYNC_REQUESTED = 6  # it logged `Requesting resync <url>` (mpp-bootstrap.md section 9)
    RESYNC_SUCCEEDED = 7  # it logged `Successful resync <url>`
    RESYNC_FAILED = 8  # it logged `Resync failed: <error>`

    @property
    def label(self) -> str:
        return self.name.lower()


class Upgrade(enum.Enum):
    """The firmware side track (mpp-bootstrap.md section 9: `Requesting upgrade`, ...)."""

    REQUESTED = "upgrade_requested"
    SUCCEEDED = "upgrade_succeeded"
    FAILED = "upgrade_failed"

    @property
    def label(self) -> str:
        return self.value


TERMINAL = frozenset({Stage.RESYNC_SUCCEEDED, Stage.RESYNC_FAILED})
STAGES = {s.label: s for s in Stage}


class Kind(enum.Enum):
    """What an event says; the shells translate their outcomes into these."""

    OFFERED = "offered"
    LEASED = "leased"
    SRV_LOOKED_UP = "srv_looked_up"
    TARGETS_RESOLVED = "targets_resolved"
    PROFILE_FETCHED = "profile_fetched"
    FILE_FETCHED = "file_fetched"  # a whole file that is not a profile (firmware, CA): history only
    FILE_REFUSED = "file_refused"  # a transfer that delivered nothing whole: history only
    RESYNC_REQUESTED = "resync_requested"
    RESYNC_SUCCEEDED = "resync_succeeded"
    RESYNC_FAILED = "resync_failed"
    UPGRADE_REQUESTED = "upgrade_requested"
    UPGRADE_SUCCEEDED = "upgrade_succeeded"
    UPGRADE_FAILED = "upgrade_failed"
    SYSLOG_OTHER = "syslog_other"  # any other line: history only


class DiscoveryPath(enum.Enum):
    """How the phone found its first profile (mpp-bootstrap.md sections 1 and 10)."""

    TFTP = "option_66_150"  # fetched by TFTP: option 66 or 150
    URL = "option_160_159"  # fetched by HTTP(S) with no SRV lookup first: option 160 or 159
    SRV = "srv"  # SRV looked up, then fetched by HTTP(S)


@dataclass(frozen=True, slots=True)
class Detail:
    """What an event carries besides its kind; every field optional."""

    address: str | None = None
    model: str | None = None
    firmware: str | None = None
    file: str | None = None  # the name asked for
    protocol: str | None = None  # tftp | http | https
    url: str | None = None  # from a resync or upgrade line
    error: str | None = None  # from a failure line
    conflict: str | None = None  # a MAC disagreement between sources, as the shell saw it


NO_DETAIL = Detail()


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    mac: str  # 00:56:2b:04:36:15
    kind: Kind
    detail: Detail = NO_DETAIL


@dataclass(frozen=True, slots=True)
class DeviceState:
    mac: str
    first_seen: float  # (the last sighting is the shell's: it changes with every event, progress or not)
    stage: Stage | None = None  # None: seen (a syslog line, a refused fetch) but no stage reached
    since: float = 0.0  # when the current stage was entered (first_seen while stage is None)
    timeline: Mapping[str, float] = field(default_factory=dict)  # stage/upgrade label -> first time reached
    upgrade: Upgrade | None = None
    upgrade_since: float | None = None
    upgrade_url: str | None = None
    upgrade_error: str | None = None
    address: str | None = None
    model: str | None = None
    firmware: str | None = None
    path: DiscoveryPath | None = None  # from the first profile fetch
    profile: str | None = None  # the latest profile fetched, and when
    profile_at: float | None = None
    resync_url: str | None = None  # of the latest resync attempt
    resync_error: str | None = None
    conflicts: tuple[str, ...] = ()


def _main_table() -> dict[tuple[Stage | None, Kind], Stage]:
    """Forward moves only, plus the resync cycle's restarts and result changes."""
    table: dict[tuple[Stage | None, Kind], Stage] = {}
    for kind in Kind:
        target = STAGES.get(kind.value)
        if target is None:
            continue
        for current in (None, *Stage):
            if current is None or target > current:
                table[current, kind] = target
    for result in TERMINAL:
        table[result, Kind.RESYNC_REQUESTED] = Stage.RESYNC_REQUESTED  # a new attempt
    table[Stage.RESYNC_FAILED, Kind.RESYNC_SUCCEEDED] = Stage.RESYNC_SUCCEEDED  # the latest result wins
    table[Stage.RESYNC_SUCCEEDED, Kind.RESYNC_FAILED] = Stage.RESYNC_FAILED
    return table


# (current stage, event kind) -> new stage; a pair not in the table leaves the stage as it is.
TRANSITIONS: Mapping[tuple[Stage | None, Kind], Stage] = _main_table()
# The side track: every upgrade line sets it (a new request after a result is a new attempt).
UPGRADES: Mapping[Kind, Upgrade] = {
    Kind.UPGRADE_REQUESTED: Upgrade.REQUESTED,
    Kind.UPGRADE_SUCCEEDED: Upgrade.SUCCEEDED,
    Kind.UPGRADE_FAILED: Upgrade.FAILED,
}
_PROFILE_SUFFIXES = (".xml", ".cfg", ".txt", ".xml.gz", ".cfg.gz")


def is_profile_name(name: str) -> bool:
    """A static file that is a profile rather than a firmware load or a CA file (by its name)."""
    return name.lower().endswith(_PROFILE_SUFFIXES)


def clip(text: str | None) -> str | None:
    return None if text is None else text[:MAX_TEXT]


def apply(state: DeviceState | None, event: Event) -> DeviceState:
    """The device's state after `event` (a new device when `state` is None); `state` itself when the
    event changes nothing (a retransmitted DISCOVER, a repeated query): the common case is cheap."""
    t = event.time
    if state is None:
        state = DeviceState(event.mac, t, since=t)
    changes = _facts(state, event)
    new = TRANSITIONS.get((state.stage, event.kind))
    upgrade = UPGRADES.get(event.kind)
    if new is not None or upgrade is not None:
        timeline = dict(state.timeline)
        if new is not None:
            changes.update(stage=new, since=t)
            timeline.setdefault(new.label, t)
        if upgrade is not None:
            changes.update(upgrade=upgrade, upgrade_since=t,
                           upgrade_url=clip(event.detail.url) or state.upgrade_url,
                           upgrade_error=clip(event.detail.error) if upgrade is Upgrade.FAILED else None)
            timeline.setdefault(upgrade.label, t)
        changes["timeline"] = timeline
    return _evolve(state, changes) if changes else state


def _evolve(state: DeviceState, changes: dict[str, Any]) -> DeviceState:
    """`dataclasses.replace` without its per-call introspection (7 us of a 9 us fold)."""
    return DeviceState(*[changes[n] if n in changes else getattr(state, n) for n in _FIELDS])


def _facts(state: DeviceState, event: Event) -> dict[str, Any]:
    """What the event tells about the device beyond its stage: the latest non-empty value wins."""
    d, kind = event.detail, event.kind
    out: dict[str, Any] = {}
    for name in ("address", "model", "firmware"):
        value = getattr(d, name)
        if value and value != getattr(state, name):
            out[name] = clip(value)
    if kind is Kind.PROFILE_FETCHED:
        out.update(profile=clip(d.file), profile_at=event.time)
        if state.path is None:
            out["path"] = _path(state, d.protocol)
    if kind is Kind.RESYNC_REQUESTED:
        out.update(resync_url=clip(d.url), resync_error=None)
    elif kind in (Kind.RESYNC_SUCCEEDED, Kind.RESYNC_FAILED):
        out.update(resync_url=clip(d.url) or state.resync_url, resync_error=clip(d.error))
    if d.conflict:
        kept = tuple(c for c in state.conflicts if c != d.conflict)
        out["conflicts"] = (*kept, clip(d.conflict))[-MAX_CONFLICTS:]
    return out


def _path(state: DeviceState, protocol: str | None) -> DiscoveryPath | None:
    if protocol == "tftp":
        return DiscoveryPath.TFTP
    if protocol in ("http", "https"):
        return DiscoveryPath.SRV if Stage.SRV_LOOKED_UP.label in state.timeline else DiscoveryPath.URL
    return None


_FIELDS = tuple(f.name for f in fields(DeviceState))


# -- stalls -----------------------------------------------------------------------------------------------
Budgets = Mapping[str, float]  # stage or upgrade label -> seconds; a label not in it never stalls


def budgets(stall_after: object) -> dict[str, float]:
    """`floor.stall_after` (config.model.StallAfter) as Budgets: its non-null fields by stage label."""
    out: dict[str, float] = {}
    for label in (*(s.label for s in Stage if s not in TERMINAL), Upgrade.REQUESTED.label):
        value = getattr(stall_after, label, None)
        if value is not None:
            out[label] = float(value)
    return out


def overdue(since: float, limit: float | None, now: float) -> bool:
    """The stall rule: in a stage since `since`, with budget `limit` (None: never stalls), as of `now`."""
    return limit is not None and now - since > limit


def stalled_at(state: DeviceState, limits: Budgets, now: float) -> str | None:
    """The stage label the device is stalled at (the main track first), or None."""
    stage, up = state.stage, Upgrade.REQUESTED.label
    if stage is not None and stage not in TERMINAL and overdue(state.since, limits.get(stage.label), now):
        return stage.label
    if (state.upgrade is Upgrade.REQUESTED and state.upgrade_since is not None
            and overdue(state.upgrade_since, limits.get(up), now)):
        return up
    return None
