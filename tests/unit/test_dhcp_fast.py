"""The DHCP path's shortcuts give what the general code gives (issue 12: cost per exchange).

- reply.lease_reply (fixed options and body encoded once, header and echoed 61/82 per packet) against
  reply.finish(reply.lease_message(...)), the general encoder, over a few hundred varied requests;
- codec.parse's derived fields (computed in one pass) against Message's own properties;
- Allocator.pick against the first available() candidate of propose();
- the shell's per-burst histogram update against one observe() per value.
"""

from __future__ import annotations

import random
from dataclasses import fields
from ipaddress import IPv4Address
from pathlib import Path

from fake_client import EPOCH, RELAY, make_site
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from bootstrapd.dhcp import reply
from bootstrapd.dhcp.codec import Message, MessageType, address_int, build, parse
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.outcome import Destination
from bootstrapd.dhcp.plan import SitePlan
from bootstrapd.dhcp.store_memory import MemoryLeaseStore
from bootstrapd.transport.dhcp import observe_all

ZERO = IPv4Address(0)
SUBNET = "198.18.0.0/24"
# A long raw option for the phones' class, so that small size limits (option 57) leave options out.
BIG = {"code": 224, "type": "string", "value": "x" * 200, "classes": ["mpp"]}
REQUESTABLE = (1, 3, 6, 12, 15, 42, 43, 66, 150, 159, 160, 161, 224, 2, 119)


def _plan(tmp_path: Path) -> SitePlan:
    site = make_site(tmp_path, {"dhcp": {"raw_options": [
        {"code": 161, "type": "string", "value": "hello", "classes": ["mpp"]}, BIG]}})  # fmt: skip
    return SitePlan(site, MemoryLeaseStore())


def _request(rng: random.Random) -> Message:
    options: list[tuple[int, bytes]] = [(53, bytes((rng.choice((1, 3)),)))]
    if rng.random() < 0.6:
        options.append((61, bytes((1,)) + rng.randbytes(rng.choice((6, 20, 300)))))
    if rng.random() < 0.7:
        codes = list(REQUESTABLE)
        rng.shuffle(codes)
        options.append((55, bytes(codes[: rng.randrange(0, len(codes) + 1)])))
    if rng.random() < 0.5:
        options.append((57, rng.choice((300, 576, 600, 1000, 1500, 9000)).to_bytes(2, "big")))
    relayed = rng.random() < 0.5
    if rng.random() < 0.6:
        options.append((82, b"\x01\x04" + rng.randbytes(rng.choice((2, 60, 250, 400)))))
    ciaddr = IPv4Address("198.18.0.120") if rng.random() < 0.3 else ZERO
    chaddr = rng.randbytes(6)
    return Message(xid=rng.getrandbits(32), flags=rng.choice((0, 0x8000)), ciaddr=ciaddr,
                   giaddr=RELAY if relayed else ZERO, chaddr=chaddr, options=tuple(options))  # fmt: skip


def test_lease_reply_gives_the_general_encoders_bytes(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    subnet = plan.subnets[0]
    rng = random.Random(12)
    dest = Destination(RELAY, 67, None, False)
    dropping = 0
    for _ in range(400):
        request = parse(build(_request(rng), 1500))  # as the engine gets it
        msg_type = rng.choice((MessageType.OFFER, MessageType.ACK))
        body = reply.body_for(subnet.options[rng.choice((None, "mpp", "tr069"))],
                              rng.choice((None, "SEP00562B043615")))  # fmt: skip
        yiaddr = IPv4Address("198.18.0.120")
        fast = reply.lease_reply(plan, request, msg_type, yiaddr, body, dest, device_class="mpp", lease=None,
                                 new_device=True)  # fmt: skip
        general = reply.finish(request, reply.lease_message(plan, request, msg_type, yiaddr, body), dest, msg_type,
                               device_class="mpp", address=yiaddr, lease=None, new_device=True)  # fmt: skip
        assert fast.wire == general.wire
        assert fast.message == general.message
        assert fast.dropped_options == general.dropped_options
        assert fast == general
        dropping += bool(fast.dropped_options)
    assert 20 < dropping < 380  # the cases cover both: everything fits, and options left out


def test_parse_derives_what_the_properties_compute() -> None:
    rng = random.Random(7)
    values = (b"", b"\x01", b"\x03", b"\x0e", b"\xc6\x12\x00\x05", b"\xc6\x12\x00", b"CP-8841-3PCC\x00\x00",
              b"phone\x00", "caf\u00e9".encode("latin-1"))  # fmt: skip
    for _ in range(300):
        options = tuple((code, rng.choice(values)) for code in rng.sample((53, 50, 54, 61, 60, 12, 55), 4))
        hlen = rng.choice((0, 6, 16))
        giaddr = rng.choice((ZERO, RELAY))
        msg = parse(build(Message(hlen=hlen, chaddr=rng.randbytes(hlen), giaddr=giaddr, options=options), 1500))
        fresh = Message(**{f.name: getattr(msg, f.name) for f in fields(Message)})  # no derived values yet
        assert "msg_type" not in fresh.__dict__
        for name in ("msg_type", "requested_ip", "server_id", "client_id", "vendor_class", "hostname", "chaddr_mac",
                     "relayed"):
            assert getattr(msg, name) == getattr(fresh, name), name


def test_address_int_is_int() -> None:
    for text in ("0.0.0.0", "198.18.0.1", "255.255.255.255", "10.1.2.3"):
        assert address_int(IPv4Address(text)) == int(IPv4Address(text))


def _lease(address: int, client: int, state: LeaseState, expires: float) -> Lease:
    return Lease(address=IPv4Address(f"198.18.0.{address}"), client_id=bytes((1, client)), chaddr=bytes(6),
                 state=state, subnet=SUBNET, expires=expires, first_seen=EPOCH, updated=EPOCH)  # fmt: skip


def test_pick_is_the_first_available_proposal(tmp_path: Path) -> None:
    site = make_site(tmp_path, {"dhcp": {"subnets": [
        {"prefix": SUBNET, "pools": ["198.18.0.100-198.18.0.111"], "router": "198.18.0.1"}]}})  # fmt: skip
    rng = random.Random(3)
    for _ in range(200):
        store = MemoryLeaseStore()
        for address in rng.sample(range(100, 112), rng.randrange(0, 13)):
            state = rng.choice(list(LeaseState))
            store.put(_lease(address, rng.randrange(20), state, EPOCH + rng.choice((-10, 10))), force=True)
        allocator = SitePlan(site, store).subnets[0].allocator
        for _ in range(5):
            client = bytes((1, rng.randrange(25)))
            requested = rng.choice((None, IPv4Address(f"198.18.0.{rng.randrange(95, 115)}")))
            expected = next((a for a in allocator.propose(client, requested, EPOCH)
                             if allocator.available(a, client, EPOCH)), None)  # fmt: skip
            assert allocator.pick(client, requested, EPOCH) == expected
            assert allocator.pick_given(store.get_by_client(client), client, requested, EPOCH) == expected
            if expected is not None and rng.random() < 0.5:  # the engine holds what it offers
                store.put(_lease(int(expected) & 0xFF, client[1], LeaseState.OFFERED, EPOCH + 30))


def test_observe_all_counts_as_observe_does() -> None:
    rng = random.Random(5)
    buckets = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
    one, burst = CollectorRegistry(), CollectorRegistry()
    h_one = Histogram("x_seconds", "x", buckets=buckets, registry=one)
    h_burst = Histogram("x_seconds", "x", buckets=buckets, registry=burst)
    for _ in range(20):
        values = [rng.choice(buckets) if rng.random() < 0.2 else rng.expovariate(100) for _ in range(50)]
        for v in values:
            h_one.observe(v)
        observe_all(h_burst, values)
    observe_all(h_burst, [])

    def buckets_of(registry: CollectorRegistry) -> list[str]:
        return [line for line in generate_latest(registry).decode().splitlines() if "_bucket" in line or "_count" in line]

    assert buckets_of(one) == buckets_of(burst)
    assert abs(h_one._sum.get() - h_burst._sum.get()) < 1e-9  # type: ignore[attr-defined]
