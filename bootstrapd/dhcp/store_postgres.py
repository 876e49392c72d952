"""The shared lease store: PostgreSQL through psycopg 3 (`pip install bootstrapd[postgresql]`).

Several nodes may write one database; the address is the primary key and every row carries a `version`
drawn from one sequence, so a version is never reused (no ABA after a delete). Each node keeps a LeaseIndex
mirror: reads on the packet path stay local dict lookups, as with SQLite.

- Writes are conditional (optimistic concurrency): flush() writes each address touched by the burst only if
  the row is still the version this node last saw (or still absent). A write that loses is reported in the
  set flush() returns; its address then shows the winner's row, and the shell drops the burst's reply for
  it (`lost_race`): the client retransmits and meets the fresh mirror.
- Offers are rows too (state offered, expiring with the hold): a node that loses an OFFER race stays silent
  instead of NAKing the other node's client later.
- One round trip per burst: flush() sends, in one pipeline and one implicit transaction, a pull of other
  writers' changes since the last pull and ONE statement that writes the whole burst (arrays, unnest). The
  pull is safe against out-of-order commits: it reads rows whose writing transaction id (`txid`) is at or
  above the previous snapshot's xmin, below which every transaction had ended. refresh() pulls when idle.
- PostgreSQL unreachable: flush() raises StoreError (the shell drops the burst: no reply without a durable
  lease) and the burst's writes are undone in the mirror. refresh() reconnects: one attempt per back-off
  step, in a thread of its own (a database that takes seconds to fail must not stall the event loop); the
  next refresh() takes the connection up and reloads the whole mirror (another node's deletes are only
  seen that way). The packet path never connects. `up` says whether a connection is live.
- Other nodes' changes (pulled, re-read after a lost race, or found by a reload) are kept for the shell:
  take_remote() returns them as (before, after) record pairs, for DNS's lease records.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

import psycopg
from psycopg import conninfo

from bootstrapd.dhcp import store_postgres_sql as sql
from bootstrapd.dhcp.leases import NO_LOST, Lease, LeaseState
from bootstrapd.dhcp.store_memory import IndexedReads, LeaseIndex
from bootstrapd.errors import StoreError

SCHEMA_VERSION = 1
_LOCK_KEY = 0x626F6F7473747264  # pg_advisory_xact_lock: two nodes starting together create the schema once
_BACKOFF_FIRST, _BACKOFF_MAX = 0.5, 15.0  # seconds between reconnect attempts, doubling
# libpq defaults unless the DSN says otherwise: a dead database must not stall the packet loop for long.
_CONNECT_DEFAULTS = {"connect_timeout": "3", "tcp_user_timeout": "3000", "keepalives_idle": "10"}
_SESSION = "SET statement_timeout = '5s'; SET lock_timeout = '2s'; SET idle_in_transaction_session_timeout = '10s'"

_STATES = {state.value: state for state in LeaseState}
_REMOTE_LIMIT = 65_536  # changes kept between two take_remote() calls; beyond that the oldest are forgotten

RemoteChange = tuple[Lease | None, Lease | None]  # (the record before, the record now) of one address


@dataclass(frozen=True)
class Settings:
    """How to reach the database and who this node is."""

    dsn: str
    node: str
    race_guard: bool = True  # False only in tests: the negative control must be able to lose leases


class PostgresLeaseStore(IndexedReads):
    """LeaseStore on a (possibly shared) PostgreSQL database. Build it with open_postgres_store()."""

    durable = True
    shared = True  # other writers exist: offers are written, flush() may report lost races

    def __init__(self, settings: Settings, *, readonly: bool = False, writer: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.settings = settings
        self._readonly = readonly
        self._writer = writer if writer is not None else secrets.randbits(62)
        self._clock = clock
        self._write_sql = sql.WRITE if settings.race_guard else sql.WRITE_UNGUARDED
        self._conn: psycopg.Connection[Any] | None = None
        self._use_index(LeaseIndex())
        self._versions: dict[int, int] = {}  # address -> the row version this node last saw
        self._undo: dict[int, Lease | None] = {}  # address -> its record before this burst
        self._horizon = 0
        self._backoff = _BACKOFF_FIRST
        self._retry_at = 0.0
        self._closed = False
        self._ready: psycopg.Connection[Any] | None = None  # made by a background attempt, not yet used
        self._connector: threading.Thread | None = None
        self._last_error = "connection lost"
        self.round_trips = 0  # exchanges with the server: measured by tests and the benchmark
        self._remote: list[RemoteChange] = []
        self._tracking = True
        self._connect()
        self._remote = []  # what was there at open is no change

    @property
    def up(self) -> bool:
        """A live connection to the database (False from a failure until a reconnect is taken up)."""
        conn = self._conn
        return conn is not None and not conn.broken and not conn.closed

    def take_remote(self) -> list[RemoteChange]:
        """Other writers' changes to the mirror since the last call, oldest first."""
        changes, self._remote = self._remote, []
        return changes

    def _changed(self, before: Lease | None, after: Lease | None) -> None:
        if self._tracking and before != after:
            if len(self._remote) >= _REMOTE_LIMIT:
                del self._remote[: _REMOTE_LIMIT // 2]
            self._remote.append((before, after))

    # -- writes: the mirror now, the database at flush() -----------------------------------------------
    def put(self, lease: Lease, *, force: bool = False) -> None:
        if self._readonly:
            raise StoreError("the lease store is open read-only")
        for record in self._index.plan_put(lease, force):
            self._touch(int(record.address))
            self._index.apply(record)

    def delete(self, address: IPv4Address) -> None:
        if self._readonly:
            raise StoreError("the lease store is open read-only")
        self._touch(int(address))
        self._index.remove(address)

    def _touch(self, key: int) -> None:
        if key not in self._undo:
            self._undo[key] = self._index.get_by_address(IPv4Address(key))

    @property
    def pending(self) -> bool:
        return bool(self._undo)

    def flush(self) -> frozenset[IPv4Address]:
        """Write the burst in one round trip. Returns the addresses whose write lost to another writer
        (their records now show the winner); raises StoreError when nothing of the burst was written."""
        if not self._undo:
            return NO_LOST
        conn = self._conn
        if conn is None or conn.broken or conn.closed:
            self._undo_burst()  # reconnecting is refresh()'s: the packet path never waits for a connect
            raise StoreError(f"lease database unreachable ({self._last_error}); reconnecting")
        params, keys = self._burst_params()
        try:
            with conn.pipeline():
                pulled = conn.execute(sql.PULL, (str(self._horizon), self._writer))
                written = conn.execute(self._write_sql, params)
            self.round_trips += 1
            won = {int(a): int(v) for a, v in written.fetchall()}
            rows = pulled.fetchall()
        except psycopg.Error as e:
            self._failed(e)
            raise StoreError(f"lease store write failed, the burst's leases discarded: {e}") from e
        self._undo = {}
        lost = [k for k in keys if k not in won]
        for key, version in won.items():
            self._seen(key, version)
        self._apply_pulled(rows)
        if lost:
            self._reread(conn, lost)
        return frozenset(IPv4Address(k) for k in lost)

    def refresh(self) -> None:
        """Pull other writers' changes into the mirror (the shell calls this when idle, every second).
        After an outage it starts a background connection attempt (at most one per back-off step) and
        takes the connection up at a later call. Raises StoreError while there is none."""
        if self._undo:
            return  # mid-burst: flush() pulls
        conn = self._connection()
        try:
            rows = conn.execute(sql.PULL, (str(self._horizon), self._writer)).fetchall()
            self.round_trips += 1
        except psycopg.Error as e:
            self._failed(e)
            raise StoreError(f"lease store refresh failed: {e}") from e
        self._apply_pulled(rows)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._undo and not self._readonly:
                self.flush()
        finally:
            self._drop_connection()
            connector = self._connector
            if connector is not None:
                connector.join()  # bounded by connect_timeout
            if self._ready is not None:
                self._ready.close()

    # -- the burst ------------------------------------------------------------------------------------
    def _burst_params(self) -> tuple[dict[str, Any], list[int]]:
        rows: list[list[Any]] = []
        gone: list[int] = []
        keys: list[int] = []
        for key in sorted(self._undo):
            lease = self._index.get_by_address(IPv4Address(key))
            if lease is None:
                gone.append(key)  # administrative delete: unconditional, never lost
                continue
            keys.append(key)
            rows.append([*_row(lease), self._versions.get(key, 0)])
        return {"rows": json.dumps(rows), "gone": gone, "node": self.settings.node, "writer": self._writer}, keys

    def _undo_burst(self) -> None:
        """Show the durable state again: the burst's records as they were before it."""
        for key, before in self._undo.items():
            if before is None:
                self._index.remove(IPv4Address(key))
            else:
                self._index.apply(before)
        self._undo = {}

    def _failed(self, e: psycopg.Error) -> None:
        self._undo_burst()
        conn = self._conn
        if conn is not None and (conn.broken or conn.closed):
            # The burst's outcome is unknown: the reconnect reloads everything.
            self._last_error = _first_line(e)
            self._drop_connection()

    # -- mirror refresh ---------------------------------------------------------------------------------
    def _seen(self, key: int, version: int) -> None:
        if version:
            self._versions[key] = version
        else:
            self._versions.pop(key, None)

    def _apply_pulled(self, rows: Sequence[tuple[Any, ...]]) -> None:
        interned: dict[Any, Any] = {}
        for row in rows:
            self._horizon = max(self._horizon, int(row[0]))
            if row[1] is None:
                continue  # the snapshot row of an empty pull
            key, version = int(row[1]), int(row[-1])
            if version > self._versions.get(key, 0):
                lease = _lease(row[1:-1], interned)
                self._changed(self._index.get_by_address(lease.address), lease)
                self._index.apply(lease)
                self._versions[key] = version

    def _reread(self, conn: psycopg.Connection[Any], keys: list[int]) -> None:
        """After lost races: the winners' rows (a second round trip, only when a race was lost)."""
        try:
            rows = conn.execute(sql.SELECT, (keys,)).fetchall()
            self.round_trips += 1
        except psycopg.Error:
            self._failed_quietly()
            return
        found = {int(row[0]): row for row in rows}
        interned: dict[Any, Any] = {}
        for key in keys:
            row = found.get(key)
            before = self._index.get_by_address(IPv4Address(key))
            if row is None:
                self._changed(before, None)
                self._index.remove(IPv4Address(key))
                self._versions.pop(key, None)
            else:
                lease = _lease(row[:-1], interned)
                self._changed(before, lease)
                self._index.apply(lease)
                self._versions[key] = int(row[-1])

    def _failed_quietly(self) -> None:
        # The burst itself is committed; only the re-read failed: reload at the next connection.
        self._drop_connection()

    # -- connection: at open in the caller's thread; after an outage in a thread of its own -----------------
    def _connection(self) -> psycopg.Connection[Any]:
        """The live connection; after an outage, the one a background attempt made (the mirror is then
        reloaded here, in the caller's thread). StoreError while none is ready: the attempt never blocks the
        caller (the shell's event loop), however long the database takes to answer or fail."""
        conn = self._conn
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        self._drop_connection()
        ready, self._ready = self._ready, None
        if ready is not None:
            try:
                self._load(ready)
            except psycopg.Error as e:
                ready.close()
                raise StoreError(f"lease database reload failed: {_first_line(e)}") from e
            self._conn = ready
            return ready
        if self._connector is None and self._clock() >= self._retry_at and not self._closed:
            self._connector = threading.Thread(target=self._reconnect, name="bootstrapd-pg-connect", daemon=True)
            self._connector.start()
        raise StoreError(f"lease database unreachable ({self._last_error}); reconnecting")

    def _reconnect(self) -> None:
        """Background: one connection attempt. Touches only _ready, the back-off and _connector."""
        try:
            conn = self._open()
        except StoreError as e:
            self._last_error = str(e)
            self._retry_at = self._clock() + self._backoff
            self._backoff = min(self._backoff * 2, _BACKOFF_MAX)
        else:
            self._backoff, self._retry_at = _BACKOFF_FIRST, 0.0
            self._ready = conn
        finally:
            self._connector = None

    def _open(self) -> psycopg.Connection[Any]:
        """Connect and check (at open: create) the schema. StoreError when that fails."""
        try:
            conn = psycopg.connect(_with_defaults(self.settings), autocommit=True)
        except psycopg.Error as e:
            raise StoreError(f"cannot connect to the lease database: {_first_line(e)}") from e
        try:
            conn.execute(_SESSION)
            if self._readonly:
                _check_version(conn)
            else:
                _prepare(conn)
        except BaseException as e:
            conn.close()
            if isinstance(e, psycopg.Error):
                raise StoreError(f"cannot open the lease database: {_first_line(e)}") from e
            raise
        return conn

    def _connect(self) -> None:
        """At open: connect and load the mirror, in the caller's thread."""
        conn = self._open()
        try:
            self._load(conn)
        except psycopg.Error as e:
            conn.close()
            raise StoreError(f"cannot read the lease database: {_first_line(e)}") from e
        self._conn = conn

    def _drop_connection(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _load(self, conn: psycopg.Connection[Any]) -> None:
        rows = conn.execute(sql.LOAD).fetchall()
        self.round_trips += 1
        old = self._index
        self._versions, self._undo = {}, {}
        self._use_index(LeaseIndex())
        self._horizon = 0
        self._tracking = False  # against an empty index every row is new: compare with the old mirror instead
        try:
            self._apply_pulled(rows)
        finally:
            self._tracking = True
        for lease in old.iter_all():
            self._changed(lease, self._index.get_by_address(lease.address))
        for lease in self._index.iter_all():
            if old.get_by_address(lease.address) is None:
                self._changed(None, lease)


def _with_defaults(settings: Settings) -> str:
    try:
        params = conninfo.conninfo_to_dict(settings.dsn)
    except psycopg.Error as e:
        raise StoreError(f"invalid lease database connection string: {_first_line(e)}") from e
    for key, value in _CONNECT_DEFAULTS.items():
        params.setdefault(key, value)
    params.setdefault("application_name", f"bootstrapd {settings.node}"[:63])
    return conninfo.make_conninfo("", **params)


def _prepare(conn: psycopg.Connection[Any]) -> None:
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(sql.SCHEMA)
        if conn.execute("SELECT count(*) FROM bootstrapd_schema").fetchone() == (0,):
            conn.execute("INSERT INTO bootstrapd_schema VALUES (%s)", (SCHEMA_VERSION,))
    _check_version(conn)


def _check_version(conn: psycopg.Connection[Any]) -> None:
    try:
        row = conn.execute("SELECT max(version) FROM bootstrapd_schema").fetchone()
    except psycopg.errors.UndefinedTable as e:
        raise StoreError("the database holds no bootstrapd lease store") from e
    version = row[0] if row else None
    if version is None or version > SCHEMA_VERSION:
        raise StoreError(f"lease store schema {version} is not one this bootstrapd ({SCHEMA_VERSION}) can use")


def _row(lease: Lease) -> list[object]:
    """The JSON form of a record for sql.BATCH: bytes as hex, option text as its UTF-8 bytes in hex."""
    return [
        int(lease.address), lease.client_id.hex(), lease.chaddr.hex(), lease.state.value, lease.subnet,
        lease.expires, lease.first_seen, lease.updated, _hex(lease.hostname), _hex(lease.vendor_class),
        lease.device_class, lease.free_at,
    ]  # fmt: skip


def _hex(text: str | None) -> str | None:
    return None if text is None else text.encode("utf-8", "surrogatepass").hex()


def _text(value: bytes | None) -> str | None:
    return None if value is None else bytes(value).decode("utf-8", "surrogatepass")


def _lease(row: Iterable[Any], interned: dict[Any, Any]) -> Lease:
    address, client_id, chaddr, state, subnet, expires, first_seen, updated, hostname, vendor, klass = row
    vendor = _text(vendor)
    return Lease(
        address=IPv4Address(int(address)),
        client_id=bytes(client_id),
        chaddr=bytes(chaddr),
        state=_STATES[state],
        subnet=interned.setdefault(subnet, subnet),
        expires=expires,
        first_seen=first_seen,
        updated=updated,
        hostname=_text(hostname),
        vendor_class=interned.setdefault(vendor, vendor),
        device_class=interned.setdefault(klass, klass),
    )


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def open_postgres_store(dsn: str, node: str, *, readonly: bool = False, race_guard: bool = True,
                        clock: Callable[[], float] = time.monotonic) -> PostgresLeaseStore:  # fmt: skip
    """Connect to the shared store (creating its tables if needed) and load the mirror.
    Raises StoreError when the database cannot be reached or holds a store this version cannot use."""
    return PostgresLeaseStore(Settings(dsn, node, race_guard), readonly=readonly, clock=clock)
