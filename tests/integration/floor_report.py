"""A report provider for the floor page tests: a document in report_json's shape (bootstrapd.floor.report)
that the test edits between requests, and a count of how often the page asked for it."""

from __future__ import annotations

import copy
import csv
import io
import json
from collections.abc import Callable
from typing import Any

HOSTILE = "<script>alert(1)</script>"
COLUMNS = ("mac", "serial", "model", "address", "stage", "state")


def device(mac: str, state: str, stage: str | None, since: str | None, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "mac": mac, "serial": None, "model": None, "firmware": None, "address": None, "path": None,
        "profile": None, "profile_fetched_at": None, "resync": None, "resync_url": None, "resync_error": None,
        "upgrade": None, "upgrade_error": None, "stage": stage, "state": state, "stalled_at": None,
        "since": since, "in_stage_s": None, "inventory": "expected", "conflicts": None,
    }
    row.update(fields)
    return row


def sample() -> dict[str, Any]:
    """Five phones in report order: done, stalled, hostile in progress, failed, missing."""
    devices = [
        device("00:56:2b:04:36:15", "done", "resync_succeeded", "2026-12-01T10:00:00Z", serial="FCH2233A001",
               model="CP-8841-3PCC", address="198.18.0.100", path="srv", resync="succeeded", upgrade="succeeded"),
        device("00:56:2b:04:36:16", "stalled", "leased", "2026-12-01T09:58:20Z", serial="FCH2233A002",
               model="CP-8851-3PCC", address="198.18.0.101", stalled_at="leased"),
        device("00:56:2b:04:36:17", "in_progress", "profile_fetched", "2026-12-01T10:04:55Z",
               serial="FCH2233A003", model=HOSTILE, address="198.18.0.102", path="option_66_150",
               conflicts='option 61 says <img src=x onerror="alert(2)">'),
        device("00:56:2b:04:36:18", "failed", "resync_failed", "2026-12-01T09:00:00Z", serial="FCH2233A004",
               model="CP-7841-3PCC", address="198.18.0.103", path="option_160_159", resync="failed",
               resync_error="HTTP 404 <b>not found</b>"),
        device("00:56:2b:04:36:19", "missing", None, None, serial="FCH2233A005"),
    ]
    summary = {
        "expected": 5, "seen": 4, "done": 1, "in_progress": 1, "stalled": 1,
        "stalled_by_stage": {"offered": 0, "leased": 1, "srv_looked_up": 0}, "failed": 1, "missing": 1,
        "unexpected": 0,
        "by_stage": {"offered": 0, "leased": 1, "srv_looked_up": 0, "targets_resolved": 0, "profile_fetched": 1,
                     "resync_requested": 0, "resync_succeeded": 1, "resync_failed": 1},
    }
    return {"site": "lab <i>floor</i>", "generated_at": "2026-12-01T10:05:00Z", "summary": summary,
            "devices": devices}


class TestReport:
    """The provider seam (json() and csv(), each returning its build) over a document the test may change at any time."""

    __test__ = False  # not a pytest class

    def __init__(self, doc: dict[str, Any] | None = None) -> None:
        self.doc = doc if doc is not None else sample()
        self.calls = 0
        self.fail = False

    def json(self) -> Callable[[], str]:
        """The snapshot (on the loop) is the document as it is now; the build (a worker thread) its text."""
        self.calls += 1
        if self.fail:
            raise RuntimeError("funnel broke")
        text = json.dumps(self.doc, indent=2) + "\n"
        return lambda: text

    def csv(self) -> Callable[[], str]:
        if self.fail:
            raise RuntimeError("funnel broke")
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows([row.get(c) or "" for c in COLUMNS] for row in self.doc["devices"])
        text = out.getvalue()
        return lambda: text

    def edit(self) -> dict[str, Any]:
        """A copy to change and assign back to `doc` (so a half-edited document is never served)."""
        return copy.deepcopy(self.doc)
