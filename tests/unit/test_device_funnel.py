"""The device tracker as the funnel's shell: file fetches and syslog messages, the bounded history, the
v1 -> v2 table migration, restarts (also after SIGKILL), the stage gauges, and the `devices` and `report`
commands on a prepared state directory."""

from __future__ import annotations

import enum
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from dataclasses import dataclass, fields
from ipaddress import IPv4Address
from pathlib import Path
from types import SimpleNamespace

import pytest
from prometheus_client import CollectorRegistry

from bootstrapd.config.loader import load_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dns.wire import Rcode
from bootstrapd.files.outcome import (
    Device,
    Fetched,
    FileRequest,
    IdentifiedBy,
    Protocol,
    Refused,
    Rendered,
    Static,
)
from bootstrapd.floor.funnel import DiscoveryPath, Stage
from bootstrapd.observability.device_store import read_devices, read_history
from bootstrapd.observability.devices import HISTORY, DeviceTracker
from bootstrapd.observability.metrics import Metrics
from tests.unit.test_devices import ADDR, PHONE, SITE_YAML, SRV, SRV_NAME, Clock, reply

MAC = PHONE.hex(":")
OTHER = bytes.fromhex("00562b000001")


class MsgKind(enum.Enum):  # the syslog parser's enum, as its contract names the values
    RESYNC_REQUESTED = "resync_requested"
    RESYNC_SUCCEEDED = "resync_succeeded"
    RESYNC_FAILED = "resync_failed"
    UPGRADE_REQUESTED = "upgrade_requested"
    UPGRADE_SUCCEEDED = "upgrade_succeeded"
    UPGRADE_FAILED = "upgrade_failed"
    OTHER = "other"


@dataclass(frozen=True)
class Msg:
    kind: MsgKind
    mac: str | None = None
    model: str | None = None
    url: str | None = None
    error: str | None = None
    text: str = ""


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML + f"state_dir: {tmp_path / 'state'}\n")
    return load_site(str(path))


def tracker(tmp_path: Path, site: Site, clock: Clock, metrics: Metrics | None = None) -> DeviceTracker:
    return DeviceTracker(tmp_path / "state", lambda: site, clock=clock, metrics=metrics)


def fetched(name: str, protocol: Protocol = Protocol.HTTP, mac: str | None = MAC, static: bool = False,
            conflicts: tuple[str, ...] = ()) -> Fetched:
    who = Device(mac, IdentifiedBy.USER_AGENT if mac else IdentifiedBy.NONE, "CP-8841-3PCC", "12.0.1MPP", conflicts)
    request = FileRequest(name, protocol, ADDR, "Cisco-CP-8841-3PCC/12.0.1MPP (00562b043615)")
    resolution = Static("/srv/" + name, 10, who) if static else Rendered(b"<x/>", "t.xml.j2", who)
    return Fetched(request, resolution, 200, 10, 0.01)


def syslog(t: DeviceTracker, clock: Clock, kind: MsgKind, mac: str | None = MAC, source: str = str(ADDR),
           text: str | None = None, **kw: str) -> None:
    t.syslog_message(clock.now, IPv4Address(source), Msg(kind, mac, text=text or f"{kind.value} line", **kw))


def test_fetch_then_resync_moves_the_device_and_records_what_it_did(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    t.dhcp_outcome(reply(MessageType.ACK))
    clock.now += 40
    t.file_fetch(fetched("sip78xx.loads", Protocol.TFTP, static=True))  # firmware: history only
    assert t.get(PHONE).stage is Stage.LEASED  # type: ignore[union-attr]
    t.file_fetch(fetched("CP-8841-3PCC.cfg", Protocol.TFTP, mac=None))  # unidentified: by its lease
    s = t.get(PHONE).funnel  # type: ignore[union-attr]
    assert (s.stage, s.profile, s.profile_at, s.path) == (Stage.PROFILE_FETCHED, "CP-8841-3PCC.cfg", clock.now,
                                                           DiscoveryPath.TFTP)
    assert (s.model, s.firmware) == ("CP-8841-3PCC", "12.0.1MPP")
    clock.now += 5
    syslog(t, clock, MsgKind.RESYNC_REQUESTED, url="http://198.18.0.1/00562b043615.xml")
    t.file_fetch(Refused(FileRequest("nope.xml", Protocol.HTTP, ADDR), "not_found", 404,
                         Device(MAC, IdentifiedBy.LEASE)))
    syslog(t, clock, MsgKind.RESYNC_SUCCEEDED, mac=None, url="http://198.18.0.1/00562b043615.xml")  # by lease
    s = t.get(PHONE).funnel  # type: ignore[union-attr]
    assert (s.stage, s.resync_url) == (Stage.RESYNC_SUCCEEDED, "http://198.18.0.1/00562b043615.xml")
    assert [(h.kind, h.text) for h in t.history(PHONE)] == [
        ("file_fetched", "tftp sip78xx.loads: sent 10 bytes in 0.010 s"),
        ("profile_fetched", "tftp CP-8841-3PCC.cfg: sent 10 bytes in 0.010 s"),
        ("resync_requested", "resync_requested line"),
        ("file_refused", "http nope.xml: refused not_found (status 404)"),
        ("resync_succeeded", "resync_succeeded line"),
    ]
    t.close()


def test_syslog_mac_wins_over_the_lease_and_the_disagreement_is_flagged(tmp_path: Path, site: Site) -> None:
    clock, metrics = Clock(), Metrics(CollectorRegistry())
    t = tracker(tmp_path, site, clock, metrics)
    t.dhcp_outcome(reply(MessageType.ACK, chaddr=OTHER))  # ADDR is OTHER's lease
    syslog(t, clock, MsgKind.RESYNC_FAILED, error="bad XML")
    s = t.get(PHONE).funnel  # type: ignore[union-attr]
    assert (s.stage, s.resync_error, s.address) == (Stage.RESYNC_FAILED, "bad XML", str(ADDR))
    assert s.conflicts == (f"syslog={MAC} lease={OTHER.hex(':')} from {ADDR}",)
    assert t.get(OTHER).stage is Stage.LEASED  # type: ignore[union-attr]
    syslog(t, clock, MsgKind.OTHER, mac=None, source="198.18.0.250")  # nobody's: counted, no device
    nobody = Static("/srv/x.cfg", 1, Device(None, IdentifiedBy.NONE))
    t.file_fetch(Fetched(FileRequest("x.cfg", Protocol.TFTP, IPv4Address("198.18.0.250")), nobody, 0, 1, 0.0))
    assert len(t) == 2
    r = metrics.registry
    assert r.get_sample_value("bootstrapd_device_mac_conflicts_total", {"source": "syslog"}) == 1
    assert r.get_sample_value("bootstrapd_device_events_unattributed_total", {"source": "syslog"}) == 1
    assert r.get_sample_value("bootstrapd_device_events_unattributed_total", {"source": "files"}) == 1
    t.close()


def test_history_is_bounded_and_survives_a_restart_with_the_funnel(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    t.dhcp_outcome(reply(MessageType.ACK))
    for i in range(HISTORY + 10):
        clock.now += 1
        syslog(t, clock, MsgKind.OTHER, text=f"line {i}")
        if i == 20:
            t.flush()  # some written, some pending
    assert [h.text for h in t.history(PHONE)] == [f"line {i}" for i in range(10, HISTORY + 10)]
    syslog(t, clock, MsgKind.RESYNC_REQUESTED, url="http://x/a.xml")
    before = t.get(PHONE).funnel  # type: ignore[union-attr]
    t.close()
    again = tracker(tmp_path, site, clock)
    assert again.get(PHONE).funnel == before  # type: ignore[union-attr]
    entries = again.history(PHONE)
    assert len(entries) == HISTORY and entries[-1].kind == "resync_requested"
    assert [e.seq for e in entries] == list(range(12, HISTORY + 12))
    syslog(again, clock, MsgKind.RESYNC_SUCCEEDED)  # the sequence goes on: nothing overwritten
    again.close()
    entries = read_history(tmp_path / "state", PHONE)
    assert (len(entries), entries[-1].kind, entries[-2].kind) == (HISTORY, "resync_succeeded", "resync_requested")
    assert [d.stage for d in read_devices(tmp_path / "state")] == [Stage.RESYNC_SUCCEEDED]


V1_SCHEMA = """
CREATE TABLE devices (chaddr BLOB PRIMARY KEY, address INTEGER,
    stage TEXT NOT NULL CHECK (stage IN ('offered', 'leased', 'srv_looked_up', 'targets_resolved')),
    device_class TEXT, vendor_class TEXT, hostname TEXT, first_seen REAL NOT NULL, last_seen REAL NOT NULL);
PRAGMA user_version = 1;
"""


def test_a_version_1_table_is_read_and_migrated(tmp_path: Path, site: Site) -> None:
    state = tmp_path / "state"
    state.mkdir()
    conn = sqlite3.connect(state / "devices.sqlite3")
    conn.executescript(V1_SCHEMA)
    conn.execute("INSERT INTO devices VALUES (?, ?, 'srv_looked_up', 'mpp', 'CP-8841-3PCC', NULL, 10.0, 20.0)",
                 (PHONE, int(ADDR)))
    conn.commit()
    conn.close()
    [old] = read_devices(state)  # the reader reads version 1 as it is
    assert (old.stage, old.funnel.since, old.vendor_class) == (Stage.SRV_LOOKED_UP, 20.0, "CP-8841-3PCC")
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    assert sqlite3.connect(state / "devices.sqlite3").execute("PRAGMA user_version").fetchone()[0] == 2
    t.dns_query(str(ADDR), "prov1.staging.test.", 1, Rcode.NOERROR)
    syslog(t, clock, MsgKind.RESYNC_REQUESTED)  # a stage version 1 could not hold
    t.close()
    [d] = read_devices(state)
    assert (d.stage, d.device_class, d.first_seen) == (Stage.RESYNC_REQUESTED, "mpp", 10.0)
    assert d.funnel.timeline["targets_resolved"] == clock.now


def test_stage_and_stall_gauges_follow_the_clock(tmp_path: Path, site: Site) -> None:
    clock, metrics = Clock(), Metrics(CollectorRegistry())
    t = tracker(tmp_path, site, clock, metrics)
    macs = [bytes.fromhex(f"0256000000{i:02x}") for i in range(4)]
    for i, m in enumerate(macs):
        t.dhcp_outcome(reply(MessageType.OFFER, chaddr=m, address=IPv4Address(int(ADDR) + i)))
        clock.now += 10
    t.dhcp_outcome(reply(MessageType.ACK, chaddr=macs[3], address=IPv4Address(int(ADDR) + 3)))

    def gauges(now: float) -> tuple[float | None, ...]:
        t.update_metrics(now)
        get = metrics.registry.get_sample_value
        return (get("bootstrapd_devices_by_stage", {"stage": "offered"}),
                get("bootstrapd_devices_by_stage", {"stage": "leased"}),
                get("bootstrapd_devices_stalled", {"stage": "offered"}),
                get("bootstrapd_devices_stalled", {"stage": "leased"}),
                get("bootstrapd_devices_stalled", {"stage": "srv_looked_up"}))

    start = clock.now - 40  # the OFFERs went out at start, +10, +20 (+30 for the one leased at +40)
    assert gauges(start + 30) == (3, 1, 0, 0, 0)
    assert gauges(start + 45) == (3, 1, 2, 0, 0)  # offered at start and +10 are past 30 s
    assert gauges(start + 161) == (3, 1, 3, 1, 0)  # leased at +40, 2 min budget
    t.dns_query(str(IPv4Address(int(ADDR) + 3)), SRV_NAME, SRV, Rcode.NOERROR)
    assert gauges(start + 10_000) == (3, 0, 3, 0, 0)  # srv_looked_up has no budget
    assert metrics.registry.get_sample_value("bootstrapd_devices_tracked") == 4
    t.close()


CHILD = textwrap.dedent("""
    import asyncio, sys
    from ipaddress import IPv4Address
    from bootstrapd.config.loader import load_site
    from bootstrapd.dhcp.codec import MessageType
    from bootstrapd.observability.devices import DeviceTracker
    from tests.unit.test_devices import reply
    from tests.unit.test_device_funnel import Msg, MsgKind, MAC

    site = load_site(sys.argv[1])
    async def main():
        t = DeviceTracker(site.state_dir, lambda: site)
        t.start()
        t.dhcp_outcome(reply(MessageType.ACK))
        t.syslog_message(1.0, IPv4Address("198.18.0.100"), Msg(MsgKind.RESYNC_REQUESTED, MAC, text="req"))
        await asyncio.sleep(1.6)  # one tick has written it
        print("flushed", flush=True)
        await asyncio.sleep(60)
    asyncio.run(main())
""")


def test_after_sigkill_the_funnel_and_history_are_intact_and_nobody_counted_twice(tmp_path: Path,
                                                                                 site: Site) -> None:
    root = Path(__file__).parents[2]
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "site.yaml")], cwd=root,
                            env={**os.environ, "PYTHONPATH": str(root)}, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "flushed"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    assert (len(t), t.get(PHONE).stage) == (1, Stage.RESYNC_REQUESTED)  # type: ignore[union-attr]
    assert [h.text for h in t.history(PHONE)] == ["req"]
    t.dhcp_outcome(reply(MessageType.ACK))  # the phone again, after the restart
    syslog(t, clock, MsgKind.RESYNC_SUCCEEDED)
    t.close()
    [d] = read_devices(tmp_path / "state")
    assert d.stage is Stage.RESYNC_SUCCEEDED and [h.seq for h in read_history(tmp_path / "state", PHONE)] == [1, 2]


def cli(site_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    root = Path(__file__).parents[2]
    return subprocess.run([sys.executable, "-m", "bootstrapd", *args, "-c", str(site_path)], cwd=root,
                          env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=60)


def test_devices_and_report_commands_read_a_prepared_state_dir(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    clock.now = 1_000_000.0  # long ago: everything not finished is stalled by now
    t = tracker(tmp_path, site, clock)
    t.dhcp_outcome(reply(MessageType.ACK))
    t.file_fetch(fetched("CP-8841-3PCC.cfg", Protocol.HTTPS))
    syslog(t, clock, MsgKind.RESYNC_REQUESTED, url="https://prov1/x.xml")
    syslog(t, clock, MsgKind.RESYNC_SUCCEEDED, url="https://prov1/x.xml")
    t.dhcp_outcome(reply(MessageType.OFFER, chaddr=OTHER, address=IPv4Address("198.18.0.101")))
    t.close()
    site_path = tmp_path / "site.yaml"

    listed = {d["mac"]: d["stage"] for d in json.loads(cli(site_path, "devices", "--json").stdout)}
    assert listed == {MAC: "resync_succeeded", OTHER.hex(":"): "offered"}

    proc = cli(site_path, "report", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["site"] == "t" and doc["summary"]["done"] == 1 and doc["summary"]["stalled_by_stage"]["offered"] == 1
    rows = {r["mac"]: r for r in doc["devices"]}
    assert (rows[MAC]["path"], rows[MAC]["resync"], rows[MAC]["resync_url"]) == ("option_160_159", "succeeded",
                                                                                  "https://prov1/x.xml")
    assert rows[OTHER.hex(":")]["state"] == "stalled"
    csv_out = cli(site_path, "report", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("mac,serial,model,firmware,address,path") and len(csv_out) == 3
    table = cli(site_path, "report").stdout.splitlines()
    assert table[0].startswith("expected -  seen 2  done 1") and table[1] == "stalled 1 (offered 1)"
    # Read-only: the closed table was opened immutable and nothing was left beside it.
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["devices.sqlite3"]

    missing = tmp_path / "empty.yaml"
    missing.write_text(SITE_YAML + f"state_dir: {tmp_path / 'nothing'}\n")
    proc = cli(missing, "report")
    assert proc.returncode == 1 and "no device table" in proc.stderr


def test_a_malformed_mac_in_a_message_falls_back_to_the_lease(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = tracker(tmp_path, site, clock)
    t.dhcp_outcome(reply(MessageType.ACK))
    for bad in ("00:56", "zz:zz:zz:zz:zz:zz", "00:56:2b:04:36:15:00"):
        syslog(t, clock, MsgKind.RESYNC_REQUESTED, mac=bad)
    assert len(t) == 1 and t.get(PHONE).stage is Stage.RESYNC_REQUESTED  # type: ignore[union-attr]
    assert t.get(PHONE).funnel.conflicts == ()  # type: ignore[union-attr]
    t.close()


def test_an_evicted_device_seen_again_starts_a_fresh_history(tmp_path: Path, site: Site) -> None:
    clock = Clock()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock, max_devices=1)
    syslog(t, clock, MsgKind.OTHER, text="old")
    t.flush()
    syslog(t, clock, MsgKind.OTHER, mac=OTHER.hex(":"), text="other")  # evicts PHONE
    assert t.get(PHONE) is None
    syslog(t, clock, MsgKind.OTHER, text="new")  # PHONE again, before the eviction was written
    t.flush()
    assert [h.text for h in read_history(tmp_path / "state", PHONE)] == ["new"]
    assert read_history(tmp_path / "state", OTHER) == []  # evicted in turn: its history went with it
    t.close()


def with_sections(site: Site, **sections: object) -> SimpleNamespace:
    """The site with `files:`/`syslog:` sections, which other parts of the tree add to the model."""
    return SimpleNamespace(**({f.name: getattr(site, f.name) for f in fields(site)} | sections))


def test_inventory_gauges_and_the_history_bound_from_the_site(tmp_path: Path, site: Site) -> None:
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(f"mac,serial\n{MAC},FCH1\n00:56:2b:00:00:09,FCH9\n")
    full = with_sections(site, files=SimpleNamespace(inventory=str(inventory)), syslog=SimpleNamespace(history=3))
    clock, metrics = Clock(), Metrics(CollectorRegistry())
    t = DeviceTracker(tmp_path / "state", lambda: full, clock=clock, metrics=metrics)  # type: ignore[arg-type, return-value]
    t.dhcp_outcome(reply(MessageType.ACK))
    t.dhcp_outcome(reply(MessageType.ACK, chaddr=OTHER, address=IPv4Address("198.18.0.101")))
    for i in range(5):
        syslog(t, clock, MsgKind.OTHER, text=f"line {i}")
    t.update_metrics()
    get = metrics.registry.get_sample_value
    assert (get("bootstrapd_devices_missing"), get("bootstrapd_devices_unexpected")) == (1, 1)
    assert [h.text for h in t.history(PHONE)] == ["line 2", "line 3", "line 4"]
    r = t.report()
    assert [(row["mac"], row["serial"], row["state"]) for row in r.rows] == [
        (MAC, "FCH1", "in_progress"), ("00:56:2b:00:00:09", "FCH9", "missing"), (OTHER.hex(":"), None, "in_progress")]
    t.close()
    assert len(read_history(tmp_path / "state", PHONE)) == 3
    inventory.unlink()  # unreadable after a reload: no inventory, rather than everybody unexpected
    again = DeviceTracker(tmp_path / "state", lambda: full, clock=clock)  # type: ignore[arg-type, return-value]
    assert again.inventory() is None and again.report().summary["unexpected"] is None
    again.close()


def test_a_flood_of_made_up_macs_evicts_them_not_the_inventory_phones(tmp_path: Path, site: Site) -> None:
    """Past the bound the least recently seen device goes, but never an inventory phone while another is left:
    spoofed DISCOVERs must not erase the floor's own phones from the sign-off report."""
    inventory = tmp_path / "inventory.csv"
    inventory.write_text(f"mac,serial\n{MAC},FCH1\n")
    full = with_sections(site, files=SimpleNamespace(inventory=str(inventory)))
    clock = Clock()
    t = DeviceTracker(tmp_path / "state", lambda: full, clock=clock, max_devices=5)  # type: ignore[arg-type, return-value]
    t.dhcp_outcome(reply(MessageType.ACK))  # the inventory phone, seen first: the least recently seen
    flood = [bytes.fromhex(f"0256{i:08x}") for i in range(50)]
    for i, m in enumerate(flood):
        clock.now += 0.01
        t.dhcp_outcome(reply(MessageType.OFFER, chaddr=m, address=IPv4Address(int(ADDR) + 1 + i)))
    assert len(t) == 5 and t.get(PHONE) is not None
    assert [d for d in flood if t.get(d) is not None] == flood[-4:]  # the rest in LRU order
    t.flush()
    t.close()
    assert PHONE in {d.chaddr for d in read_devices(tmp_path / "state")}
