"""The outbox and its shipper without a database: a device tracker on a real devices.sqlite3 (its public
hooks), a fake clock, and a stand-in for the central database that can be taken away. The real database
is in tests/integration/test_central.py; the report across sites is a pure function (floor/sites.py)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bootstrapd.central.shipper import BACKOFF_MAX, HEARTBEAT, Context, Shipper
from bootstrapd.config.loader import load_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.errors import StoreError
from bootstrapd.floor.funnel import DeviceState, Stage
from bootstrapd.floor.report import COLUMNS, build_report
from bootstrapd.floor.sites import SiteData, build_all_sites, inventory_of, sites_csv, sites_table, total
from bootstrapd.observability.devices import DeviceTracker
from bootstrapd.observability.metrics import Metrics
from tests.unit.test_devices import ADDR, SITE_YAML, Clock, reply

MACS = [bytes.fromhex(f"00562b0c00{i:02x}") for i in range(3)]


@pytest.fixture
def site(tmp_path: Path) -> Site:
    path = tmp_path / "site.yaml"
    path.write_text(SITE_YAML)
    return load_site(str(path))


class FakeCentral:
    """Takes ships while `up`; what it was given is kept as the central database would (newest per MAC)."""

    def __init__(self, world: World) -> None:
        self.world, self.broken = world, False

    def prepare(self) -> None:
        self._check()

    def knows(self, site: str, node: str, origin: str) -> bool:
        self._check()
        return origin in self.world.origins

    def ship(self, rows: Sequence[dict[str, Any]], hb: Any, inventory: Sequence[tuple[str, str]] | None) -> int:
        self._check()
        self.world.origins.add(hb.origin)
        self.world.batches.append(len(rows))
        self.world.heartbeats.append(hb.now)
        if inventory is not None:
            self.world.inventory = list(inventory)
        for r in rows:
            self.world.rows[r["mac"]] = r
        return len(rows)

    def close(self) -> None:
        self.broken = True

    def _check(self) -> None:
        if not self.world.up:
            self.broken = True
            raise StoreError("central database unreachable")


class World:
    def __init__(self) -> None:
        self.up = True
        self.connects = 0
        self.origins: set[str] = set()
        self.rows: dict[str, dict[str, Any]] = {}
        self.batches: list[int] = []
        self.heartbeats: list[float] = []
        self.inventory: list[tuple[str, str]] | None = None

    def open(self) -> FakeCentral:
        self.connects += 1
        if not self.up:
            raise StoreError("cannot connect to the central database")
        return FakeCentral(self)


def make(tmp_path: Path, site: Site, clock: Clock, world: World, *, batch: int = 500,
         metrics: Metrics | None = None) -> tuple[DeviceTracker, Shipper]:
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock, ship=True)
    s = Shipper("t", "t", t.path, t.writer, world.open, lambda: Context(None, {}), metrics, clock=clock, batch=batch)
    return t, s


def rows(t: DeviceTracker) -> list[tuple[bytes, int]]:
    return [(bytes(c), s) for s, c in t.writer.conn.execute("SELECT seq, chaddr FROM outbox ORDER BY seq")]


def lease(t: DeviceTracker, chaddr: bytes, kind: MessageType = MessageType.ACK) -> None:
    t.dhcp_outcome(reply(kind, chaddr=chaddr, address=type(ADDR)(int(ADDR) + chaddr[-1])))


def test_the_outbox_keeps_one_row_per_device_however_often_it_changes(tmp_path: Path, site: Site) -> None:
    clock, world = Clock(), World()
    world.up = False
    t, s = make(tmp_path, site, clock, world)
    first: list[tuple[bytes, int]] = []
    for _ in range(20):
        for m in MACS:
            clock.now += 1
            lease(t, m, MessageType.OFFER)
            lease(t, m)
        t.flush()
        first = first or rows(t)
    queued = rows(t)
    assert sorted(c for c, _ in queued) == sorted(MACS)  # bounded by the device count
    assert min(seq for _, seq in queued) > max(seq for _, seq in first)  # each the latest change, renumbered
    assert s.run_once() is False and s.up is False and s.pending == 3
    t.close()


def test_ships_in_batches_then_the_writer_deletes_what_was_shipped(tmp_path: Path, site: Site) -> None:
    clock, world, metrics = Clock(), World(), Metrics(CollectorRegistry())
    t, s = make(tmp_path, site, clock, world, batch=2, metrics=metrics)
    for m in MACS:
        lease(t, m)
    t.flush()
    assert s.run_once() is False  # first contact: a central without this origin asks for a requeue first
    t.flush()
    assert s.run_once() is True  # 2 of 3, more waiting
    assert s.run_once() is False
    assert world.batches == [2, 1] and set(world.rows) == {m.hex(":") for m in MACS}
    assert world.rows[MACS[0].hex(":")]["stage"] == "leased"
    assert len(rows(t)) == 3  # shipped, not yet deleted: the writer's next transaction does that
    t.flush()
    assert rows(t) == []
    get = metrics.registry.get_sample_value
    assert (get("bootstrapd_central_up"), get("bootstrapd_central_outbox_rows")) == (1, 0)
    assert get("bootstrapd_central_last_shipped_timestamp_seconds") == clock.now
    t.close()


def test_down_backs_off_keeps_everything_and_recovers_by_itself(tmp_path: Path, site: Site) -> None:
    clock, world = Clock(), World()
    t, s = make(tmp_path, site, clock, world)
    lease(t, MACS[0])
    t.flush()
    s.run_once()
    t.flush()
    s.run_once()
    t.flush()
    assert rows(t) == [] and world.connects == 1
    world.up = False
    lease(t, MACS[1])
    t.flush()
    assert s.run_once() is False and s.up is False  # the ship fails: nothing acknowledged
    attempts = []
    for _ in range(60):  # two minutes of cycles, one a second
        clock.now += 2
        before = world.connects
        s.run_once()
        attempts.append(world.connects - before)
    assert 6 <= sum(attempts) <= 20  # 0.5 s doubling to BACKOFF_MAX, not one a cycle
    assert attempts[-int(BACKOFF_MAX):].count(1) <= 2
    lease(t, MACS[1], MessageType.OFFER)  # changes meanwhile collapse
    lease(t, MACS[2])
    t.flush()
    assert sorted(c for c, _ in rows(t)) == [MACS[1], MACS[2]]
    world.up = True
    for _ in range(10):
        clock.now += 2
        s.run_once()
        t.flush()
    assert rows(t) == [] and s.up is True
    assert world.rows[MACS[1].hex(":")]["stage"] == "leased" and MACS[2].hex(":") in world.rows
    t.close()


def test_idle_heartbeat_and_inventory_only_when_changed(tmp_path: Path, site: Site) -> None:
    clock, world = Clock(), World()
    t, s = make(tmp_path, site, clock, world)
    inventory = [inventory_of([("00:56:2b:0c:00:00", "FCH1")])]
    s._context = lambda: Context(inventory[0], {"offered": 30.0})
    for _ in range(3):
        s.run_once()
        t.flush()
    assert world.inventory == [("00:56:2b:0c:00:00", "FCH1")]
    shipped = len(world.heartbeats)
    for _ in range(int(HEARTBEAT) * 3):
        clock.now += 1
        s.run_once()
    assert len(world.heartbeats) - shipped in (2, 3)  # idle: one heartbeat per HEARTBEAT seconds
    world.inventory = None
    s.run_once()
    assert world.inventory is None  # unchanged: not sent again
    inventory[0] = inventory_of([("00:56:2b:0c:00:01", "FCH2")])
    s.run_once()
    assert world.inventory == [("00:56:2b:0c:00:01", "FCH2")]
    t.close()


def test_switching_central_on_queues_the_devices_already_there_and_off_empties(tmp_path: Path,
                                                                              site: Site) -> None:
    clock = Clock()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock)
    for m in MACS[:2]:
        lease(t, m)
    t.close()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock, ship=True)
    assert sorted(c for c, _ in rows(t)) == sorted(MACS[:2])
    origin = t.writer.origin
    t.close()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock)
    lease(t, MACS[2])
    t.close()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock, ship=True)
    assert len(rows(t)) == 3 and t.writer.origin == origin  # the origin is the table's, across restarts
    t.close()
    t = DeviceTracker(tmp_path / "state", lambda: site, clock=clock)
    assert rows(t) == []
    t.close()


def test_a_central_without_this_site_gets_every_device_again_in_slices(tmp_path: Path, site: Site,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from bootstrapd.observability import outbox

    clock, world = Clock(), World()
    t, s = make(tmp_path, site, clock, world)
    for m in MACS:
        lease(t, m)
    for _ in range(3):
        t.flush()
        s.run_once()
    t.flush()
    assert rows(t) == [] and len(world.rows) == 3
    world.origins.clear()
    world.rows.clear()  # the central database restored from before this site existed
    s._drop()
    monkeypatch.setattr(outbox, "REQUEUE_SLICE", 2)
    assert s.run_once() is False and t.writer.requeue  # it asks, then waits for the writer
    t.flush()
    assert t.writer.requeue and len(rows(t)) == 2  # a slice per transaction
    assert s.run_once() is False and world.rows == {}
    t.flush()
    assert not t.writer.requeue and len(rows(t)) == 3
    s.run_once()
    t.flush()
    assert rows(t) == [] and sorted(world.rows) == sorted(m.hex(":") for m in MACS)
    t.close()


# -- the report across sites (pure) --------------------------------------------------------------------------
def state(mac: str, stage: Stage | None, t: float = 100.0) -> DeviceState:
    return DeviceState(mac, t, stage=stage, since=t, timeline={stage.label: t} if stage else {})


def test_all_sites_is_each_sites_own_report_side_by_side_and_their_sum() -> None:
    a_inv = inventory_of([("00:00:00:00:00:01", "S1"), ("00:00:00:00:00:02", "S2")])
    a = SiteData("b-site", (state("00:00:00:00:00:01", Stage.RESYNC_SUCCEEDED), state("00:00:00:00:00:09", Stage.LEASED)),
                 a_inv, {"leased": 120.0}, ("b1",), 150.0, 0)
    b = SiteData("a-site", (state("00:00:00:00:00:05", Stage.RESYNC_FAILED),), None, {}, ("a1",), 160.0, 4)
    report = build_all_sites([a, b], 1000.0)
    assert [p.data.site for p in report.sites] == ["a-site", "b-site"]
    own = build_report(a.devices, a_inv, 1000.0, a.limits)
    assert [{k: v for k, v in r.items() if k != "site"} for r in report.rows if r["site"] == "b-site"] == list(own.rows)
    s = report.summary
    assert (s["expected"], s["seen"], s["done"], s["failed"], s["stalled"], s["missing"], s["unexpected"]) == (
        2, 3, 1, 1, 1, 1, 1)
    assert s["by_stage"]["leased"] == 1 and s["stalled_by_stage"] == {"leased": 1}
    assert total([build_report(b.devices, None, 0, {}).summary])["expected"] is None  # no site has an inventory
    lines = sites_csv(report).splitlines()
    assert lines[0] == ",".join(("site", *COLUMNS)) and len(lines) == 5 and lines[1].startswith("a-site,")
    table = sites_table(report)
    assert "a-site: last shipped 1970-01-01T00:02:40Z, 4 pending" in table
    assert table.splitlines()[-5].split()[:2] == ["SITE", "MAC"]


def test_a_hostile_site_name_is_escaped_everywhere() -> None:
    bad = SiteData("x\x1b[2J\nsite", (state("00:00:00:00:00:01", Stage.LEASED),), None, {})
    report = build_all_sites([bad], 0.0)
    assert "\x1b" not in sites_table(report) and "\x1b" not in sites_csv(report)
    assert report.rows[0]["site"] == "x\\x1b[2J\\nsite"


@pytest.mark.parametrize("n", [0, 1])
def test_no_sites_or_an_empty_site(n: int) -> None:
    report = build_all_sites([SiteData("s", (), None, {})][:n], 0.0)
    assert report.rows == () and report.summary["seen"] == 0
