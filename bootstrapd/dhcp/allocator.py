"""Address proposals for one subnet (sans-I/O): the allocator proposes, the engine decides and writes.

Order of proposals for a client (RFC 2131 4.3.1 lists the same preferences):
1. the client's own record's address (its current or previous binding), while it is in a pool;
2. the address it requested (option 50), if in a pool and free, or already the client's;
3. addresses that have no record at all, in pool order;
4. records that no longer hold their address (expired, released, offers not taken up, declined past
   probation), the longest-free first, so that a recently gone client is the last to lose its address.

Cost per allocation stays O(1) amortised however many records exist: step 3 starts from a cursor that
only moves forward over addresses that have a record (records are never removed on the packet path,
only turned EXPIRED), and step 4 reads the store's free_at index.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from ipaddress import IPv4Address, IPv4Network

from bootstrapd.config.model import Dhcp
from bootstrapd.config.types import AddressRange
from bootstrapd.dhcp.codec import address_int
from bootstrapd.dhcp.leases import Lease, LeaseState, LeaseView
from bootstrapd.dhcp.shard import WHOLE, Shard

_FIRST_PAGE = 16  # records asked of expired_oldest_first at first; grows x4 while all are unusable


class Allocator:
    """Proposes candidate addresses in one subnet's pools; never writes the store."""

    def __init__(
        self,
        subnet: str,
        pools: Sequence[AddressRange],
        reserved: Collection[IPv4Address],
        server: IPv4Address | None,
        store: LeaseView,
        shard: Shard = WHOLE,
    ) -> None:
        network = IPv4Network(subnet)
        excluded = {int(a) for a in reserved}
        if server is not None:
            excluded.add(int(server))
        if network.prefixlen < 31:  # the network and broadcast addresses are never a host's
            excluded.update((int(network.network_address), int(network.broadcast_address)))
        self.subnet = subnet
        self._ranges = tuple((int(p.first), int(p.last)) for p in pools)
        self._excluded = frozenset(excluded)
        self._store = store
        # shard.py: with several DHCP workers each offers only its own part of every pool.
        self._shard = None if shard.whole else shard
        self.size = sum(shard.addresses_in(first, last) for first, last in self._ranges) - sum(
            1 for a in self._excluded
            if shard.owns_address(a) and any(first <= a <= last for first, last in self._ranges)
        )
        # Cursor of step 3: every pool address before (pool, next) is excluded or has a record.
        self._pool = 0
        self._next = self._ranges[0][0] if self._ranges else 0
        self._advance()  # the startup scan is paid here, not by the first DISCOVER

    def usable(self, address: IPv4Address) -> bool:
        """In one of the pools and neither reserved, the server's, nor the network or broadcast address."""
        a = address_int(address)
        if a in self._excluded or (self._shard is not None and not self._shard.owns_address(a)):
            return False
        for first, last in self._ranges:  # noqa: SIM110 (a loop, not any(<generator>): twice per DISCOVER)
            if first <= a <= last:
                return True
        return False

    def available(self, address: IPv4Address, client_id: bytes, now: float) -> bool:
        """`address` could be given to `client_id` at `now`: usable and free, or the client's already
        (unless the client declined it and its probation is not over)."""
        if not self.usable(address):
            return False
        lease = self._store.get_by_address(address)
        return (
            lease is None
            or lease.is_free(now)
            or (lease.client_id == client_id and lease.state is not LeaseState.DECLINED)
        )

    def pick(self, client_id: bytes, requested: IPv4Address | None, now: float) -> IPv4Address | None:
        """The first of propose()'s candidates that is available(): the address to offer, or None. The two
        common cases (the client's own address; a new client's next unrecorded one) skip the generators;
        tests/unit/test_dhcp_fast.py checks that the answer is propose()'s in every case."""
        return self.pick_given(self._store.get_by_client(client_id), client_id, requested, now)

    def pick_given(self, own: Lease | None, client_id: bytes, requested: IPv4Address | None,
                   now: float) -> IPv4Address | None:  # fmt: skip
        """pick(), with the client's record (store.get_by_client) read by the caller already."""
        if own is not None and own.subnet == self.subnet and self.usable(own.address):
            if self.available(own.address, client_id, now):
                return own.address
        elif requested is None:
            self._advance()  # _unrecorded()'s first candidate, which is always available
            if self._pool < len(self._ranges):
                return IPv4Address(self._next)
        for candidate in self.propose(client_id, requested, now):
            if self.available(candidate, client_id, now):
                return candidate
        return None

    def propose(self, client_id: bytes, requested: IPv4Address | None, now: float) -> Iterator[IPv4Address]:
        """Candidates for the client, best first, each once. Lazy: take the first the engine accepts."""
        seen: set[int] = set()
        own = self._store.get_by_client(client_id)
        if own is not None and own.subnet == self.subnet and self.usable(own.address):
            seen.add(int(own.address))
            yield own.address
        if requested is not None and int(requested) not in seen and self.available(requested, client_id, now):
            seen.add(int(requested))
            yield requested
        for a in self._unrecorded():
            if a not in seen:
                seen.add(a)
                yield IPv4Address(a)
        for lease in self._reusable(now):
            a = int(lease.address)
            if a not in seen and self.usable(lease.address):
                seen.add(a)
                yield lease.address

    def _advance(self) -> None:
        """Move the cursor over addresses that are excluded or have a record; they never come back."""
        while self._pool < len(self._ranges):
            last = self._ranges[self._pool][1]
            while self._next <= last:
                if self._is_unrecorded(self._next):
                    return
                self._next += 1
            self._pool += 1
            if self._pool < len(self._ranges):
                self._next = self._ranges[self._pool][0]

    def _is_unrecorded(self, a: int) -> bool:
        if self._shard is not None and not self._shard.owns_address(a):
            return False
        return a not in self._excluded and self._store.get_by_address(IPv4Address(a)) is None

    def _unrecorded(self) -> Iterator[int]:
        """Step 3: addresses with no record, in pool order, from the cursor on."""
        self._advance()
        pool, here = self._pool, self._next  # the cursor may move while this generator is suspended
        if pool == len(self._ranges):
            return
        yield here  # _advance just checked it
        start = here + 1
        for first, last in self._ranges[pool:]:
            for a in range(max(first, start), last + 1):
                if self._is_unrecorded(a):
                    yield a
            start = 0

    def _reusable(self, now: float) -> Iterator[Lease]:
        """Step 4: records free at `now`, longest-free first, asked of the store in growing pages."""
        limit = _FIRST_PAGE
        given: set[int] = set()
        while True:
            page = self._store.expired_oldest_first(self.subnet, now, limit)
            for lease in page:
                if int(lease.address) not in given:
                    given.add(int(lease.address))
                    yield lease
            if len(page) < limit:
                return
            limit *= 4


def build_allocators(dhcp: Dhcp, server: IPv4Address, store: LeaseView,
                     shard: Shard = WHOLE) -> dict[str, Allocator]:
    """One allocator per configured subnet, keyed by `str(subnet.prefix)` (the Lease.subnet value).
    Reserved addresses are never proposed: the engine gives them to their device directly."""
    reserved = frozenset(r.address for r in dhcp.reservations)
    return {str(s.prefix): Allocator(str(s.prefix), s.pools, reserved, server, store, shard) for s in dhcp.subnets}
