"""The funnel core: the transition table, the upgrade side track, stall rules and discovery paths, as
tables of events with injected time."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from bootstrapd.config.loader import load_site
from bootstrapd.config.model import StallAfter
from bootstrapd.errors import BootstrapdError
from bootstrapd.floor import codec
from bootstrapd.floor.funnel import (
    MAX_CONFLICTS,
    TRANSITIONS,
    Detail,
    DeviceState,
    DiscoveryPath,
    Event,
    Kind,
    Stage,
    Upgrade,
    apply,
    budgets,
    stalled_at,
)

MAC = "00:56:2b:04:36:15"
T0 = 1_700_000_000.0
K = Kind
DEFAULTS = budgets(StallAfter())


def fold(*events: tuple[float, Kind] | tuple[float, Kind, Detail]) -> DeviceState:
    state = None
    for e in events:
        state = apply(state, Event(T0 + e[0], MAC, e[1], *e[2:]))  # type: ignore[arg-type]
    assert state is not None
    return state


@pytest.mark.parametrize(("kinds", "stage"), [
    ([K.OFFERED], Stage.OFFERED),
    ([K.OFFERED, K.LEASED], Stage.LEASED),
    ([K.OFFERED, K.LEASED, K.SRV_LOOKED_UP, K.TARGETS_RESOLVED], Stage.TARGETS_RESOLVED),
    ([K.LEASED, K.PROFILE_FETCHED], Stage.PROFILE_FETCHED),  # option 160: no SRV lookup observed
    ([K.LEASED, K.PROFILE_FETCHED, K.RESYNC_REQUESTED, K.RESYNC_SUCCEEDED], Stage.RESYNC_SUCCEEDED),
    ([K.LEASED, K.RESYNC_REQUESTED], Stage.RESYNC_REQUESTED),  # already configured: logs before any fetch
    ([K.RESYNC_REQUESTED, K.RESYNC_FAILED], Stage.RESYNC_FAILED),
    ([K.RESYNC_REQUESTED, K.RESYNC_FAILED, K.RESYNC_REQUESTED], Stage.RESYNC_REQUESTED),  # the retry moves on
    ([K.RESYNC_FAILED, K.RESYNC_REQUESTED, K.RESYNC_SUCCEEDED], Stage.RESYNC_SUCCEEDED),
    ([K.RESYNC_SUCCEEDED, K.RESYNC_FAILED], Stage.RESYNC_FAILED),  # the latest result is the result
    ([K.RESYNC_SUCCEEDED, K.RESYNC_REQUESTED], Stage.RESYNC_REQUESTED),  # a periodic resync: a new attempt
    ([K.TARGETS_RESOLVED, K.OFFERED, K.LEASED], Stage.TARGETS_RESOLVED),  # a reboot's DHCP never moves back
    ([K.RESYNC_SUCCEEDED, K.OFFERED, K.PROFILE_FETCHED], Stage.RESYNC_SUCCEEDED),
    ([K.RESYNC_REQUESTED, K.PROFILE_FETCHED], Stage.RESYNC_REQUESTED),  # the fetch of that resync
    ([K.LEASED, K.UPGRADE_REQUESTED, K.UPGRADE_SUCCEEDED], Stage.LEASED),  # the side track
    ([K.LEASED, K.FILE_FETCHED, K.FILE_REFUSED, K.SYSLOG_OTHER], Stage.LEASED),  # history only
    ([K.SYSLOG_OTHER], None),  # seen, no stage
])
def test_stage_after_events(kinds: Sequence[Kind], stage: Stage | None) -> None:
    assert fold(*((float(i), k) for i, k in enumerate(kinds))).stage is stage


def test_the_table_only_moves_forward_except_the_resync_cycle() -> None:
    for (current, kind), new in TRANSITIONS.items():
        restart = current in (Stage.RESYNC_SUCCEEDED, Stage.RESYNC_FAILED) and kind.value.startswith("resync_")
        assert current is None or new > current or restart, (current, kind, new)
    assert (Stage.RESYNC_REQUESTED, Kind.RESYNC_REQUESTED) not in TRANSITIONS  # a repeat is no progress


def test_timeline_keeps_the_first_time_and_since_the_latest_entry() -> None:
    s = fold((0, K.OFFERED), (1, K.LEASED), (5, K.RESYNC_REQUESTED), (6, K.RESYNC_FAILED), (70, K.RESYNC_REQUESTED))
    assert s.timeline == {"offered": T0, "leased": T0 + 1, "resync_requested": T0 + 5, "resync_failed": T0 + 6}
    assert (s.since, s.first_seen) == (T0 + 70, T0)


# (events, now relative to T0, stalled at)
STALLS = [
    ([(0, K.OFFERED)], 30, None),  # 30 s budget: not yet past it
    ([(0, K.OFFERED)], 30.5, "offered"),
    ([(0, K.OFFERED), (1, K.OFFERED), (29, K.OFFERED)], 31, "offered"),  # repeats are no progress
    ([(0, K.OFFERED), (29, K.LEASED)], 31, None),
    ([(0, K.LEASED)], 121, "leased"),
    ([(0, K.LEASED), (100, K.SRV_LOOKED_UP)], 10_000, None),  # no budget: never stalls
    ([(0, K.PROFILE_FETCHED)], 301, "profile_fetched"),
    ([(0, K.RESYNC_REQUESTED)], 121, "resync_requested"),
    ([(0, K.RESYNC_REQUESTED), (60, K.RESYNC_FAILED)], 10_000, None),  # terminal
    ([(0, K.RESYNC_SUCCEEDED)], 10_000, None),
    ([(0, K.RESYNC_FAILED), (3600, K.RESYNC_REQUESTED)], 3700, None),  # the retry: a fresh budget
    ([(0, K.RESYNC_FAILED), (3600, K.RESYNC_REQUESTED)], 3721, "resync_requested"),
    ([(0, K.SYSLOG_OTHER)], 10_000, None),  # no stage: nothing to stall at
]


@pytest.mark.parametrize(("events", "now", "expected"), STALLS)
def test_stall_rules_with_the_default_budgets(events: list[tuple[float, Kind]], now: float,
                                              expected: str | None) -> None:
    assert stalled_at(fold(*events), DEFAULTS, T0 + now) == expected


def test_upgrade_side_track_stalls_only_with_a_budget_and_never_when_done() -> None:
    s = fold((0, K.RESYNC_SUCCEEDED), (10, K.UPGRADE_REQUESTED, Detail(url="http://198.18.0.1/sip78xx.loads")))
    assert (s.stage, s.upgrade, s.upgrade_url) == (Stage.RESYNC_SUCCEEDED, Upgrade.REQUESTED,
                                                   "http://198.18.0.1/sip78xx.loads")
    assert stalled_at(s, DEFAULTS, T0 + 10_000) is None  # no upgrade budget by default
    limits = {**DEFAULTS, "upgrade_requested": 600.0}
    assert stalled_at(s, limits, T0 + 600) is None
    assert stalled_at(s, limits, T0 + 611) == "upgrade_requested"
    failed = apply(s, Event(T0 + 700, MAC, K.UPGRADE_FAILED, Detail(error="bad image")))
    assert (failed.upgrade, failed.upgrade_error, stalled_at(failed, limits, T0 + 9999)) == (
        Upgrade.FAILED, "bad image", None)
    assert failed.timeline["upgrade_requested"] == T0 + 10 and failed.timeline["upgrade_failed"] == T0 + 700


@pytest.mark.parametrize(("events", "path"), [
    ([(0, K.LEASED), (1, K.SRV_LOOKED_UP), (2, K.TARGETS_RESOLVED), (3, K.PROFILE_FETCHED, Detail(protocol="https"))],
     DiscoveryPath.SRV),
    ([(0, K.LEASED), (3, K.PROFILE_FETCHED, Detail(protocol="tftp"))], DiscoveryPath.TFTP),
    ([(0, K.LEASED), (3, K.PROFILE_FETCHED, Detail(protocol="http"))], DiscoveryPath.URL),
    ([(0, K.LEASED), (1, K.SRV_LOOKED_UP), (3, K.PROFILE_FETCHED, Detail(protocol="tftp"))], DiscoveryPath.TFTP),
    ([(0, K.LEASED), (1, K.SRV_LOOKED_UP)], None),  # nothing fetched yet
    # The first fetch decides: the next one (the profile rule the bootstrap profile set) does not.
    ([(0, K.PROFILE_FETCHED, Detail(protocol="tftp")), (1, K.SRV_LOOKED_UP),
      (2, K.PROFILE_FETCHED, Detail(protocol="https"))], DiscoveryPath.TFTP),
])
def test_discovery_path_inferred_from_what_was_seen(events: list[tuple[float, Kind, Detail]],
                                                    path: DiscoveryPath | None) -> None:
    assert fold(*events).path is path


def test_facts_latest_non_empty_wins_and_results_carry_url_and_error() -> None:
    s = fold((0, K.LEASED, Detail(address="198.18.0.100", model="CP-8841-3PCC")),
             (1, K.PROFILE_FETCHED, Detail(file="CP-8841-3PCC.cfg", protocol="tftp", firmware="12.0.1")),
             (2, K.PROFILE_FETCHED, Detail(file="00562b043615.xml", protocol="http")),
             (3, K.RESYNC_REQUESTED, Detail(url="http://198.18.0.1/00562b043615.xml")),
             (4, K.RESYNC_FAILED, Detail(error="parse error")))
    assert (s.model, s.firmware, s.address) == ("CP-8841-3PCC", "12.0.1", "198.18.0.100")
    assert (s.profile, s.profile_at) == ("00562b043615.xml", T0 + 2)
    assert (s.resync_url, s.resync_error) == ("http://198.18.0.1/00562b043615.xml", "parse error")
    again = apply(s, Event(T0 + 70, MAC, K.RESYNC_REQUESTED, Detail(url="http://198.18.0.1/x.xml")))
    assert (again.resync_url, again.resync_error) == ("http://198.18.0.1/x.xml", None)


def test_conflicts_are_kept_once_and_bounded() -> None:
    events = [(float(i), K.SYSLOG_OTHER, Detail(conflict=f"c{i % 12}")) for i in range(40)]
    s = fold(*events)
    assert len(s.conflicts) == MAX_CONFLICTS and s.conflicts[-1] == "c3" and len(set(s.conflicts)) == MAX_CONFLICTS
    assert fold((0, K.OFFERED, Detail(file="x" * 10_000, model="m" * 999))).model == "m" * 256


def test_state_round_trips_through_its_json() -> None:
    s = fold((0, K.LEASED, Detail(address="198.18.0.100")), (1, K.SRV_LOOKED_UP),
             (2, K.PROFILE_FETCHED, Detail(protocol="https", file="a.xml", firmware="12")),
             (3, K.UPGRADE_REQUESTED, Detail(url="u")), (4, K.RESYNC_SUCCEEDED, Detail(conflict="c")))
    assert codec.loads(MAC, codec.dumps(s)) == s
    assert codec.loads(MAC, codec.dumps(fold((0, K.SYSLOG_OTHER)))) == fold((0, K.SYSLOG_OTHER))
    for bad in ("", "{}", '{"first_seen": 1}', '{"first_seen":1,"since":1,"stage":"nope"}'):
        with pytest.raises(ValueError):
            codec.loads(MAC, bad)


def write(tmp_path: Path, floor: str) -> str:
    path = tmp_path / "site.yaml"
    path.write_text(f"site: t\nlisten: {{interfaces: [stg0], address: 198.18.0.1}}\ndomain: staging.test\n{floor}")
    return str(path)


def test_default_budgets_are_the_spec_ones() -> None:
    assert DEFAULTS == {"offered": 30, "leased": 120, "profile_fetched": 300, "resync_requested": 120}


def test_stall_after_from_the_site_file(tmp_path: Path) -> None:
    site = load_site(write(tmp_path, "floor:\n  stall_after: {offered: 1m, leased: null, upgrade_requested: 10m}\n"))
    assert budgets(site.floor.stall_after) == {"offered": 60, "profile_fetched": 300, "resync_requested": 120,
                                               "upgrade_requested": 600}
    assert budgets(load_site(write(tmp_path, "")).floor.stall_after) == DEFAULTS


def test_a_misspelt_stage_is_a_located_error_with_a_suggestion(tmp_path: Path) -> None:
    with pytest.raises(BootstrapdError) as e:
        load_site(write(tmp_path, "floor:\n  stall_after:\n    leasd: 2m\n    resync_succeeded: 1m\n"))
    text = str(e.value)
    assert "site.yaml:6: floor.stall_after.leasd: unknown key (did you mean 'leased'?)" in text
    assert "floor.stall_after.resync_succeeded: unknown key" in text  # a terminal stage has no budget
