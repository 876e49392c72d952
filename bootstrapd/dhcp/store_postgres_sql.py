"""The SQL of the PostgreSQL lease store (store_postgres.py): schema, the burst's guarded write, the pull."""

from __future__ import annotations

SCHEMA = """
CREATE SEQUENCE IF NOT EXISTS bootstrapd_lease_version;
CREATE TABLE IF NOT EXISTS bootstrapd_leases (
    address      bigint PRIMARY KEY,   -- IPv4 address as an unsigned integer
    client_id    bytea NOT NULL,       -- client identity; empty for address-only records
    chaddr       bytea NOT NULL,
    state        text NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'expired', 'declined')),
    subnet       text NOT NULL,
    expires      double precision NOT NULL,  -- epoch seconds
    free_at      double precision NOT NULL,  -- when the address is free again (Lease.free_at)
    first_seen   double precision NOT NULL,
    updated      double precision NOT NULL,
    hostname     bytea,                -- UTF-8 of the text: a client's NUL would not fit a text column
    vendor_class bytea,
    device_class text,
    node         text NOT NULL,        -- the node that wrote this version
    writer       bigint NOT NULL,      -- that node's store instance (its own writes are not pulled back)
    version      bigint NOT NULL,      -- from bootstrapd_lease_version: the race guard
    txid         xid8 NOT NULL         -- writing transaction: the change feed's position
);
CREATE INDEX IF NOT EXISTS bootstrapd_leases_txid ON bootstrapd_leases (txid);
CREATE TABLE IF NOT EXISTS bootstrapd_schema (version integer NOT NULL);
"""
COLS = "address, client_id, chaddr, state, subnet, expires, first_seen, updated, hostname, vendor_class, device_class"
LCOLS = ", ".join(f"l.{c.strip()}" for c in COLS.split(","))
SNAPSHOT = "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS horizon) h"
LOAD = f"SELECT h.horizon, {LCOLS}, l.version FROM {SNAPSHOT} LEFT JOIN bootstrapd_leases l ON true"
PULL = (
    f"SELECT h.horizon, {LCOLS}, l.version FROM {SNAPSHOT} LEFT JOIN bootstrapd_leases l"
    " ON l.txid >= %s::text::xid8 AND l.writer <> %s"
)
SELECT = f"SELECT {COLS}, version FROM bootstrapd_leases WHERE address = ANY(%s::bigint[])"
# The burst travels as ONE json parameter (json.dumps runs in C; adapting a dozen arrays is pure Python).
BATCH = """
WITH v AS (
  SELECT (e->>0)::bigint AS address, decode(e->>1, 'hex') AS client_id, decode(e->>2, 'hex') AS chaddr,
         e->>3 AS state, e->>4 AS subnet, (e->>5)::float8 AS expires, (e->>6)::float8 AS first_seen,
         (e->>7)::float8 AS updated, decode(e->>8, 'hex') AS hostname, decode(e->>9, 'hex') AS vendor_class,
         e->>10 AS device_class, (e->>11)::float8 AS free_at, (e->>12)::bigint AS expected
  FROM json_array_elements(%(rows)s::json) AS e
)"""
SET = (
    "client_id = v.client_id, chaddr = v.chaddr, state = v.state, subnet = v.subnet, expires = v.expires,"
    " first_seen = v.first_seen, updated = v.updated, hostname = v.hostname, vendor_class = v.vendor_class,"
    " device_class = v.device_class, free_at = v.free_at, node = %(node)s, writer = %(writer)s,"
    " version = nextval('bootstrapd_lease_version'), txid = pg_current_xact_id()"
)
NEW = (
    f"SELECT {COLS}, free_at, %(node)s, %(writer)s, nextval('bootstrapd_lease_version'), pg_current_xact_id()"
    " FROM v"
)
INSERT = f"INSERT INTO bootstrapd_leases ({COLS}, free_at, node, writer, version, txid)"
DELETE = "del AS (DELETE FROM bootstrapd_leases WHERE address = ANY(%(gone)s::bigint[]) RETURNING address, 0::bigint)"
# Guarded: insert where this node saw no row, update where the row is still the version it saw. Rows come
# in address order and the update finds them by index (= ANY sorts its keys), so two nodes lock shared
# rows in one order (no deadlock between their bursts) and a burst never scans the whole table.
WRITE = f"""{BATCH},
ins AS ({INSERT} {NEW} WHERE v.expected = 0 ON CONFLICT (address) DO NOTHING RETURNING address, version),
upd AS (UPDATE bootstrapd_leases AS l SET {SET} FROM v
        WHERE l.address = ANY(ARRAY(SELECT address FROM v)) AND l.address = v.address AND v.expected <> 0
          AND l.version = v.expected RETURNING l.address, l.version),
{DELETE}
SELECT * FROM ins UNION ALL SELECT * FROM upd UNION ALL SELECT * FROM del"""
# The negative control of the race tests (race_guard=False): last writer wins, as a naive upsert would.
WRITE_UNGUARDED = f"""{BATCH},
ins AS ({INSERT} {NEW} ON CONFLICT (address) DO UPDATE SET {SET.replace("v.", "EXCLUDED.")}
        RETURNING address, version),
{DELETE}
SELECT * FROM ins UNION ALL SELECT * FROM del"""
