"""The outbox of the cross-site inventory: devices changed since they were last shipped, in devices.sqlite3.

The tracker's writer adds each changed device's row to `outbox` in the same transaction that writes it to
`devices` (device_writer.py), so the outbox never misses a change the table has. One row per device: the
MAC is unique and a newer change replaces the older row, taking a new `seq` (AUTOINCREMENT: never reused,
also after deletes), so the outbox never holds more rows than there are devices, however long the central
database is away. The shipper (bootstrapd/central) reads rows by `seq`; what it shipped it acknowledges
by the highest `seq`, and the writer deletes the rows up to it in its next transaction (one writer of the
file: the event loop's, which never waits for the shipper's lock).

`outbox_state` holds this table's `origin` (a random id: a new state_dir is a new origin, whose sequence
starts again) and whether shipping was enabled at the last start: when it is turned on, every device
already in the table is queued, and when it is off the outbox is emptied.
"""

from __future__ import annotations

import secrets
import sqlite3
from dataclasses import dataclass

from bootstrapd.observability.device_store import COLUMNS, Device, device

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,   -- this origin's sequence: the newest change wins centrally
    {COLUMNS.replace("chaddr,", "chaddr BLOB NOT NULL UNIQUE,")}
);
CREATE TABLE IF NOT EXISTS outbox_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    origin  TEXT NOT NULL,
    enabled INTEGER NOT NULL
);
"""
UPSERT = f"INSERT OR REPLACE INTO outbox ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
# Every device not queued already (a queued row is its latest state): for a central that lacks this site.
ENQUEUE_ALL = f"INSERT OR IGNORE INTO outbox ({COLUMNS}) SELECT {COLUMNS} FROM devices"
# The same in slices by rowid, from the event loop's writer (a whole big table at once held it too long).
ENQUEUE_SLICE = f"{ENQUEUE_ALL} WHERE rowid > ? ORDER BY rowid LIMIT ?"
SLICE_END = "SELECT max(rowid), count(*) FROM (SELECT rowid FROM devices WHERE rowid > ? ORDER BY rowid LIMIT ?)"
REQUEUE_SLICE = 2000  # devices per transaction (about 15 ms; one a second: 100,000 devices in 50 s)
ACK = "DELETE FROM outbox WHERE seq <= ?"


@dataclass(frozen=True, slots=True)
class Entry:
    seq: int
    device: Device


def prepare(conn: sqlite3.Connection, enabled: bool) -> str:
    """Create the outbox if needed and apply the enabled/disabled switch; returns the table's origin."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        row = conn.execute("SELECT origin, enabled FROM outbox_state WHERE id = 1").fetchone()
        origin, was = (row[0], bool(row[1])) if row else (secrets.token_hex(8), False)
        if enabled and not was:
            conn.execute(ENQUEUE_ALL)
        elif not enabled:
            conn.execute("DELETE FROM outbox")
        conn.execute("INSERT OR REPLACE INTO outbox_state VALUES (1, ?, ?)", (origin, int(enabled)))
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return str(origin)


def batch(conn: sqlite3.Connection, after: int, limit: int) -> list[Entry]:
    """The oldest rows not shipped yet (seq above `after`)."""
    rows = conn.execute(f"SELECT seq, {COLUMNS} FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (after, limit))
    return [Entry(int(r[0]), device(r[1:])) for r in rows]


def waiting(conn: sqlite3.Connection, after: int) -> int:
    return int(conn.execute("SELECT count(*) FROM outbox WHERE seq > ?", (after,)).fetchone()[0])
