"""The sign-off report from a fixed set of events: golden table, JSON and CSV; the summary; hostile text.

Regenerate the golden files after a deliberate change with BOOTSTRAPD_UPDATE_GOLDEN=1 (then read the diff).
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import pytest

from bootstrapd.config.model import StallAfter
from bootstrapd.files.inventory import parse_inventory
from bootstrapd.floor.funnel import Detail, DeviceState, Event, Kind, apply, budgets
from bootstrapd.floor.report import COLUMNS, Report, build_report, csv_cell, report_csv, report_json, report_table

GOLDEN = Path(__file__).parent / "golden"
T0 = 1_700_000_000.0
NOW = T0 + 600
K = Kind
INVENTORY = """mac,serial,label
00:56:2B:00:00:01,FCH0001,desk 1
00562b000002,FCH0002,desk 2
00-56-2b-00-00-03,FCH0003,desk 3
00:56:2b:00:00:04,FCH0004,desk 4
00:56:2b:00:00:05,,desk 5
"""
HOSTILE = "02:00:00:00:00:99"
EVENTS: list[tuple[float, str, Kind, Detail]] = [
    # 01: the SRV path to a successful resync: done.
    (0, "00:56:2b:00:00:01", K.OFFERED, Detail(address="198.18.0.100", model="CP-8841-3PCC")),
    (1, "00:56:2b:00:00:01", K.LEASED, Detail(address="198.18.0.100", model="CP-8841-3PCC")),
    (41, "00:56:2b:00:00:01", K.SRV_LOOKED_UP, Detail()),
    (41, "00:56:2b:00:00:01", K.TARGETS_RESOLVED, Detail()),
    (42, "00:56:2b:00:00:01", K.PROFILE_FETCHED,
     Detail(file="CP-8841-3PCC.cfg", protocol="https", firmware="12.0.1MPP", address="198.18.0.100")),
    (50, "00:56:2b:00:00:01", K.RESYNC_REQUESTED, Detail(url="https://prov1.staging.test:443/00562b000001.xml")),
    (52, "00:56:2b:00:00:01", K.RESYNC_SUCCEEDED, Detail(url="https://prov1.staging.test:443/00562b000001.xml")),
    # 02: option 160, then the resync failed: failed.
    (10, "00:56:2b:00:00:02", K.LEASED, Detail(address="198.18.0.101", model="CP-7841-3PCC")),
    (60, "00:56:2b:00:00:02", K.PROFILE_FETCHED, Detail(file="7841-3PCC.xml", protocol="http")),
    (70, "00:56:2b:00:00:02", K.RESYNC_REQUESTED, Detail(url="http://198.18.0.1:80/00562b000002.xml")),
    (71, "00:56:2b:00:00:02", K.RESYNC_FAILED, Detail(error="can't connect")),
    # 03: leased and silent since: stalled at leased.
    (20, "00:56:2b:00:00:03", K.OFFERED, Detail(address="198.18.0.102")),
    (21, "00:56:2b:00:00:03", K.LEASED, Detail(address="198.18.0.102")),
    # 04: never seen: missing.  05: TFTP, upgraded, resync asked a moment ago: in progress.
    (100, "00:56:2b:00:00:05", K.LEASED, Detail(address="198.18.0.104", model="CP-6841-3PCC")),
    (140, "00:56:2b:00:00:05", K.PROFILE_FETCHED, Detail(file="CP-6841-3PCC.cfg", protocol="tftp")),
    (150, "00:56:2b:00:00:05", K.UPGRADE_REQUESTED, Detail(url="tftp://198.18.0.1/sip68xx.12-0-1.loads")),
    (400, "00:56:2b:00:00:05", K.UPGRADE_SUCCEEDED, Detail(url="tftp://198.18.0.1/sip68xx.12-0-1.loads")),
    (550, "00:56:2b:00:00:05", K.RESYNC_REQUESTED, Detail(url="tftp://198.18.0.1/basic.txt")),
    # 99: not in the inventory, and everything it says is hostile: unexpected, stalled at resync_requested.
    (5, HOSTILE, K.LEASED, Detail(address="198.18.0.150", model="=cmd|' /C calc'!A0")),
    (6, HOSTILE, K.PROFILE_FETCHED, Detail(file="@SUM(1+1)\r\nmac,serial", protocol="http", firmware="+1")),
    (7, HOSTILE, K.RESYNC_REQUESTED, Detail(url="-http://x/\nFAKE,row,\x1b[2J", conflict="lease=00:56:2b:00:00:03")),
]


def devices() -> list[DeviceState]:
    states: dict[str, DeviceState] = {}
    for t, mac, kind, detail in EVENTS:
        states[mac] = apply(states.get(mac), Event(T0 + t, mac, kind, detail))
    return list(states.values())


def report() -> Report:
    inventory, diags = parse_inventory(INVENTORY, "inventory.csv")
    assert diags == []
    return build_report(devices(), inventory, NOW, budgets(StallAfter()))


@pytest.mark.parametrize(("name", "render"), [
    ("report.txt", report_table),
    ("report.json", lambda r: report_json(r, "dallas-floor-2")),
    ("report.csv", report_csv),
])
def test_report_matches_its_golden_file(name: str, render: object) -> None:
    text = render(report())  # type: ignore[operator]
    path = GOLDEN / name
    if os.environ.get("BOOTSTRAPD_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def test_summary_counts_every_fate() -> None:
    s = report().summary
    assert {k: s[k] for k in ("expected", "seen", "done", "in_progress", "stalled", "failed", "missing",
                              "unexpected")} == {"expected": 5, "seen": 5, "done": 1, "in_progress": 1,
                                                 "stalled": 2, "failed": 1, "missing": 1, "unexpected": 1}
    assert s["stalled_by_stage"] == {"offered": 0, "leased": 1, "profile_fetched": 0, "resync_requested": 1}
    assert s["by_stage"]["resync_requested"] == 2 and sum(s["by_stage"].values()) == 5


def test_rows_in_inventory_order_then_the_unexpected() -> None:
    rows = report().rows
    assert [(r["mac"], r["state"], r["inventory"]) for r in rows] == [
        ("00:56:2b:00:00:01", "done", "expected"), ("00:56:2b:00:00:02", "failed", "expected"),
        ("00:56:2b:00:00:03", "stalled", "expected"), ("00:56:2b:00:00:04", "missing", "expected"),
        ("00:56:2b:00:00:05", "in_progress", "expected"), (HOSTILE, "stalled", "unexpected")]
    first = rows[0]
    assert (first["serial"], first["path"], first["profile_fetched_at"], first["resync"]) == (
        "FCH0001", "srv", "2023-11-14T22:14:02Z", "succeeded")
    assert (rows[4]["path"], rows[4]["upgrade"], rows[4]["in_stage_s"]) == ("option_66_150", "succeeded", 50)


def test_without_an_inventory_nothing_is_expected_missing_or_unexpected() -> None:
    r = build_report(devices(), None, NOW, budgets(StallAfter()))
    assert (r.summary["expected"], r.summary["missing"], r.summary["unexpected"]) == (None, 0, None)
    assert {row["inventory"] for row in r.rows} == {None} and len(r.rows) == 5


def test_csv_cannot_be_forged_or_evaluated() -> None:
    parsed = list(csv.reader(io.StringIO(report_csv(report()))))
    assert parsed[0] == list(COLUMNS) and len(parsed) == 7  # the header and one row per device: no forged row
    assert all(len(row) == len(COLUMNS) for row in parsed)
    hostile = dict(zip(COLUMNS, parsed[-1], strict=True))
    assert hostile["model"] == "'=cmd|' /C calc'!A0"
    assert hostile["firmware"] == "'+1"
    assert hostile["profile"] == "'@SUM(1+1)\\r\\nmac,serial"
    assert hostile["resync_url"] == "'-http://x/\\nFAKE,row,\\x1b[2J"
    for row in parsed[1:]:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@")) and cell.isprintable(), cell


@pytest.mark.parametrize(("value", "cell"), [
    ("=1+1", "'=1+1"), ("+1", "'+1"), ("-1", "'-1"), ("@A1", "'@A1"), ("a=b", "a=b"), (None, ""), (5, "5"),
    ("", ""), ("'=x", "'=x"),
])
def test_csv_cell_escaping(value: object, cell: str) -> None:
    assert csv_cell(value) == cell


def test_json_and_table_carry_no_control_characters() -> None:
    r = report()
    doc = json.loads(report_json(r))
    assert doc["devices"][-1]["resync_url"] == "-http://x/\\nFAKE,row,\\x1b[2J"  # the JSON keeps the formula
    table = report_table(r)
    assert "\x1b" not in table and "\r" not in table
    assert len(table.splitlines()) == 3 + 1 + 6
