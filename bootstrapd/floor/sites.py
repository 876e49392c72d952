"""The report across sites: each site's `build_report` (its own inventory and stall budgets), side by side.

`bootstrapd report --all-sites` reads every site's devices, inventory and budgets from the central
database and hands them here; each site's part is exactly what that site's own `report` would show at the
same `now` (the same builder), with a `site` column in front. The summary is one per site (with when the
site last shipped, so a silent site shows its age) and their sum.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bootstrapd.files.inventory import Inventory, Row
from bootstrapd.floor.funnel import Budgets, DeviceState
from bootstrapd.floor.report import (
    COLUMNS,
    TABLE_COLUMNS,
    Report,
    build_report,
    csv_cell,
    iso,
    safe,
    table_lines,
)

SITE_COLUMNS = ("site", *COLUMNS)


@dataclass(frozen=True)
class SiteData:
    """One site as the central database holds it."""

    site: str
    devices: tuple[DeviceState, ...]
    inventory: Inventory | None  # None: the site has no inventory (nobody missing or unexpected there)
    limits: Budgets
    nodes: tuple[str, ...] = ()
    last_shipped: float | None = None  # the latest heartbeat of any of its nodes
    pending: int = 0  # outbox rows its nodes had not shipped yet at that heartbeat


@dataclass(frozen=True)
class SiteReport:
    data: SiteData
    report: Report


@dataclass(frozen=True)
class AllSites:
    generated_at: float
    sites: tuple[SiteReport, ...]
    summary: Mapping[str, Any]  # the sum over sites, in build_report's summary shape
    rows: tuple[dict[str, Any], ...]  # every site's rows, with `site` first


def inventory_of(pairs: Iterable[tuple[str, str | None]], name: str = "central") -> Inventory:
    """An Inventory from (mac, serial) pairs in file order, as the central database keeps it."""
    rows = tuple(Row(mac, line, serial or "") for line, (mac, serial) in enumerate(pairs, start=2))
    return Inventory(name, rows, {r.mac: r for r in rows})


def build_all_sites(sites: Sequence[SiteData], now: float) -> AllSites:
    """Sites by name; within a site, its report's own order."""
    parts = tuple(SiteReport(s, build_report(s.devices, s.inventory, now, s.limits))
                  for s in sorted(sites, key=lambda s: s.site))
    rows = tuple({"site": safe(p.data.site), **row} for p in parts for row in p.report.rows)
    return AllSites(now, parts, total([p.report.summary for p in parts]), rows)


def total(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The sum of summaries: counts add; `expected`/`unexpected` stay None only when no site has an inventory."""
    out: dict[str, Any] = {}
    for key in ("expected", "seen", "done", "in_progress", "stalled", "failed", "missing", "unexpected"):
        values = [s[key] for s in summaries if s.get(key) is not None]
        out[key] = sum(values) if values or key not in ("expected", "unexpected") else None
    for key in ("stalled_by_stage", "by_stage"):
        merged: dict[str, int] = {}
        for s in summaries:
            for k, v in s[key].items():
                merged[k] = merged.get(k, 0) + v
        out[key] = merged
    return out


def _site_summary(part: SiteReport) -> dict[str, Any]:
    d = part.data
    return {"site": safe(d.site), "nodes": [safe(n) for n in d.nodes], "last_shipped_at": iso(d.last_shipped),
            "pending": d.pending, "summary": part.report.summary}


def sites_json(report: AllSites, devices: bool = True) -> str:
    """`devices` False: the summaries only (the floor page's all-sites view, however big the rollout)."""
    doc: dict[str, Any] = {"site": None, "generated_at": iso(report.generated_at), "summary": report.summary,
                           "sites": [_site_summary(p) for p in report.sites]}
    if devices:
        doc["devices"] = list(report.rows)
    return json.dumps(doc, indent=2) + "\n"


def sites_csv(report: AllSites) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(SITE_COLUMNS)
    writer.writerows([csv_cell(row.get(c)) for c in SITE_COLUMNS] for row in report.rows)
    return out.getvalue()


def sites_table(report: AllSites) -> str:
    """Each site's summary (and its last ship), the total, then one table of every site's devices."""
    lines = []
    for p in report.sites:
        d = p.data
        shipped = iso(d.last_shipped) or "never"
        lines.append(f"{safe(d.site)}: last shipped {shipped}, {d.pending} pending")
        lines += ["  " + line for line in table_lines(p.report.summary, [], ())[:2]]
    lines.append("all sites:")
    lines += ["  " + line for line in table_lines(report.summary, [], ())[:2]]
    lines.append("")
    lines += table_lines(report.summary, list(report.rows), ("site", *TABLE_COLUMNS))[3:]
    return "\n".join(lines) + "\n"
