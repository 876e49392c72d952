"""The simulated phone's DHCP client: an RFC 2131 state machine with no I/O (time and randomness passed in).

INIT -> SELECTING (DISCOVER sent) -> REQUESTING (REQUEST for the first OFFER) -> BOUND. Retransmission
follows RFC 2131 section 4.1: 4 s before the first retransmission, doubling up to 64 s, each delay
randomised by a uniform +-1 s. A REQUEST that draws no answer after `request_tries` sends, or a DHCPNAK,
sends the client back to INIT (section 4.4.1), which starts over with a new xid at once.
Renewal is out of scope: a staging run is far shorter than a lease.
"""

from __future__ import annotations

import enum
import ipaddress
import random
from collections.abc import Mapping
from dataclasses import dataclass, field

from bootstrapd.dhcp.codec import MessageType


class ClientState(enum.Enum):
    """RFC 2131 section 4.4, figure 5 (the states a booting client passes through)."""

    INIT = "init"
    SELECTING = "selecting"
    REQUESTING = "requesting"
    BOUND = "bound"


@dataclass(frozen=True)
class Retransmit:
    """RFC 2131 section 4.1 timing; tests and benches may shorten it."""

    initial: float = 4.0
    maximum: float = 64.0
    jitter: float = 1.0
    request_tries: int = 4

    def delay(self, retransmission: int, rng: random.Random) -> float:
        """Seconds to wait after the send numbered `retransmission` (0 = the first send)."""
        base = min(self.initial * (1 << retransmission), self.maximum)
        return max(0.1, base + rng.uniform(-self.jitter, self.jitter))


@dataclass(frozen=True)
class Outgoing:
    """One message for the wire layer to build; `secs` is RFC 2131's seconds since acquisition began."""

    msg_type: MessageType
    xid: int
    secs: int
    requested: ipaddress.IPv4Address | None = None  # option 50
    server_id: ipaddress.IPv4Address | None = None  # option 54


@dataclass(frozen=True)
class Incoming:
    """A server reply addressed to this client (already matched on chaddr)."""

    msg_type: MessageType
    xid: int
    yiaddr: ipaddress.IPv4Address
    options: Mapping[int, bytes] = field(default_factory=dict)

    @property
    def server_id(self) -> ipaddress.IPv4Address | None:
        value = self.options.get(54, b"")
        return ipaddress.IPv4Address(value) if len(value) == 4 else None


@dataclass(frozen=True)
class Lease:
    """What BOUND gives the phone."""

    address: ipaddress.IPv4Address
    prefixlen: int
    server_id: ipaddress.IPv4Address | None
    options: Mapping[int, bytes]

    @classmethod
    def from_ack(cls, ack: Incoming) -> Lease:
        mask = ack.options.get(1, b"")
        prefixlen = ipaddress.IPv4Network(f"0.0.0.0/{ipaddress.IPv4Address(mask)}").prefixlen \
            if len(mask) == 4 else 24
        return cls(ack.yiaddr, prefixlen, ack.server_id, dict(ack.options))


class DhcpClient:
    """One phone's DHCP exchange. Call start(), then receive() for each reply and timeout() at `deadline`."""

    def __init__(self, rng: random.Random, retransmit: Retransmit = Retransmit()) -> None:
        self.rng = rng
        self.retransmit = retransmit
        self.state = ClientState.INIT
        self.deadline: float | None = None
        self.lease: Lease | None = None
        self.sent = {MessageType.DISCOVER: 0, MessageType.REQUEST: 0}
        self.naks = 0
        self._began = 0.0
        self._xid = 0
        self._tries = 0
        self._offer: Incoming | None = None

    def start(self, now: float) -> Outgoing:
        """Power-on (or back to INIT): a DISCOVER with a fresh xid."""
        if self.state is ClientState.INIT and self.sent[MessageType.DISCOVER] == 0:
            self._began = now
        self._xid = self.rng.getrandbits(32)
        self.state, self._tries, self._offer = ClientState.SELECTING, 0, None
        return self._send(MessageType.DISCOVER, now)

    def timeout(self, now: float) -> Outgoing | None:
        """The retransmission timer fired: resend, or give up on the REQUEST and start over."""
        if self.deadline is None or now < self.deadline:
            return None
        if self.state is ClientState.SELECTING:
            return self._send(MessageType.DISCOVER, now)
        if self.state is ClientState.REQUESTING:
            if self._tries >= self.retransmit.request_tries:
                self.state = ClientState.INIT
                return self.start(now)
            return self._send(MessageType.REQUEST, now)
        return None

    def receive(self, msg: Incoming, now: float) -> Outgoing | None:
        """A reply for our chaddr: the next message to send, if any. BOUND is visible in `state`."""
        if msg.xid != self._xid:
            return None  # a late reply to an older transaction
        if self.state is ClientState.SELECTING and msg.msg_type is MessageType.OFFER:
            if msg.server_id is None or msg.yiaddr.is_unspecified:
                return None
            self._offer, self.state, self._tries = msg, ClientState.REQUESTING, 0
            return self._send(MessageType.REQUEST, now)
        if self.state is ClientState.REQUESTING and msg.msg_type is MessageType.ACK:
            self.state, self.deadline, self.lease = ClientState.BOUND, None, Lease.from_ack(msg)
            return None
        if self.state is ClientState.REQUESTING and msg.msg_type is MessageType.NAK:
            self.naks += 1
            self.state = ClientState.INIT
            return self.start(now)
        return None

    def _send(self, msg_type: MessageType, now: float) -> Outgoing:
        self.deadline = now + self.retransmit.delay(self._tries, self.rng)
        self._tries += 1
        self.sent[msg_type] += 1
        secs = min(int(now - self._began), 0xFFFF)
        if msg_type is MessageType.REQUEST:
            assert self._offer is not None
            return Outgoing(msg_type, self._xid, secs, self._offer.yiaddr, self._offer.server_id)
        return Outgoing(msg_type, self._xid, secs)
