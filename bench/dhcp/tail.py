"""Where a run's latency tail lies in time: the slow exchanges of a `run.py --stamps` file, in episodes.

    python bench/dhcp/tail.py bench-stamps/bootstrapd-empty-3000.txt [--over 4] [--gap 0.02]

An episode is a run of exchanges slower than `--over` ms whose DISCOVERs (or REQUESTs) were sent less than
`--gap` s apart. A few long episodes at a steady period point at something periodic holding the server (a
collection, a checkpoint, a timer's scan); many short ones at no period, at a server near its capacity.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("stamps", type=Path)
    p.add_argument("--over", type=float, default=4.0, help="ms: an exchange this slow is in the tail")
    p.add_argument("--gap", type=float, default=0.02, help="s between slow exchanges that split episodes")
    args = p.parse_args()
    rows = [(kind, float(sent), float(delay)) for kind, sent, delay in
            (line.split() for line in args.stamps.read_text().splitlines())]
    if not rows:
        raise SystemExit("no exchanges in the file")
    for kind in ("DO", "RA"):
        delays = sorted(d for k, _, d in rows if k == kind)
        if delays:
            marks = ", ".join(f"p{q:g} {delays[min(len(delays) - 1, int(q / 100 * len(delays)))]:.2f}"
                              for q in (50, 90, 99, 99.9))
            print(f"{kind}: {len(delays)} exchanges, ms: {marks}")
    start = min(t for _, t, _ in rows)
    slow = sorted((t, d) for _, t, d in rows if d > args.over)
    print(f"{len(slow)} slower than {args.over} ms; episodes (start s, span ms, worst ms, exchanges):")
    episodes: list[list[float]] = []
    for t, d in slow:
        if episodes and t - episodes[-1][1] < args.gap:
            e = episodes[-1]
            e[1], e[2], e[3] = t, max(e[2], d), e[3] + 1
        else:
            episodes.append([t, t, d, 1])
    for first, last, worst, n in episodes:
        print(f"{first - start:9.3f} {1000 * (last - first):8.1f} {worst:8.1f} {int(n):6d}")


if __name__ == "__main__":
    main()
