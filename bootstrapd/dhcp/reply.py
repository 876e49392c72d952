"""Reply assembly: the options of an OFFER, ACK or NAK in the order they go out, the reply header
(RFC 2131 table 3), and where the reply is sent (RFC 2131 section 4.1).

Option order decides what survives a small size limit (codec.build leaves out what does not fit, in
order): the protocol options first, then the client's request list (55) in its order, then the rest.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from bootstrapd.dhcp.codec import (
    BROADCAST_FLAG,
    MAX_REPLY_SIZE,
    Message,
    MessageType,
    Op,
    build_dropping,
    encode_header,
    encode_options_into,
    finish_options,
    reply_size_limit,
    reserve_relay,
)
from bootstrapd.dhcp.leases import Lease
from bootstrapd.dhcp.options import OptionCode, encode_string
from bootstrapd.dhcp.outcome import Destination, Reply
from bootstrapd.dhcp.plan import OptionList, OptionSet, SitePlan

ZERO = IPv4Address(0)
BROADCAST = IPv4Address("255.255.255.255")

_TYPE = {t: bytes((t,)) for t in MessageType}
_CLIENT_ID = int(OptionCode.CLIENT_ID)
_RELAY = int(OptionCode.RELAY_AGENT_INFO)
_HOSTNAME = int(OptionCode.HOSTNAME)
_REQUEST_LIST = int(OptionCode.PARAMETER_REQUEST_LIST)


def body_for(options: OptionSet, hostname: str | None) -> OptionSet:
    """The device's options; option 12 joins them for a reservation that names the device."""
    if hostname is None:
        return options
    return options.with_option(_HOSTNAME, encode_string(hostname))


def _echoed(request: Message) -> tuple[list[tuple[int, bytes]], list[tuple[int, bytes]]]:
    """Options copied back: client id 61 (RFC 6842) first, relay agent information 82 last and only
    to a relay (RFC 3046 2.2; codec.build keeps it last and reserves its room first)."""
    head: list[tuple[int, bytes]] = []
    tail: list[tuple[int, bytes]] = []
    client_id = request.get(_CLIENT_ID)
    if client_id is not None:
        head.append((_CLIENT_ID, client_id))
    relay = request.get(_RELAY)
    if relay is not None and request.relayed:
        tail.append((_RELAY, relay))
    return head, tail


def _reply(
    request: Message,
    options: list[tuple[int, bytes]],
    *,
    ciaddr: IPv4Address = ZERO,
    yiaddr: IPv4Address = ZERO,
    flags: int | None = None,
) -> Message:
    """A BOOTREPLY to `request` (RFC 2131 table 3: xid, flags, giaddr and chaddr copied)."""
    return Message(
        op=Op.BOOTREPLY,
        htype=request.htype,
        hlen=request.hlen,
        xid=request.xid,
        flags=request.flags if flags is None else flags,
        ciaddr=ciaddr,
        yiaddr=yiaddr,
        giaddr=request.giaddr,
        chaddr=request.chaddr,
        options=tuple(options),
    )


def lease_message(
    plan: SitePlan, request: Message, msg_type: MessageType, yiaddr: IPv4Address, body: OptionSet
) -> Message:
    """OFFER or ACK of an address: type, server id, lease times, then the body (RFC 2131 4.3.1)."""
    head, tail = _echoed(request)
    options = [*_reply_head(plan, msg_type)[1], *head, *body.ordered(request.get(_REQUEST_LIST)), *tail]
    # An ACK to a RENEWING/REBINDING client carries its ciaddr back; an OFFER never does.
    ciaddr = request.ciaddr if msg_type is MessageType.ACK else ZERO
    return _reply(request, options, ciaddr=ciaddr, yiaddr=yiaddr)


def lease_reply(
    plan: SitePlan,
    request: Message,
    msg_type: MessageType,
    yiaddr: IPv4Address,
    body: OptionSet,
    dest: Destination,
    *,
    device_class: str | None,
    lease: Lease | None,
    new_device: bool,
) -> Reply:
    """finish(lease_message(...)), the same bytes (tests/unit/test_dhcp_reply_fast.py compares them), built
    without the general encoder: the fixed options (53, 54, 51, 58, 59) are encoded once per plan and the
    body once per request list and size limit (OptionSet.encoded), so per packet only the header and the
    echoed 61 and 82 are encoded. Falls back to finish() for what the shortcut does not cover."""
    get = request.get
    max_size = reply_size_limit(request)
    request_list = get(_REQUEST_LIST)
    client_id = get(_CLIENT_ID)
    relay = get(_RELAY) if request.relayed else None
    dropped: list[int] = []
    kept_relay, budget = reserve_relay(relay, max_size, dropped)
    fixed, fixed_options = plan.reply_heads.get(msg_type) or _reply_head(plan, msg_type)  # 53, 54, 51, 58, 59
    head = ((_CLIENT_ID, client_id),) if client_id is not None else ()
    tail = ((_RELAY, relay),) if relay is not None else ()
    ciaddr = request.ciaddr if msg_type is MessageType.ACK else ZERO  # an OFFER never carries ciaddr
    message = Message(
        Op.BOOTREPLY, request.htype, request.hlen, 0, request.xid, 0, request.flags, ciaddr, yiaddr, ZERO,
        request.giaddr, request.chaddr, b"", b"", (*fixed_options, *head, *body.ordered(request_list), *tail),
    )  # fmt: skip  (RFC 2131 table 3: xid, flags, giaddr and chaddr copied)
    if len(fixed) > budget:
        return finish(request, message, dest, msg_type, device_class=device_class, address=yiaddr, lease=lease,
                      new_device=new_device)  # fmt: skip
    buf = encode_header(message)
    buf += fixed
    budget -= len(fixed)
    if client_id is not None:
        budget = encode_options_into(buf, head, budget, dropped)
    block = body.encoded(request_list, budget)
    if block is None:  # the body holds option 82, which the general encoder sends last
        return finish(request, message, dest, msg_type, device_class=device_class, address=yiaddr, lease=lease,
                      new_device=new_device)  # fmt: skip
    buf += block[0]
    dropped.extend(block[1])
    wire = finish_options(buf, kept_relay)
    if dropped:  # Reply.message is what the client gets
        message = replace(message, options=tuple(o for o in message.options if o[0] not in dropped))
    return Reply(message, wire, dest, msg_type, device_class, yiaddr, lease, new_device, tuple(dropped))


def _reply_head(plan: SitePlan, msg_type: MessageType) -> tuple[bytes, OptionList]:
    """Options 53, 54, 51, 58, 59 of a reply of this type, encoded and as (code, value), once per plan."""
    head = plan.reply_heads.get(msg_type)
    if head is None:
        buf = bytearray()
        options = ((int(OptionCode.MESSAGE_TYPE), _TYPE[msg_type]), (int(OptionCode.SERVER_ID), plan.server_id.packed),
                   *plan.lease_times)  # fmt: skip
        encode_options_into(buf, options, MAX_REPLY_SIZE, [])
        head = plan.reply_heads[msg_type] = (bytes(buf), options)
    return head


def inform_message(plan: SitePlan, request: Message, body: OptionSet) -> Message:
    """ACK to an INFORM: configuration only, no address and no lease times (RFC 2131 4.3.5)."""
    head, tail = _echoed(request)
    options = [
        (int(OptionCode.MESSAGE_TYPE), _TYPE[MessageType.ACK]),
        (int(OptionCode.SERVER_ID), plan.server_id.packed),
        *head,
        *body.ordered(request.get(_REQUEST_LIST)),
        *tail,
    ]
    return _reply(request, options, ciaddr=request.ciaddr)


def nak_message(plan: SitePlan, request: Message, text: str) -> Message:
    """NAK (RFC 2131 4.3.2): server id and a message (56). Through a relay the broadcast flag is set
    so that the relay broadcasts it to a client whose address is wrong."""
    head, tail = _echoed(request)
    options = [
        (int(OptionCode.MESSAGE_TYPE), _TYPE[MessageType.NAK]),
        (int(OptionCode.SERVER_ID), plan.server_id.packed),
        *head,
        (int(OptionCode.MESSAGE), encode_string(text)),
        *tail,
    ]
    relayed = request.relayed
    return _reply(request, options, flags=request.flags | BROADCAST_FLAG if relayed else None)


def destination(plan: SitePlan, request: Message, msg_type: MessageType, yiaddr: IPv4Address) -> Destination:
    """RFC 2131 4.1: to the relay's server port; a NAK broadcast; to ciaddr; broadcast when the client
    asks for it; else to yiaddr at the client's hardware address (it cannot answer ARP yet)."""
    if request.relayed:
        return Destination(request.giaddr, plan.server_port, None, False)
    if msg_type is MessageType.NAK:
        return Destination(BROADCAST, plan.client_port, None, True)
    if request.ciaddr != ZERO:
        return Destination(request.ciaddr, plan.client_port, None, False)
    if request.broadcast or yiaddr == ZERO or request.htype != 1 or request.hlen != 6:
        return Destination(BROADCAST, plan.client_port, None, True)
    return Destination(yiaddr, plan.client_port, request.chaddr, False)


def finish(
    request: Message,
    message: Message,
    dest: Destination,
    msg_type: MessageType,
    *,
    device_class: str | None,
    address: IPv4Address | None,
    lease: Lease | None,
    new_device: bool,
) -> Reply:
    """Encode within the client's limit (option 57, RFC 2132 9.10) and wrap as a Reply."""
    wire, dropped = build_dropping(message, reply_size_limit(request))
    if dropped:  # Reply.message is what the client gets
        message = replace(message, options=tuple(o for o in message.options if o[0] not in dropped))
    return Reply(message, wire, dest, msg_type, device_class, address, lease, new_device, dropped)
