"""In-memory lease records: the index every store reads from, and the non-durable MemoryLeaseStore.

The SQLite store keeps one LeaseIndex as a mirror of its table so that reads on the packet path are dict
lookups; both stores therefore share the rules of LeaseStore (one record per address, one live record per
client, no handing out of a held address), and the contract suite checks them once per backend.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import IPv4Address

from bootstrapd.dhcp.codec import address_int
from bootstrapd.dhcp.leases import ANONYMOUS, NO_LOST, Lease, LeaseConflict, LeaseState, effective_state

# Rebuild a subnet's expiry heap when stale entries outnumber live records by this factor (amortised O(1)).
_HEAP_SLACK = 2
_HEAP_MIN = 64


_DECLINED = LeaseState.DECLINED
_EXPIRED = LeaseState.EXPIRED
# States whose records stop holding their address at `expires` (counts() then reports them EXPIRED).
_HOLDING = (LeaseState.OFFERED, LeaseState.BOUND, LeaseState.DECLINED)


def _indexed(lease: Lease) -> bool:
    """Records found by get_by_client: the client's one live record (DECLINED ones are quarantine)."""
    return lease.state is not _DECLINED and lease.client_id != ANONYMOUS


class LeaseIndex:
    """Records by address, the client index, and per subnet a heap ordered by free_at.

    Heap entries are (free_at, address) and go stale when a record changes; stale entries are skipped
    when met and dropped by a periodic rebuild, so put() stays O(log n).

    counts() is kept up as records change, not counted over all records: it runs on the event loop every
    few seconds for the gauges, and at 20,000 leases a count over all of them held the loop for 10 ms.
    Per subnet: records per stored state, and the holding records (OFFERED, BOUND, DECLINED) that have
    lapsed (past `expires`: counted as EXPIRED), found through a second heap ordered by `expires`.
    """

    def __init__(self) -> None:
        self._leases: dict[int, Lease] = {}
        self._clients: dict[bytes, int] = {}
        self._heaps: dict[str, list[tuple[float, int]]] = {}
        self._sizes: dict[str, int] = {}
        self._stored: dict[str, dict[LeaseState, int]] = {}  # records per subnet and stored state
        self._expiries: dict[str, list[tuple[float, int]]] = {}  # holding records' (expires, address)
        self._lapsed: dict[int, LeaseState] = {}  # holding records past `expires`: their stored state
        self._lapsed_counts: dict[str, dict[LeaseState, int]] = {}
        self._counted_at: dict[str, float] = {}  # each subnet's latest counts() `now`

    def __len__(self) -> int:
        return len(self._leases)

    def get_by_address(self, address: IPv4Address) -> Lease | None:
        return self._leases.get(address_int(address))

    def get_by_client(self, client_id: bytes) -> Lease | None:
        key = self._clients.get(client_id)
        return None if key is None else self._leases[key]

    def plan_put(self, lease: Lease, force: bool) -> list[Lease]:
        """The records to write, in order, for put(lease); raises LeaseConflict. Changes nothing."""
        key = address_int(lease.address)
        old = self._leases.get(key)
        if not force and old is not None and old.client_id != lease.client_id and not old.is_free(lease.updated):
            raise LeaseConflict(f"{lease.address} is still held by another client until {old.expires}")
        writes = [lease]
        if lease.state is not _DECLINED and lease.client_id != ANONYMOUS:  # _indexed(lease)
            prev_key = self._clients.get(lease.client_id)
            if prev_key is not None and prev_key != key:
                prev = self._leases[prev_key]
                # The client moved: its old address is kept, free, owned by no one.
                writes.insert(
                    0,
                    replace(
                        prev,
                        client_id=ANONYMOUS,
                        state=LeaseState.EXPIRED,
                        expires=min(prev.expires, lease.updated),
                    ),
                )
        return writes

    def apply(self, lease: Lease) -> None:
        """Store one record as planned by plan_put (no checks)."""
        key = address_int(lease.address)
        if key in self._leases:
            self._unlink(key)
        self._leases[key] = lease
        if lease.state is not _DECLINED and lease.client_id != ANONYMOUS:  # _indexed(lease)
            self._clients[lease.client_id] = key
        subnet = lease.subnet
        size = self._sizes[subnet] = self._sizes.get(subnet, 0) + 1
        heap = self._heaps.get(subnet)
        if heap is None:
            heap = self._heaps[subnet] = []
            self._stored[subnet] = dict.fromkeys(LeaseState, 0)
            self._lapsed_counts[subnet] = dict.fromkeys(LeaseState, 0)
            self._expiries[subnet] = []
        heapq.heappush(heap, (lease.free_at, key))
        if len(heap) > _HEAP_MIN + _HEAP_SLACK * size:
            self._rebuild_heap(subnet)
        state = lease.state
        self._stored[subnet][state] += 1
        if state in _HOLDING:
            expiries = self._expiries[subnet]
            heapq.heappush(expiries, (lease.expires, key))
            if len(expiries) > _HEAP_MIN + _HEAP_SLACK * size:
                self._rebuild_expiries(subnet)

    def remove(self, address: IPv4Address) -> None:
        self._unlink(int(address))

    def _unlink(self, key: int) -> None:
        old = self._leases.pop(key, None)
        if old is None:
            return
        if _indexed(old) and self._clients.get(old.client_id) == key:
            del self._clients[old.client_id]
        subnet, state = old.subnet, old.state
        self._sizes[subnet] -= 1
        self._stored[subnet][state] -= 1
        if state in _HOLDING and self._lapsed.pop(key, None) is not None:
            self._lapsed_counts[subnet][state] -= 1

    def _rebuild_heap(self, subnet: str) -> None:
        heap = [(lease.free_at, key) for key, lease in self._leases.items() if lease.subnet == subnet]
        heapq.heapify(heap)
        self._heaps[subnet] = heap

    def _rebuild_expiries(self, subnet: str) -> None:
        heap = [(lease.expires, key) for key, lease in self._leases.items()
                if lease.subnet == subnet and lease.state in _HOLDING and key not in self._lapsed]
        heapq.heapify(heap)
        self._expiries[subnet] = heap

    def iter_all(self) -> Iterator[Lease]:
        return iter([self._leases[k] for k in sorted(self._leases)])

    def iter_subnet(self, subnet: str) -> Iterator[Lease]:
        return iter([lease for lease in self.iter_all() if lease.subnet == subnet])

    def counts(self, subnet: str, now: float) -> dict[LeaseState, int]:
        stored = self._stored.get(subnet)
        if stored is None:
            return dict.fromkeys(LeaseState, 0)
        if now < self._counted_at.get(subnet, now):  # an earlier time than before: count them all
            return self._count_all(subnet, now)
        self._counted_at[subnet] = now
        lapsed, counts = self._lapsed, self._lapsed_counts[subnet]
        expiries = self._expiries[subnet]
        while expiries and expiries[0][0] <= now:
            expires, key = heapq.heappop(expiries)
            lease = self._leases.get(key)
            if lease is None or lease.subnet != subnet or lease.expires != expires or key in lapsed:
                continue  # stale: the record changed since (its new entry is in the heap), or counted
            if lease.state in _HOLDING:
                lapsed[key] = lease.state
                counts[lease.state] += 1
        out = {state: stored[state] - counts[state] for state in LeaseState}
        out[_EXPIRED] += sum(counts.values())
        return out

    def _count_all(self, subnet: str, now: float) -> dict[LeaseState, int]:
        out = dict.fromkeys(LeaseState, 0)
        for lease in self._leases.values():
            if lease.subnet == subnet:
                out[effective_state(lease, now)] += 1
        return out

    def expired_oldest_first(self, subnet: str, now: float, limit: int) -> list[Lease]:
        heap = self._heaps.get(subnet, [])
        found: list[Lease] = []
        kept: list[tuple[float, int]] = []
        seen: set[int] = set()
        while heap and len(found) < limit and heap[0][0] <= now:
            entry = heapq.heappop(heap)
            lease = self._leases.get(entry[1])
            if lease is None or lease.subnet != subnet or lease.free_at != entry[0] or entry[1] in seen:
                continue  # stale, or a duplicate of an entry already taken: dropped for good
            found.append(lease)
            kept.append(entry)
            seen.add(entry[1])
        for entry in kept:
            heapq.heappush(heap, entry)
        return found


class IndexedReads:
    """Every read of a store served from its in-memory LeaseIndex (both stores keep one)."""

    _index: LeaseIndex

    def _use_index(self, index: LeaseIndex) -> None:
        """Serve reads from `index`. The packet path's two reads are bound to it directly: a dozen per DORA,
        and the method below them would be one more Python call each."""
        self._index = index
        self.get_by_address = index.get_by_address  # type: ignore[method-assign]
        self.get_by_client = index.get_by_client  # type: ignore[method-assign]

    def __len__(self) -> int:
        return len(self._index)

    def get_by_address(self, address: IPv4Address) -> Lease | None:
        return self._index.get_by_address(address)

    def get_by_client(self, client_id: bytes) -> Lease | None:
        return self._index.get_by_client(client_id)

    def expired_oldest_first(self, subnet: str, now: float, limit: int) -> list[Lease]:
        return self._index.expired_oldest_first(subnet, now, limit)

    def iter_all(self) -> Iterator[Lease]:
        return self._index.iter_all()

    def iter_subnet(self, subnet: str) -> Iterator[Lease]:
        return self._index.iter_subnet(subnet)

    def counts(self, subnet: str, now: float) -> dict[LeaseState, int]:
        return self._index.counts(subnet, now)


class MemoryLeaseStore(IndexedReads):
    """LeaseStore kept in memory only: for engine unit tests and as the contract suite's reference."""

    durable = False
    shared = False

    def __init__(self) -> None:
        self._use_index(LeaseIndex())

    def put(self, lease: Lease, *, force: bool = False) -> None:
        for record in self._index.plan_put(lease, force):
            self._index.apply(record)

    def delete(self, address: IPv4Address) -> None:
        self._index.remove(address)

    def flush(self) -> frozenset[IPv4Address]:
        """Nothing to make durable, no other writer."""
        return NO_LOST

    def refresh(self) -> None:
        """No other writer."""

    def close(self) -> None:
        """Nothing to release."""
