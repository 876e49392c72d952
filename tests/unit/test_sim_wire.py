"""The simulator's frames: patched templates equal scapy's own build; the reply parser agrees with scapy."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.sim.dhcp import Outgoing
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.wire import FrameCache, build_frame, parse_reply, reply_chaddr

PHONE = Phone("00:56:2b:04:36:15", "CP-8841-3PCC")
OTHER = Phone("2c:31:24:00:00:01", "CP-6841-3PCC")
ADDR, SERVER = ipaddress.IPv4Address("198.18.1.23"), ipaddress.IPv4Address("198.18.0.1")


@pytest.mark.parametrize("out", [
    Outgoing(MessageType.DISCOVER, 0x12345678, 0),
    Outgoing(MessageType.DISCOVER, 0xFFFFFFFF, 65535),
    Outgoing(MessageType.REQUEST, 0xCAFE, 4, ADDR, SERVER),
])
def test_cached_frames_equal_a_fresh_scapy_build(out: Outgoing) -> None:
    cache = FrameCache()
    for phone in (PHONE, OTHER):
        cache.prepare(phone)
        assert cache.frame(phone, out) == build_frame(phone, out)


def test_a_discover_as_scapy_dissects_it() -> None:
    pkt = Ether(build_frame(PHONE, Outgoing(MessageType.DISCOVER, 0xABCDEF01, 3)))
    assert (pkt[Ether].src, pkt[Ether].dst) == ("00:56:2b:04:36:15", "ff:ff:ff:ff:ff:ff")
    assert (pkt[IP].src, pkt[IP].dst, pkt[UDP].sport, pkt[UDP].dport) == ("0.0.0.0", "255.255.255.255", 68, 67)
    assert (pkt[BOOTP].xid, pkt[BOOTP].secs, pkt[BOOTP].flags) == (0xABCDEF01, 3, 0)
    opts = dict(o for o in pkt[DHCP].options if isinstance(o, tuple))
    assert (opts["message-type"], opts["vendor_class_id"]) == (1, b"CP-8841-3PCC")
    assert {66, 150, 159, 160, 15, 6} <= set(opts["param_req_list"])
    # The checksums our framer computed are the ones scapy computes when it rebuilds the frame.
    rebuilt = Ether(bytes(pkt))
    del rebuilt[IP].chksum, rebuilt[UDP].chksum
    assert bytes(Ether(bytes(rebuilt))) == bytes(pkt)


def server_reply(msg_type: int, xid: int, **extra: object) -> bytes:
    options = [("message-type", msg_type), ("server_id", str(SERVER)), ("subnet_mask", "255.255.254.0"),
               ("domain", b"staging.example.net"), (160, b"http://prov1/$PSN.xml"), "end"]
    return bytes(Ether(src="02:00:00:00:00:01", dst="00:56:2b:04:36:15")
                 / IP(src=str(SERVER), dst=str(ADDR)) / UDP(sport=67, dport=68)
                 / BOOTP(op=2, xid=xid, yiaddr=str(ADDR), chaddr=PHONE.chaddr, **extra) / DHCP(options=options))


def test_reply_parser_agrees_with_scapy() -> None:
    frame = server_reply(2, 0x01020304)
    assert reply_chaddr(frame) == PHONE.chaddr
    msg = parse_reply(frame)
    assert msg is not None
    pkt = Ether(frame)
    assert (msg.msg_type, msg.xid, str(msg.yiaddr)) == (MessageType.OFFER, pkt[BOOTP].xid, pkt[BOOTP].yiaddr)
    assert msg.server_id == SERVER
    assert (msg.options[15], msg.options[160], msg.options[1]) == (b"staging.example.net", b"http://prov1/$PSN.xml",
                                                                    bytes([255, 255, 254, 0]))


def test_not_a_reply() -> None:
    discover = build_frame(PHONE, Outgoing(MessageType.DISCOVER, 1, 0))
    assert reply_chaddr(discover) is None
    assert reply_chaddr(server_reply(2, 1)[:100]) is None
    no_type = bytes(Ether() / IP() / UDP(sport=67, dport=68) / BOOTP(op=2) / DHCP(options=["end"]))
    assert parse_reply(no_type) is None
