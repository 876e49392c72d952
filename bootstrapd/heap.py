"""The garbage collector's policy for a daemon that keeps its whole state in memory.

CPython's cycle collector walks every tracked object of the generations it collects. The daemon's state is
long-lived and grows with the floor (a lease, its address, its DNS records and the device's record are a
dozen tracked objects per phone), so the collections of the older generations walked all of it in the
middle of packet bursts: 13-31 ms pauses every second or two at 3,000 DORA/s with 20,000 leases
(bench/dhcp, loop.stalled with gc > 0), each one a queue of late replies and DNS answers.

So every automatic collection is generational in the strict sense: its survivors are frozen (gc.freeze,
moved to the permanent generation that no automatic collection walks), and the next one walks only what was
allocated since, at most YOUNG objects. Frozen objects are still freed by reference counting when they die;
what freezing costs is that a reference cycle that turns into garbage after it was frozen stays until the
next sweep, which unfreezes and collects everything every SWEEP_S seconds (one pause, once in ten
minutes: 34 ms for 50,000 leases' records alone on the 2-vCPU VM, more with their DNS records and devices).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from typing import Any

YOUNG = 5_000  # net allocations of tracked objects between collections: each one walks at most this many
SWEEP_S = 600.0  # seconds between full collections over the frozen objects too
SWITCH_INTERVAL_S = 0.0005  # sys.setswitchinterval (see settle)


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    # Called by the collector after a collection, when its survivors sit in the older generations.
    if phase == "stop":
        gc.freeze()


def settle() -> None:
    """Freeze everything built at start-up (config, zone, prepared answers, lease mirror) and collect the
    young generation only from now on. Idempotent."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG, 10, 10)
    if _freeze_survivors not in gc.callbacks:
        gc.callbacks.append(_freeze_survivors)
    # A thread that waits for the GIL (the DHCP sync thread after its fdatasync, the report builder) gets
    # it after this long at the latest while the loop runs Python: 5 ms by default, which held every ACK
    # of a busy loop back by as much. Only contended switches cost anything.
    sys.setswitchinterval(SWITCH_INTERVAL_S)


def sweep() -> tuple[int, float]:
    """One full collection over every object, frozen ones included, then freeze the survivors again.
    Returns (objects collected, seconds it took)."""
    start = time.perf_counter()
    gc.unfreeze()
    found = gc.collect()
    gc.freeze()
    return found, time.perf_counter() - start


async def sweep_forever(log: Any, every: float = SWEEP_S) -> None:
    """sweep() every `every` seconds on the running loop (a task: cancel it to stop)."""
    while True:
        await asyncio.sleep(every)
        found, took = sweep()
        log.debug("heap.swept", collected=found, seconds=round(took, 4), frozen=gc.get_freeze_count())
