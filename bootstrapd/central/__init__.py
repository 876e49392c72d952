"""The cross-site inventory: every site's devices and funnel stages in one PostgreSQL database (site-yaml.md
`central:`), shipped from each site's outbox by a background thread, read by `bootstrapd report --all-sites`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bootstrapd.errors import StoreError

if TYPE_CHECKING:
    from bootstrapd.central.shipper import Shipper
    from bootstrapd.config.model import Site
    from bootstrapd.observability.devices import DeviceTracker
    from bootstrapd.observability.metrics import Metrics


def enabled(site: Site) -> bool:
    return site.central is not None and site.central.enabled


def central_dsn(site: Site) -> str:
    """The connection string: `central.dsn`, or the first line of `central.dsn_file`. StoreError otherwise."""
    c = site.central
    if c is None:
        raise StoreError("no central database in the site file (central: {dsn: ...})")
    if not c.enabled:
        raise StoreError("central.enabled is false in the site file")
    from bootstrapd.dhcp.stores import read_dsn

    return read_dsn(c.dsn, c.dsn_file, "central")


def open_shipper(site: Any, tracker: DeviceTracker, metrics: Metrics | None, log: Any) -> Shipper:
    """The site's shipper (not started); `site` is a callable returning the current Site. StoreError when
    the DSN cannot be read or psycopg is missing."""
    from bootstrapd.dhcp.stores import node_name
    from bootstrapd.floor.funnel import budgets

    current: Site = site()
    dsn = central_dsn(current)
    try:
        from bootstrapd.central.db import CentralDb
        from bootstrapd.central.shipper import Context, Shipper
    except ImportError as e:
        raise StoreError("central: needs psycopg: pip install 'bootstrapd[postgresql]'") from e
    node = node_name(current)

    def context() -> Context:
        return Context(tracker.inventory(), budgets(site().floor.stall_after))

    return Shipper(current.site, node, tracker.path, tracker.writer, lambda: CentralDb(dsn, node), context,
                   metrics, log)
