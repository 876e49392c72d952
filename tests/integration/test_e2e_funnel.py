"""Every phone's fate, end to end: 50 simulated phones through bootstrapd's DHCP, DNS, TFTP/HTTP(S) files
and syslog sink on the demo's floor, and the sign-off report over what the daemon saw.

The floor is the demo's (the example site, an inventory of the phones with one row that never boots and
one OUI left out), with short stall budgets. Phones made to fail (a wrong key) end `failed` with the
phone's own reason, phones that never come back after their first profile end `stalled` at
`profile_fetched`, phones whose first resync 404s retry and end `done`. After a SIGKILL of the daemon and a
restart, the funnel is the same: no device lost, none counted twice.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Lab
from bootstrapd.lab.demo import EXAMPLE, MISSING_MAC, PROVIDER, REMOTE, UNLISTED_OUI, demo_site
from bootstrapd.sim.floor import Floor
from bootstrapd.sim.report import format_report
from tests.labreq import require_lab

PHONES, SILENT, WRONG_KEY, FAIL_ONCE = 50, 3, 2, 2
PAGE = "http://127.0.0.1:9267/"  # the example's metrics.listen, inside the server's namespace
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
STALL = {"offered": "2s", "leased": "20s", "profile_fetched": "2s", "resync_requested": "20s"}

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def floor() -> Iterator[Floor]:
    require_lab()
    with tempfile.TemporaryDirectory(prefix="bootstrapd-funnel-") as tmp, Lab() as lab:
        floor = Floor(lab, Path(tmp))
        site = demo_site(EXAMPLE, Path(tmp), PHONES, floor.cert)
        site["floor"] = {"stall_after": STALL}
        site["dhcp"] = {"rogue_check_wait": 0}
        floor.start_daemon(site)
        floor.start_prov(binds=(REMOTE,), tftp=(), bootstrap=PROVIDER)
        yield floor


def report(floor: Floor) -> dict[str, Any]:
    assert floor.daemon is not None
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", "report", "--json", "-c", str(floor.daemon.site_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return dict(json.loads(proc.stdout))


def settled(floor: Floor, want: dict[str, int], timeout: float = 30) -> dict[str, Any]:
    """The report once its summary holds `want` (stall budgets run on the daemon's clock), else the last."""
    deadline = time.monotonic() + timeout
    while True:
        got = report(floor)
        if all(got["summary"].get(k) == v for k, v in want.items()) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


def test_the_report_signs_off_every_phone_and_survives_a_crash(floor: Floor, tmp_path: Path) -> None:
    # The technician's floor page, loaded in headless Chromium inside the server's namespace while the
    # phones boot; it must come to show what `bootstrapd report` says.
    page_json, shot = tmp_path / "page.json", ARTIFACTS / "floorpage-storm.png"
    browser = floor.server.popen([sys.executable, "-m", "tests.integration.floor_browser_probe", PAGE,
                                  str(page_json), str(shot), "--done", str(PHONES - SILENT - WRONG_KEY),
                                  "--stalled", str(SILENT)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    reports = floor.simulate(PHONES, "--spread", "2", "--ouis", "00:56:2b,00:56:2b,2c:31:24,00:56:2b,70:10:5c",
                             "--error-retry-delay", "1", "--silent", str(SILENT), "--wrong-key", str(WRONG_KEY),
                             "--fail-resync", str(FAIL_ONCE), timeout=40)
    assert len({r.address for r in reports}) == PHONES, format_report(reports)
    unlisted = sum(r.mac.startswith(UNLISTED_OUI) for r in reports)
    want = {"expected": PHONES - unlisted + 1, "seen": PHONES, "done": PHONES - SILENT - WRONG_KEY,
            "failed": WRONG_KEY, "stalled": SILENT, "missing": 1, "unexpected": unlisted}
    first = settled(floor, want)
    assert {k: first["summary"][k] for k in want} == want, json.dumps(first["summary"], indent=1)
    out, _ = browser.communicate(timeout=90)
    assert browser.returncode == 0, out.decode(errors="replace")[-3000:]
    shown = json.loads(page_json.read_text())
    assert shown["totals"] == {k: str(v) for k, v in first["summary"].items() if k in shown["totals"]}
    assert shown["stages"] == {k: str(v) for k, v in first["summary"]["by_stage"].items()}
    assert sorted((r["mac"], r["state"]) for r in shown["rows"]) == sorted(
        (d["mac"], d["state"].replace(" ", "_")) for d in first["devices"])
    assert [r["state"] for r in shown["rows"]][:WRONG_KEY + SILENT] == ["failed"] * WRONG_KEY + ["stalled"] * SILENT
    assert shown["dialogs"] == [] and shot.read_bytes().startswith(b"\x89PNG")
    rows = {d["mac"]: d for d in first["devices"]}
    assert len(rows) == len(first["devices"]) == PHONES + 1  # one row per device, the missing one included
    assert rows[MISSING_MAC]["state"] == "missing"
    assert first["summary"]["stalled_by_stage"]["profile_fetched"] == SILENT
    by_phone = {r.mac: r for r in reports}
    for mac, row in rows.items():
        phone = by_phone.get(mac)
        if phone is None:
            continue
        assert row["address"] == phone.address, row
        if phone.resync == "done":
            assert row["state"] == "done" and row["resync"] == "succeeded", row
            assert row["resync_url"] and "/remote/" in row["resync_url"], row
        elif phone.resync == "failed":  # the phone's own words, from its syslog line
            assert row["state"] == "failed" and "decryption failed" in (row["resync_error"] or ""), row
        else:
            assert phone.resync == "silent"
            assert row["state"] == "stalled" and row["stalled_at"] == "profile_fetched", row
        assert row["path"] in ("option_66_150", "option_160_159", "srv"), row
        assert row["inventory"] == ("unexpected" if mac.startswith(UNLISTED_OUI) else "expected"), row

    time.sleep(1.5)  # the tracker writes once a second: what it reported is on disk
    assert floor.daemon is not None
    floor.daemon.kill()
    floor.daemon.start()
    again = settled(floor, want)
    assert again["summary"] == first["summary"]
    keep = ("mac", "serial", "model", "address", "path", "profile", "resync", "resync_url", "resync_error",
            "stage", "state", "stalled_at", "inventory")
    assert [{k: d[k] for k in keep} for d in again["devices"]] == [{k: d[k] for k in keep} for d in first["devices"]]
