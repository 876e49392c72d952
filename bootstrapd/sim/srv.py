"""RFC 2782 target selection, as our simulated phones do it (mpp-bootstrap.md section 5 policy).

Lowest priority first; within one priority a weighted random order: records in random order with the
weight-0 ones placed first, then repeatedly a uniform number in [0, sum of the remaining weights] picks
the first record whose running sum reaches it. The result is the order in which a phone tries targets,
each failure moving to the next.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby


@dataclass(frozen=True)
class SrvTarget:
    """One SRV record's data (RFC 2782 field names)."""

    priority: int
    weight: int
    port: int
    target: str  # without the trailing dot


def no_service(records: Sequence[SrvTarget]) -> bool:
    """RFC 2782: a single record whose target is "." means the service is decidedly not available."""
    return len(records) == 1 and records[0].target in ("", ".")


def _weighted_order(group: list[SrvTarget], rng: random.Random) -> list[SrvTarget]:
    remaining = list(group)
    rng.shuffle(remaining)  # "in any order": random, so that equal zero weights share the load
    remaining.sort(key=lambda r: r.weight != 0)  # "except that all those with weight 0 are placed at the beginning"
    ordered = []
    while remaining:
        pick = rng.randint(0, sum(r.weight for r in remaining))
        running = 0
        for i, record in enumerate(remaining):
            running += record.weight
            if running >= pick:
                ordered.append(remaining.pop(i))
                break
    return ordered


def rfc2782_order(records: Sequence[SrvTarget], rng: random.Random) -> list[SrvTarget]:
    """Every usable record, in the order a client tries them."""
    if no_service(records):
        return []
    usable = sorted((r for r in records if r.target not in ("", ".")), key=lambda r: r.priority)
    out: list[SrvTarget] = []
    for _, group in groupby(usable, key=lambda r: r.priority):
        out.extend(_weighted_order(list(group), rng))
    return out
