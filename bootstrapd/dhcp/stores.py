"""Which lease store a site uses (site-yaml.md `store:`): the embedded SQLite store, or PostgreSQL."""

from __future__ import annotations

import os

from bootstrapd.config.model import Site, StoreBackend
from bootstrapd.dhcp.leases import LeaseStore
from bootstrapd.errors import StoreError


def store_dsn(site: Site) -> str:
    """The connection string of a postgresql store: `dsn`, or the first line of `dsn_file`."""
    return read_dsn(site.store.dsn, site.store.dsn_file, "store")


def read_dsn(dsn: str | None, dsn_file: str | None, section: str) -> str:
    """`dsn`, else the first line of `dsn_file` (kept out of the site file, readable only by bootstrapd);
    StoreError naming `section` when neither gives a connection string."""
    if dsn is not None:
        return dsn
    if dsn_file is None:
        raise StoreError(f"{section}: needs dsn or dsn_file")
    try:
        with open(dsn_file, encoding="utf-8") as f:
            text = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"{section}.dsn_file: cannot read {dsn_file}: {e}") from e
    if not text:
        raise StoreError(f"{section}.dsn_file: {dsn_file} holds no connection string")
    return text


def node_name(site: Site) -> str:
    return site.store.node or site.site


def open_lease_store(site: Site, *, readonly: bool = False) -> LeaseStore:
    """Open the site's store for the daemon (or, readonly, for `bootstrapd leases`). StoreError when it
    cannot be used: another daemon holds the SQLite store, PostgreSQL is unreachable, psycopg is missing."""
    if site.store.backend is StoreBackend.POSTGRESQL:
        try:
            from bootstrapd.dhcp.store_postgres import open_postgres_store
        except ImportError as e:
            raise StoreError("store backend postgresql needs psycopg: pip install 'bootstrapd[postgresql]'") from e
        return open_postgres_store(store_dsn(site), node_name(site), readonly=readonly)
    from bootstrapd.dhcp.store_sqlite import DB_NAME, open_readonly, open_store

    if readonly:
        return open_readonly(os.path.join(site.state_dir, DB_NAME))
    return open_store(site.state_dir)
