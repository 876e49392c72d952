"""The embedded lease store: stdlib sqlite3 in WAL mode, `<state_dir>/leases.sqlite3`.

Writes go to SQLite inside one open transaction. flush() commits it and makes it durable: a COMMIT without
a sync (synchronous=NORMAL), then one fdatasync of the WAL file, which is what synchronous=FULL does inside
the COMMIT. The two halves are also offered apart, commit() and sync(): the DHCP shell commits on its event
loop and waits for the disk in a thread (transport/dhcp_sync.py), and one fdatasync then covers every commit
made while the previous one ran (group commit). Either way a burst of packets costs at most one fsync.

Reads are served from a LeaseIndex mirror loaded at open, which sees un-flushed writes. If SQLite fails, the
transaction is rolled back and the mirror reloaded from what is committed, so reads never show a record
that a crash of the process would lose (a power cut may take commits not yet synced: no reply promised
them, the shell sends a burst's replies only once its sync returned).

Other processes (`bootstrapd leases`) read the database with open_readonly() while the daemon runs: WAL
lets readers and the one writer proceed together. An exclusive flock on `leases.sqlite3.lock` keeps a
second daemon from writing the same store.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Sequence
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bootstrapd.dhcp.codec import address_int
from bootstrapd.dhcp.leases import NO_LOST, Lease, LeaseState
from bootstrapd.dhcp.store_memory import IndexedReads, LeaseIndex
from bootstrapd.errors import StoreError
from bootstrapd.walcheckpoint import INTERVAL_S as CHECKPOINT_INTERVAL_S
from bootstrapd.walcheckpoint import WalCheckpointer

DB_NAME = "leases.sqlite3"
SCHEMA_VERSION = 1  # PRAGMA user_version

_SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    address      INTEGER PRIMARY KEY,  -- IPv4 address as an unsigned integer
    client_id    BLOB NOT NULL,        -- client identity; empty for address-only records
    chaddr       BLOB NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('offered', 'bound', 'released', 'expired', 'declined')),
    subnet       TEXT NOT NULL,
    expires      REAL NOT NULL,        -- epoch seconds
    free_at      REAL NOT NULL,        -- when the address is free again (Lease.free_at)
    first_seen   REAL NOT NULL,
    updated      REAL NOT NULL,
    hostname     TEXT,
    vendor_class TEXT,
    device_class TEXT
);
"""
# Every read is served from the mirror (and `bootstrapd leases` reads whole tables): secondary indexes on disk
# were only two more B-trees to update in each ACK's write. Stores made before that lose them at open.
_DROP_INDEXES = "DROP INDEX IF EXISTS leases_client; DROP INDEX IF EXISTS leases_free;"
_COLUMNS = (
    "address, client_id, chaddr, state, subnet, expires, first_seen, updated, hostname, vendor_class, device_class"
)
_UPSERT = f"INSERT OR REPLACE INTO leases ({_COLUMNS}, free_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_STATES = {state.value: state for state in LeaseState}
_OFFERED = LeaseState.OFFERED


class SqliteLeaseStore(IndexedReads):
    """LeaseStore on SQLite. Build it with open_store() or open_readonly()."""

    durable = True
    shared = False  # one writer: the flock makes sure

    def __init__(self, conn: sqlite3.Connection, path: Path, lock_fd: int | None, readonly: bool) -> None:
        self._conn = conn
        self.path = path
        self._lock_fd = lock_fd
        self._readonly = readonly
        self._closed = False
        self._committed = 0  # commits so far (commit()'s sequence numbers)
        self._synced = 0  # commits known durable
        self._sync_lock = threading.Lock()  # sync() runs in the shell's sync thread and in flush()
        self._wal_fd: int | None = None
        self._checkpointer: WalCheckpointer | None = None
        self._use_index(LeaseIndex())
        self._reload()

    # Reads: the mirror (IndexedReads).

    # Writes: SQLite first, then the mirror.
    def put(self, lease: Lease, *, force: bool = False) -> None:
        index = self._index
        records = index.plan_put(lease, force)
        # An offer is a promise for offer_hold seconds, not a lease: it lives in the mirror only, so a DISCOVER
        # costs no disk write and a burst of them no fsync. After a crash the offered address is simply free.
        if len(records) == 1:  # the common case, without the lists
            if lease.state is not _OFFERED:
                self._upsert(lease)
            index.apply(lease)
            return
        durable = [r for r in records if r.state is not _OFFERED]
        if durable:
            self._write([(_UPSERT, _params(record)) for record in durable])
        for record in records:
            index.apply(record)

    def delete(self, address: IPv4Address) -> None:
        self._write([("DELETE FROM leases WHERE address = ?", (int(address),))])
        self._index.remove(address)

    @property
    def pending(self) -> bool:
        """True when writes wait for flush()."""
        return self._conn.in_transaction

    def flush(self) -> frozenset[IPv4Address]:
        self.commit()
        if self._synced < self._committed:
            self.sync(self._committed)
        return NO_LOST

    def commit(self) -> int:
        """COMMIT the open transaction without waiting for the disk: readers see it, a crash of this process
        keeps it (it is in the kernel's page cache), a power cut may not until sync() returned. Returns its
        sequence number (increasing), or 0 when nothing was pending. Raises StoreError as flush() does."""
        if not self._conn.in_transaction:
            return 0
        try:
            self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            self._recover()
            raise StoreError(f"lease store commit failed, un-flushed leases discarded: {e}") from e
        self._committed += 1
        if self._checkpointer is not None and self._checkpointer.tail_wanted:
            self._checkpointer.tail(self._conn)
        return self._committed

    def sync(self, seq: int) -> int:
        """Make the commits up to `seq` durable: one fdatasync of the WAL, which covers every commit made
        before it started. Safe from another thread than the one that writes (it touches only the WAL's
        file descriptor). Returns the highest durable sequence number. Raises StoreError if the disk fails."""
        with self._sync_lock:
            if seq <= self._synced:
                return self._synced
            target = self._committed  # every commit up to here has written its frames
            try:
                os.fdatasync(self._wal())
            except OSError as e:
                raise StoreError(f"lease store sync failed: {e}") from e
            self._synced = max(self._synced, target)
            return self._synced

    def _wal(self) -> int:
        """The WAL file's descriptor, opened at the first sync. SQLite keeps that file while this connection
        is open; should it be gone all the same (st_nlink 0), the new one is opened."""
        fd = self._wal_fd
        if fd is not None and os.fstat(fd).st_nlink > 0:
            return fd
        if fd is not None:
            os.close(fd)
        self._wal_fd = fd = os.open(f"{self.path}-wal", os.O_RDONLY | os.O_CLOEXEC)
        # A new WAL's name must survive a power cut too (synchronous=FULL syncs the directory as well).
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return fd

    def checkpoint_in_background(self, log: Any = None, interval: float = CHECKPOINT_INTERVAL_S) -> None:
        """Checkpoint the WAL in a thread from now on, not in the COMMITs of the thread that writes (the event
        loop): walcheckpoint.py. Until close()."""
        if self._checkpointer is None and not self._readonly:
            self._checkpointer = WalCheckpointer.take_over(self._conn, self.path, log=log, interval=interval,
                                                           name="lease-checkpoint")

    def refresh(self) -> None:
        """The only writer: nothing to read back."""

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._checkpointer is not None:
            self._checkpointer.close()
        try:
            self.flush()
        finally:
            self._conn.close()
            if self._wal_fd is not None:
                os.close(self._wal_fd)
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock

    def _upsert(self, lease: Lease) -> None:
        """_write() of one record's upsert (once per ACK)."""
        if self._readonly:
            raise StoreError(f"{self.path} is open read-only")
        conn = self._conn
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN")
            conn.execute(_UPSERT, _params(lease))
        except sqlite3.Error as e:
            self._recover()
            raise StoreError(f"lease store write failed, un-flushed leases discarded: {e}") from e

    def _write(self, statements: Sequence[tuple[str, tuple[object, ...]]]) -> None:
        if self._readonly:
            raise StoreError(f"{self.path} is open read-only")
        conn = self._conn
        try:
            if not conn.in_transaction:
                conn.execute("BEGIN")
            for sql, params in statements:
                conn.execute(sql, params)
        except sqlite3.Error as e:
            self._recover()
            raise StoreError(f"lease store write failed, un-flushed leases discarded: {e}") from e

    def _recover(self) -> None:
        """After a failed write or commit: drop the open transaction, show what is durable again."""
        try:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            self._reload()
        except sqlite3.Error as e:
            raise StoreError(f"lease store unusable after a failure: {e}") from e

    def _reload(self) -> None:
        index = LeaseIndex()
        interned: dict[object, object] = {}
        rows = self._conn.execute(f"SELECT {_COLUMNS} FROM leases")
        for row in rows:
            index.apply(_lease(row, interned))
        self._use_index(index)


def _params(lease: Lease) -> tuple[object, ...]:
    return (
        address_int(lease.address),
        lease.client_id,
        lease.chaddr,
        lease.state._value_,  # .value is a Python-level property in 3.11; _value_ is the member's own attribute
        lease.subnet,
        lease.expires,
        lease.first_seen,
        lease.updated,
        lease.hostname,
        lease.vendor_class,
        lease.device_class,
        lease.free_at,
    )


def _lease(row: tuple[Any, ...], interned: dict[Any, Any]) -> Lease:
    # Subnets, vendor classes and class names repeat across thousands of phones: keep one copy each.
    address, client_id, chaddr, state, subnet, expires, first_seen, updated, hostname, vendor, klass = row
    return Lease(
        address=IPv4Address(address),
        client_id=client_id,
        chaddr=chaddr,
        state=_STATES[state],
        subnet=interned.setdefault(subnet, subnet),
        expires=expires,
        first_seen=first_seen,
        updated=updated,
        hostname=hostname,
        vendor_class=interned.setdefault(vendor, vendor),
        device_class=interned.setdefault(klass, klass),
    )


def shard_db_name(index: int) -> str:
    """The store of DHCP worker `index` when `dhcp.workers` >= 2 (each worker owns its own file)."""
    return f"leases-{index}.sqlite3"


def open_store(state_dir: str | os.PathLike[str], *, busy_timeout: float = 1.0,
               name: str = DB_NAME) -> SqliteLeaseStore:
    """Open (creating if needed) the daemon's store `<state_dir>/<name>` (leases.sqlite3) for writing.

    Raises StoreError if another process holds the store, or the file is not a lease store this version
    can read. `busy_timeout` bounds how long a write waits for a lock held by an outside tool.
    """
    directory = Path(state_dir)
    path = directory / name
    try:
        directory.mkdir(parents=True, exist_ok=True)
        lock_fd = os.open(f"{path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise StoreError(f"cannot open lease store in {directory}: {e}") from e
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(lock_fd)
        raise StoreError(f"{path} is in use by another process (is bootstrapd already running?)") from e
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            _prepare(conn, path, busy_timeout)
            return SqliteLeaseStore(conn, path, lock_fd, readonly=False)
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as e:
        os.close(lock_fd)
        raise StoreError(f"cannot open lease store {path}: {e}") from e
    except BaseException:
        os.close(lock_fd)
        raise


def _prepare(conn: sqlite3.Connection, path: Path, busy_timeout: float) -> None:
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if mode != "wal":
        raise StoreError(f"{path}: cannot switch to WAL journal mode (got {mode})")
    # COMMIT writes the WAL without syncing it; flush() and sync() fdatasync it (see the module docstring).
    # NORMAL still syncs the WAL before a checkpoint copies it into the database, and the database after.
    conn.execute("PRAGMA synchronous = NORMAL")
    if _version(conn, path) == 0:
        # One transaction: a crash while creating leaves version 0 and an empty file, created again.
        conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    elif conn.execute("SELECT 1 FROM sqlite_master WHERE name IN ('leases_client', 'leases_free')").fetchone():
        conn.executescript(f"BEGIN IMMEDIATE; {_DROP_INDEXES} COMMIT;")


def _version(conn: sqlite3.Connection, path: Path) -> int:
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path}: lease store schema {version} is newer than this bootstrapd ({SCHEMA_VERSION})")
    return version


def readonly_uri(file: Path) -> str:
    """A read-only SQLite URI that leaves no files behind.

    Without a -wal file no writer has the database open and every change is in the main file: opening it
    immutable then creates no -wal/-shm files, which, left owned by root (`sudo bootstrapd leases`), would keep
    the unprivileged daemon from writing at its next start.
    """
    immutable = "" if file.with_name(f"{file.name}-wal").exists() else "&immutable=1"
    return f"{file.resolve().as_uri()}?mode=ro{immutable}"


def open_readonly(path: str | os.PathLike[str], *, busy_timeout: float = 1.0) -> SqliteLeaseStore:
    """Open a lease database for reading only (the `bootstrapd leases` CLI), also while the daemon runs.

    The records are a snapshot taken at open; put() and delete() raise StoreError.
    """
    file = Path(path)
    if not file.is_file():
        raise StoreError(f"no lease store at {file}")
    try:
        conn = sqlite3.connect(readonly_uri(file), uri=True, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if _version(conn, file) != SCHEMA_VERSION:
                raise StoreError(f"{file} is not a bootstrapd lease store")
            return SqliteLeaseStore(conn, file, None, readonly=True)
        except BaseException:
            conn.close()
            raise
    except sqlite3.Error as e:
        raise StoreError(f"cannot read lease store {file}: {e}") from e
