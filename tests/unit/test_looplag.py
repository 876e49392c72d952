"""The loop-lag monitor: a callback that holds the event loop is one `loop.stalled` event, its time split
into running (our code) and blocked (a system call), and the gauge shows the worst lateness."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bootstrapd.observability.looplag import LoopLag
from bootstrapd.observability.metrics import Metrics


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))


def worst(log: Recorder) -> dict[str, Any]:
    assert log.events and {e for e, _ in log.events} == {"loop.stalled"}
    return max((f for _, f in log.events), key=lambda f: f["late"])


def spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


async def hold(lag: LoopLag, block: Any) -> None:
    lag.start()
    await asyncio.sleep(0.2)
    block()
    await asyncio.sleep(1.2)  # the next ticks, and one gauge update (REPORT = 1 s)
    lag.stop()


def test_a_blocking_call_is_a_stall_spent_blocked() -> None:
    log, metrics = Recorder(), Metrics()
    asyncio.run(hold(LoopLag(metrics, log), lambda: time.sleep(0.5)))
    f = worst(log)  # a loaded box may add stalls of its own (waiting for a CPU): the worst is ours
    assert 0.4 <= f["late"] < 3.0
    assert f["blocked"] >= 0.3 and f["ran"] < 0.2
    assert metrics.registry.get_sample_value("bootstrapd_event_loop_stalls_total") == len(log.events)
    assert metrics.registry.get_sample_value("bootstrapd_event_loop_lag_seconds") >= 0.4


def test_a_busy_callback_is_a_stall_spent_running() -> None:
    log = Recorder()
    asyncio.run(hold(LoopLag(Metrics(), log), lambda: spin(0.5)))
    f = worst(log)
    assert f["late"] >= 0.4 and f["ran"] + f["waited_for_cpu"] >= 0.4 and f["blocked"] < 0.2


def test_short_callbacks_are_no_stall() -> None:
    log = Recorder()
    asyncio.run(hold(LoopLag(Metrics(), log), lambda: spin(0.05)))
    assert all(f["ran"] < 0.2 for _, f in log.events)  # on a loaded box only waits for a CPU, if anything
