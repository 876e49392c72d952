"""How late the event loop runs: a timer due every INTERVAL, and what a late one was waiting for.

Everything the daemon serves in its main process (DNS, files, syslog, the floor page) shares one loop; a
callback that holds it, or a process that the kernel does not schedule, stops every socket being read, and
a syslog flood then overflows the receive buffer within a fraction of a second. The gauge shows the worst
lateness of each second; a lateness over STALL is one `loop.stalled` event that splits the time into what
the main thread ran (our code), what it waited for a CPU (the box's load), what the garbage collector
took, and the rest (blocked in a system call: disk I/O, a lock).
"""

from __future__ import annotations

import asyncio
import gc
import time
from pathlib import Path
from typing import Any

from bootstrapd.observability.metrics import Metrics

INTERVAL = 0.05  # seconds between ticks: resolution of the measurement, ~20 cheap callbacks a second
STALL = 0.25  # a tick this late is logged (a 20,000/s flood queues 5,000 datagrams meanwhile)
REPORT = 1.0  # seconds between gauge updates
_SCHEDSTAT = Path("/proc/thread-self/schedstat")  # ns on a CPU, ns waiting for one, timeslices (Linux)


def schedstat() -> tuple[float, float]:
    """(seconds the calling thread ran, seconds it waited on a run queue); zeros where unavailable."""
    try:
        run, wait, _ = _SCHEDSTAT.read_text().split()
    except (OSError, ValueError):
        return 0.0, 0.0
    return int(run) / 1e9, int(wait) / 1e9


class LoopLag:
    """Started on the running loop; `stop` removes its timer and its garbage-collector callback."""

    def __init__(self, metrics: Metrics, log: Any, *, interval: float = INTERVAL, stall: float = STALL) -> None:
        self._metrics, self._log = metrics, log
        self._interval, self._stall = interval, stall
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._due = self._reported = 0.0
        self._worst = 0.0
        self._gc = 0.0  # seconds of collections since the last tick
        self._gc_start = 0.0
        self._sched = (0.0, 0.0)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        gc.callbacks.append(self._on_gc)
        self._sched = schedstat()
        self._reported = time.monotonic()
        self._arm(self._reported)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def _arm(self, now: float) -> None:
        assert self._loop is not None
        self._due = now + self._interval
        self._timer = self._loop.call_at(self._loop.time() + self._interval, self._tick)

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif self._gc_start:
            self._gc += time.perf_counter() - self._gc_start
            self._gc_start = 0.0

    def _tick(self) -> None:
        now = time.monotonic()
        late = max(0.0, now - self._due)
        sched = schedstat()
        ran, waited = sched[0] - self._sched[0], sched[1] - self._sched[1]
        self._sched, collected, self._gc = sched, self._gc, 0.0
        self._worst = max(self._worst, late)
        if late >= self._stall:
            self._metrics.loop_stalls.inc()
            self._log.warning("loop.stalled", late=round(late, 3), ran=round(ran, 3), waited_for_cpu=round(waited, 3),
                              gc=round(collected, 3), blocked=round(max(0.0, late + self._interval - ran - waited), 3))
        if now - self._reported >= REPORT:
            self._metrics.loop_lag.set(self._worst)
            self._worst, self._reported = 0.0, now
        self._arm(now)
