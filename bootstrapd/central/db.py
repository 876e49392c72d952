"""The central database through psycopg 3: connect (libpq defaults that fail fast), create or check the
schema, ship one batch in one round trip, and read everything back for `report --all-sites`."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import conninfo

from bootstrapd.central import sql
from bootstrapd.central.shipper import Heartbeat
from bootstrapd.errors import StoreError
from bootstrapd.floor.codec import loads
from bootstrapd.floor.funnel import DeviceState
from bootstrapd.floor.sites import SiteData, inventory_of

SCHEMA_VERSION = 1
_LOCK_KEY = 0x626F6F7463656E74  # pg_advisory_xact_lock: sites starting together create the schema once
_CONNECT_DEFAULTS = {"connect_timeout": "3", "tcp_user_timeout": "3000", "keepalives_idle": "10"}
_SESSION = "SET statement_timeout = '10s'; SET lock_timeout = '5s'"


class CentralError(StoreError):
    """The central database cannot be reached or used."""


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def connect(dsn: str, name: str) -> psycopg.Connection[Any]:
    """A connection in autocommit mode; CentralError when it cannot be made."""
    try:
        params = conninfo.conninfo_to_dict(dsn)
        for key, value in _CONNECT_DEFAULTS.items():
            params.setdefault(key, value)
        params.setdefault("application_name", f"bootstrapd {name}"[:63])
        conn = psycopg.connect(conninfo.make_conninfo("", **params), autocommit=True)
    except psycopg.Error as e:
        raise CentralError(f"cannot connect to the central database: {first_line(e)}") from e
    try:
        conn.execute(_SESSION)
    except psycopg.Error as e:
        conn.close()
        raise CentralError(f"central database: {first_line(e)}") from e
    return conn


class CentralDb:
    """One site's connection: `prepare` once, then `ship` per batch. Every failure is a CentralError."""

    def __init__(self, dsn: str, name: str) -> None:
        self.conn = connect(dsn, name)
        self.round_trips = 0

    def prepare(self) -> None:
        """CREATE ... IF NOT EXISTS and the schema version, under an advisory lock (one creator at a time)."""
        try:
            with self.conn.transaction():
                self.conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
                self.conn.execute(sql.SCHEMA)
                if self.conn.execute("SELECT count(*) FROM bootstrapd_central_schema").fetchone() == (0,):
                    self.conn.execute("INSERT INTO bootstrapd_central_schema VALUES (%s)", (SCHEMA_VERSION,))
            check_version(self.conn)
        except psycopg.Error as e:
            raise CentralError(f"cannot prepare the central database: {first_line(e)}") from e

    def knows(self, site: str, node: str, origin: str) -> bool:
        """Whether this outbox has shipped here before (else the site's every device is queued again)."""
        try:
            return self.conn.execute(sql.KNOWS, (site, node, origin)).fetchone() is not None
        except psycopg.Error as e:
            raise CentralError(f"central database: {first_line(e)}") from e

    def ship(self, rows: Sequence[dict[str, Any]], hb: Heartbeat,
             inventory: Sequence[tuple[str, str]] | None) -> int:
        """Upsert `rows`, the heartbeat and (when given) the site's whole inventory: one statement, one
        round trip. Returns how many rows changed (a retried batch changes none)."""
        params: dict[str, Any] = {
            "rows": json.dumps(rows), "site": hb.site, "node": hb.node, "origin": hb.origin, "now": hb.now,
            "pending": hb.pending, "stall_after": json.dumps(hb.stall_after), "inventory": hb.inventory,
        }
        statement = sql.SHIP
        if inventory is not None:
            statement = sql.SHIP_WITH_INVENTORY
            params["inv"] = json.dumps([[i, mac, serial] for i, (mac, serial) in enumerate(inventory)])
            params["inv_count"] = len(inventory)
        try:
            row = self.conn.execute(statement, params).fetchone()
        except psycopg.Error as e:
            raise CentralError(f"central ship failed: {first_line(e)}") from e
        self.round_trips += 1
        return int(row[0]) if row else 0

    @property
    def broken(self) -> bool:
        return self.conn.broken or self.conn.closed

    def close(self) -> None:
        self.conn.close()


def check_version(conn: psycopg.Connection[Any]) -> None:
    try:
        row = conn.execute("SELECT max(version) FROM bootstrapd_central_schema").fetchone()
    except psycopg.errors.UndefinedTable as e:
        raise CentralError("the database holds no bootstrapd central inventory (no site has shipped yet)") from e
    version = row[0] if row else None
    if version is None or version > SCHEMA_VERSION:
        raise CentralError(f"central schema {version} is not one this bootstrapd ({SCHEMA_VERSION}) can use")


def read_sites(dsn: str) -> list[SiteData]:
    """Every site in the central database (CentralError when it cannot be read), read-only."""
    conn = connect(dsn, "report")
    try:
        check_version(conn)
        with conn.transaction():  # one snapshot: devices, inventories and heartbeats agree
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            nodes = conn.execute(sql.READ_NODES).fetchall()
            devices = conn.execute(sql.READ_DEVICES).fetchall()
            inventory = conn.execute(sql.READ_INVENTORY).fetchall()
    except psycopg.Error as e:
        raise CentralError(f"cannot read the central database: {first_line(e)}") from e
    finally:
        conn.close()
    return assemble(nodes, devices, inventory)


def assemble(nodes: Sequence[tuple[Any, ...]], devices: Sequence[tuple[Any, ...]],
             inventory: Sequence[tuple[Any, ...]]) -> list[SiteData]:
    """SiteData per site from the three tables' rows; the latest heartbeat's budgets and inventory flag."""
    states: dict[str, list[DeviceState]] = {}
    for site, mac, funnel in devices:
        try:
            states.setdefault(site, []).append(loads(mac, funnel))
        except ValueError:
            continue  # a damaged row: left out rather than the whole report failing
    pairs: dict[str, list[tuple[str, str | None]]] = {}
    for site, mac, serial in inventory:
        pairs.setdefault(site, []).append((mac, serial))
    latest: dict[str, tuple[Any, ...]] = {}
    names: dict[str, list[str]] = {}
    pending: dict[str, int] = {}
    for row in sorted(nodes, key=lambda r: r[2]):
        latest[row[0]] = row
        names.setdefault(row[0], []).append(row[1])
        pending[row[0]] = pending.get(row[0], 0) + int(row[3])
    out = []
    for site in sorted(set(states) | set(latest)):
        hb = latest.get(site)
        limits = {str(k): float(v) for k, v in json.loads(hb[4]).items()} if hb else {}
        inv = inventory_of(pairs.get(site, ()), f"central:{site}") if hb is None or hb[5] else None
        out.append(SiteData(site, tuple(states.get(site, ())), inv, limits, tuple(sorted(names.get(site, ()))),
                            hb[2] if hb else None, pending.get(site, 0)))
    return out
