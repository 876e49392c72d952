"""Which TCP connection gives way when the DNS server's slots are full (times are parameters)."""

from __future__ import annotations

from bootstrapd.transport.dns_tcp import Slot, TcpSlots


class Conns:
    def __init__(self, slots: TcpSlots) -> None:
        self.slots = slots
        self.closed: list[str] = []

    def open(self, name: str, source: str, now: float) -> tuple[Slot | None, Slot | None]:
        return self.slots.admit(source, lambda: self.closed.append(name), now)


def test_full_slots_close_the_longest_idle_not_the_newcomer() -> None:
    c = Conns(TcpSlots(total=3, per_source=3))
    a, _ = c.open("a", "198.18.0.201", 0.0)
    b, _ = c.open("b", "198.18.0.201", 1.0)
    c.open("c", "198.18.0.202", 2.0)
    assert a is not None and b is not None
    c.slots.touch(a, 3.0)  # a delivered a query: b is now the longest idle
    d, evicted = c.open("d", "198.18.0.203", 4.0)
    assert d is not None and evicted is b and c.closed == ["b"] and len(c.slots) == 3


def test_per_source_cap_evicts_only_within_the_source() -> None:
    c = Conns(TcpSlots(total=10, per_source=2))
    c.open("other", "198.18.0.200", 0.0)
    c.open("x1", "198.18.0.201", 1.0)
    c.open("x2", "198.18.0.201", 2.0)
    _, evicted = c.open("x3", "198.18.0.201", 3.0)
    assert evicted is not None and c.closed == ["x1"] and len(c.slots) == 3


def test_release_is_idempotent_and_frees_the_slot() -> None:
    c = Conns(TcpSlots(total=1, per_source=1))
    a, _ = c.open("a", "198.18.0.201", 0.0)
    assert a is not None
    c.slots.release(a)
    c.slots.release(a)
    _, evicted = c.open("b", "198.18.0.201", 1.0)
    assert evicted is None and len(c.slots) == 1


def test_zero_caps_refuse() -> None:
    slot, evicted = TcpSlots(total=0, per_source=4).admit("198.18.0.201", lambda: None, 0.0)
    assert slot is None and evicted is None
