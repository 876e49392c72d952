"""SQLite WAL checkpoints in a thread of their own, instead of inside a COMMIT on the event loop.

By default SQLite checkpoints in the COMMIT that takes the WAL past 1,000 pages: it copies them into the
database and fsyncs the WAL and the database, on the thread that committed. For the lease store and the
device store that thread is the event loop, and at 3,000 DORA/s such a COMMIT held it for 100-460 ms about
once a second (bench/dhcp, a timed event-loop callback), far past every DHCP and DNS deadline. So the
owner turns the automatic checkpoints off on its connection (`PRAGMA wal_autocheckpoint = 0`) and starts
one of these: its own connection runs PASSIVE checkpoints, which never wait for the writer nor make it
wait, whenever the WAL changed since the last one, at most every INTERVAL_S.

The writer starts the WAL over only when a checkpoint has copied all of it, and under steady writes there
is always a frame or two that came after the thread's copy: the WAL grew by every commit, 100 MB in 24,000
commits. So once the WAL holds more than TAIL_FRAMES, the thread asks for a tail: the owner, right after
its next COMMIT on its own thread (`tail`), checkpoints what the thread's copy missed, a few frames, and its
next write starts the WAL over. That costs the loop one small copy and its two fsyncs at most once per
INTERVAL_S, and only while the WAL is large.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from bootstrapd.threads import name_os_thread

INTERVAL_S = 1.0  # at most one checkpoint a second: about 1,000 pages of WAL at 3,000 DORA/s
TAIL_FRAMES = 1000  # a WAL longer than this (SQLite's own autocheckpoint size) asks the owner for a tail


class WalCheckpointer:
    """Checkpoints one database while its owner writes it; `close` stops the thread (before the owner closes
    its own connection, which then checkpoints the rest as SQLite does at close)."""

    def __init__(self, path: Path, *, log: Any = None, interval: float = INTERVAL_S, name: str = "wal-checkpoint"):
        self.path = path
        self.checkpoints = 0  # completed, for tests and the log
        self.failures = 0
        self.tails = 0
        self.tail_wanted = False  # set by the thread, taken by the owner's tail()
        self._wal = Path(f"{path}-wal")
        self._log, self._interval = log, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @classmethod
    def take_over(cls, owner: sqlite3.Connection, path: Path, *, log: Any = None, interval: float = INTERVAL_S,
                  name: str = "wal-checkpoint") -> WalCheckpointer:
        """Turn the automatic checkpoints off on the owner's connection and checkpoint from a thread instead."""
        owner.execute("PRAGMA wal_autocheckpoint = 0")
        return cls(path, log=log, interval=interval, name=name)

    def close(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        name_os_thread()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            self._failed(e)
            return
        try:
            conn.execute("PRAGMA synchronous = NORMAL")  # the WAL is synced before the copy, the database after
            seen: tuple[int, int] | None = None
            while not self._stop.wait(self._interval):
                try:
                    st = os.stat(self._wal)
                except FileNotFoundError:
                    continue
                mark = (st.st_mtime_ns, st.st_size)
                if mark == seen:
                    continue  # nothing written since the last checkpoint
                seen = mark
                self.checkpoint(conn)
        finally:
            conn.close()

    def checkpoint(self, conn: sqlite3.Connection) -> None:
        frames = self._passive(conn)
        if frames is not None:
            self.checkpoints += 1
            if frames > TAIL_FRAMES:
                self.tail_wanted = True

    def tail(self, conn: sqlite3.Connection) -> None:
        """From the owner's thread, outside a transaction, on the owner's connection: when asked, checkpoint
        the frames the thread's copy missed, so that the next write starts the WAL over."""
        if not self.tail_wanted or conn.in_transaction:
            return
        self.tail_wanted = False
        if self._passive(conn) is not None:
            self.tails += 1

    def _passive(self, conn: sqlite3.Connection) -> int | None:
        """One PASSIVE checkpoint on `conn`: the WAL's length in frames, or None when it failed."""
        try:
            return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])
        except sqlite3.Error as e:
            self._failed(e)
            return None

    def _failed(self, error: Exception) -> None:
        # The WAL keeps growing until a checkpoint succeeds (or the owner closes), nothing is lost.
        self.failures += 1
        if self._log is not None and (self.failures == 1 or self.failures % 60 == 0):
            self._log.warning("store.checkpoint_failed", path=str(self.path), error=str(error))
