"""What the device tracker has not written yet, and the transaction that writes a slice of it.

Changed devices are upserted whole (one row each); history entries are appended and the oldest beyond the
bound deleted in the same transaction, so a restart finds each device's row and its history in step. With
the cross-site inventory on, the same rows go to the outbox (outbox.py) in that transaction too, and the
rows the shipper acknowledged are deleted from it.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Mapping
from typing import Any

from bootstrapd.observability import outbox
from bootstrapd.observability.device_store import UPSERT, Device, HistoryEntry


class Writer:
    def __init__(self, conn: sqlite3.Connection, log: Any = None, *, ship: bool = False) -> None:
        self.conn = conn
        self._log = log
        self.ship = ship
        self.origin = outbox.prepare(conn, ship)
        self.acked = 0  # set by the shipper's thread: outbox rows up to this seq are shipped
        self._deleted = 0
        self.requeue = False  # set by the shipper's thread: queue every device again (a central without us)
        self._requeue_after = 0  # the requeue's progress (rowid), a slice per flush
        self.dirty: set[bytes] = set()
        self._evicted: set[bytes] = set()
        self._reset: set[bytes] = set()  # evicted, then seen again before the delete was written
        self._history: dict[bytes, list[HistoryEntry]] = {}
        self._bound: dict[bytes, int] = {}

    def pending(self) -> int:
        return len(self.dirty) + len(self._evicted)

    def pending_history(self, chaddr: bytes) -> list[HistoryEntry]:
        return list(self._history.get(chaddr, ()))

    def add_history(self, chaddr: bytes, entry: HistoryEntry, bound: int) -> None:
        entries = self._history.setdefault(chaddr, [])
        entries.append(entry)
        del entries[:-bound]  # memory is bounded too
        self._bound[chaddr] = bound

    def evicted(self, chaddr: bytes) -> None:
        self.dirty.discard(chaddr)
        self._history.pop(chaddr, None)
        self._reset.discard(chaddr)
        self._evicted.add(chaddr)

    def revived(self, chaddr: bytes) -> None:
        if chaddr in self._evicted:
            self._evicted.discard(chaddr)
            self._reset.add(chaddr)

    def flush(self, devices: Mapping[bytes, Device], limit: int | None = None) -> bool:
        """Write pending changes (at most `limit` devices) in one transaction; on failure they stay pending.
        True when this one succeeded and more changes are waiting."""
        acked, requeue = self.acked, self.requeue
        if not self.dirty and not self._evicted and acked <= self._deleted and not requeue:
            return False
        dirty = list(self.dirty if limit is None else itertools.islice(self.dirty, limit))
        room = None if limit is None else max(0, limit - len(dirty))
        gone = list(self._evicted if room is None else itertools.islice(self._evicted, room))
        rows = [devices[c].row() for c in dirty]
        entries = [(c, e.seq, e.time, e.kind, e.text) for c in dirty for e in self._history.get(c, ())]
        trims = [(c, devices[c].history_seq - self._bound[c]) for c in dirty if c in self._history]
        resets = [(c,) for c in dirty if c in self._reset]
        last, n = 0, 0  # the requeue slice's last rowid and size
        try:
            self.conn.execute("BEGIN")
            self.conn.executemany("DELETE FROM history WHERE chaddr = ?", resets)
            self.conn.executemany(UPSERT, rows)
            self.conn.executemany("INSERT OR REPLACE INTO history VALUES (?, ?, ?, ?, ?)", entries)
            self.conn.executemany("DELETE FROM history WHERE chaddr = ? AND seq <= ?", trims)
            self.conn.executemany("DELETE FROM devices WHERE chaddr = ?", [(c,) for c in gone])
            self.conn.executemany("DELETE FROM history WHERE chaddr = ?", [(c,) for c in gone])
            if self.ship:
                self.conn.executemany(outbox.UPSERT, rows)
                if acked > self._deleted:
                    self.conn.execute(outbox.ACK, (acked,))
                if requeue:
                    after = self._requeue_after
                    self.conn.execute(outbox.ENQUEUE_SLICE, (after, outbox.REQUEUE_SLICE))
                    last, n = self.conn.execute(outbox.SLICE_END, (after, outbox.REQUEUE_SLICE)).fetchone()
            self.conn.execute("COMMIT")
        except sqlite3.Error as e:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            if self._log is not None:
                self._log.warning("devices.flush_failed", error=str(e), pending=len(rows) + len(gone))
            return False  # not at once again: the next try is a FLUSH_INTERVAL away
        self._deleted = max(self._deleted, acked)
        if requeue:  # done when a slice came up short; the shipper waits until then
            self._requeue_after = 0 if n < outbox.REQUEUE_SLICE else int(last)
            self.requeue = n >= outbox.REQUEUE_SLICE
        self.dirty.difference_update(dirty)
        self._evicted.difference_update(gone)
        self._reset.difference_update(dirty)
        for c in dirty:
            self._history.pop(c, None)
            self._bound.pop(c, None)
        return bool(self.dirty or self._evicted)
