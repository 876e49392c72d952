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
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

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
_NO_TIMES: Mapping[str, float] = MappingProxyType({})  # the shared default timeline: read-only


@dataclass(frozen=True, slots=True)
class Event:
    time: float
    mac: str  # 00:56:2b:04:36:15
    kind: Kind
    detail: Detail = NO_DETAIL


class DeviceState(NamedTuple):
    """A device's place in the funnel. Immutable like the frozen dataclasses elsewhere, but a NamedTuple:
    each fold builds one (two per DORA), and a frozen dataclass's __init__ sets its 18 fields by
    object.__setattr__ one call each, where a tuple is built in one C call (bench/dhcp/README.md)."""

    mac: str
    first_seen: float  # (the last sighting is the shell's: it changes with every event, progress or not)
    stage: Stage | None = None  # None: seen (a syslog line, a refused fetch) but no stage reached
    since: float = 0.0  # when the current stage was entered (first_seen while stage is None)
    timeline: Mapping[str, float] = _NO_TIMES  # stage/upgrade label -> first time reached (never mutated)
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
    return fold(state, event.time, event.mac, event.kind, event.detail)


def fold(state: DeviceState | None, t: float, mac: str, kind: Kind, detail: Detail = NO_DETAIL,
         first_seen: float | None = None) -> DeviceState:
    """`apply` without building the Event: the shells' hot path (every DHCP reply). `first_seen`: the
    device was seen no later than this (a lease older than our record of it). One DeviceState is built
    at most, from a list of its fields (`_evolve` took a dict of changes and a getattr per field)."""
    k = kind._value_
    new = _MOVES.get((state.stage if state is not None else None, k))
    upgrade = _UPGRADE_OF.get(k)
    if state is None:
        values = [mac, t, None, t, {}, *_DEFAULTS]
        changed = True
    elif (new is None and upgrade is None and detail is NO_DETAIL and k not in _FACT_KINDS
          and (first_seen is None or first_seen >= state.first_seen)):
        return state
    else:
        values = list(state)
        changed = False
    if detail is not NO_DETAIL or k in _FACT_KINDS:
        changed = _facts(values, t, kind, detail) or changed
    if first_seen is not None and first_seen < values[_FIRST_SEEN]:
        values[_FIRST_SEEN] = first_seen
        changed = True
    if new is not None or upgrade is not None:
        timeline = dict(values[_TIMELINE])
        if new is not None:
            values[_STAGE] = new
            values[_SINCE] = t
            timeline.setdefault(_LABELS[new], t)
        if upgrade is not None:
            values[_UPGRADE] = upgrade
            values[_UPGRADE_SINCE] = t
            values[_UPGRADE_URL] = clip(detail.url) or values[_UPGRADE_URL]
            values[_UPGRADE_ERROR] = clip(detail.error) if upgrade is _UPGRADE_FAILED else None
            timeline.setdefault(upgrade._value_, t)
        values[_TIMELINE] = timeline
        changed = True
    return _NEW(DeviceState, values) if changed or state is None else state


def _facts(values: list[Any], t: float, kind: Kind, d: Detail) -> bool:
    """What the event tells about the device beyond its stage, into `values` (DeviceState's fields in
    order): the latest non-empty value wins. True when a field was set."""
    changed = False
    if d.address and d.address != values[_ADDRESS]:
        values[_ADDRESS] = clip(d.address)
        changed = True
    if d.model and d.model != values[_MODEL]:
        values[_MODEL] = clip(d.model)
        changed = True
    if d.firmware and d.firmware != values[_FIRMWARE]:
        values[_FIRMWARE] = clip(d.firmware)
        changed = True
    if kind._value_ in _FACT_KINDS:
        if kind is _PROFILE_FETCHED:
            values[_PROFILE] = clip(d.file)
            values[_PROFILE_AT] = t
            if values[_PATH] is None:
                values[_PATH] = _discovery(values[_TIMELINE], d.protocol)
        elif kind is _RESYNC_REQUESTED:
            values[_RESYNC_URL] = clip(d.url)
            values[_RESYNC_ERROR] = None
        else:  # a resync result
            values[_RESYNC_URL] = clip(d.url) or values[_RESYNC_URL]
            values[_RESYNC_ERROR] = clip(d.error)
        changed = True
    if d.conflict:
        kept = tuple(c for c in values[_CONFLICTS] if c != d.conflict)
        values[_CONFLICTS] = (*kept, clip(d.conflict))[-MAX_CONFLICTS:]
        changed = True
    return changed


def _discovery(timeline: Mapping[str, float], protocol: str | None) -> DiscoveryPath | None:
    if protocol == "tftp":
        return DiscoveryPath.TFTP
    if protocol in ("http", "https"):
        return DiscoveryPath.SRV if Stage.SRV_LOOKED_UP.label in timeline else DiscoveryPath.URL
    return None


_FIELDS = DeviceState._fields
_NEW = tuple.__new__  # DeviceState from its fields in order, without the keyword parsing of its __new__
(_FIRST_SEEN, _STAGE, _SINCE, _TIMELINE, _UPGRADE, _UPGRADE_SINCE, _UPGRADE_URL, _UPGRADE_ERROR, _ADDRESS, _MODEL,
 _FIRMWARE, _PATH, _PROFILE, _PROFILE_AT, _RESYNC_URL, _RESYNC_ERROR, _CONFLICTS) = range(1, len(_FIELDS))
_DEFAULTS = tuple(DeviceState._field_defaults[n] for n in _FIELDS[5:])  # after mac ... timeline
# The fold's tables by what hashes in C: a Kind member's hash is a Python call (Enum.__hash__), its value
# string's hash is cached, and a Stage (IntEnum) hashes as its int.
_MOVES: dict[tuple[Stage | None, str], Stage] = {(s, k._value_): t for (s, k), t in TRANSITIONS.items()}
_UPGRADE_OF: dict[str, Upgrade] = {k._value_: u for k, u in UPGRADES.items()}
_FACT_KINDS = frozenset(k._value_ for k in (Kind.PROFILE_FETCHED, Kind.RESYNC_REQUESTED, Kind.RESYNC_SUCCEEDED,
                                            Kind.RESYNC_FAILED))
_LABELS: dict[Stage, str] = {s: s.label for s in Stage}
# Members the fold tests by identity, as module names: `Kind.X` goes through EnumType.__getattr__'s slot.
_PROFILE_FETCHED, _RESYNC_REQUESTED, _UPGRADE_FAILED = Kind.PROFILE_FETCHED, Kind.RESYNC_REQUESTED, Upgrade.FAILED


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
