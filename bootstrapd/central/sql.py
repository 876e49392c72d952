"""The SQL of the central database: schema (version 1), the batch write, and the report's reads."""

from __future__ import annotations

# One row per (site, mac); `origin`/`seq` say which outbox wrote it and when (bootstrapd/observability/outbox.py).
DEVICE_COLUMNS = (
    "site", "mac", "origin", "seq", "node", "stage", "model", "firmware", "address", "path", "resync",
    "resync_url", "resync_error", "upgrade", "upgrade_error", "timeline", "first_seen", "last_seen", "funnel",
    "shipped_at",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS bootstrapd_central_schema (version integer NOT NULL);
CREATE TABLE IF NOT EXISTS bootstrapd_central_devices (
    site          text NOT NULL,
    mac           text NOT NULL,
    origin        text NOT NULL,           -- the outbox (one per state_dir) that shipped this version
    seq           bigint NOT NULL,         -- that outbox's sequence: within one origin the higher wins
    node          text NOT NULL,
    stage         text,                    -- the funnel's stage label; NULL: seen, no stage reached
    model         text,
    firmware      text,
    address       text,
    path          text,                    -- how it found its first profile (option_66_150 | option_160_159 | srv)
    resync        text,                    -- requested | succeeded | failed
    resync_url    text,
    resync_error  text,
    upgrade       text,                    -- requested | succeeded | failed
    upgrade_error text,
    timeline      jsonb NOT NULL,          -- stage label -> epoch seconds it was first reached
    first_seen    double precision NOT NULL,
    last_seen     double precision NOT NULL,
    funnel        jsonb NOT NULL,          -- the whole DeviceState (bootstrapd/floor/codec.py)
    shipped_at    double precision NOT NULL,
    PRIMARY KEY (site, mac)
);
CREATE TABLE IF NOT EXISTS bootstrapd_central_nodes (
    site        text NOT NULL,
    node        text NOT NULL,
    origin      text NOT NULL,
    last_ship   double precision NOT NULL,  -- the heartbeat: every ship, and every HEARTBEAT when idle
    pending     integer NOT NULL,           -- outbox rows still waiting after that ship
    stall_after jsonb NOT NULL,             -- the site's budgets (floor.stall_after), for `state`
    inventory   boolean NOT NULL,           -- false: the site has no inventory (nobody missing there)
    PRIMARY KEY (site, node)
);
CREATE TABLE IF NOT EXISTS bootstrapd_central_inventory (
    site     text NOT NULL,
    position integer NOT NULL,              -- file order
    mac      text NOT NULL,
    serial   text,
    PRIMARY KEY (site, position)
);
"""
_UPDATE = ", ".join(f"{c} = EXCLUDED.{c}" for c in DEVICE_COLUMNS[2:])
# Newest wins: within one outbox by its sequence (a retried batch changes nothing); between two outboxes
# (two nodes of a site, a state_dir started afresh) by the later sighting.
_DEVICES = f"""
v AS (SELECT * FROM json_populate_recordset(NULL::bootstrapd_central_devices, %(rows)s::json)),
dev AS (INSERT INTO bootstrapd_central_devices AS d SELECT * FROM v
        ON CONFLICT (site, mac) DO UPDATE SET {_UPDATE}
        WHERE (d.origin = EXCLUDED.origin AND EXCLUDED.seq > d.seq)
           OR (d.origin <> EXCLUDED.origin AND EXCLUDED.last_seen >= d.last_seen)
        RETURNING 1),
hb AS (INSERT INTO bootstrapd_central_nodes VALUES (%(site)s, %(node)s, %(origin)s, %(now)s, %(pending)s,
                                                    %(stall_after)s::jsonb, %(inventory)s)
       ON CONFLICT (site, node) DO UPDATE SET origin = EXCLUDED.origin, last_ship = EXCLUDED.last_ship,
           pending = EXCLUDED.pending, stall_after = EXCLUDED.stall_after, inventory = EXCLUDED.inventory)"""
_INVENTORY = """,
iv AS (SELECT (e->>0)::integer AS position, e->>1 AS mac, e->>2 AS serial FROM json_array_elements(%(inv)s::json) e),
ins AS (INSERT INTO bootstrapd_central_inventory SELECT %(site)s, position, mac, serial FROM iv
        ON CONFLICT (site, position) DO UPDATE SET mac = EXCLUDED.mac, serial = EXCLUDED.serial),
del AS (DELETE FROM bootstrapd_central_inventory WHERE site = %(site)s AND position >= %(inv_count)s)"""
# One statement, so one round trip and one transaction: the devices, the heartbeat (and the inventory).
SHIP = f"WITH {_DEVICES}\nSELECT count(*) FROM dev"
SHIP_WITH_INVENTORY = f"WITH {_DEVICES}{_INVENTORY}\nSELECT count(*) FROM dev"
KNOWS = "SELECT 1 FROM bootstrapd_central_nodes WHERE site = %s AND node = %s AND origin = %s"
READ_NODES = "SELECT site, node, last_ship, pending, stall_after::text, inventory FROM bootstrapd_central_nodes"
READ_DEVICES = "SELECT site, mac, funnel::text FROM bootstrapd_central_devices"
READ_INVENTORY = "SELECT site, mac, serial FROM bootstrapd_central_inventory ORDER BY site, position"
