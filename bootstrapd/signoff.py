"""`bootstrapd report`: the sign-off report of a site from its device table, read-only.

The same pure builders as the live floor page (floor/report.py), over the states the daemon wrote (at
most a second behind it) and the site's inventory.
"""

from __future__ import annotations

from collections.abc import Sequence

from bootstrapd.config.model import Site
from bootstrapd.errors import StoreError
from bootstrapd.floor.funnel import budgets
from bootstrapd.floor.report import Report, build_report, report_csv, report_json, report_table
from bootstrapd.floor.sites import SiteData, build_all_sites, sites_csv, sites_json, sites_table
from bootstrapd.observability.device_sources import load_inventory
from bootstrapd.observability.device_store import read_devices


def load_report(site: Site, now: float) -> tuple[Report, list[str]]:
    """The report and any problems reading the inventory (the report is then without it)."""
    devices = read_devices(site.state_dir)  # StoreError when there is no table
    inventory, problems = load_inventory(site)
    report = build_report([d.funnel for d in devices], inventory, now, budgets(site.floor.stall_after))
    return report, problems


def render(report: Report, fmt: str, site: str) -> str:
    if fmt == "json":
        return report_json(report, site)
    if fmt == "csv":
        return report_csv(report)
    return report_table(report)


def render_all_sites(sites: Sequence[SiteData], now: float, fmt: str) -> str:
    """`report --all-sites`: every site's report at `now`, with a `site` column (floor/sites.py);
    `summary`: the JSON without the device rows (the floor page's view)."""
    report = build_all_sites(sites, now)
    if fmt in ("json", "summary"):
        return sites_json(report, devices=fmt == "json")
    if fmt == "csv":
        return sites_csv(report)
    return sites_table(report)


__all__ = ["StoreError", "load_report", "render", "render_all_sites"]
