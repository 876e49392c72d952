"""The lease model and the LeaseStore protocol every backend implements (design.md convention 5).

The allocator proposes, the engine decides, the store persists. Stores are synchronous: the engine calls
them from its sans-I/O core. Durability is batched by the shell: `put()` for every packet of a burst, then
one `flush()` (one commit, one fsync) before the replies of that burst are sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from bootstrapd.errors import StoreError


class LeaseState(enum.Enum):
    """What a lease record means for its address. Values are what the database and `leases` CLI show."""

    OFFERED = "offered"  # RFC 2131 4.3.1: held for the client between DHCPOFFER and its DHCPREQUEST
    BOUND = "bound"  # RFC 2131 4.3.2 / 4.4.5: DHCPACK sent; the client may use it until `expires`
    RELEASED = "released"  # RFC 2131 4.3.4 / 4.4.6: DHCPRELEASE; the address is free again
    EXPIRED = "expired"  # RFC 2131 4.4.5: not renewed in time, or abandoned by the server; free again
    DECLINED = "declined"  # RFC 2131 4.3.3: the client found it in use; quarantined until `expires`


# States in which a record stops binding its address as soon as it is written, whatever `expires` says.
_FREE_STATES = frozenset({LeaseState.RELEASED, LeaseState.EXPIRED})

# No client identity: a record kept for its address only (see LeaseStore.put).
ANONYMOUS = b""
# What flush() returns when no write lost a race.
NO_LOST: frozenset[IPv4Address] = frozenset()


class LeaseConflict(StoreError):
    """A put() would give an address to a second client while the first one's record still holds it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Lease:
    """One address and who has (or had) it. Times are epoch seconds passed in by the caller.

    `expires` is when the record stops holding the address: the lease end (BOUND), the offer hold end
    (OFFERED), the end of probation (DECLINED); for RELEASED and EXPIRED the address is free already.
    `updated` is the caller's `now` when the record was written.
    """

    address: IPv4Address
    client_id: bytes  # identity bytes from client_identity(); ANONYMOUS for address-only records
    chaddr: bytes  # hlen bytes of the client hardware address, kept for display and DNS names
    state: LeaseState
    subnet: str  # the subnet prefix as configured, e.g. "198.18.0.0/23"
    expires: float
    first_seen: float
    updated: float
    hostname: str | None = None  # option 12
    vendor_class: str | None = None  # option 60, trailing NUL stripped
    device_class: str | None = None  # name of the matched class, None if no class matched

    @property
    def free_at(self) -> float:
        """When the address becomes free for any client; stores index and order records by this."""
        state = self.state  # identity, not `in _FREE_STATES`: an Enum's hash is a Python call, and this is hot
        if state is LeaseState.RELEASED or state is LeaseState.EXPIRED:
            return min(self.expires, self.updated)
        return self.expires

    def is_free(self, now: float) -> bool:
        """True when any client may be given this address (the record no longer holds it)."""
        return self.free_at <= now


def client_identity(option_61: bytes | None, htype: int, chaddr: bytes) -> bytes:
    """The bytes that identify a client (RFC 2131 4.2): option 61 when present, else htype + chaddr.

    The fallback has the shape RFC 2132 9.14 recommends for option 61 itself (type octet, then the
    hardware address), so a client that sends `01:<mac>` in option 61 on one boot and no option 61 on the
    next (a different DHCP client on the same phone) is still one client and keeps its address.
    """
    if option_61:
        return option_61
    return bytes((htype & 0xFF,)) + chaddr


class LeaseView(Protocol):
    """The read side the allocator needs."""

    def get_by_address(self, address: IPv4Address) -> Lease | None:
        """The record of this address, in any state, or None."""
        ...

    def get_by_client(self, client_id: bytes) -> Lease | None:
        """The client's one record not in state DECLINED, whether or not it still holds its address."""
        ...

    def expired_oldest_first(self, subnet: str, now: float, limit: int) -> list[Lease]:
        """Up to `limit` records of `subnet` that no longer hold their address at `now` (is_free),
        the longest-free first (by free_at, then address)."""
        ...


class LeaseStore(LeaseView, Protocol):
    """A lease backend. One contract suite (tests/unit/test_lease_store_contract.py) runs against each.

    Invariants every backend keeps:
    - at most one record per address (put() is an upsert keyed by address);
    - a client identity has at most one record in a state other than DECLINED: putting a non-DECLINED
      record for a client at a new address turns its previous one into an ANONYMOUS EXPIRED record
      (the address stays known, and is free);
    - put() refuses (LeaseConflict) to replace a record of another client that still holds the address at
      the new record's `updated` time, unless `force=True` (a reservation taking its address back).
    Reads see every put(), flushed or not. Not thread-safe: use from one thread at a time.
    """

    # True when records survive close() and reopen (the contract suite's capability flag).
    durable: bool
    # True when other nodes write the same records: offers are written too, flush() may report lost races.
    shared: bool

    def put(self, lease: Lease, *, force: bool = False) -> None:
        """Insert or replace the record of `lease.address`. Not durable until flush()."""
        ...

    def delete(self, address: IPv4Address) -> None:
        """Forget the record of an address (administrative). The engine puts EXPIRED instead: an
        allocator does not notice deleted records until it is rebuilt."""
        ...

    def iter_all(self) -> Iterator[Lease]:
        """Every record, in address order (a snapshot: writes during iteration are not seen)."""
        ...

    def iter_subnet(self, subnet: str) -> Iterator[Lease]:
        """The records of one subnet, in address order (a snapshot)."""
        ...

    def counts(self, subnet: str, now: float) -> dict[LeaseState, int]:
        """Records of `subnet` per state as of `now`: OFFERED, BOUND and DECLINED records past `expires`
        count as EXPIRED. Every state is a key. O(records): for metrics and the CLI, not per packet."""
        ...

    def flush(self) -> frozenset[IPv4Address]:
        """Make every put() and delete() so far durable (one commit and fsync); no-op if none pending.
        On StoreError the un-flushed writes are discarded and reads show the durable state again.

        Returns the addresses whose write lost a race to another writer (shared stores only; else empty):
        their records now show the winner's, and no reply may promise what this node wrote for them."""
        ...

    def refresh(self) -> None:
        """Read other writers' changes into the reads (shared stores; a no-op for the others). The shell
        calls it when idle. Raises StoreError while the backend is unreachable."""
        ...

    def close(self) -> None:
        """Flush and release the store."""
        ...


def effective_state(lease: Lease, now: float) -> LeaseState:
    """The state `counts()` reports: a record that stopped holding its address counts as EXPIRED."""
    if lease.state in _FREE_STATES:
        return lease.state
    return LeaseState.EXPIRED if lease.expires <= now else lease.state
