"""The layer-2 frames every broadcast and layer-2 unicast DHCP reply is sent as: scapy, an independent
reader, finds valid IPv4 and UDP checksums (RFC 791, RFC 768 via RFC 1071) and our fields."""

from __future__ import annotations

import ipaddress

from hypothesis import given
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether

from bootstrapd.transport.l2 import udp_frame

SRC = ipaddress.IPv4Address("198.18.0.1")


@given(payload=st.binary(max_size=1472), dst=st.sampled_from(["255.255.255.255", "198.18.1.7", "0.0.0.1"]))
def test_frames_carry_valid_checksums(payload: bytes, dst: str) -> None:
    frame = udp_frame(b"\x02\xb5\x00\x00\x00\x01", b"\xff" * 6, SRC, ipaddress.IPv4Address(dst), 67, 68, payload)
    pkt = Ether(frame)
    assert (pkt[Ether].dst, pkt[Ether].src, pkt[IP].src, pkt[IP].dst) == (
        "ff:ff:ff:ff:ff:ff", "02:b5:00:00:00:01", str(SRC), dst)
    assert (pkt[UDP].sport, pkt[UDP].dport, bytes(pkt[UDP].payload)) == (67, 68, payload)
    # scapy computes both checksums itself when they are left out: ours must be what it computes.
    ours = (pkt[IP].chksum, pkt[UDP].chksum)
    del pkt[IP].chksum, pkt[UDP].chksum
    again = Ether(bytes(pkt))
    assert ours == (again[IP].chksum, again[UDP].chksum)
    assert ours[1] != 0  # RFC 768: zero means "no checksum"; a computed zero is sent as 0xFFFF


def test_a_udp_checksum_that_sums_to_zero_is_sent_as_all_ones() -> None:
    # Find a payload whose checksum computes to zero by fixing its last two octets.
    base = udp_frame(b"\0" * 6, b"\xff" * 6, SRC, SRC, 67, 68, b"\0\0")
    csum = int.from_bytes(base[40:42], "big")  # the checksum with a zero word; add it to make the sum 0xFFFF
    frame = udp_frame(b"\0" * 6, b"\xff" * 6, SRC, SRC, 67, 68, csum.to_bytes(2, "big"))
    assert frame[40:42] == b"\xff\xff"
    del (pkt := Ether(frame))[UDP].chksum
    assert Ether(bytes(pkt))[UDP].chksum in (0, 0xFFFF)
