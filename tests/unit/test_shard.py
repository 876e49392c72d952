"""dhcp/shard.py: the RFC 3074 bucket of a raw datagram, and disjoint parts of every pool per worker."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

import pytest

from bootstrapd.config.types import parse_range
from bootstrapd.dhcp.allocator import Allocator
from bootstrapd.dhcp.codec import BROADCAST_FLAG, Message, MessageType, Op, build
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.shard import _MIX, Shard, bucket, client_key
from bootstrapd.dhcp.store_memory import MemoryLeaseStore

NOW = 1_700_000_000.0
NET = "198.18.0.0/23"
POOL = (parse_range("198.18.0.100-198.18.1.250"),)
RESERVED = (IPv4Address("198.18.0.150"), IPv4Address("198.18.0.151"))
SERVER = IPv4Address("198.18.0.1")


def datagram(chaddr: bytes, client_id: bytes | None = None) -> bytes:
    options: list[tuple[int, bytes]] = [(53, bytes((MessageType.DISCOVER,)))]
    if client_id is not None:
        options.append((61, client_id))
    msg = Message(op=Op.BOOTREQUEST, htype=1, hlen=len(chaddr), hops=0, xid=7, secs=0, flags=BROADCAST_FLAG,
                  ciaddr=IPv4Address(0), yiaddr=IPv4Address(0), siaddr=IPv4Address(0), giaddr=IPv4Address(0),
                  chaddr=chaddr, sname=b"", file=b"", options=tuple(options))
    return build(msg)


def test_mixing_table_is_a_permutation() -> None:
    assert sorted(_MIX) == list(range(256))


def test_hash_starts_from_the_length_and_runs_from_the_last_octet() -> None:
    assert bucket(b"") == 0
    assert bucket(b"\x01") == _MIX[1 ^ 1] == 251
    assert bucket(b"\x01\x02") == _MIX[_MIX[2 ^ 2] ^ 1] == _MIX[251 ^ 1]
    assert bucket(b"\x02\x01") != bucket(b"\x01\x02")


def test_key_is_option_61_else_chaddr_of_hlen_octets() -> None:
    mac = bytes.fromhex("00562b043615")
    assert client_key(datagram(mac)) == mac
    assert client_key(datagram(mac, b"\x01" + mac)) == b"\x01" + mac
    assert client_key(datagram(mac)[:239]) is None
    padded = bytearray(datagram(mac))
    padded[240:240] = b"\x00\x00"  # pads before the first option
    assert client_key(bytes(padded)) == mac


def test_truncated_option_falls_back_to_chaddr() -> None:
    mac = bytes.fromhex("00562b043615")
    raw = datagram(mac)[:240] + bytes((61, 40, 1, 2))  # option 61 claims more octets than follow
    assert client_key(raw) == mac


def test_two_workers_share_the_clients_about_evenly() -> None:
    rng = random.Random(3074)
    two = Shard(0, 2)
    owners = [two.owner(datagram(rng.randbytes(6))) for _ in range(4000)]
    assert 1800 < owners.count(0) < 2200
    assert Shard(1, 2).owner(b"short") == 0  # not a DHCP message: worker 0 counts it


@pytest.mark.parametrize("count", [1, 2, 3, 4])
def test_addresses_in_counts_the_part(count: int) -> None:
    for first, last in ((0, 0), (5, 4), (100, 357), (7, 8), (1, 1000)):
        for k in range(count):
            shard = Shard(k, count)
            assert shard.addresses_in(first, last) == sum(shard.owns_address(a) for a in range(first, last + 1))


def allocate_all(shard: Shard) -> list[IPv4Address]:
    """Every address the worker's allocator gives out, writing each as bound, until it has none."""
    store = MemoryLeaseStore()
    alloc = Allocator(NET, POOL, RESERVED, SERVER, store, shard)
    out: list[IPv4Address] = []
    for n in range(1000):
        client = b"\x01" + n.to_bytes(6, "big")
        address = next((a for a in alloc.propose(client, None, NOW) if alloc.available(a, client, NOW)), None)
        if address is None:
            break
        out.append(address)
        store.put(Lease(address=address, client_id=client, chaddr=client[1:], state=LeaseState.BOUND, subnet=NET,
                        expires=NOW + 3600, first_seen=NOW, updated=NOW))
    assert len(out) == alloc.size
    return out


@pytest.mark.parametrize("count", [2, 3])
def test_workers_allocate_disjoint_parts_that_cover_the_pool(count: int) -> None:
    whole = set(allocate_all(Shard()))
    parts = [allocate_all(Shard(k, count)) for k in range(count)]
    assert sum(len(p) for p in parts) == len(whole) == 407 - 2
    assert set().union(*parts) == whole
    for k, part in enumerate(parts):
        assert all(int(a) % count == k for a in part)


def test_a_worker_does_not_renew_an_address_of_another_part() -> None:
    store = MemoryLeaseStore()
    alloc = Allocator(NET, POOL, RESERVED, SERVER, store, Shard(0, 2))
    odd = IPv4Address("198.18.0.101")
    assert not alloc.usable(odd) and not alloc.available(odd, b"\x01abcdef", NOW)
    assert alloc.usable(IPv4Address("198.18.0.100"))
