"""The sign-off report: a pure function of (device states, inventory, now, stall budgets).

`bootstrapd report` and the live floor page (`/`, `/report.json`, `/report.csv`) are both views of
`build_report`; neither computes stages itself. A device's `state`:

    failed       its latest resync failed, or its latest upgrade failed
    stalled      in a stage longer than that stage's budget (`stalled_at` names it)
    done         its latest resync succeeded, no upgrade pending
    in_progress  anything else
    missing      in the inventory, never seen

Every text value is sanitised where the row is built (control characters and line breaks escaped, length
bounded), so no phone can forge a row or a terminal sequence in any format; CSV cells that a spreadsheet
would take for a formula (`=`, `+`, `-`, `@`) are prefixed with `'`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bootstrapd.files.inventory import Inventory
from bootstrapd.floor.funnel import MAX_TEXT, TERMINAL, Budgets, DeviceState, Stage, Upgrade, stalled_at

Row = dict[str, Any]
COLUMNS = (
    "mac", "serial", "model", "firmware", "address", "path", "profile", "profile_fetched_at", "resync",
    "resync_url", "resync_error", "upgrade", "upgrade_error", "stage", "state", "stalled_at", "since",
    "in_stage_s", "inventory", "conflicts",
)
STATES = ("done", "in_progress", "stalled", "failed", "missing")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class Report:
    generated_at: float
    summary: Mapping[str, Any]
    rows: tuple[Row, ...]


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def safe(text: str | None) -> str | None:
    """`text` with every non-printable character escaped (\\n, \\x1b, \\u2028) and bounded in length."""
    if text is None:
        return None
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text[:MAX_TEXT]


def device_state(d: DeviceState, limits: Budgets, now: float) -> tuple[str, str | None]:
    """(state, stalled_at) as the module docstring defines them."""
    if d.stage is Stage.RESYNC_FAILED or d.upgrade is Upgrade.FAILED:
        return "failed", None
    stalled = stalled_at(d, limits, now)
    if stalled is not None:
        return "stalled", stalled
    if d.stage is Stage.RESYNC_SUCCEEDED and d.upgrade is not Upgrade.REQUESTED:
        return "done", None
    return "in_progress", None


def _resync(d: DeviceState) -> str | None:
    if d.stage is Stage.RESYNC_REQUESTED or d.stage in TERMINAL:
        return d.stage.label.removeprefix("resync_")
    return None


def _row(d: DeviceState, serial: str | None, inventory: str | None, limits: Budgets, now: float) -> Row:
    state, stalled = device_state(d, limits, now)
    return {
        "mac": d.mac, "serial": safe(serial), "model": safe(d.model), "firmware": safe(d.firmware),
        "address": safe(d.address), "path": d.path.value if d.path else None, "profile": safe(d.profile),
        "profile_fetched_at": iso(d.profile_at), "resync": _resync(d), "resync_url": safe(d.resync_url),
        "resync_error": safe(d.resync_error),
        "upgrade": d.upgrade.value.removeprefix("upgrade_") if d.upgrade else None,
        "upgrade_error": safe(d.upgrade_error), "stage": d.stage.label if d.stage else None,
        "state": state, "stalled_at": stalled, "since": iso(d.since),
        "in_stage_s": max(0, int(now - d.since)), "inventory": inventory,
        "conflicts": safe("; ".join(d.conflicts)) or None,
    }


def _missing(mac: str, serial: str) -> Row:
    row: Row = dict.fromkeys(COLUMNS)
    row.update(mac=mac, serial=safe(serial) or None, state="missing", inventory="expected")
    return row


def build_report(devices: Iterable[DeviceState], inventory: Inventory | None, now: float,
                 limits: Budgets) -> Report:
    """Inventory rows first in file order (seen or missing), then devices not in it, first seen first."""
    seen = {d.mac: d for d in devices}
    rows: list[Row] = []
    if inventory is not None:
        for r in inventory.rows:
            d = seen.get(r.mac)
            rows.append(_missing(r.mac, r.serial) if d is None else _row(d, r.serial or None, "expected", limits, now))
    extra = sorted((d for d in seen.values() if inventory is None or d.mac not in inventory.by_mac),
                   key=lambda d: (d.first_seen, d.mac))
    rows += [_row(d, None, None if inventory is None else "unexpected", limits, now) for d in extra]
    return Report(now, _summary(rows, seen.values(), inventory, limits), tuple(rows))


def _summary(rows: Sequence[Row], devices: Iterable[DeviceState], inventory: Inventory | None,
             limits: Budgets) -> dict[str, Any]:
    states = {s: 0 for s in STATES}
    stalled = dict.fromkeys(limits, 0)
    for row in rows:
        states[row["state"]] += 1
        if row["stalled_at"] is not None:
            stalled[row["stalled_at"]] = stalled.get(row["stalled_at"], 0) + 1
    by_stage = {s.label: 0 for s in Stage}
    for d in devices:
        if d.stage is not None:
            by_stage[d.stage.label] += 1
    unexpected = None if inventory is None else sum(1 for r in rows if r["inventory"] == "unexpected")
    return {
        "expected": None if inventory is None else len(inventory.rows),
        "seen": len(rows) - states["missing"], "done": states["done"], "in_progress": states["in_progress"],
        "stalled": sum(stalled.values()), "stalled_by_stage": stalled, "failed": states["failed"],
        "missing": states["missing"], "unexpected": unexpected, "by_stage": by_stage,
    }


# -- formats --------------------------------------------------------------------------------------------
def report_json(report: Report, site: str | None = None) -> str:
    doc = {"site": site, "generated_at": iso(report.generated_at), "summary": report.summary,
           "devices": list(report.rows)}
    return json.dumps(doc, indent=2) + "\n"


def csv_cell(value: Any) -> str:
    """A CSV cell no spreadsheet evaluates: a leading formula character is quoted away with `'`."""
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(_FORMULA) else text


def report_csv(report: Report) -> str:
    """One row per device under a header row (the summary is in the JSON and the table)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows([csv_cell(row.get(c)) for c in COLUMNS] for row in report.rows)
    return out.getvalue()


TABLE_COLUMNS = ("mac", "serial", "model", "firmware", "address", "path", "profile_fetched_at", "resync",
                 "upgrade", "stage", "state", "in_stage_s", "inventory")


def report_table(report: Report) -> str:
    """The summary, then a table of the main columns (the CSV and JSON have every column)."""
    return "\n".join(table_lines(report.summary, report.rows, TABLE_COLUMNS)) + "\n"


def table_lines(s: Mapping[str, Any], rows: Sequence[Row], columns: Sequence[str]) -> list[str]:
    """Two summary lines, a blank one, the header and one line per row (also the all-sites table's)."""
    stalled = ", ".join(f"{k} {v}" for k, v in s["stalled_by_stage"].items() if v) or "none"
    lines = [
        f"expected {_n(s['expected'])}  seen {s['seen']}  done {s['done']}  in progress {s['in_progress']}  "
        f"failed {s['failed']}  missing {s['missing']}  unexpected {_n(s['unexpected'])}",
        f"stalled {s['stalled']} ({stalled})",
        "",
    ]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines.append("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return lines


def _n(value: int | None) -> str:
    return "-" if value is None else str(value)


def _cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    return str(value).replace(" ", "\\x20")
