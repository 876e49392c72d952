"""One inventory across sites: two simulated sites (two trackers, two state directories, two site files)
ship their funnels to one central PostgreSQL database (the session's throwaway cluster, a schema per test),
and `bootstrapd report --all-sites` (a subprocess, as an operator runs it) shows both. With the central
database stopped, each site's own `bootstrapd report` stays right and the outbox holds the changes (one row
per device); when the database is back, the shipper's thread catches up by itself."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from bootstrapd.central import open_shipper
from bootstrapd.central.shipper import Shipper
from bootstrapd.cli import main
from bootstrapd.config.loader import load_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.observability import outbox
from bootstrapd.observability.devices import DeviceTracker
from bootstrapd.observability.metrics import Metrics
from tests.unit.test_device_funnel import Msg, MsgKind
from tests.unit.test_devices import SITE_YAML, Clock, reply

ROOT = Path(__file__).parents[2]
DALLAS = [bytes.fromhex(f"00562b0a00{i:02x}") for i in range(3)]  # the inventory holds 0..2 and one never seen
NEVER = "00:56:2b:0a:00:99"
AUSTIN = [bytes.fromhex(f"00562b0b00{i:02x}") for i in range(2)]


def make_site(tmp_path: Path, name: str, dsn: str, inventory: list[str] | None) -> tuple[Site, Path]:
    d = tmp_path / name
    d.mkdir()
    text = SITE_YAML.replace("site: t", f"site: {name}") + f"state_dir: {d / 'state'}\n"
    text += f"central: {{dsn: {json.dumps(dsn)}}}\n"
    if inventory is not None:
        (d / "root").mkdir()
        (d / "inventory.csv").write_text("mac,serial\n" + "".join(f"{m},FCH{i:04d}\n" for i, m in enumerate(inventory)))
        text += "files: {root: root, inventory: inventory.csv}\n"
    (d / "site.yaml").write_text(text)
    return load_site(str(d / "site.yaml")), d / "site.yaml"


class FloorSite:
    """A site's tracker fed through its public hooks, and its shipper."""

    def __init__(self, site: Site, path: Path, metrics: Metrics) -> None:
        self.site, self.path, self.clock, self.metrics = site, path, Clock(), metrics
        self.tracker = DeviceTracker(site.state_dir, lambda: site, clock=self.clock, metrics=metrics, ship=True)
        self.shipper: Shipper = open_shipper(lambda: site, self.tracker, metrics, None)

    def boot(self, chaddr: bytes, n: int, result: MsgKind | None) -> None:
        addr = reply(MessageType.ACK, chaddr=chaddr).lease.address  # type: ignore[union-attr]
        address = type(addr)(int(addr) + n)
        self.tracker.dhcp_outcome(reply(MessageType.ACK, chaddr=chaddr, address=address))
        self.clock.now += 1
        if result is not None:
            self.tracker.syslog_message(self.clock.now, address, Msg(result, chaddr.hex(":"), text=result.value))

    def outbox_rows(self) -> int:
        return int(self.tracker.writer.conn.execute("SELECT count(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        self.shipper.close()
        self.tracker.close()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bootstrapd", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def report(path: Path, *extra: str) -> dict[str, Any]:
    """`bootstrapd report --json` as an operator runs it (a process of its own)."""
    proc = run("report", "-c", str(path), "--json", *extra)
    assert proc.returncode == 0, proc.stderr
    doc: dict[str, Any] = json.loads(proc.stdout)
    return doc


def in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """The same command through cli.main (a second per process saved on a busy CI box)."""
    capsys.readouterr()
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def own_report(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, Any]:
    code, out, err = in_process(capsys, "report", "-c", str(path), "--json")
    assert code == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def timeless(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in ("site", "in_stage_s")} for r in rows]


@pytest.fixture
def sites(tmp_path: Path, pg_dsn: str) -> Any:
    made: list[FloorSite] = []
    for name, inventory in (("dallas", [m.hex(":") for m in DALLAS] + [NEVER]), ("austin", None)):
        site, path = make_site(tmp_path, name, pg_dsn, inventory)
        made.append(FloorSite(site, path, Metrics(CollectorRegistry())))
    yield made
    for s in made:
        s.close()


def ship_all(floor: FloorSite) -> None:
    """What the tracker's tick and the shipper's thread do, in turn, until the outbox is empty."""
    for _ in range(5):
        floor.tracker.flush()  # writes the changes, deletes what was shipped, queues a requeue
        while floor.shipper.run_once():
            pass
        floor.tracker.flush()
        if floor.outbox_rows() == 0:
            return


def test_two_sites_in_one_central_report(sites: list[FloorSite], capsys: pytest.CaptureFixture[str],
                                        pg_dsn: str) -> None:
    dallas, austin = sites
    dallas.boot(DALLAS[0], 0, MsgKind.RESYNC_SUCCEEDED)
    dallas.boot(DALLAS[1], 1, MsgKind.RESYNC_FAILED)
    dallas.boot(DALLAS[2], 2, None)
    austin.boot(AUSTIN[0], 0, MsgKind.RESYNC_SUCCEEDED)
    austin.boot(AUSTIN[1], 1, MsgKind.RESYNC_REQUESTED)
    for s in sites:
        ship_all(s)
        assert s.outbox_rows() == 0 and s.shipper.up is True
        get = s.metrics.registry.get_sample_value
        assert get("bootstrapd_central_up") == 1 and get("bootstrapd_central_outbox_rows") == 0
        assert abs((get("bootstrapd_central_last_shipped_timestamp_seconds") or 0) - time.time()) < 60
    import psycopg

    with psycopg.connect(pg_dsn) as conn:  # plain columns for whoever queries the database directly
        row = conn.execute("SELECT stage, resync, model, timeline ? 'leased', node FROM bootstrapd_central_devices"
                           " WHERE site = 'dallas' AND mac = %s", (DALLAS[1].hex(":"),)).fetchone()
        assert row == ("resync_failed", "failed", "CP-8841-3PCC", True, "dallas")
        assert conn.execute("SELECT count(*) FROM bootstrapd_central_inventory WHERE site = 'dallas'").fetchone() == (4,)
    doc = report(dallas.path, "--all-sites")
    assert [(s["site"], s["nodes"], s["pending"]) for s in doc["sites"]] == [("austin", ["austin"], 0),
                                                                            ("dallas", ["dallas"], 0)]
    by_site = {s["site"]: s["summary"] for s in doc["sites"]}
    assert (by_site["dallas"]["expected"], by_site["dallas"]["missing"], by_site["dallas"]["done"],
            by_site["dallas"]["failed"]) == (4, 1, 1, 1)
    assert (by_site["austin"]["expected"], by_site["austin"]["seen"], by_site["austin"]["done"]) == (None, 2, 1)
    total = doc["summary"]
    assert (total["expected"], total["seen"], total["done"], total["failed"], total["missing"],
            total["unexpected"]) == (4, 5, 2, 1, 1, 0)
    assert total["by_stage"]["resync_succeeded"] == 2 and total["by_stage"]["resync_requested"] == 1
    # Each site's part is exactly its own report (the same builder), with a site column.
    for s in sites:
        own = own_report(capsys, s.path)
        part = [r for r in doc["devices"] if r["site"] == s.site.site]
        assert timeless(part) == timeless(own["devices"]) and len(part) == len(own["devices"])
    assert {r["mac"]: r["serial"] for r in doc["devices"] if r["site"] == "dallas"}[NEVER] == "FCH0003"
    code, csv_out, _ = in_process(capsys, "report", "-c", str(austin.path), "--all-sites", "--csv")
    assert code == 0 and csv_out.splitlines()[0].startswith("site,mac,serial,")
    assert len(csv_out.splitlines()) == 1 + 5 + 1  # header, seen devices, the missing one
    code, table, _ = in_process(capsys, "report", "-c", str(austin.path), "--all-sites")
    assert code == 0 and "all sites:" in table and "dallas: last shipped" in table


def test_central_down_each_site_stays_right_and_the_central_report_catches_up(
    sites: list[FloorSite], pg_cluster: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    dallas, austin = sites
    dallas.boot(DALLAS[0], 0, MsgKind.RESYNC_REQUESTED)
    austin.boot(AUSTIN[0], 0, None)
    for s in sites:
        ship_all(s)
    pg_cluster.stop()
    try:
        for _ in range(3):  # the same devices change again and again: one outbox row each
            dallas.boot(DALLAS[0], 0, MsgKind.RESYNC_SUCCEEDED)
            dallas.boot(DALLAS[1], 1, MsgKind.RESYNC_FAILED)
            austin.boot(AUSTIN[0], 0, MsgKind.RESYNC_SUCCEEDED)
        for s in sites:
            s.tracker.flush()
            assert s.shipper.run_once() is False
            assert s.shipper.up is False
            get = s.metrics.registry.get_sample_value
            assert get("bootstrapd_central_up") == 0
        assert (dallas.outbox_rows(), austin.outbox_rows()) == (2, 1)
        assert dallas.metrics.registry.get_sample_value("bootstrapd_central_outbox_rows") == 2
        own = own_report(capsys, dallas.path)  # the site's own report never touches the central database
        states = {r["mac"]: r["state"] for r in own["devices"]}
        assert (states[DALLAS[0].hex(":")], states[DALLAS[1].hex(":")], states[NEVER]) == ("done", "failed",
                                                                                            "missing")
        assert own_report(capsys, austin.path)["summary"]["done"] == 1
        down = run("report", "-c", str(dallas.path), "--all-sites", "--json")
        assert down.returncode == 1 and "central database" in down.stderr and down.stdout == ""
    finally:
        pg_cluster.start()
    started = time.monotonic()
    for s in sites:
        s.shipper.start()  # the thread: back-off, reconnect, ship, by itself
    while time.monotonic() - started < 30:
        for s in sites:
            s.tracker.flush()  # the tracker's tick: applies the acknowledgements
        if all(s.outbox_rows() == 0 for s in sites):
            break
        time.sleep(0.2)
    assert [s.outbox_rows() for s in sites] == [0, 0]
    code, out, err = in_process(capsys, "report", "-c", str(dallas.path), "--all-sites", "--json")
    assert code == 0, err
    doc = json.loads(out)
    states = {(r["site"], r["mac"]): r["state"] for r in doc["devices"]}
    assert states[("dallas", DALLAS[0].hex(":"))] == "done" and states[("dallas", DALLAS[1].hex(":"))] == "failed"
    assert states[("austin", AUSTIN[0].hex(":"))] == "done"
    assert doc["summary"]["done"] == 2 and all(s.shipper.up for s in sites)
    assert outbox.waiting(dallas.tracker.writer.conn, 0) == 0


def test_the_daemon_ships_what_its_phones_do_and_rides_out_an_outage(
    staging: Any, tmp_path: Path, pg_cluster: Any, pg_dsn: str
) -> None:
    """The real daemon in the lab: a phone's lease reaches the central report by itself; with the central
    database stopped DHCP goes on (the shipper is not in its path) and the backlog ships when it is back."""
    from tests.integration.daemon import Daemon, site_config
    from tests.integration.test_dhcp_clients import need, udhcpc

    need("udhcpc")
    daemon = Daemon(staging.server, tmp_path, site_config(site="floor-9", central={"dsn": pg_dsn})).start()

    def central_macs(timeout: float) -> set[str]:
        ends, macs = time.monotonic() + timeout, set()
        while time.monotonic() < ends:
            proc = run("report", "-c", str(daemon.site_path), "--all-sites", "--json")
            if proc.returncode == 0:
                macs = {r["mac"] for r in json.loads(proc.stdout)["devices"] if r["site"] == "floor-9"}
                if len(macs) >= want:
                    break
            time.sleep(0.5)
        return macs

    want = 1
    assert udhcpc(staging.clients[0], tmp_path, "-V", "CP-8841-3PCC")["ip"]
    assert len(central_macs(15)) == 1
    pg_cluster.stop()
    try:
        assert udhcpc(staging.clients[1], tmp_path, "-V", "CP-8841-3PCC", timeout=10)["ip"]  # DHCP unaffected
        daemon.wait_for("central.down", timeout=10)
        assert len(report(daemon.site_path)["devices"]) == 2  # the site's own report has it at once
    finally:
        pg_cluster.start()
    daemon.wait_for("central.up", timeout=30)
    want = 2
    assert len(central_macs(15)) == 2
    assert daemon.stop() == 0


def test_the_floor_page_shows_every_site_and_says_when_central_is_away(
    sites: list[FloorSite], pg_cluster: Any, pg_dsn: str
) -> None:
    """/sites.json is `report --all-sites --json` (read in a worker thread, cached SITES_TTL); /sites.html
    renders it; 503 with the reason while the central database is stopped; 404 without `central:`."""
    import asyncio

    import aiohttp

    from bootstrapd.central.db import read_sites
    from bootstrapd.signoff import render_all_sites
    from bootstrapd.transport.floorpage import SITES_TTL, FloorPage
    from tests.integration.floor_report import TestReport

    dallas, austin = sites
    dallas.boot(DALLAS[0], 0, MsgKind.RESYNC_SUCCEEDED)
    austin.boot(AUSTIN[0], 0, MsgKind.RESYNC_SUCCEEDED)
    for s in sites:
        ship_all(s)
    clock = [0.0]

    async def main() -> None:
        page = FloorPage("127.0.0.1", 0, CollectorRegistry(), TestReport(), clock=lambda: clock[0],
                         sites=lambda: render_all_sites(read_sites(pg_dsn), time.time(), "summary"))
        alone = FloorPage("127.0.0.1", 0, CollectorRegistry(), TestReport())
        await page.start()
        await alone.start()
        try:
            assert page.address is not None and alone.address is not None
            url = f"http://127.0.0.1:{page.address[1]}"
            async with aiohttp.ClientSession() as http:
                async with http.get(url + "/sites.json") as r:
                    assert r.status == 200
                    doc = await r.json()
                assert [s["site"] for s in doc["sites"]] == ["austin", "dallas"] and doc["summary"]["done"] == 2
                assert "devices" not in doc
                async with http.get(url + "/sites.html") as r:
                    assert r.status == 200 and "/sites.js" in await r.text()
                async with http.get(url + "/sites.js") as r:
                    assert r.status == 200 and "textContent" in await r.text()
                pg_cluster.stop()
                try:
                    async with http.get(url + "/sites.json") as r:
                        assert r.status == 200  # the cached rendering, within SITES_TTL
                    clock[0] += SITES_TTL
                    async with http.get(url + "/sites.json") as r:
                        assert r.status == 503 and "central database" in await r.text()
                    async with http.get(url + "/report.json") as r:
                        assert r.status == 200  # the floor's own report is not affected
                finally:
                    pg_cluster.start()
                async with http.get(f"http://127.0.0.1:{alone.address[1]}/sites.json") as r:
                    assert r.status == 404
        finally:
            await page.stop()
            await alone.stop()

    asyncio.run(asyncio.wait_for(main(), 60))


def test_ships_are_idempotent_and_the_newest_wins(pg_dsn: str) -> None:
    """Straight at the database: a batch shipped twice changes nothing the second time; within one origin
    the higher sequence wins (a late retry of an old batch loses); between two origins the later sighting."""
    from bootstrapd.central.db import CentralDb
    from bootstrapd.central.shipper import Heartbeat
    from bootstrapd.floor import codec
    from bootstrapd.floor.funnel import DeviceState, Stage

    def row(origin: str, seq: int, stage: Stage, last_seen: float) -> dict[str, Any]:
        state = DeviceState("00:56:2b:0d:00:01", 1.0, stage=stage, since=last_seen, timeline={stage.label: last_seen})
        return {"site": "s", "mac": state.mac, "origin": origin, "seq": seq, "node": "n", "stage": stage.label,
                "timeline": dict(state.timeline), "first_seen": 1.0, "last_seen": last_seen,
                "funnel": json.loads(codec.dumps(state)), "shipped_at": 0.0}

    db = CentralDb(pg_dsn, "test")
    try:
        db.prepare()
        db.prepare()  # a second node starting: nothing to create
        hb = Heartbeat("s", "n", "o1", 0.0, 0, {}, False)
        assert db.ship([row("o1", 5, Stage.LEASED, 10.0)], hb, None) == 1
        assert db.ship([row("o1", 5, Stage.LEASED, 10.0)], hb, None) == 0  # the same batch again
        assert db.ship([row("o1", 4, Stage.OFFERED, 9.0)], hb, None) == 0  # older within the origin
        assert db.ship([row("o2", 1, Stage.OFFERED, 9.5)], hb, None) == 0  # another origin, an older sighting
        assert db.ship([row("o2", 2, Stage.RESYNC_SUCCEEDED, 11.0)], hb, None) == 1  # ... a newer one
        stage = db.conn.execute("SELECT stage, origin, seq FROM bootstrapd_central_devices").fetchall()
        assert stage == [("resync_succeeded", "o2", 2)] and db.round_trips == 5
    finally:
        db.close()
