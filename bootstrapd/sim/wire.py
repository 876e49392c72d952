"""DHCP messages of a simulated phone as Ethernet frames, and server replies back.

scapy builds every message a phone sends. A thousand phones powering on in one second cannot afford
scapy per packet (about half a millisecond each here), so FrameCache has scapy build each phone's DISCOVER
and REQUEST once, before the storm, and patches the fields that change (xid, secs, options 50 and 54) into
copies. Ethernet/IPv4/UDP come from bootstrapd's struct framer. Replies are read with a small struct parser
(the hot path); tests check it against scapy's dissection. Each frame carries the phone's MAC as Ethernet
source, so the LAN bridge learns where every phone is.
"""

from __future__ import annotations

import ipaddress
import struct

from scapy.layers.dhcp import BOOTP, DHCP

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.sim.dhcp import Incoming, Outgoing
from bootstrapd.sim.phone import Phone
from bootstrapd.transport.l2 import udp_frame

BROADCAST_MAC = b"\xff" * 6
ANY = ipaddress.IPv4Address("0.0.0.0")
BROADCAST = ipaddress.IPv4Address("255.255.255.255")
MAGIC = b"\x63\x82\x53\x63"
BOOTP_FIXED = 236  # op .. file: the fixed part before the magic cookie (RFC 2131 figure 1)
# The phones' request list is undocumented (mpp-bootstrap.md section 2); this asks for what they use.
PARAMS = [1, 3, 6, 15, 42, 2, 7, 12, 51, 58, 59, 66, 150, 159, 160, 43, 125]
MAX_MESSAGE = 1500  # option 57


def build_payload(phone: Phone, out: Outgoing) -> bytes:
    """The BOOTP/DHCP message (scapy): option 60 = the phone's model, no broadcast flag."""
    options: list[object] = [("message-type", int(out.msg_type)), ("max_dhcp_size", MAX_MESSAGE)]
    if out.requested is not None:
        options.append(("requested_addr", str(out.requested)))
    if out.server_id is not None:
        options.append(("server_id", str(out.server_id)))
    options += [("vendor_class_id", phone.model.encode()), ("param_req_list", PARAMS), "end"]
    return bytes(BOOTP(op=1, xid=out.xid, secs=out.secs, chaddr=phone.chaddr) / DHCP(options=options))


def build_frame(phone: Phone, out: Outgoing) -> bytes:
    """The frame for one outgoing message, broadcast from 0.0.0.0."""
    return udp_frame(phone.chaddr, BROADCAST_MAC, ANY, BROADCAST, 68, 67, build_payload(phone, out))


def option_offsets(payload: bytes) -> dict[int, int]:
    """Where each option's value starts in a BOOTP payload (first occurrence)."""
    offsets: dict[int, int] = {}
    pos = BOOTP_FIXED + 4
    while pos + 1 < len(payload) and payload[pos] != 255:
        if payload[pos] == 0:
            pos += 1
            continue
        offsets.setdefault(payload[pos], pos + 2)
        pos += 2 + payload[pos + 1]
    return offsets


class FrameCache:
    """build_frame() at storm speed: one scapy-built template per phone and message type, fields patched in.

    A DISCOVER differs between sends only in xid and secs (BOOTP bytes 4-9); a REQUEST also in the values
    of options 50 and 54, which the template carries as 0.0.0.0 at offsets found once.
    """

    def __init__(self) -> None:
        self._templates: dict[tuple[bytes, MessageType], tuple[bytes, dict[int, int]]] = {}

    def prepare(self, phone: Phone) -> None:
        for msg_type in (MessageType.DISCOVER, MessageType.REQUEST):
            self._template(phone, msg_type)

    def _template(self, phone: Phone, msg_type: MessageType) -> tuple[bytes, dict[int, int]]:
        key = (phone.chaddr, msg_type)
        found = self._templates.get(key)
        if found is None:
            addr = ANY if msg_type is MessageType.REQUEST else None
            payload = build_payload(phone, Outgoing(msg_type, 0, 0, addr, addr))
            found = self._templates[key] = (payload, option_offsets(payload))
        return found

    def frame(self, phone: Phone, out: Outgoing) -> bytes:
        template, offsets = self._template(phone, out.msg_type)
        payload = bytearray(template)
        payload[4:10] = struct.pack("!IH", out.xid, out.secs)
        for code, value in ((50, out.requested), (54, out.server_id)):
            if value is not None and code in offsets:
                payload[offsets[code]:offsets[code] + 4] = value.packed
        return udp_frame(phone.chaddr, BROADCAST_MAC, ANY, BROADCAST, 68, 67, bytes(payload))


def reply_chaddr(frame: bytes) -> bytes | None:
    """Cheap pre-filter: the chaddr of an IPv4/UDP 67 -> 68 BOOTREPLY, else None."""
    if len(frame) < 14 + 20 + 8 + 240 or frame[12:14] != b"\x08\x00" or frame[23] != 17:
        return None
    udp = 14 + (frame[14] & 0x0F) * 4
    if frame[udp:udp + 4] != b"\x00\x43\x00\x44" or frame[udp + 8] != 2:
        return None
    return frame[udp + 8 + 28:udp + 8 + 34]


def parse_reply(frame: bytes) -> Incoming | None:
    """A server reply as the client core sees it; None when it is not a DHCP reply we understand."""
    udp = 14 + (frame[14] & 0x0F) * 4
    (length,) = struct.unpack("!H", frame[udp + 4:udp + 6])
    bootp = frame[udp + 8:udp + length]
    if len(bootp) < BOOTP_FIXED + 4 or bootp[BOOTP_FIXED:BOOTP_FIXED + 4] != MAGIC:
        return None
    options = scan_options(bootp[BOOTP_FIXED + 4:])
    mtype = options.get(53, b"")
    if len(mtype) != 1 or mtype[0] not in MessageType._value2member_map_:
        return None
    (xid,) = struct.unpack("!I", bootp[4:8])
    return Incoming(MessageType(mtype[0]), xid, ipaddress.IPv4Address(bootp[16:20]), options)


def scan_options(raw: bytes) -> dict[int, bytes]:
    """TLV scan of the options field; repeated codes are concatenated (RFC 3396)."""
    found: dict[int, bytes] = {}
    pos = 0
    while pos < len(raw) and raw[pos] != 255:
        if raw[pos] == 0:
            pos += 1
            continue
        if pos + 1 >= len(raw):
            break
        code, length = raw[pos], raw[pos + 1]
        found[code] = found.get(code, b"") + raw[pos + 2:pos + 2 + length]
        pos += 2 + length
    return found
