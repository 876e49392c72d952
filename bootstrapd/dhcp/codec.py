"""BOOTP/DHCPv4 wire codec: bytes <-> Message (RFC 951, RFC 2131 section 2, RFC 2132, RFC 3396).

`parse` raises only ParseError, whatever the bytes. `build` never emits a message larger than the size
it is given: options that do not fit are left out, so callers pass options most important first.
The hot path is one precompiled struct and a flat option scan: a few microseconds per packet.
"""

from __future__ import annotations

import enum
import ipaddress
import operator
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from bootstrapd.dhcp.options import MAX_VALUE, OptionCode
from bootstrapd.errors import ParseError

IPv4Address = ipaddress.IPv4Address

# RFC 2131 2: op htype hlen hops | xid | secs flags | ciaddr yiaddr siaddr giaddr | chaddr sname file,
# then the magic cookie that starts the options field (RFC 2131 3, RFC 2132 2).
_HEADER = struct.Struct("!4BIHH4I16s64s128sI")
HEADER_SIZE = 236
OPTIONS_START = _HEADER.size  # 240
MAGIC_COOKIE = 0x63825363  # 99.130.83.99
_SNAME = (44, 108)
_FILE = (108, 236)

BOOTP_MIN_SIZE = 300  # RFC 1542 2.1: some relays drop BOOTP messages shorter than 300 octets
IP_UDP_OVERHEAD = 28  # IPv4 header (no options) + UDP header
# RFC 2131 2: every client accepts a 576-octet IP datagram, i.e. a 548-octet DHCP message.
DEFAULT_MAX_SIZE = 576 - IP_UDP_OVERHEAD
MAX_REPLY_SIZE = 1500 - IP_UDP_OVERHEAD  # never beyond an Ethernet MTU: we do not fragment
BROADCAST_FLAG = 0x8000  # RFC 2131 2, figure 2

_ZERO = IPv4Address(0)
# int(address) without a Python frame: IPv4Address.__int__ is Python code returning its `_ip` slot, and the
# packet path converts a dozen addresses per DORA (store keys, subnet tests, headers). A unit test checks it.
address_int: Callable[[IPv4Address], int] = operator.attrgetter("_ip")
_setattr = object.__setattr__
_END = b"\xff"
_OVERLOAD = int(OptionCode.OVERLOAD)  # plain ints: IntEnum comparisons are slow on the hot path
_RELAY = int(OptionCode.RELAY_AGENT_INFO)


T = TypeVar("T")


class _once(Generic[T]):  # a decorator, named like property
    """functools.cached_property without its lock (3.11 takes an RLock at each first access: on a packet's
    half-dozen derived fields that cost more than it saved)."""

    def __init__(self, func: Callable[[Any], T]) -> None:
        self.func = func
        self.name = func.__name__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _once[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | _once[T]:
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.func(obj)
        return value


class Op(enum.IntEnum):
    """RFC 2131 2, field `op`."""

    BOOTREQUEST = 1
    BOOTREPLY = 2


class MessageType(enum.IntEnum):
    """Option 53 values: RFC 2132 9.6 (1-8), RFC 3203 (9), RFC 4388 (10-13)."""

    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8
    FORCERENEW = 9
    LEASEQUERY = 10
    LEASEUNASSIGNED = 11
    LEASEUNKNOWN = 12
    LEASEACTIVE = 13


_MESSAGE_TYPES = {int(t): t for t in MessageType}


@dataclass(frozen=True, init=False)
class Message:
    """One BOOTP/DHCP message. `options` holds (code, value) in wire order, one entry per code (split
    options are already concatenated, RFC 3396); PAD, END and option 52 are framing and never appear.
    `sname` and `file` are the names up to their first NUL, empty when they carried options."""

    op: int
    htype: int  # ARP hardware type, 1 = Ethernet
    hlen: int
    hops: int
    xid: int
    secs: int
    flags: int
    ciaddr: IPv4Address
    yiaddr: IPv4Address
    siaddr: IPv4Address
    giaddr: IPv4Address
    chaddr: bytes  # hlen bytes
    sname: bytes
    file: bytes
    options: tuple[tuple[int, bytes], ...]

    # Hand-written because the generated frozen __init__ (one object.__setattr__ per field) costs three
    # times as much, on every packet in and out. A unit test keeps it in step with the fields above.
    def __init__(
        self,
        op: int = Op.BOOTREQUEST,
        htype: int = 1,
        hlen: int = 6,
        hops: int = 0,
        xid: int = 0,
        secs: int = 0,
        flags: int = 0,
        ciaddr: IPv4Address = _ZERO,
        yiaddr: IPv4Address = _ZERO,
        siaddr: IPv4Address = _ZERO,
        giaddr: IPv4Address = _ZERO,
        chaddr: bytes = b"",
        sname: bytes = b"",
        file: bytes = b"",
        options: tuple[tuple[int, bytes], ...] = (),
    ) -> None:
        _setattr(
            self,
            "__dict__",
            {"op": op, "htype": htype, "hlen": hlen, "hops": hops, "xid": xid, "secs": secs,
             "flags": flags, "ciaddr": ciaddr, "yiaddr": yiaddr, "siaddr": siaddr, "giaddr": giaddr,
             "chaddr": chaddr, "sname": sname, "file": file, "options": options},
        )  # fmt: skip

    # The derived values below are computed once per message, into __dict__ (which a frozen dataclass allows,
    # like the index): the engine and the shell ask each of them several times per packet.
    def get(self, code: int) -> bytes | None:
        # O(1): the engine asks a dozen options of every packet. The index is built once, lazily (parse
        # hands over its own); it is not a field, so equality, hashing and replace() ignore it.
        index: dict[int, bytes] | None = self.__dict__.get("_index")
        if index is None:
            index = {}
            for c, value in self.options:
                index.setdefault(c, value)
            self.__dict__["_index"] = index
        return index.get(code)

    @_once
    def msg_type(self) -> MessageType | None:
        value = self.get(OptionCode.MESSAGE_TYPE)
        return _MESSAGE_TYPES.get(value[0]) if value is not None and len(value) == 1 else None

    @_once
    def requested_ip(self) -> IPv4Address | None:
        return self._address(OptionCode.REQUESTED_IP)

    @_once
    def server_id(self) -> IPv4Address | None:
        return self._address(OptionCode.SERVER_ID)

    @_once
    def client_id(self) -> bytes | None:
        return self.get(OptionCode.CLIENT_ID)

    @_once
    def vendor_class(self) -> str | None:
        """Option 60 as text; older Cisco phones append a NUL, stripped here."""
        return self._text(OptionCode.VENDOR_CLASS)

    @_once
    def hostname(self) -> str | None:
        return self._text(OptionCode.HOSTNAME)

    @property
    def param_request_list(self) -> tuple[int, ...]:
        value = self.get(OptionCode.PARAMETER_REQUEST_LIST)
        return tuple(value) if value is not None else ()

    @property
    def max_message_size(self) -> int | None:
        value = self.get(OptionCode.MAX_MESSAGE_SIZE)
        return int.from_bytes(value, "big") if value is not None and len(value) == 2 else None

    @property
    def relay_agent_info(self) -> bytes | None:
        """Option 82 exactly as received; RFC 3046 2.2 wants it echoed unchanged."""
        return self.get(OptionCode.RELAY_AGENT_INFO)

    @property
    def broadcast(self) -> bool:
        return bool(self.flags & BROADCAST_FLAG)

    @_once
    def relayed(self) -> bool:
        """giaddr is set: the message came through a relay agent (RFC 2131 4.1)."""
        return self.giaddr != _ZERO

    @_once
    def chaddr_mac(self) -> str:
        """chaddr in the config's canonical MAC form, e.g. `00:56:2b:04:36:15`."""
        return self.chaddr.hex(":")

    def _address(self, code: int) -> IPv4Address | None:
        value = self.get(code)
        return IPv4Address(value) if value is not None and len(value) == 4 else None

    def _text(self, code: int) -> str | None:
        # RFC 2132 2: receivers must delete trailing NULs from NVT ASCII options.
        value = self.get(code)
        return value.rstrip(b"\0").decode("latin-1") if value is not None else None


def reply_size_limit(request: Message) -> int:
    """Largest reply (DHCP message bytes) the client accepts. Option 57 counts the IP and UDP headers,
    as ISC dhcpd and udhcpc read it; values under its legal minimum of 576 are ignored (RFC 2132 9.10)."""
    value = request.get(OptionCode.MAX_MESSAGE_SIZE)  # Message.max_message_size, one call less per reply
    if value is None or len(value) != 2:
        return DEFAULT_MAX_SIZE
    mms = int.from_bytes(value, "big")
    return DEFAULT_MAX_SIZE if mms < 576 else min(mms, 1500) - IP_UDP_OVERHEAD


# -- parse -------------------------------------------------------------------------------------------


def parse(data: bytes | bytearray | memoryview) -> Message:
    """Decode one DHCP message; ParseError (with the byte offset) for anything malformed."""
    if not isinstance(data, bytes):
        data = bytes(data)
    if len(data) < OPTIONS_START:
        raise ParseError(f"message is {len(data)} bytes, a DHCP message needs at least 240", len(data))
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file, cookie) = _HEADER.unpack_from(data)
    if cookie != MAGIC_COOKIE:
        raise ParseError("no DHCP magic cookie (plain BOOTP is not served)", HEADER_SIZE)
    if hlen > 16:
        raise ParseError(f"hardware address length {hlen} exceeds the 16-byte chaddr field", 2)
    found: dict[int, bytes] = {}
    overload = _scan(data, OPTIONS_START, len(data), found, main=True)
    if overload & 1:  # RFC 2131 4.1: the options field, then file, then sname
        _scan(data, *_FILE, found, main=False)
        file = b""
    if overload & 2:
        _scan(data, *_SNAME, found, main=False)
        sname = b""
    chaddr = chaddr[:hlen]
    msg = Message(
        op, htype, hlen, hops, xid, secs, flags,
        _ZERO if ci == 0 else _address_of(ci), _ZERO if yi == 0 else _address_of(yi),
        _ZERO if si == 0 else _address_of(si), _ZERO if gi == 0 else _ADDRESSES.get(gi) or _address_of(gi),
        chaddr, sname.partition(b"\0")[0], file.partition(b"\0")[0], tuple(found.items()),
    )  # fmt: skip
    _derive(msg.__dict__, found, chaddr)
    msg.__dict__["relayed"] = gi != 0
    return msg


def _derive(fields: dict[str, Any], found: dict[int, bytes], chaddr: bytes) -> None:
    """The derived values Message computes on first access (_once), computed here in one go: every packet the
    engine serves asks all of them, and one pass over the option dict costs less than seven descriptors.
    Same values as the properties (a unit test compares them)."""
    fields["_index"] = found
    get = found.get
    value = get(53)
    fields["msg_type"] = _MESSAGE_TYPES.get(value[0]) if value is not None and len(value) == 1 else None
    value = get(50)
    fields["requested_ip"] = _address_of(value) if value is not None and len(value) == 4 else None
    value = get(54)  # one server's address in every REQUEST: the cache answers without a call
    fields["server_id"] = _ADDRESSES.get(value) or _address_of(value) if value is not None and len(value) == 4 else None
    fields["client_id"] = get(61)
    # Options 60 and 12 as text (Message._text: RFC 2132 2, trailing NULs deleted), inline: once per packet.
    value = get(60)
    fields["vendor_class"] = None if value is None else value.rstrip(b"\0").decode("latin-1")
    value = get(12)
    fields["hostname"] = None if value is None else value.rstrip(b"\0").decode("latin-1")
    fields["chaddr_mac"] = chaddr.hex(":")


# Relays, servers and the addresses of one floor recur in every packet: one IPv4Address per value, bounded.
_ADDRESSES: dict[int | bytes, IPv4Address] = {}
_ADDRESS_CACHE = 4096


def _address_of(value: int | bytes) -> IPv4Address:
    address = _ADDRESSES.get(value)
    if address is None:
        if len(_ADDRESSES) >= _ADDRESS_CACHE:
            _ADDRESSES.clear()
        address = _ADDRESSES[value] = IPv4Address(value)
    return address


def _scan(data: bytes, pos: int, end: int, found: dict[int, bytes], *, main: bool) -> int:
    """Collect options of data[pos:end] into `found`, concatenating repeated codes (RFC 3396); return
    the option 52 overload value seen in the main options field (0 if none). A missing END is tolerated."""
    overload = 0
    while pos < end:
        code = data[pos]
        if code == 0:  # PAD
            pos += 1
            continue
        if code == 255:  # END
            break
        start = pos + 2
        if start > end:
            raise ParseError(f"option {code} has no length octet", pos)
        stop = start + data[pos + 1]
        if stop > end:
            raise ParseError(f"option {code} (length {data[pos + 1]}) runs past the end of its field", pos)
        if code == _OVERLOAD:
            value = data[start:stop]
            if main:
                if len(value) != 1 or not 1 <= value[0] <= 3:
                    raise ParseError(f"option 52 (overload) must be one octet 1-3, got {value.hex()}", pos)
                overload |= value[0]
        elif code in found:
            found[code] += data[start:stop]
        else:
            found[code] = data[start:stop]
        pos = stop
    return overload


# -- build -------------------------------------------------------------------------------------------


def build(msg: Message, max_size: int = DEFAULT_MAX_SIZE) -> bytes:
    """Encode `msg` in at most `max_size` bytes (see reply_size_limit); see build_dropping."""
    return build_dropping(msg, max_size)[0]


def build_dropping(msg: Message, max_size: int = DEFAULT_MAX_SIZE) -> tuple[bytes, tuple[int, ...]]:
    """Encode `msg`; also return the codes of options left out because they did not fit.

    Options go out in the given order, each one included when it still fits after those before it, so
    a caller lists them most important first. Option 82 is reserved first and sent last (RFC 3046 2.2).
    Values over 255 bytes are split into consecutive instances (RFC 3396). The message ends with END
    and is zero-padded to 300 bytes (RFC 1542). Option 52 is never emitted: sname and file stay names.
    ValueError only for a malformed Message (a caller bug), never for what a client sent.
    """
    if max_size < BOOTP_MIN_SIZE:
        raise ValueError(f"max_size {max_size} is below the BOOTP minimum of {BOOTP_MIN_SIZE}")
    buf = encode_header(msg)
    dropped: list[int] = []
    relay, budget = reserve_relay(msg.get(_RELAY), max_size, dropped)
    encode_options_into(buf, msg.options, budget, dropped)
    return finish_options(buf, relay), tuple(dropped)


def reserve_relay(relay: bytes | None, max_size: int, dropped: list[int]) -> tuple[bytes | None, int]:
    """Option 82 is reserved first (RFC 3046 2.2): the relay value still sent, and the budget left for
    the other options before END."""
    budget = max_size - OPTIONS_START - 1
    if relay is not None:
        if _framed_size(len(relay)) <= budget:
            budget -= _framed_size(len(relay))
        else:
            relay = None
            dropped.append(_RELAY)
    return relay, budget


def encode_options_into(
    buf: bytearray, options: tuple[tuple[int, bytes], ...] | list[tuple[int, bytes]], budget: int,
    dropped: list[int],
) -> int:  # fmt: skip
    """Append each option that still fits `budget` (else note its code in `dropped`); return the budget
    left. Option 82 is skipped: build_dropping sends it last."""
    for code, value in options:
        if code == _RELAY:
            continue
        if not 0 < code < 255 or code == _OVERLOAD:
            raise ValueError(f"option code {code} is framing, not an option")
        n = len(value)
        size = n + 2 if n <= MAX_VALUE else _framed_size(n)
        if size > budget:
            dropped.append(code)
            continue
        budget -= size
        if n <= MAX_VALUE:
            buf.append(code)
            buf.append(n)
            buf += value
        else:
            _append_split(buf, code, value)
    return budget


def finish_options(buf: bytearray, relay: bytes | None) -> bytes:
    """Option 82 last, END, and zero padding to the BOOTP minimum."""
    if relay is not None:
        _append_split(buf, _RELAY, relay)
    buf.append(255)  # END
    if len(buf) < BOOTP_MIN_SIZE:
        buf += bytes(BOOTP_MIN_SIZE - len(buf))
    return bytes(buf)


def encode_header(msg: Message) -> bytearray:
    """The fixed fields and the magic cookie (240 bytes), ready for options."""
    if len(msg.chaddr) > 16 or len(msg.sname) > 64 or len(msg.file) > 128:
        raise ValueError("chaddr, sname or file longer than its field (16, 64, 128 bytes)")
    buf = bytearray(OPTIONS_START)
    try:
        _HEADER.pack_into(
            buf, 0, msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs, msg.flags,
            address_int(msg.ciaddr), address_int(msg.yiaddr), address_int(msg.siaddr), address_int(msg.giaddr),
            msg.chaddr, msg.sname, msg.file, MAGIC_COOKIE,
        )  # fmt: skip
    except struct.error as e:
        raise ValueError(f"header field out of range: {e}") from None
    return buf


def _framed_size(length: int) -> int:
    return length + 2 * max(1, -(-length // MAX_VALUE))


def _append_split(buf: bytearray, code: int, value: bytes) -> None:
    """code len value, split into 255-byte pieces when longer (RFC 3396 5); an empty value stays one."""
    for i in range(0, max(len(value), 1), MAX_VALUE):
        piece = value[i : i + MAX_VALUE]
        buf.append(code)
        buf.append(len(piece))
        buf += piece
