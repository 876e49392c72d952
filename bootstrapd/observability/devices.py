"""Every device seen, and the furthest step of its bootstrap that bootstrapd could observe.

The DHCP shell reports each reply it sent (after the lease is durable); the DNS shell reports answered
SRV, A and AAAA queries with the client's address. A device's stage only moves forward:

    offered -> leased -> srv_looked_up -> targets_resolved

`srv_looked_up`: a `_ciscoprov*` SRV query (mpp-bootstrap.md section 5) answered NOERROR came from the
address we leased it; `targets_resolved`: after that, an A/AAAA query for one of the site's SRV targets
from the same address. A device that fetched its profile by a URL from option 160 stays at `leased`.

Records live in `<state_dir>/devices.sqlite3` (WAL, synchronous=NORMAL), beside the lease store and not in
it: device stages are bookkeeping, so they are written in one transaction per second without an fsync
each; a crash may lose the last second of stages, never a lease. `bootstrapd devices` reads the file while
the daemon runs. Memory and the table are bounded: past `max_devices` the least recently seen is dropped.
"""

from __future__ import annotations

import asyncio
import enum
import ipaddress
import itertools
import sqlite3
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dhcp.outcome import Reply, Silent
from bootstrapd.dhcp.store_sqlite import readonly_uri
from bootstrapd.dns.names import resolve, to_text
from bootstrapd.dns.wire import Rcode
from bootstrapd.errors import StoreError

DB_NAME = "devices.sqlite3"
SCHEMA_VERSION = 1
FLUSH_INTERVAL = 1.0
# Rows per transaction when the timer flushes, the next slice following at once: a busy floor's second of
# changes (3,000 devices at 3,000 DORA/s) written in one go held the event loop, and with it every DHCP and
# DNS reply, for tens of milliseconds once a second (bench/dhcp p99).
FLUSH_SLICE = 128
MAX_DEVICES = 100_000
QTYPE_A, QTYPE_AAAA, QTYPE_SRV = 1, 28, 33  # RFC 1035 3.2.2, RFC 3596, RFC 2782
QUERY_TYPES = frozenset({QTYPE_A, QTYPE_AAAA, QTYPE_SRV})  # what the DNS shell needs to report to us


class Stage(enum.IntEnum):
    """How far a device got, in boot order; the lower-case name is what the database and CLI show."""

    OFFERED = 1  # we sent it a DHCPOFFER (RFC 2131 4.3.1)
    LEASED = 2  # we sent it a DHCPACK (RFC 2131 4.3.2)
    SRV_LOOKED_UP = 3  # a _ciscoprov SRV query from its leased address was answered (RFC 2782)
    TARGETS_RESOLVED = 4  # then an A/AAAA query for an SRV target from that address was answered

    @property
    def label(self) -> str:
        return self.name.lower()


_STAGES = {s.label: s for s in Stage}

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS devices (
    chaddr       BLOB PRIMARY KEY,     -- client hardware address (hlen bytes)
    address      INTEGER,              -- last address offered or leased, IPv4 as an unsigned integer
    stage        TEXT NOT NULL CHECK (stage IN ({", ".join(repr(s) for s in _STAGES)})),
    device_class TEXT,
    vendor_class TEXT,                 -- option 60
    hostname     TEXT,                 -- option 12
    first_seen   REAL NOT NULL,        -- epoch seconds
    last_seen    REAL NOT NULL
);
"""
_COLUMNS = "chaddr, address, stage, device_class, vendor_class, hostname, first_seen, last_seen"
_UPSERT = f"INSERT OR REPLACE INTO devices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"


@dataclass(slots=True)
class Device:
    chaddr: bytes
    address: ipaddress.IPv4Address | None
    stage: Stage
    device_class: str | None
    vendor_class: str | None
    hostname: str | None
    first_seen: float
    last_seen: float

    @property
    def mac(self) -> str:
        return self.chaddr.hex(":")

    def row(self) -> tuple[object, ...]:
        address = int(self.address) if self.address is not None else None
        return (self.chaddr, address, self.stage.label, self.device_class, self.vendor_class, self.hostname,
                self.first_seen, self.last_seen)


def _device(row: tuple[Any, ...]) -> Device:
    chaddr, address, stage, klass, vendor, hostname, first, last = row
    addr = ipaddress.IPv4Address(address) if address is not None else None
    return Device(chaddr, addr, _STAGES[stage], klass, vendor, hostname, first, last)


def srv_targets(site: Site) -> frozenset[str]:
    """The site's SRV target names as the DNS shell reports qnames (lower case, absolute)."""
    names = set()
    for service in site.dns.srv:
        for t in service.targets:
            if t.target != ".":
                names.add(to_text(resolve(t.target, site.domain)).lower())
    return frozenset(names)


class DeviceTracker:
    """In-memory devices (LRU-ordered) mirrored to SQLite by `flush`, which `start` runs every second."""

    def __init__(self, state_dir: str | Path, site: Callable[[], Site], log: Any = None, *,
                 clock: Callable[[], float] = time.time, max_devices: int = MAX_DEVICES) -> None:
        self.path = Path(state_dir) / DB_NAME
        self._site = site
        self._log = log
        self._clock = clock
        self._max = max_devices
        self._devices: OrderedDict[bytes, Device] = OrderedDict()
        self._by_address: dict[str, bytes] = {}  # leased address -> chaddr, for DNS attribution
        self._dirty: set[bytes] = set()
        self._evicted: set[bytes] = set()
        self._targets: tuple[Site | None, frozenset[str]] = (None, frozenset())
        self._timer: asyncio.TimerHandle | None = None
        self._conn = self._open()
        for row in self._conn.execute(f"SELECT {_COLUMNS} FROM devices ORDER BY last_seen"):
            device = _device(row)
            self._devices[device.chaddr] = device
            self._index(device)

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")  # no fsync per commit: stages may lag a crash
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise StoreError(f"{self.path}: device table schema {version} is newer than this bootstrapd")
            if version == 0:
                conn.executescript(f"BEGIN IMMEDIATE; {_SCHEMA}; PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except (OSError, sqlite3.Error) as e:
            raise StoreError(f"cannot open device table {self.path}: {e}") from e
        return conn

    def __len__(self) -> int:
        return len(self._devices)

    def get(self, chaddr: bytes) -> Device | None:
        return self._devices.get(chaddr)

    # -- reports ------------------------------------------------------------------------------------------
    def dhcp_outcome(self, outcome: Reply | Silent) -> None:
        """From the DHCP shell: each reply sent, and each RELEASE/DECLINE, after its lease is durable."""
        lease = outcome.lease
        if lease is None or not lease.chaddr:  # NAK, INFORM's ACK, a RELEASE of nothing
            return
        now = self._clock()
        # A RELEASE or DECLINE from a device we have no record of: it had been leased (before this table).
        device = self._touch(lease.chaddr, now, min(now, lease.first_seen),
                             Stage.LEASED if isinstance(outcome, Silent) else Stage.OFFERED)
        if isinstance(outcome, Silent):  # released or declined: its DNS queries are no longer its own
            self._unindex(device)
            device.address = device.address or lease.address
            return
        if outcome.msg_type is MessageType.OFFER:
            stage = Stage.OFFERED
        elif outcome.msg_type is MessageType.ACK:
            stage = Stage.LEASED
        else:
            return
        self._unindex(device)
        device.address = lease.address
        device.device_class = outcome.device_class
        device.vendor_class = lease.vendor_class or device.vendor_class
        device.hostname = lease.hostname or device.hostname
        device.stage = max(device.stage, stage)
        if stage is Stage.LEASED:
            self._index(device)

    def dns_query(self, client: str, qname: str, qtype: int, rcode: Rcode) -> None:
        """From the DNS shell (on the hot path: the address lookup comes first and mostly ends it)."""
        chaddr = self._by_address.get(client)
        if chaddr is None or rcode != Rcode.NOERROR:
            return
        device = self._devices.get(chaddr)
        if device is None:
            return
        if qtype == QTYPE_SRV and qname.startswith("_ciscoprov"):
            stage = Stage.SRV_LOOKED_UP
        elif qtype in (QTYPE_A, QTYPE_AAAA) and device.stage >= Stage.SRV_LOOKED_UP and qname in self._srv_targets():
            stage = Stage.TARGETS_RESOLVED
        else:
            return
        self._touch(chaddr, self._clock())
        device.stage = max(device.stage, stage)

    def _srv_targets(self) -> frozenset[str]:
        site = self._site()
        if self._targets[0] is not site:  # computed again only after a reload
            self._targets = (site, srv_targets(site))
        return self._targets[1]

    def _touch(self, chaddr: bytes, now: float, first_seen: float | None = None,
               stage: Stage = Stage.OFFERED) -> Device:
        device = self._devices.get(chaddr)
        if device is None:
            first = now if first_seen is None else first_seen
            device = self._devices[chaddr] = Device(chaddr, None, stage, None, None, None, first, now)
            self._evicted.discard(chaddr)
            while len(self._devices) > self._max:
                _, old = self._devices.popitem(last=False)
                self._unindex(old)
                self._dirty.discard(old.chaddr)
                self._evicted.add(old.chaddr)
        else:
            self._devices.move_to_end(chaddr)
            device.last_seen = max(device.last_seen, now)
        self._dirty.add(chaddr)
        return device

    def _index(self, device: Device) -> None:
        if device.address is not None and device.stage >= Stage.LEASED:
            self._by_address[str(device.address)] = device.chaddr

    def _unindex(self, device: Device) -> None:
        if device.address is not None and self._by_address.get(str(device.address)) == device.chaddr:
            del self._by_address[str(device.address)]

    # -- persistence --------------------------------------------------------------------------------------
    def flush(self, limit: int | None = None) -> bool:
        """Write the changed devices (at most `limit` of them) in one transaction; on failure they stay
        pending for the next flush. True when this one succeeded and more changes are waiting."""
        if not self._dirty and not self._evicted:
            return False
        dirty = list(self._dirty if limit is None else itertools.islice(self._dirty, limit))
        room = None if limit is None else max(0, limit - len(dirty))
        evicted = list(self._evicted if room is None else itertools.islice(self._evicted, room))
        rows = [self._devices[c].row() for c in dirty]
        gone = [(c,) for c in evicted]
        try:
            self._conn.execute("BEGIN")
            self._conn.executemany(_UPSERT, rows)
            self._conn.executemany("DELETE FROM devices WHERE chaddr = ?", gone)
            self._conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if self._log is not None:
                self._log.warning("devices.flush_failed", error=str(e), pending=len(rows) + len(gone))
            return False  # not at once again: the next try is a FLUSH_INTERVAL away
        self._dirty.difference_update(dirty)
        self._evicted.difference_update(evicted)
        return bool(self._dirty or self._evicted)

    def start(self) -> None:
        """Flush every FLUSH_INTERVAL seconds on the running loop: what is pending at the tick, in slices of
        FLUSH_SLICE rows with the loop's other work in between. Changes made meanwhile wait for the next
        tick, so a device that changes several times within an interval is still written about once."""
        loop = asyncio.get_running_loop()

        def tick(budget: int | None = None) -> None:
            if budget is None:
                budget = len(self._dirty) + len(self._evicted)
            more = self.flush(min(FLUSH_SLICE, budget))
            budget -= FLUSH_SLICE
            if more and budget > 0:
                self._timer = loop.call_later(0, tick, budget)
            else:
                self._timer = loop.call_later(FLUSH_INTERVAL, tick)

        self._timer = loop.call_later(FLUSH_INTERVAL, tick)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        try:
            self.flush()
        finally:
            self._conn.close()


def read_devices(state_dir: str | Path) -> list[Device]:
    """Every device recorded in `<state_dir>/devices.sqlite3`, read-only (also while the daemon runs)."""
    path = Path(state_dir) / DB_NAME
    if not path.is_file():
        raise StoreError(f"no device table at {path} (has bootstrapd run with this state_dir?)")
    try:
        conn = sqlite3.connect(readonly_uri(path), uri=True)
        try:
            conn.execute("PRAGMA busy_timeout = 1000")
            if int(conn.execute("PRAGMA user_version").fetchone()[0]) != SCHEMA_VERSION:
                raise StoreError(f"{path} is not a bootstrapd device table of this version")
            return [_device(row) for row in conn.execute(f"SELECT {_COLUMNS} FROM devices")]
        finally:
            conn.close()
    except sqlite3.Error as e:
        raise StoreError(f"cannot read device table {path}: {e}") from e
