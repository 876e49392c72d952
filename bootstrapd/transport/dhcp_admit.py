"""Admission control for the DHCP shell: how much work may wait for the worker, and which work.

Past its capacity a server that queues deeply answers late everyone it answers: at 2x capacity a queue of
seconds forms, and its replies reach phones that have already retransmitted (RFC 2131 4.1: about 4 s)
or given up. So the work waiting is bounded by time, not by a packet count:

- The queue admits at most what the worker serves in ADMISSION_S, at its measured cost per packet (a
  moving average of the CPU time over the packets of each WINDOW_PACKETS served, the commit and the
  delivery of replies parked for the disk included; CPU, not wall time: a
  loop descheduled for a moment on a busy box is no slower per packet, and shedding for it would turn a
  hiccup into 4 s retransmissions for a floor powered on at once), within
  [MIN_ADMITTED, MAX_ADMITTED] packets. What is answered has waited at most about that long (or one
  burst, on a machine so slow that MIN_ADMITTED packets take longer).
- DISCOVERs wait in their own queue and the worker takes them last: any other message (mostly a
  REQUEST) finishes an exchange already begun, a DISCOVER only starts one.
- When the queue is full, a DISCOVER gives way first: an arriving DISCOVER displaces the oldest one
  (drop-head: the one closest to its client's retransmission), an arriving REQUEST displaces the oldest
  DISCOVER too, and a REQUEST is refused only when no DISCOVER waits. The shell counts what is shed as
  drop reason `overload`, before parsing it: shedding costs a read and a counter, so capacity goes to
  the exchanges that are served.
- A standing queue is shed too (after CoDel, RFC 8289: a good queue drains, a bad one stays): when the
  oldest DISCOVER has waited more than TARGET_S at every take for INTERVAL_S, DISCOVERs older than
  TARGET_S are shed from the head at each take (keeping one burst), until a take finds the head younger.
  A floor powered on at once is a burst, served within tens of milliseconds and never shed; an offered
  rate above capacity is answered at capacity with TARGET_S of queueing instead of the whole bound.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from bootstrapd.dhcp.codec import MessageType

T = TypeVar("T")

ADMISSION_S = 0.02  # tens of ms: far below a phone's retransmission timeout, well above one burst
# Whatever the estimate says, a whole burst may wait: a floor's phones powered on together (hundreds of
# DISCOVERs within milliseconds) are served in one or two bursts, not shed and left to retransmit after 4 s.
MIN_ADMITTED = 256
MAX_ADMITTED = 4096
INITIAL_COST_S = 250e-6  # per packet before the first burst is measured (a slow machine's DORA half)
SMOOTHING = 0.25  # weight of the latest window in the cost estimate
# Packets per cost sample. A parked burst's replies are delivered (and their CPU charged) after the burst:
# charged to the next one, often a single packet at moderate load, one sample read 353 us per packet and
# the bound fell for no reason. Over a window of bursts the charge meets the packets it belongs to.
WINDOW_PACKETS = 64
DISCOVER_FIRST = b"\x35\x01\x01"  # option 53 = DISCOVER as the first option, where clients put it
TARGET_S = 0.005  # the queueing a DISCOVER may see while the queue stands (CoDel's target)
INTERVAL_S = 0.1  # how long the queue must stand above TARGET_S before its head is shed (CoDel's interval)


class AdmissionQueue(Generic[T]):
    """Two FIFO queues (DISCOVERs and the rest) under one time bound; used from the event loop only."""

    def __init__(self, bound_s: float = ADMISSION_S, arrival: Callable[[T], float] | None = None) -> None:
        """`arrival`: an item's enqueue time (the clock take()'s `now` reads); without it no standing queue
        is recognised."""
        self.bound_s = bound_s
        self._arrival = arrival
        self._standing_since: float | None = None  # since when the oldest DISCOVER waited > TARGET_S
        self.first: deque[T] = deque()  # everything but DISCOVERs, served first
        self.discovers: deque[T] = deque()
        self.cost_s = INITIAL_COST_S
        self.limit = self._limit()
        self._window = (0, 0.0)  # packets served and CPU seconds spent since the last sample

    def __len__(self) -> int:
        return len(self.first) + len(self.discovers)

    def admit(self, item: T, discover: bool) -> T | None:
        """Queue `item`; return what is shed instead (the item or the DISCOVER it displaced), or None."""
        first, discovers = self.first, self.discovers
        if len(first) + len(discovers) < self.limit:
            (discovers if discover else first).append(item)
            return None
        if not discovers:
            return item  # only non-DISCOVERs wait: refuse the newcomer, a DISCOVER or not
        (discovers if discover else first).append(item)
        return discovers.popleft()

    def take(self, n: int, now: float = 0.0, shed: Callable[[T], None] | None = None) -> list[T]:
        """Up to `n` items: the non-DISCOVERs first, then DISCOVERs, each in arrival order. DISCOVERs of a
        standing queue (module docstring) go to `shed` instead."""
        first, discovers = self.first, self.discovers
        burst: list[T] = []
        while first and len(burst) < n:
            burst.append(first.popleft())
        if discovers and len(burst) < n and self._arrival is not None and shed is not None:
            self._shed_standing(now, n - len(burst), shed)
        while discovers and len(burst) < n:
            burst.append(discovers.popleft())
        return burst

    def _shed_standing(self, now: float, keep: int, shed: Callable[[T], None]) -> None:
        """Shed the standing queue's head, but never below `keep` (this take's room): on a machine slower
        than TARGET_S per burst the worker still gets full bursts, so it keeps serving at its capacity."""
        arrival, discovers = self._arrival, self.discovers
        assert arrival is not None
        oldest = now - TARGET_S
        if arrival(discovers[0]) >= oldest:
            self._standing_since = None
            return
        if self._standing_since is None:
            self._standing_since = now
        if now - self._standing_since < INTERVAL_S:
            return
        while len(discovers) > keep and arrival(discovers[0]) < oldest:
            shed(discovers.popleft())

    def served(self, packets: int, seconds: float) -> None:
        """A burst of `packets` took `seconds` of the worker; a window's worth updates the cost estimate and
        the bound."""
        if packets < 0 or seconds < 0:
            return
        n, spent = self._window
        n, spent = n + packets, spent + seconds
        if n < WINDOW_PACKETS:
            self._window = (n, spent)
            return
        self._window = (0, 0.0)
        self.cost_s += SMOOTHING * (spent / n - self.cost_s)
        self.limit = self._limit()

    def charge(self, seconds: float) -> None:
        """CPU spent for packets already counted by served() (delivering their parked replies)."""
        if seconds > 0:
            n, spent = self._window
            self._window = (n, spent + seconds)

    def _limit(self) -> int:
        return max(MIN_ADMITTED, min(MAX_ADMITTED, int(self.bound_s / max(self.cost_s, 1e-6))))


def prioritised(burst: list[Any], stale_before: float,
                on_stale: Callable[[str], None]) -> tuple[list[Any], list[Any]]:
    """The burst as (everything but DISCOVERs, DISCOVERs), each in arrival order: a REQUEST completes an
    exchange, a DISCOVER only starts one, so the shell serves and commits the first part before it starts
    the second. DISCOVERs queued before `stale_before` are dropped. Recognises the usual layout only
    (option 53 first); any other packet goes with the first part, which is merely less fair."""
    if len(burst) == 1:  # most bursts below capacity: nothing to reorder
        item = burst[0]
        if item[4] < stale_before and item[0][240:243] == DISCOVER_FIRST:
            on_stale(item[1])
            return [], []
        return burst, []
    first: list[Any] = []
    last: list[Any] = []
    for item in burst:
        if item[0][240:243] == DISCOVER_FIRST:
            if item[4] < stale_before:
                on_stale(item[1])
            else:
                last.append(item)
        else:
            first.append(item)
    return first, last


def peek_type(data: bytes) -> str:
    """The message type's label from the usual layout (option 53 first), without parsing."""
    if data[240:242] == b"\x35\x01":
        with contextlib.suppress(ValueError):
            return MessageType(data[242]).name.lower()
    return "none"
