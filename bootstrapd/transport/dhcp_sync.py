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

from bootstrapd.threads import name_os_thread

SyncFn = Callable[[int], int]  # sync(seq) -> the highest durable sequence number; raises on failure


class CommitSyncer:
    """One thread that makes commits durable in order and tells the loop.

    The loop reads `durable` (and `failed`/`error`) itself at the end of each of its DHCP callbacks; the
    thread wakes it (`call_soon_threadsafe(on_synced)`: a write to the loop's self-pipe, one more turn of the
    loop) only when it finished a sync while the loop was not inside one (`busy` False). The loop clears
    `busy` before it reads `durable`, and the thread sets `durable` before it reads `busy`, so under the GIL
    one of the two always sees the other's write."""

    def __init__(self, sync: SyncFn, on_synced: Callable[[], None], loop: asyncio.AbstractEventLoop) -> None:
        self._sync = sync
        self._on_synced = on_synced
        self._loop = loop
        self.durable = 0  # every commit up to this one is on disk
        self.failed = 0  # the syncs of the commits up to this one failed (their replies are dropped)
        self.error: Exception | None = None  # why
        self.busy = False  # the loop is inside a DHCP callback and reads `durable` at its end
        self._requests: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="dhcp-sync", daemon=True)
        self._thread.start()

    def request(self, seq: int) -> None:
        """Make commit `seq` durable (from the loop's thread only)."""
        self._requests.put(seq)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the requests queued so far and stop the thread."""
        self._requests.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        name_os_thread()
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
            try:
                self.durable = max(self.durable, self._sync(seq))
            except Exception as e:  # the disk failed (StoreError): the loop drops the parked replies
                self.error, self.failed = e, max(self.failed, seq)
            if self.busy:
                continue  # the loop reads `durable` when its callback ends
            try:
                self._loop.call_soon_threadsafe(self._on_synced)
            except RuntimeError:  # the loop is closed: the shell delivered what was parked at its stop
                return
