"""The floor page's event forms of a report: the one-line document is the provider's document, and the
fingerprint that decides `report` or `tick` ignores exactly what changes every second by itself."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
from collections.abc import Callable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from bootstrapd.transport.floorpage import Cached, render
from tests.integration.floor_report import HOSTILE, sample

# text a phone could send: quotes, backslashes, line breaks, U+2028, and our own key names
PIECES = ['"', "\\", "\n", "\r", "\t", " ", ":", ",", "{", "}", "a", "é", "\u2028", '"in_stage_s": 5', '"generated_at": "x"']
TEXT = st.lists(st.sampled_from(PIECES), max_size=8).map("".join)
VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | TEXT,
                      lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
                      max_leaves=10)
ROWS = st.lists(st.fixed_dictionaries({"mac": TEXT, "model": VALUES, "in_stage_s": st.integers(0, 10**6)}),
                max_size=4)
INDENT = st.sampled_from([None, 2, 4, "\t"])


def data(event: bytes) -> Any:
    name, body, end = event.decode().split("\n", 2)
    assert name.startswith("event: ") and body.startswith("data: ") and end == "\n"
    return json.loads(body.removeprefix("data: "))


@given(rows=ROWS, extra=VALUES, indent=INDENT)
def test_the_event_line_is_the_document(rows: list[dict[str, Any]], extra: Any, indent: Any) -> None:
    doc = {"site": "lab", "generated_at": "2026-12-01T10:05:00Z", "extra": extra, "devices": rows}
    r = render(json.dumps(doc, indent=indent, ensure_ascii=False))
    assert data(r.event) == doc
    assert data(r.tick) == {"generated_at": "2026-12-01T10:05:00Z"}


@given(rows=ROWS, extra=VALUES, indent=INDENT, later=st.integers(1, 10**5))
def test_fingerprint_ignores_time_only(rows: list[dict[str, Any]], extra: Any, indent: Any, later: int) -> None:
    doc = {"site": "lab", "generated_at": "2026-12-01T10:05:00Z", "extra": extra, "devices": rows}
    base = render(json.dumps(doc, indent=indent)).fingerprint
    aged = {**doc, "generated_at": "2026-12-01T11:00:00Z",
            "devices": [{**row, "in_stage_s": row["in_stage_s"] + later} for row in rows]}
    assert render(json.dumps(aged, indent=indent)).fingerprint == base
    changed = {**doc, "devices": [*rows, {"mac": "00:56:2b:04:36:15", "model": None, "in_stage_s": 0}]}
    assert render(json.dumps(changed, indent=indent)).fingerprint != base
    if rows:
        renamed = {**doc, "devices": [{**rows[0], "mac": rows[0]["mac"] + "x"}, *rows[1:]]}
        assert render(json.dumps(renamed, indent=indent)).fingerprint != base


def test_report_shape_round_trips_with_hostile_text() -> None:
    doc = sample()
    doc["devices"][0]["resync_error"] = 'line\nbreak "quoted" \\ back\u2028slash'
    r = render(json.dumps(doc, indent=2) + "\n")
    assert data(r.event) == doc and data(r.event)["devices"][2]["model"] == HOSTILE
    assert r.event.count(b"\n") == 3  # event, data, blank line: nothing a phone sent breaks the frame


def gaps(times: list[float]) -> list[float]:
    """Seconds between builds, to the request interval below them (requests come every 0.05 s)."""
    return [round((b - a) // 0.5 * 0.5, 1) for a, b in itertools.pairwise(times)]


def test_a_slow_report_is_rebuilt_less_often() -> None:
    """Rebuilt at most once a tick; a build that takes t seconds, at most every 10 t (it takes a core's share).
    The snapshot runs on the loop; the build in a worker thread."""
    now = [0.0]
    builds: list[float] = []
    loop_thread = threading.get_ident()
    threads: set[int] = set()

    def build() -> str:
        threads.add(threading.get_ident())
        now[0] += cost
        return str(len(builds))

    def snapshot() -> Callable[[], str]:
        assert threading.get_ident() == loop_thread
        builds.append(now[0])
        return build

    async def requests(n: int) -> None:
        for _ in range(n):
            await cached.get()
            now[0] += 0.05

    cost = 0.01
    cached = Cached(snapshot, 1.0, lambda: now[0])
    asyncio.run(requests(60))  # 3 s of requests, 20 a second
    assert gaps(builds) == [1.0, 1.0]
    cost, now[0], builds[:] = 0.5, 100.0, []
    asyncio.run(requests(300))  # 15 s
    assert gaps(builds) == [5.0, 5.0, 5.0]  # each build took 0.5 s: every 5 s (+ the 0.5)
    assert threads and loop_thread not in threads  # the loop never ran a build
