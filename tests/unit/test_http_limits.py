"""The HTTP shell's limit policy on a passed-in clock (Tracker), parser-error classification and path decoding.
Connections are stand-ins with aiohttp's `force_close`; the tracker only keys on them and closes them."""

from __future__ import annotations

from aiohttp.http_exceptions import BadHttpMessage, LineTooLong

from bootstrapd.transport.http_conn import Limit, Limits, Tracker, classify_parse_error
from bootstrapd.transport.http_handler import decode_path


class FakeConn:
    def __init__(self, name: str) -> None:
        self.name = name
        self.closed = False

    def force_close(self) -> None:
        self.closed = True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tracker(**limits: float) -> tuple[Tracker, list[Limit], list[int], Clock]:
    closes: list[Limit] = []
    counts: list[int] = []
    clock = Clock()
    return Tracker(Limits(**limits), closes.append, counts.append, clock), closes, counts, clock  # type: ignore[arg-type]


def open_conns(t: Tracker, *names: str) -> list[FakeConn]:
    conns = [FakeConn(n) for n in names]
    for c in conns:
        t.opened(c, None)  # type: ignore[arg-type]
    return conns


def test_a_new_connection_beyond_the_cap_evicts_the_longest_idle() -> None:
    t, closes, counts, _ = tracker(max_connections=3)
    a, b, c = open_conns(t, "a", "b", "c")
    t.request_started(a)
    t.request_ended(a)  # a was active last: b is now the longest idle
    (d,) = open_conns(t, "d")
    assert (a.closed, b.closed, c.closed, d.closed) == (False, True, False, False)
    assert closes == [Limit.CONNECTIONS] and len(t) == 3 and counts[-1] == 3


def test_connections_serving_a_request_are_never_evicted() -> None:
    t, closes, _, _ = tracker(max_connections=2)
    a, b = open_conns(t, "a", "b")
    t.request_started(a)
    t.request_started(b)
    (c,) = open_conns(t, "c")
    assert c.closed and not a.closed and not b.closed  # all busy: the newcomer is refused
    assert closes == [Limit.CONNECTIONS]


def test_a_client_still_sending_its_head_counts_as_idle_for_eviction() -> None:
    t, _, _, _ = tracker(max_connections=2)
    a, b = open_conns(t, "a", "b")
    t.data(a)  # a trickles a head, b is serving a request
    t.request_started(b)
    (c,) = open_conns(t, "c")
    assert a.closed and not b.closed and not c.closed


def test_sweep_closes_idle_and_slow_heads_on_their_own_clocks() -> None:
    t, closes, _, clock = tracker(idle_timeout=15, head_timeout=10)
    idle, slow, busy, fresh = open_conns(t, "idle", "slow", "busy", "fresh")
    clock.now += 5
    t.data(slow)
    t.request_started(busy)
    clock.now += 9
    t.sweep()
    assert not any(c.closed for c in (idle, slow, busy, fresh))  # 14 s idle, 9 s into the head
    clock.now += 1.5
    t.data(slow)  # more trickle does not reset the head deadline
    t.sweep()
    assert idle.closed and slow.closed and fresh.closed and not busy.closed
    assert sorted(c.value for c in closes) == ["head_timeout", "idle", "idle"]


def test_a_finished_request_restarts_the_idle_clock() -> None:
    t, _, _, clock = tracker(idle_timeout=15)
    (a,) = open_conns(t, "a")
    clock.now += 14
    t.data(a)
    t.request_started(a)
    t.request_ended(a)
    clock.now += 14
    t.sweep()
    assert not a.closed
    clock.now += 2
    t.sweep()
    assert a.closed


def test_parser_errors_map_to_statuses_and_limits() -> None:
    lim = Limits(max_line_size=4096, max_field_size=8190)
    assert classify_parse_error(LineTooLong(b"GET /aaa", 4096), lim) == (414, "request_line", Limit.REQUEST_LINE)
    assert classify_parse_error(LineTooLong(b"X-Big", 8190), lim) == (431, "header_size", Limit.HEADER_SIZE)
    assert classify_parse_error(BadHttpMessage("Too many headers received"), lim) == (
        431, "header_count", Limit.HEADER_COUNT)
    assert classify_parse_error(BadHttpMessage("Invalid method"), lim) == (400, "bad_request", None)


def test_paths_are_percent_decoded_exactly_once() -> None:
    assert decode_path("/Cisco/SEP%30%30562b043615.cfg") == "/Cisco/SEP00562b043615.cfg"
    assert decode_path("/%252e%252e/x") == "/%2e%2e/x"
    assert decode_path("/a%2Fb") == "/a/b"
    assert decode_path("/a%00b") == "/a\x00b"  # the jail refuses it as a bad name
    assert decode_path("/caf%C3%A9") == "/café"
    assert decode_path("/%ff") is None  # not UTF-8
