"""Who holds the DNS server's TCP slots, who gives way, and how long a query may take to arrive.

Idle clients must not hold the service hostage (RFC 7766 section 6.2.3 lets servers limit connections
per client and close idle ones first): a cap in total and per client address, and when a new connection
finds a cap reached, the longest-idle connection (of the same address, when that address is at its own
cap) is closed to make room instead of refusing the newcomer. A connection's idle clock restarts with
every whole query it delivers, so a client pipelining queries keeps its slot. Times are parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from bootstrapd.dns.outcome import DropReason, Outcome, dropped

MAX_QUERY = 8192  # queries are tiny; anything longer closes the connection
_TOO_LONG = dropped(DropReason.TOO_LONG)
_TIMEOUT = dropped(DropReason.TCP_TIMEOUT)


@dataclass(eq=False, slots=True)
class Slot:
    source: str  # the client's address
    close: Callable[[], None]  # aborts the connection (its handler then releases the slot)
    last: float  # when it was accepted or last delivered a whole query


class TcpSlots:
    def __init__(self, total: int, per_source: int) -> None:
        self.total = total
        self.per_source = per_source
        self._slots: set[Slot] = set()
        self._by_source: dict[str, set[Slot]] = {}

    def __len__(self) -> int:
        return len(self._slots)

    def admit(self, source: str, close: Callable[[], None], now: float) -> tuple[Slot | None, Slot | None]:
        """(the new connection's slot, None when it is refused; the slot closed to make room, if any)."""
        if self.total <= 0 or self.per_source <= 0:
            return None, None
        mine = self._by_source.get(source, set())
        victim = None
        if len(mine) >= self.per_source:
            victim = min(mine, key=_idle_since)
        elif len(self._slots) >= self.total:
            victim = min(self._slots, key=_idle_since)
        if victim is not None:
            self.release(victim)
            victim.close()
        slot = Slot(source, close, now)
        self._slots.add(slot)
        self._by_source.setdefault(source, set()).add(slot)
        return slot, victim

    @staticmethod
    def touch(slot: Slot, now: float) -> None:
        slot.last = now

    def release(self, slot: Slot) -> None:
        """Free the slot (again is harmless: an evicted connection's handler releases it too)."""
        self._slots.discard(slot)
        mine = self._by_source.get(slot.source)
        if mine is not None:
            mine.discard(slot)
            if not mine:
                del self._by_source[slot.source]


def _idle_since(slot: Slot) -> float:
    return slot.last


async def read_message(reader: asyncio.StreamReader, first: bool, query_timeout: float,
                       idle_timeout: float) -> bytes | Outcome | None:
    """One length-prefixed message (RFC 1035 section 4.2.2); else the drop to count and close for (None:
    idle, close quietly). The first must arrive whole within `query_timeout` of the accept; a later one's
    length prefix within `idle_timeout`, and the rest within `query_timeout` of that."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout_at(started + (query_timeout if first else idle_timeout)):
            size = int.from_bytes(await reader.readexactly(2), "big")
    except TimeoutError:
        return _TIMEOUT if first else None
    if size > MAX_QUERY:
        return _TOO_LONG
    try:
        async with asyncio.timeout_at((started if first else loop.time()) + query_timeout):
            return await reader.readexactly(size)
    except TimeoutError:
        return _TIMEOUT
