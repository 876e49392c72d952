"""Waiting for the disk off the event loop: the DHCP shell's group commit.

A lease is on disk before its ACK leaves (design.md convention 5), and on this kind of disk an fdatasync
takes 0.2-1 ms of wall time. Called on the event loop, that wait blocked every other packet, DNS query and
file transfer behind it: at 3,000 DORA/s a third of the loop's time went to waiting for the disk. So the
shell commits a burst on the loop (SQLite writes its WAL, no sync: store_sqlite.py commit()), parks the
burst's replies, and hands the commit's sequence number to this thread; the thread syncs (one fdatasync
covers every commit made before it started, so commits queued meanwhile share it) and tells the loop, which
then sends the parked replies. Replies that promise nothing new (OFFERs: an offer lives in memory only) do
not wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable

SyncFn = Callable[[int], int]  # sync(seq) -> the highest durable sequence number; raises on failure
DoneFn = Callable[[int, Exception | None], None]  # on the loop: (durable up to, error or None)


class CommitSyncer:
    """One thread that makes commits durable in order and reports each to the loop."""

    def __init__(self, sync: SyncFn, done: DoneFn, loop: asyncio.AbstractEventLoop) -> None:
        self._sync = sync
        self._done = done
        self._loop = loop
        self._requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dhcp-sync", daemon=True)
        self._thread.start()

    def request(self, seq: int) -> None:
        """Make commit `seq` durable; done() follows on the loop (from the loop's thread only)."""
        self._requests.put(seq)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the requests queued so far and stop the thread."""
        self._requests.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        requests = self._requests
        stopping = False
        while not stopping:
            seq = requests.get()
            if seq is None:
                return
            with contextlib.suppress(queue.Empty):  # what queued meanwhile: the same fdatasync covers it
                while True:
                    more = requests.get_nowait()
                    if more is None:
                        stopping = True
                        break
                    seq = max(seq, more)
            error: Exception | None = None
            try:
                seq = self._sync(seq)
            except Exception as e:  # the disk failed (StoreError): the loop drops the parked replies
                error = e
            try:
                self._loop.call_soon_threadsafe(self._done, seq, error)
            except RuntimeError:  # the loop is closed: the shell delivered what was parked at its stop
                return
