"""whole.py's runs, plus what the daemon's loop-lag monitor saw: every `loop.stalled` event of each run.

    python bench/bootstorm/sinkab.py [whole.py's options, e.g. --phones 20 --floods 20000 --runs 3]

whole.py prints its result line per run; this adds, per run, the stalls (how late the loop ran a timer,
and how that time splits into our code running, waiting for a CPU, the garbage collector and blocked in a
system call) and the load average at the start and end. The daemon is whatever `bootstrapd` the
PYTHONPATH finds first, so the same script measures a "before" tree (which has no monitor: no stalls
listed) and an "after" one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import whole  # this directory is not a package

_summarise = whole.summarise
_run_once = whole.run_once


def summarise(flood_rate: int, reports: Any, events: list[dict[str, Any]], *rest: Any) -> Any:
    stalls = [e for e in events if e.get("event") == "loop.stalled"]
    print(f"  loop.stalled: {len(stalls)}", flush=True)
    for e in stalls:
        print(f"    {e.get('timestamp')} late {e['late']:.3f}s: ran {e['ran']:.3f}, waited for a CPU "
              f"{e['waited_for_cpu']:.3f}, gc {e['gc']:.3f}, blocked {e['blocked']:.3f}", flush=True)
    return _summarise(flood_rate, reports, events, *rest)


def run_once(*args: Any, **kw: Any) -> Any:
    print(f"  load at start {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    return _run_once(*args, **kw)


whole.summarise = summarise
whole.run_once = run_once

if __name__ == "__main__":
    sys.exit(whole.main(sys.argv[1:]))
