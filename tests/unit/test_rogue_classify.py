"""The rogue guard's probe and its reading of what comes back, with scapy as the independent oracle."""

from __future__ import annotations

from ipaddress import IPv4Address
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from bootstrapd.dhcp.codec import build
from bootstrapd.transport.rogue import ForeignOffer, classify, discover_message, foreign, probe_chaddr

OWN = IPv4Address("198.18.0.1")
XID = 0x5EED1234
OTHER_MAC = "00:11:22:33:44:55"


def frame(*, msg_type: str = "offer", server_id: str | None = "192.168.1.1", ip_src: str = "192.168.1.1",
          xid: int = XID, sport: int = 67, dport: int = 68, op: int = 2, **ip: Any) -> bytes:
    options: list[Any] = [("message-type", msg_type)]
    if server_id is not None:
        options.append(("server_id", server_id))
    pkt = (Ether(src=OTHER_MAC, dst="ff:ff:ff:ff:ff:ff") / IP(src=ip_src, dst="255.255.255.255", **ip)
           / UDP(sport=sport, dport=dport)
           / BOOTP(op=op, xid=xid, yiaddr="192.168.1.50", flags=0x8000, chaddr=bytes.fromhex("02aabbccddee"))
           / DHCP(options=[*options, "end"]))
    return bytes(pkt)


def test_offer_from_another_server_names_its_address_and_mac() -> None:
    assert classify(frame(), "stg0", OWN, XID) == ForeignOffer(
        "stg0", IPv4Address("192.168.1.1"), IPv4Address("192.168.1.1"), OTHER_MAC, IPv4Address("192.168.1.50"),
        to_probe=True,
    )


def test_offer_to_another_client_counts_too() -> None:
    offer = classify(frame(xid=XID + 1), "stg0", OWN, XID)
    assert offer is not None and not offer.to_probe


def test_relayed_offer_names_the_server_by_option_54_and_the_relay_as_source() -> None:
    offer = classify(frame(server_id="10.9.9.9", ip_src="192.168.1.254"), "stg0", OWN, XID)
    assert offer is not None
    assert (offer.server, offer.ip_src) == (IPv4Address("10.9.9.9"), IPv4Address("192.168.1.254"))
    assert offer.describe() == f"10.9.9.9 via 192.168.1.254 (MAC {OTHER_MAC})"


def test_without_option_54_the_ip_source_is_the_server() -> None:
    offer = classify(frame(server_id=None, ip_src="192.168.1.7"), "stg0", OWN, XID)
    assert offer is not None and offer.server == IPv4Address("192.168.1.7")


@pytest.mark.parametrize("case", [
    {"server_id": "198.18.0.1"},  # our own OFFER (to a phone, or relayed back)
    {"server_id": None, "ip_src": "198.18.0.1"},
    {"msg_type": "ack"},
    {"msg_type": "nak"},
    {"msg_type": "discover", "op": 1, "sport": 68, "dport": 67},  # a client's, e.g. our own probe
    {"dport": 1068},
    {"sport": 53},
    {"frag": 1},  # a fragment is not a whole datagram
], ids=repr)
def test_not_a_foreign_offer(case: dict[str, Any]) -> None:
    assert classify(frame(**case), "stg0", OWN, XID) is None


@pytest.mark.parametrize("data", [b"", b"\xff" * 14, frame()[:60], frame()[:14] + b"\x60" + frame()[15:]],
                         ids=["empty", "ethernet only", "truncated", "IPv6 version"])
def test_garbage_is_ignored(data: bytes) -> None:
    assert classify(data, "stg0", OWN, XID) is None


def test_other_ports_when_the_server_does_not_use_67() -> None:
    assert classify(frame(sport=1067, dport=1068), "stg0", OWN, XID, server_port=1067, client_port=1068)
    assert classify(frame(), "stg0", OWN, XID, server_port=1067, client_port=1068) is None


def test_probe_is_a_broadcast_discover_from_a_locally_administered_mac() -> None:
    chaddr = probe_chaddr(b"\xff\x01\x02\x03\x04\x05")
    assert chaddr == b"\xfe\x01\x02\x03\x04\x05"  # local bit set, multicast bit clear
    bootp = BOOTP(build(discover_message(chaddr, XID)))
    assert (bootp.op, bootp.xid, bootp.flags, bytes(bootp.chaddr)[:6]) == (1, XID, 0x8000, chaddr)
    options: dict[Any, Any] = dict(o for o in bootp[DHCP].options if isinstance(o, tuple))
    assert options["message-type"] == 1
    assert 54 not in options and "server_id" not in options


def test_a_partner_nodes_offers_are_not_foreign() -> None:
    partner, stranger = (classify(frame(server_id=a, ip_src=a), "stg0", OWN, XID) for a in ("198.18.0.2", "10.0.0.9"))
    assert partner is not None and stranger is not None
    assert foreign([partner, stranger], [IPv4Address("198.18.0.2")]) == [stranger]
    assert foreign([partner, stranger], []) == [partner, stranger]
