"""What the DHCP engine returns for one received message: a Reply to send, Silent (handled, no reply by
design) or a Drop with its reason. The shell sends, logs and counts from these values alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address

from bootstrapd.dhcp.codec import Message, MessageType
from bootstrapd.dhcp.leases import Lease


class DropReason(enum.Enum):
    """Why a received packet got no answer (design.md convention 4). A closed set: the value is both the
    log field `reason` and the metric label of bootstrapd_dhcp_drops_total."""

    PARSE_FAILED = "parse_failed"  # not a DHCP message (RFC 2131 2 format); set by the shell
    NOT_FOR_US = "not_for_us"  # a valid message no DHCPv4 server answers here (e.g. RFC 4388 leasequery)
    RFC_VIOLATION = "rfc_violation"  # a field or option RFC 2131 4.3 / table 5 forbids or requires
    NO_SUBNET = "no_subnet"  # giaddr, ciaddr or the receiving interface is in no configured subnet
    POOL_EXHAUSTED = "pool_exhausted"  # no free address and no expired lease to reuse (RFC 2131 4.3.1)
    UNKNOWN_DEVICE = "unknown_device"  # no class matched and `unknown_devices: ignore`
    OVERLOAD = "overload"  # shed by admission control: more arrived than the shell serves in tens of ms
    STALE = "stale"  # a DISCOVER that waited too long in the queue under overload: its client has moved on
    OTHER_SERVER = "other_server"  # option 54 names another server (RFC 2131 4.3.2 SELECTING)
    NO_LEASE = "no_lease"  # REQUEST/RELEASE/DECLINE about a lease we have no record of (RFC 2131 4.3.2)
    NOT_AUTHORITATIVE = "not_authoritative"  # we would NAK, but `authoritative: false` keeps us silent
    STORE_FAILED = "store_failed"  # the lease store refused a write: no reply without a durable lease
    # A shared store is unreachable: new addresses are paused (set by the shell; the client retries, RFC 2131 4.1).
    STORE_DOWN = "store_down"
    # Another node of a shared store wrote the address first (set by the shell after the burst's flush):
    # silent, so the client retransmits and meets the winner's record (design.md convention 5).
    LOST_RACE = "lost_race"
    INTERNAL_ERROR = "internal_error"  # a bug: an exception escaped the engine; set by the shell
    # Answered, but the reply did not leave (set by the shell; RFC 2131 4.1: the client retransmits):
    SEND_QUEUE_FULL = "send_queue_full"  # the socket's send buffer was full (EAGAIN)
    SEND_FAILED = "send_failed"  # the kernel refused the send (e.g. no route to the destination)
    DESTINATION_UNREACHABLE = "destination_unreachable"  # its next hop answers no ARP: held, not queued


@dataclass(frozen=True, slots=True)
class Rx:
    """Where a message came in."""

    interface: str
    local_address: IPv4Address | None  # our address on that interface: the subnet when giaddr is 0
    src_ip: IPv4Address
    src_port: int
    # Sent to a broadcast address: the client is on this link, so its ciaddr cannot choose the subnet
    # (a REBINDING broadcast from a phone moved off a relayed segment must get a NAK, RFC 2131 4.3.2).
    broadcast: bool = False


@dataclass(frozen=True, slots=True)
class Destination:
    """Where a reply goes (RFC 2131 4.1), chosen by the engine, carried out by the shell."""

    ip: IPv4Address
    port: int
    # Send to this hardware address at layer 2 (the client has no IP address yet); if the shell cannot,
    # it broadcasts instead. None when an ordinary UDP send to `ip` reaches the client.
    l2_unicast: bytes | None
    broadcast: bool  # ip is 255.255.255.255


@dataclass(frozen=True, slots=True)
class Reply:
    message: Message
    wire: bytes  # `message` encoded within the client's size limit (option 57)
    destination: Destination
    msg_type: MessageType  # OFFER, ACK or NAK
    device_class: str | None  # the class the device was served as; None if no class matched
    address: IPv4Address | None  # yiaddr for OFFER/ACK, ciaddr for an INFORM's ACK, None for NAK
    lease: Lease | None  # the lease record after this exchange (None for NAK and INFORM)
    new_device: bool  # no record of this client existed before this message
    dropped_options: tuple[int, ...] = ()  # option codes left out because they did not fit


@dataclass(frozen=True, slots=True)
class Silent:
    """Processed, and by design no reply: RELEASE (RFC 2131 4.3.4) and DECLINE (4.3.3)."""

    event: str  # "release" | "decline": the log event is dhcp.<event>
    lease: Lease | None  # the record as written (RELEASED, DECLINED)


@dataclass(frozen=True, slots=True)
class Drop:
    reason: DropReason
    detail: str = ""  # for the log line only; never a metric label


Outcome = Reply | Silent | Drop


def lost_race(outcome: Reply | Silent, lost: frozenset[IPv4Address]) -> bool:
    """The outcome promises a record whose write lost to another writer (LeaseStore.flush): it must not
    leave. A NAK or an INFORM's ACK promises no record."""
    return bool(lost) and outcome.lease is not None and outcome.lease.address in lost
