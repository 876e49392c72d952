"""How the DHCP shell finds and holds destinations whose next hop answers no ARP (transport/dhcp_send.py):
the kernel's own tables as text, and a held destination's replies refused with a reason, through a real
UDP socket on loopback."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import structlog
from fake_client import FakeClient, Wire, make_site

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dhcp.outcome import Destination, DropReason, Reply
from bootstrapd.transport.dhcp_send import HOLD_S, ReplySender, next_hop, routes_of, unresolved_neighbours

ARP = """IP address       HW type     Flags       HW address            Mask     Device
198.18.0.77      0x1         0x0         00:00:00:00:00:00     *        stg0
198.18.0.3       0x1         0x0         00:00:00:00:00:00     *        stg0
198.18.0.30      0x1         0x2         02:b5:00:00:00:07     *        stg0
198.18.9.3       0x1         0x0         00:00:00:00:00:00     *        stg1
"""
ROUTE = """Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
stg0\t000012C6\t00000000\t0001\t0\t0\t0\t00FEFFFF\t0\t0\t0
stg0\t000412C6\t030012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
stg0\t010512C6\t040012C6\t0007\t0\t0\t0\tFFFFFFFF\t0\t0\t0
stg1\t000512C6\t090012C6\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0
"""


def test_unresolved_neighbours_are_those_without_a_link_layer_address_on_the_interface() -> None:
    assert unresolved_neighbours("stg0", ARP) == {"198.18.0.77", "198.18.0.3"}
    assert unresolved_neighbours("stg0", "") == set()


def test_next_hop_is_the_longest_matching_routes_gateway_or_the_destination_on_link() -> None:
    routes = routes_of("stg0", ROUTE)
    assert next_hop("198.18.4.1", routes) == "198.18.0.3"  # a relay behind a gateway
    assert next_hop("198.18.5.1", routes) == "198.18.0.4"  # the /32 route, not stg1's /24 (other device)
    assert next_hop("198.18.1.20", routes) == "198.18.1.20"  # on-link: the client itself answers ARP
    assert next_hop("198.18.5.2", routes) is None  # routed elsewhere (stg1): never ours to hold


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.2)
        yield sock


def test_a_held_destination_gets_no_reply_until_its_hold_ends_or_it_speaks(tmp_path: Path,
                                                                           receiver: socket.socket) -> None:
    message = FakeClient(Wire(make_site(tmp_path))).message(MessageType.DISCOVER)
    port = receiver.getsockname()[1]
    reply = Reply(message, b"reply", Destination(IPv4Address("127.0.0.1"), port, None, False), MessageType.OFFER,
                  None, None, None, False)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sender = ReplySender("lo", sock, None, None, 67, structlog.get_logger())
        assert sender.send(reply, "127.0.0.1", 100.0) is None
        assert receiver.recv(64) == b"reply"
        sender.held["127.0.0.1"] = 100.0 + HOLD_S
        assert sender.send(reply, "127.0.0.1", 101.0) is DropReason.DESTINATION_UNREACHABLE
        assert sender.send(reply, "127.0.0.1", 100.0 + HOLD_S) is None  # the hold has ended
        assert receiver.recv(64) == b"reply"
        sender.held["127.0.0.1"] = 200.0
        sender.heard_from("127.0.0.1")  # a datagram from it: it answers ARP again
        assert sender.send(reply, "127.0.0.1", 101.0) is None
        assert receiver.recv(64) == b"reply"
        with pytest.raises(TimeoutError):
            receiver.recv(64)
