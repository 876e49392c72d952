"""Ships a site's outbox (bootstrapd/observability/outbox.py) to the central database, in a thread of its
own: a database that takes seconds to answer or to fail never stalls the event loop, and the packet path
never meets it (DHCP, DNS, files and syslog only feed the tracker, whose writer fills the outbox).

One cycle (`run_once`): connect when there is no connection (at most once per back-off step, 0.5 s
doubling to 15 s), read the oldest unshipped rows (at most BATCH), and ship them with the heartbeat (and
the inventory, when it changed) in one round trip. Shipped rows are acknowledged to the writer, which
deletes them in its next transaction; a failed ship acknowledges nothing, so the rows stay queued (and
collapse, one per device) until the database is back. Down and up are one log event each
(`central.down`, `central.up`) and the gauges `bootstrapd_central_up`, `bootstrapd_central_outbox_rows`,
`bootstrapd_central_last_shipped_timestamp_seconds`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from bootstrapd.errors import StoreError
from bootstrapd.files.inventory import Inventory
from bootstrapd.floor import codec
from bootstrapd.floor.funnel import Budgets
from bootstrapd.observability import outbox
from bootstrapd.observability.device_store import Device
from bootstrapd.observability.device_writer import Writer
from bootstrapd.observability.metrics import Metrics
from bootstrapd.threads import name_os_thread

BATCH = 500  # rows per round trip
INTERVAL = 1.0  # seconds between cycles when nothing is waiting
HEARTBEAT = 10.0  # seconds between heartbeats of an idle site
BACKOFF_FIRST, BACKOFF_MAX = 0.5, 15.0


class Central(Protocol):
    """What the shipper needs of the database (db.CentralDb; a fake in the unit tests)."""

    @property
    def broken(self) -> bool: ...

    def prepare(self) -> None: ...

    def knows(self, site: str, node: str, origin: str) -> bool: ...

    def ship(self, rows: Sequence[dict[str, Any]], hb: Heartbeat,
             inventory: Sequence[tuple[str, str]] | None) -> int: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class Heartbeat:
    """The site's row in bootstrapd_central_nodes, sent with every ship."""

    site: str
    node: str
    origin: str
    now: float
    pending: int
    stall_after: dict[str, float]
    inventory: bool


@dataclass(frozen=True)
class Context:
    """What the site says at the time of a ship (read again after a reload)."""

    inventory: Inventory | None
    limits: Budgets


def funnel_row(site: str, node: str, origin: str, entry: outbox.Entry, now: float) -> dict[str, Any]:
    """One outbox entry as a bootstrapd_central_devices row (json_populate_recordset's keys)."""
    d: Device = entry.device
    s = d.funnel
    resync = s.stage.label.removeprefix("resync_") if s.stage and s.stage.label.startswith("resync_") else None
    return {
        "site": site, "mac": d.mac, "origin": origin, "seq": entry.seq, "node": node,
        "stage": s.stage.label if s.stage else None, "model": s.model, "firmware": s.firmware,
        "address": s.address or (str(d.address) if d.address else None), "path": s.path.value if s.path else None,
        "resync": resync, "resync_url": s.resync_url, "resync_error": s.resync_error,
        "upgrade": s.upgrade.value.removeprefix("upgrade_") if s.upgrade else None,
        "upgrade_error": s.upgrade_error, "timeline": dict(s.timeline), "first_seen": s.first_seen,
        "last_seen": d.last_seen, "funnel": json.loads(codec.dumps(s)), "shipped_at": now,
    }


def _digest(inventory: Inventory | None) -> str:
    pairs = [] if inventory is None else [(r.mac, r.serial) for r in inventory.rows]
    return hashlib.blake2b(json.dumps([inventory is not None, pairs]).encode(), digest_size=16).hexdigest()


class Shipper:
    def __init__(self, site: str, node: str, db_path: Path, writer: Writer, open_db: Callable[[], Central],
                 context: Callable[[], Context], metrics: Metrics | None = None, log: Any = None, *,
                 clock: Callable[[], float] = time.time, batch: int = BATCH) -> None:
        self.site, self.node, self.origin = site, node, writer.origin
        self._path, self._writer, self._open_db, self._context = db_path, writer, open_db, context
        self._metrics, self._log, self._clock, self._batch = metrics, log, clock, batch
        self._db: Central | None = None
        self._reader: sqlite3.Connection | None = None
        self._shipped = 0  # highest seq shipped by this process
        self._inventory_sent: str | None = None  # digest of what this connection shipped
        self._heartbeat_at = float("-inf")
        self._retry_at = 0.0
        self._backoff = BACKOFF_FIRST
        self.up: bool | None = None  # None until the first attempt
        self.pending = 0
        self.last_error = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- the thread -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="bootstrapd-central", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop after the current cycle (bounded by libpq's connect and statement timeouts)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drop()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def _run(self) -> None:
        name_os_thread()
        more = False
        while not self._stop.wait(0 if more else INTERVAL):
            try:
                more = self.run_once()
            except Exception as e:  # a bug here must not end shipping for good
                more = False
                if self._log is not None:
                    self._log.error("central.cycle_failed", error=repr(e))

    # -- one cycle ------------------------------------------------------------------------------------
    def run_once(self) -> bool:
        """Connect if due, ship one batch. True when more rows are waiting right now."""
        now = self._clock()
        db = self._connection(now)
        if db is None or self._writer.requeue:  # (a requeue waits for the writer's next transaction)
            self._gauges(self._waiting())
            return False
        entries = outbox.batch(self._read(), self._shipped, self._batch)
        ctx = self._context()
        digest = _digest(ctx.inventory)
        inventory = None
        if digest != self._inventory_sent:
            inventory = [(r.mac, r.serial) for r in ctx.inventory.rows] if ctx.inventory is not None else []
        if not entries and inventory is None and now - self._heartbeat_at < HEARTBEAT:
            self._gauges(0)
            return False
        left = self._waiting() - len(entries)
        rows = [funnel_row(self.site, self.node, self.origin, e, now) for e in entries]
        hb = Heartbeat(self.site, self.node, self.origin, now, left, dict(ctx.limits), ctx.inventory is not None)
        try:
            db.ship(rows, hb, inventory)
        except StoreError as e:
            self._down(now, str(e))
            self._gauges(self._waiting())
            return False
        if entries:
            self._shipped = entries[-1].seq
            self._writer.acked = self._shipped  # the writer deletes them in its next transaction
        self._inventory_sent, self._heartbeat_at = digest, now
        self._gauges(left, shipped=now)
        return left > 0

    def _connection(self, now: float) -> Central | None:
        db = self._db
        if db is not None and not db.broken:
            return db
        self._drop()
        if now < self._retry_at:
            return None
        try:
            db = self._open_db()
            db.prepare()
            if not db.knows(self.site, self.node, self.origin):
                self._writer.requeue = True  # a central without our rows (new, or restored): all again
        except StoreError as e:
            if db is not None:
                db.close()
            self._down(now, str(e))
            return None
        self._db, self._backoff, self._retry_at = db, BACKOFF_FIRST, 0.0
        if self.up is not True:
            self.up = True
            if self._log is not None:
                self._log.info("central.up", site=self.site, node=self.node)
        return db

    def _down(self, now: float, error: str) -> None:
        self._drop()
        self._retry_at = now + self._backoff
        self._backoff = min(self._backoff * 2, BACKOFF_MAX)
        self.last_error = error
        if self.up is not False:
            self.up = False
            if self._log is not None:
                self._log.error("central.down", site=self.site, error=error, retry_in=self._retry_at - now)

    def _drop(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
        self._inventory_sent = None  # a new connection ships the inventory again (it may be a new database)

    def _read(self) -> sqlite3.Connection:
        if self._reader is None:
            self._reader = sqlite3.connect(self._path, check_same_thread=False)
            self._reader.execute("PRAGMA busy_timeout = 1000")
        return self._reader

    def _waiting(self) -> int:
        return outbox.waiting(self._read(), self._shipped)

    def _gauges(self, waiting: int, shipped: float | None = None) -> None:
        self.pending = waiting
        m = self._metrics
        if m is None:
            return
        m.central_outbox_rows.set(waiting)
        m.central_up.set(1 if self.up else 0)
        if shipped is not None:
            m.central_last_shipped.set(shipped)


__all__ = ["BATCH", "Context", "Shipper"]
