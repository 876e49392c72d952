"""The allocator's proposals: order, what counts as free, and cost that does not grow with the lease count."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest

from bootstrapd.config.model import Dhcp, Reservation, Subnet
from bootstrapd.config.types import AddressRange, parse_range
from bootstrapd.dhcp.allocator import Allocator, build_allocators
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.store_memory import MemoryLeaseStore

NOW = 1_700_000_000.0
NET = "198.18.0.0/24"
SERVER = IPv4Address("198.18.0.1")
HOLD = 30.0


def ip(last: int) -> IPv4Address:
    return IPv4Address(f"198.18.0.{last}")


def cid(n: int) -> bytes:
    return b"\x01" + n.to_bytes(6, "big")


def record(last: int, client: int, state: LeaseState, expires: float, updated: float = NOW) -> Lease:
    return Lease(
        address=ip(last),
        client_id=cid(client),
        chaddr=cid(client)[1:],
        state=state,
        subnet=NET,
        expires=expires,
        first_seen=updated,
        updated=updated,
    )


def allocator(store: MemoryLeaseStore, *pools: str, reserved: tuple[int, ...] = ()) -> Allocator:
    return Allocator(NET, [parse_range(p) for p in pools], {ip(r) for r in reserved}, SERVER, store)


def first(alloc: Allocator, client: int, now: float = NOW, requested: IPv4Address | None = None) -> IPv4Address:
    return next(alloc.propose(cid(client), requested, now))


def offer(store: MemoryLeaseStore, alloc: Allocator, client: int, now: float = NOW) -> IPv4Address:
    """What the engine does on DISCOVER: take the first proposal and hold it."""
    address = first(alloc, client, now)
    store.put(record(int(address) & 0xFF, client, LeaseState.OFFERED, now + HOLD, now))
    return address


@pytest.fixture
def store() -> MemoryLeaseStore:
    return MemoryLeaseStore()


def test_a_fresh_pool_is_handed_out_in_order_skipping_reserved_and_server(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.0-198.18.0.5", "198.18.0.250-198.18.0.255", reserved=(3,))
    got = [offer(store, alloc, n) for n in range(1, 9)]
    # .0 network, .1 server, .3 reserved, .255 broadcast are never proposed.
    assert got == [ip(2), ip(4), ip(5), ip(250), ip(251), ip(252), ip(253), ip(254)]
    assert alloc.size == 8
    assert list(alloc.propose(cid(99), None, NOW)) == []  # exhausted: the engine drops pool_exhausted


def test_a_returning_client_gets_its_previous_address_back(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.20")
    offer(store, alloc, 1)
    mine = offer(store, alloc, 2)
    store.put(record(11, 2, LeaseState.BOUND, NOW + 3600))
    later = NOW + 7200  # its lease ran out meanwhile
    offer(store, alloc, 3, later)
    assert first(alloc, 2, later) == mine


def test_a_requested_address_is_given_when_free(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.20")
    assert first(alloc, 1, requested=ip(15)) == ip(15)
    store.put(record(15, 1, LeaseState.BOUND, NOW + 3600))
    assert first(alloc, 2, requested=ip(15)) == ip(10)  # held by client 1
    assert first(alloc, 2, requested=ip(30)) == ip(10)  # outside the pools
    assert first(alloc, 2, requested=ip(1)) == ip(10)  # the server's own
    assert first(alloc, 1, requested=ip(15)) == ip(15)  # its own


def test_held_addresses_are_reused_only_when_free_longest_free_first(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.14")
    store.put(record(10, 1, LeaseState.BOUND, NOW + 3600))
    store.put(record(11, 2, LeaseState.BOUND, NOW - 100))  # lease ran out
    store.put(record(12, 3, LeaseState.OFFERED, NOW - 1))  # offer hold ended
    store.put(record(13, 4, LeaseState.RELEASED, NOW + 3600, updated=NOW - 500))
    store.put(record(14, 5, LeaseState.DECLINED, NOW + 10))  # on probation
    assert list(alloc.propose(cid(9), None, NOW)) == [ip(13), ip(11), ip(12)]
    assert list(alloc.propose(cid(9), None, NOW + 10)) == [ip(13), ip(11), ip(12), ip(14)]


def test_addresses_never_recorded_come_before_reusing_records(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.12")
    store.put(record(10, 1, LeaseState.BOUND, NOW - 100))
    assert list(alloc.propose(cid(9), None, NOW)) == [ip(11), ip(12), ip(10)]


def test_a_client_is_not_offered_the_address_it_declined(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.12")
    declined = offer(store, alloc, 1)
    store.put(record(10, 1, LeaseState.DECLINED, NOW + 3600, NOW + 1))
    assert declined not in alloc.propose(cid(1), declined, NOW + 2)
    assert not alloc.available(declined, cid(1), NOW + 2)
    assert alloc.available(declined, cid(1), NOW + 3600)


def test_two_clients_discovering_together_get_different_addresses(store: MemoryLeaseStore) -> None:
    alloc = allocator(store, "198.18.0.10-198.18.0.11")
    assert offer(store, alloc, 1) != offer(store, alloc, 2)
    assert list(alloc.propose(cid(3), None, NOW + HOLD - 1)) == []  # both still held
    assert first(alloc, 3, NOW + HOLD) == ip(10)


class CountingStore(MemoryLeaseStore):
    """A real store that counts address look-ups, to bound the allocator's work without timing it."""

    lookups = 0

    def get_by_address(self, address: IPv4Address) -> Lease | None:
        self.lookups += 1
        return super().get_by_address(address)


def test_allocation_cost_does_not_grow_with_the_number_of_leases() -> None:
    store = CountingStore()
    size = 4000
    pool = AddressRange(IPv4Address("198.18.0.2"), IPv4Address(int(IPv4Address("198.18.0.2")) + size - 1))
    network = "198.18.0.0/20"
    alloc = Allocator(network, [pool], set(), SERVER, store)
    for n in range(size):
        address = next(alloc.propose(cid(n), None, NOW))
        store.put(
            Lease(address=address, client_id=cid(n), chaddr=b"", state=LeaseState.BOUND, subnet=network,
                  expires=NOW + 60, first_seen=NOW, updated=NOW)
        )  # fmt: skip
    assert len(store) == size
    assert store.lookups < 3 * size  # a rescan per allocation would be ~size**2 / 2
    # Once everything is leased, an exhausted pool costs no scan either.
    store.lookups = 0
    assert list(alloc.propose(cid(size), None, NOW)) == []
    assert store.lookups < 10


def test_build_allocators_gives_one_per_subnet_without_reserved_addresses(store: MemoryLeaseStore) -> None:
    dhcp = Dhcp(
        subnets=(
            Subnet(prefix=IPv4Network(NET), pools=(parse_range("198.18.0.10-198.18.0.11"),)),
            Subnet(prefix=IPv4Network("198.18.1.0/24"), pools=(parse_range("198.18.1.10-198.18.1.20"),)),
        ),
        reservations=(Reservation(mac="00:56:2b:00:00:01", address=ip(10)),),
    )
    allocators = build_allocators(dhcp, SERVER, store)
    assert list(allocators) == [NET, "198.18.1.0/24"]
    assert list(allocators[NET].propose(cid(1), ip(10), NOW)) == [ip(11)]
    assert first(allocators["198.18.1.0/24"], 1) == IPv4Address("198.18.1.10")
