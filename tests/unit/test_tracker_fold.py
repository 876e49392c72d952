"""The tracker's cheap DHCP path (issue 12): `fold` without an Event, the compact funnel JSON, the writer
that skips the stage CHECK, and the address attribution kept in step by the DHCP reports."""

from __future__ import annotations

import json
import sqlite3
from ipaddress import IPv4Address
from pathlib import Path

from bootstrapd.dhcp.codec import Message, MessageType
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.outcome import Destination, Reply
from bootstrapd.dns.wire import Rcode
from bootstrapd.floor import codec
from bootstrapd.floor.funnel import (
    Detail,
    DeviceState,
    DiscoveryPath,
    Event,
    Kind,
    Stage,
    Upgrade,
    apply,
    fold,
)
from bootstrapd.observability.devices import DeviceTracker, read_devices

MAC = "00:56:2b:04:36:15"
PHONE = bytes.fromhex("00562b043615")
T0 = 1_700_000_000.123456
SRV_NAME = "_ciscoprov-http._tcp.staging.test."


# Events that set every field of a state between them.
EVENTS = [
    (0.0, Kind.OFFERED, Detail(address="198.18.0.100", model="CP-8841-3PCC")),
    (1.5, Kind.LEASED, Detail(address="198.18.0.100")),
    (2.25, Kind.SRV_LOOKED_UP, Detail()),
    (3.0, Kind.PROFILE_FETCHED, Detail(file="sep00562b043615.xml", protocol="https", firmware="12.0.1")),
    (4.0, Kind.UPGRADE_REQUESTED, Detail(url="http://fw/sip88xx.loads")),
    (5.0, Kind.UPGRADE_FAILED, Detail(error="bad image \u00e9")),
    (6.0, Kind.RESYNC_REQUESTED, Detail(url="https://p/x.xml")),
    (7.0, Kind.RESYNC_FAILED, Detail(error="timeout", conflict="syslog says 00:56:2b:00:00:01")),
]


def full_state() -> DeviceState:
    s = None
    for dt, kind, detail in EVENTS:
        s = fold(s, T0 + dt, MAC, kind, detail)
    assert s is not None
    return s


def test_fold_is_apply_without_the_event_and_returns_the_state_when_nothing_changes() -> None:
    s = fold(None, T0, MAC, Kind.OFFERED, Detail(address="198.18.0.100"))
    assert s == apply(None, Event(T0, MAC, Kind.OFFERED, Detail(address="198.18.0.100")))
    assert (s.stage, s.since, dict(s.timeline), s.address) == (Stage.OFFERED, T0, {"offered": T0}, "198.18.0.100")
    assert fold(s, T0 + 1, MAC, Kind.OFFERED, Detail(address="198.18.0.100")) is s  # a retransmitted DISCOVER
    assert fold(s, T0 + 1, MAC, Kind.OFFERED) is s
    leased = fold(s, T0 + 2, MAC, Kind.LEASED, Detail(address="198.18.0.100"))
    assert dict(leased.timeline) == {"offered": T0, "leased": T0 + 2}  # the offered time stays the first one
    assert dict(s.timeline) == {"offered": T0}  # the earlier state is untouched


def test_fold_moves_first_seen_back_only() -> None:
    s = fold(None, T0, MAC, Kind.LEASED, first_seen=T0 - 100)
    assert (s.first_seen, s.since) == (T0 - 100, T0)
    assert fold(s, T0 + 1, MAC, Kind.LEASED, first_seen=T0 - 50) is s  # later than what we know: nothing
    earlier = fold(s, T0 + 1, MAC, Kind.LEASED, first_seen=T0 - 200)
    assert (earlier.first_seen, earlier.stage, earlier.since) == (T0 - 200, Stage.LEASED, T0)


def test_a_state_is_immutable() -> None:
    s = full_state()
    try:
        s.stage = Stage.OFFERED  # type: ignore[misc]
    except AttributeError:
        pass
    else:
        raise AssertionError("DeviceState accepted an assignment")
    assert DeviceState(MAC, T0).timeline == {}
    assert not hasattr(DeviceState(MAC, T0).timeline, "setdefault")  # the shared default is read-only


def test_compact_json_round_trips_every_field_and_leaves_out_what_is_none() -> None:
    s = full_state()
    assert (s.upgrade, s.path, s.resync_error, s.firmware) == (Upgrade.FAILED, DiscoveryPath.SRV, "timeout", "12.0.1")
    assert codec.loads(MAC, codec.dumps(s)) == s
    fresh = fold(None, T0, MAC, Kind.LEASED, Detail(address="198.18.0.100"))
    raw = json.loads(codec.dumps(fresh))
    assert raw == {"first_seen": T0, "since": T0, "timeline": {"leased": T0}, "stage": "leased",
                   "address": "198.18.0.100"}
    assert codec.loads(MAC, codec.dumps(fresh)) == fresh
    seen = DeviceState(MAC, T0, since=T0)  # seen, no stage
    assert codec.loads(MAC, codec.dumps(seen)) == seen


def test_rows_in_the_earlier_full_format_still_load() -> None:
    s = full_state()
    full = {"first_seen": s.first_seen, "since": s.since, "stage": "resync_failed", "timeline": dict(s.timeline),
            "upgrade": "upgrade_failed", "path": "srv", "conflicts": list(s.conflicts),
            **{n: getattr(s, n) for n in ("upgrade_url", "upgrade_error", "address", "model", "firmware",
                                          "profile", "resync_url", "resync_error", "upgrade_since", "profile_at")}}
    assert codec.loads(MAC, json.dumps(full)) == s
    nulls = dict.fromkeys(("stage", "upgrade", "path", "upgrade_url", "model", "profile_at"))
    assert codec.loads(MAC, json.dumps({"first_seen": T0, "since": T0, "timeline": {}, "conflicts": [], **nulls})) \
        == DeviceState(MAC, T0, since=T0)


def reply(kind: MessageType, address: str, at: float) -> Reply:
    lease = Lease(address=IPv4Address(address), client_id=b"\x01" + PHONE, chaddr=PHONE,
                  state=LeaseState.BOUND if kind is MessageType.ACK else LeaseState.OFFERED, subnet="198.18.0.0/23",
                  expires=at + 60, first_seen=at, updated=at, vendor_class="CP-8841-3PCC")
    dest = Destination(IPv4Address("255.255.255.255"), 68, None, True)
    return Reply(Message(), b"", dest, kind, "mpp", lease.address, lease, new_device=False)


class Clock:
    now = T0

    def __call__(self) -> float:
        return self.now


def test_devices_in_every_stage_reload_equal_and_the_table_passes_its_checks(tmp_path: Path) -> None:
    clock = Clock()
    t = DeviceTracker(tmp_path, lambda: None, clock=clock)  # type: ignore[arg-type,return-value]
    for i, kind in enumerate(k for k in Kind if k.value in {s.label for s in Stage}):
        chaddr = bytes((0, 0x56, 0x2B, 0, 0, i))
        clock.now = T0 + i
        t._event(chaddr, clock.now, Kind.OFFERED, Detail(address=f"198.18.0.{10 + i}"))
        clock.now += 0.5
        t._event(chaddr, clock.now, kind, Detail(url="https://p/x.xml"))
    for dt, kind, detail in EVENTS:  # the shells' entry into the fold
        t._event(PHONE, T0 + dt, kind, detail)
    before = {s.mac: s for s in t.states()}
    assert before[MAC] == full_state()
    t.close()
    assert {s.stage for s in before.values()} == set(Stage)
    conn = sqlite3.connect(tmp_path / "devices.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]  # the stage CHECK holds
    conn.close()
    assert {d.mac: d.funnel for d in read_devices(tmp_path)} == before
    again = DeviceTracker(tmp_path, lambda: None, clock=clock)  # type: ignore[arg-type,return-value]
    assert {s.mac: s for s in again.states()} == before
    again.close()


def test_the_writer_still_writes_a_checked_table(tmp_path: Path) -> None:
    """The CHECK is skipped by the daemon's own writer only: any other connection still enforces it."""
    DeviceTracker(tmp_path, lambda: None).close()  # type: ignore[arg-type,return-value]
    conn = sqlite3.connect(tmp_path / "devices.sqlite3")
    try:
        conn.execute("INSERT INTO devices (chaddr, stage, first_seen, last_seen) VALUES (x'01', 'bogus', 0, 0)")
    except sqlite3.IntegrityError:
        pass
    else:
        raise AssertionError("the stage CHECK is gone from the schema")
    finally:
        conn.close()


def test_offers_and_acks_keep_the_address_attribution_in_step(tmp_path: Path) -> None:
    clock = Clock()
    t = DeviceTracker(tmp_path, lambda: None, clock=clock)  # type: ignore[arg-type,return-value]

    def at(dt: float, kind: MessageType, address: str) -> None:
        clock.now = T0 + dt
        t.dhcp_outcome(reply(kind, address, T0))

    at(0, MessageType.OFFER, "198.18.0.100")
    assert not t.knows_address("198.18.0.100")  # offered: its queries are not its own yet
    at(1, MessageType.ACK, "198.18.0.100")
    assert t.knows_address("198.18.0.100")
    at(2, MessageType.OFFER, "198.18.0.100")  # a reboot's DISCOVER
    assert not t.knows_address("198.18.0.100")
    at(3, MessageType.ACK, "198.18.0.100")
    at(4, MessageType.OFFER, "198.18.0.101")  # offered another address
    assert not t.knows_address("198.18.0.100") and not t.knows_address("198.18.0.101")
    at(5, MessageType.ACK, "198.18.0.101")
    assert t.knows_address("198.18.0.101") and not t.knows_address("198.18.0.100")
    clock.now = T0 + 6
    t.dns_query("198.18.0.101", SRV_NAME, 33, Rcode.NOERROR)
    d = t.get(PHONE)
    assert d is not None and d.stage is Stage.SRV_LOOKED_UP and d.address == IPv4Address("198.18.0.101")
    assert dict(d.funnel.timeline) == {"offered": T0, "leased": T0 + 1, "srv_looked_up": T0 + 6}
    assert (d.first_seen, d.last_seen, d.funnel.address) == (T0, T0 + 6, "198.18.0.101")
    t.close()


def test_the_listing_row_of_a_dora(tmp_path: Path) -> None:
    clock = Clock()
    t = DeviceTracker(tmp_path, lambda: None, clock=clock)  # type: ignore[arg-type,return-value]
    t.dhcp_outcome(reply(MessageType.OFFER, "198.18.0.100", T0 - 10))  # the lease is older than our record
    clock.now = T0 + 2
    t.dhcp_outcome(reply(MessageType.ACK, "198.18.0.100", T0 - 10))
    t.close()
    [d] = read_devices(tmp_path)
    assert d.row()[:8] == (PHONE, int(IPv4Address("198.18.0.100")), "leased", "mpp", "CP-8841-3PCC", None,
                           T0 - 10, T0 + 2)
    assert (d.funnel.model, d.funnel.since, dict(d.funnel.timeline)) == ("CP-8841-3PCC", T0 + 2,
                                                                         {"offered": T0, "leased": T0 + 2})
