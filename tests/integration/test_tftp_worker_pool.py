"""The TFTP worker pool when its workers cannot run (transport/tftp_workers.py): a worker that dies at once
is started again a bounded number of times, then given up, and transfers stay in the main loop."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from bootstrapd.transport.tftp_workers import MAX_QUICK_DEATHS, Workers


class Log:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def info(self, event: str, **kw: Any) -> None:
        self.events.append((event, kw))

    debug = warning = error = info


def test_a_worker_dying_at_start_is_given_up_and_nothing_is_handed_to_it() -> None:
    log, restarts = Log(), []

    async def scenario() -> bool:
        pool = Workers(1, lambda t, r: None, lambda t: None, lambda: restarts.append(1), log,
                       command=[sys.executable, "-c", "raise SystemExit(3)"])
        pool.start(asyncio.get_running_loop())
        for _ in range(200):
            if any(e == "tftp.worker_given_up" for e, _ in log.events):
                break
            await asyncio.sleep(0.05)
        taken = pool.offer(object(), {"peer": ["198.18.0.2", 1000]}, [])
        pool.stop()
        return taken

    assert asyncio.run(scenario()) is False
    names = [e for e, _ in log.events]
    assert names.count("tftp.worker_started") == MAX_QUICK_DEATHS
    assert names.count("tftp.worker_lost") == MAX_QUICK_DEATHS and names[-1] == "tftp.worker_given_up"
    assert all(kw["returncode"] == 3 for e, kw in log.events if e == "tftp.worker_lost")
    assert len(restarts) == MAX_QUICK_DEATHS - 1
