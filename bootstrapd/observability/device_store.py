"""The device table `<state_dir>/devices.sqlite3`: schema, migration, rows, and its read-only readers.

Version 2 (this one) keeps each device's funnel state (bootstrapd/floor) as JSON beside the DHCP facts,
and a bounded history (the last fetches and syslog lines) per device in a second table. A version 1 file
is migrated in one transaction at the writer's open; the readers read either version.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrapd.dhcp.store_sqlite import readonly_uri
from bootstrapd.errors import StoreError
from bootstrapd.floor import codec
from bootstrapd.floor.funnel import STAGES, DeviceState, Stage

DB_NAME = "devices.sqlite3"
SCHEMA_VERSION = 2
_CHECK = ", ".join(repr(s) for s in STAGES)
_LABELS = {s: label for label, s in STAGES.items()}
_DEVICES = f"""
CREATE TABLE devices (
    chaddr       BLOB PRIMARY KEY,     -- client hardware address (hlen bytes)
    address      INTEGER,              -- last address offered or leased, IPv4 as an unsigned integer
    stage        TEXT CHECK (stage IS NULL OR stage IN ({_CHECK})),  -- NULL: seen, no stage reached
    device_class TEXT,
    vendor_class TEXT,                 -- option 60
    hostname     TEXT,                 -- option 12
    first_seen   REAL NOT NULL,        -- epoch seconds
    last_seen    REAL NOT NULL,
    funnel       TEXT,                 -- the funnel's DeviceState as JSON (floor/codec.py); NULL from version 1
    history_seq  INTEGER NOT NULL DEFAULT 0  -- the last history entry's seq
)"""
_HISTORY = """
CREATE TABLE IF NOT EXISTS history (
    chaddr BLOB NOT NULL,
    seq    INTEGER NOT NULL,           -- per device, increasing; the oldest beyond the bound are deleted
    time   REAL NOT NULL,
    kind   TEXT NOT NULL,              -- a floor.funnel.Kind value
    text   TEXT NOT NULL,
    PRIMARY KEY (chaddr, seq)
) WITHOUT ROWID"""
_V1_COLUMNS = "chaddr, address, stage, device_class, vendor_class, hostname, first_seen, last_seen"
COLUMNS = f"{_V1_COLUMNS}, funnel, history_seq"
UPSERT = f"INSERT OR REPLACE INTO devices ({COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_MIGRATE_1 = f"""
{_DEVICES.replace("CREATE TABLE devices", "CREATE TABLE devices_v2")};
INSERT INTO devices_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM devices;
DROP TABLE devices;
ALTER TABLE devices_v2 RENAME TO devices;
"""


@dataclass(slots=True)
class Device:
    """One device: the DHCP facts the listing shows, and its funnel state."""

    chaddr: bytes
    address: ipaddress.IPv4Address | None
    device_class: str | None
    vendor_class: str | None
    hostname: str | None
    funnel: DeviceState
    last_seen: float
    history_seq: int = 0

    @property
    def mac(self) -> str:
        return self.chaddr.hex(":")

    @property
    def stage(self) -> Stage | None:
        return self.funnel.stage

    @property
    def first_seen(self) -> float:
        return self.funnel.first_seen

    def row(self) -> tuple[object, ...]:
        address = int(self.address) if self.address is not None else None
        state = self.funnel
        stage = _LABELS[state.stage] if state.stage is not None else None
        return (self.chaddr, address, stage, self.device_class, self.vendor_class, self.hostname,
                state.first_seen, self.last_seen, codec.dumps(state), self.history_seq)


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    seq: int
    time: float
    kind: str
    text: str


def device(row: tuple[Any, ...]) -> Device:
    """A table row (either version's columns) as a Device; a damaged funnel column is rebuilt from the rest."""
    chaddr, address, stage, klass, vendor, hostname, first, last, *rest = row
    funnel_text, seq = [*rest, None, 0][:2]
    addr = ipaddress.IPv4Address(address) if address is not None else None
    mac = bytes(chaddr).hex(":")
    state = None
    if funnel_text is not None:
        try:
            state = codec.loads(mac, funnel_text)
        except ValueError:
            state = None
    if state is None:  # a version 1 row: its stage, reached by its last sighting
        s = STAGES.get(stage) if stage is not None else None
        state = DeviceState(mac, first, stage=s, since=last, timeline={s.label: last} if s else {},
                            address=str(addr) if addr else None)
    return Device(bytes(chaddr), addr, klass, vendor, hostname, state, last, int(seq or 0))


def open_writer(path: Path) -> sqlite3.Connection:
    """The daemon's connection: created, or migrated from version 1, in one transaction."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")  # no fsync per commit: stages may lag a crash
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise StoreError(f"{path}: device table schema {version} is newer than this bootstrapd")
        if version == 0:
            conn.executescript(f"BEGIN IMMEDIATE; {_DEVICES}; {_HISTORY}; "
                               f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        elif version == 1:
            conn.executescript(f"BEGIN IMMEDIATE; {_MIGRATE_1} {_HISTORY}; "
                               f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        # The stage CHECK's IN list costs an ephemeral index built for every row inserted (half of an
        # upsert's instructions): this writer writes only Stage labels, and `PRAGMA integrity_check` still
        # checks the rows (tests/unit/test_devices.py).
        conn.execute("PRAGMA ignore_check_constraints = ON")
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"cannot open device table {path}: {e}") from e
    return conn


def _reader(state_dir: str | Path) -> tuple[sqlite3.Connection, int, Path]:
    path = Path(state_dir) / DB_NAME
    if not path.is_file():
        raise StoreError(f"no device table at {path} (has bootstrapd run with this state_dir?)")
    conn = sqlite3.connect(readonly_uri(path), uri=True)
    conn.execute("PRAGMA busy_timeout = 1000")
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version not in (1, SCHEMA_VERSION):
        conn.close()
        raise StoreError(f"{path} is not a bootstrapd device table of this version")
    return conn, version, path


def read_devices(state_dir: str | Path) -> list[Device]:
    """Every device recorded in `<state_dir>/devices.sqlite3`, read-only (also while the daemon runs)."""
    try:
        conn, version, _ = _reader(state_dir)
        try:
            columns = COLUMNS if version == SCHEMA_VERSION else _V1_COLUMNS
            return [device(row) for row in conn.execute(f"SELECT {columns} FROM devices")]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read device table {Path(state_dir) / DB_NAME}: {e}") from e


def read_history(state_dir: str | Path, chaddr: bytes) -> list[HistoryEntry]:
    """One device's recorded history, oldest first (empty for a version 1 table)."""
    try:
        conn, version, _ = _reader(state_dir)
        try:
            if version != SCHEMA_VERSION:
                return []
            return history(conn, chaddr)
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read device table {Path(state_dir) / DB_NAME}: {e}") from e


def history(conn: sqlite3.Connection, chaddr: bytes) -> list[HistoryEntry]:
    rows = conn.execute("SELECT seq, time, kind, text FROM history WHERE chaddr = ? ORDER BY seq", (chaddr,))
    return [HistoryEntry(*r) for r in rows]
