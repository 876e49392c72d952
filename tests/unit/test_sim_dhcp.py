"""The simulated phone's DHCP client core (RFC 2131 sections 4.1 and 4.4), with time and randomness passed in."""

from __future__ import annotations

import ipaddress
import random

import pytest

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.sim.dhcp import ClientState, DhcpClient, Incoming, Outgoing, Retransmit

SERVER = ipaddress.IPv4Address("198.18.0.1")
ADDR = ipaddress.IPv4Address("198.18.0.100")


def offer(xid: int, yiaddr: ipaddress.IPv4Address = ADDR, msg_type: MessageType = MessageType.OFFER,
          **options: bytes) -> Incoming:
    opts = {54: SERVER.packed, 1: ipaddress.IPv4Address("255.255.254.0").packed}
    opts.update({int(k.lstrip("o")): v for k, v in options.items()})
    return Incoming(msg_type, xid, yiaddr, opts)


def selecting(seed: int = 1) -> tuple[DhcpClient, Outgoing]:
    client = DhcpClient(random.Random(seed))
    return client, client.start(100.0)


def requesting(seed: int = 1) -> tuple[DhcpClient, Outgoing]:
    client, discover = selecting(seed)
    request = client.receive(offer(discover.xid), 100.5)
    assert request is not None
    return client, request


def test_init_sends_discover_and_waits_4s_plus_minus_1() -> None:
    client, discover = selecting()
    assert discover.msg_type is MessageType.DISCOVER and client.state is ClientState.SELECTING
    assert client.deadline is not None and 103.0 <= client.deadline <= 105.0


def test_selecting_retransmits_with_doubling_randomised_backoff_up_to_64s() -> None:
    client, first = selecting()
    delays = []
    now = 100.0
    for _ in range(7):
        assert client.deadline is not None
        assert client.timeout(client.deadline - 0.01) is None  # not yet
        delays.append(client.deadline - now)
        now = client.deadline
        again = client.timeout(now)
        assert again is not None and again.msg_type is MessageType.DISCOVER and again.xid == first.xid
    for got, base in zip(delays, [4, 8, 16, 32, 64, 64, 64], strict=True):
        assert base - 1 <= got <= base + 1
    assert client.sent[MessageType.DISCOVER] == 8


def test_backoff_is_randomised_per_client() -> None:
    firsts = {round(selecting(seed)[0].deadline or 0, 6) for seed in range(20)}
    assert len(firsts) == 20  # desynchronised: phones that power on together do not retransmit together


def test_secs_counts_from_the_start_of_acquisition() -> None:
    client, first = selecting()
    assert first.secs == 0 and client.deadline is not None
    deadline = client.deadline
    retrans = client.timeout(deadline)
    assert retrans is not None and retrans.secs == int(deadline - 100.0) >= 3


def test_offer_answered_by_request_for_it_with_same_xid() -> None:
    client, request = requesting()
    assert request.msg_type is MessageType.REQUEST and client.state is ClientState.REQUESTING
    assert (request.requested, request.server_id) == (ADDR, SERVER)


def test_ack_binds_with_the_offered_lease() -> None:
    client, request = requesting()
    assert client.receive(offer(request.xid, msg_type=MessageType.ACK, o15=b"staging.test"), 101.0) is None
    assert client.state is ClientState.BOUND and client.deadline is None
    assert client.lease is not None
    assert (client.lease.address, client.lease.prefixlen, client.lease.options[15]) == (ADDR, 23, b"staging.test")


def test_nak_starts_over_with_a_new_xid() -> None:
    client, request = requesting()
    again = client.receive(offer(request.xid, ipaddress.IPv4Address(0), MessageType.NAK), 101.0)
    assert again is not None and again.msg_type is MessageType.DISCOVER and again.xid != request.xid
    assert client.state is ClientState.SELECTING and client.naks == 1


def test_unanswered_request_goes_back_to_init() -> None:
    client, request = requesting()
    sent = [request]
    while True:
        assert client.deadline is not None
        out = client.timeout(client.deadline)
        assert out is not None
        if out.msg_type is MessageType.DISCOVER:
            break
        sent.append(out)
    assert len(sent) == Retransmit().request_tries and all(m.xid == request.xid for m in sent)
    assert out.xid != request.xid and client.state is ClientState.SELECTING


@pytest.mark.parametrize("reply", [
    offer(0xDEAD),  # another transaction's xid
    Incoming(MessageType.OFFER, 0, ADDR, {}),  # no server identifier
    Incoming(MessageType.OFFER, 0, ipaddress.IPv4Address(0), {54: SERVER.packed}),  # no address
])
def test_unusable_offers_are_ignored(reply: Incoming) -> None:
    client, discover = selecting()
    if reply.xid == 0:
        reply = Incoming(reply.msg_type, discover.xid, reply.yiaddr, reply.options)
    assert client.receive(reply, 100.2) is None and client.state is ClientState.SELECTING


def test_ack_while_selecting_is_ignored() -> None:
    client, discover = selecting()
    assert client.receive(offer(discover.xid, msg_type=MessageType.ACK), 100.2) is None
    assert client.state is ClientState.SELECTING and client.lease is None
