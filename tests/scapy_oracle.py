"""scapy as the independent reader of the DHCP messages we build: the fixed BOOTP header, field by field."""

from __future__ import annotations

from scapy.layers.dhcp import BOOTP

from bootstrapd.dhcp.codec import Message


def assert_bootp_header(pkt: BOOTP, msg: Message) -> None:
    """scapy's dissection of our bytes shows every fixed field of `msg` (RFC 2131 section 2)."""
    assert (pkt.op, pkt.htype, pkt.hlen, pkt.hops, pkt.xid, pkt.secs, pkt.flags) == (
        msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
    )  # fmt: skip
    assert [pkt.ciaddr, pkt.yiaddr, pkt.siaddr, pkt.giaddr] == [
        str(a) for a in (msg.ciaddr, msg.yiaddr, msg.siaddr, msg.giaddr)
    ]
    assert pkt.chaddr[: msg.hlen] == msg.chaddr
    assert pkt.sname.rstrip(b"\0") == msg.sname and pkt.file.rstrip(b"\0") == msg.file
