"""The DHCPv4 server engine: one received Message in, one Reply, Silent or Drop out (sans-I/O).

`handle` runs the accept filters, then one process function per message type (RFC 2131 4.3). The
allocator proposes addresses, the engine decides, the store persists: every OFFER holds its address in
the store (state OFFERED) so that two phones booting together never get the same one, and every ACK
writes its BOUND lease before the Reply is returned. The engine calls store.put() but never flush(): the
shell flushes once per burst, before it sends the burst's replies (design.md convention 5).

Time comes in as `now` (epoch seconds); nothing here logs, counts or touches a socket.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from ipaddress import IPv4Address

from bootstrapd.config.model import DeviceClass, Reservation, Site, UnknownDevices
from bootstrapd.dhcp import reply
from bootstrapd.dhcp.codec import Message, MessageType, Op
from bootstrapd.dhcp.leases import Lease, LeaseState, LeaseStore, client_identity
from bootstrapd.dhcp.outcome import Destination, Drop, DropReason, Outcome, Reply, Rx, Silent
from bootstrapd.dhcp.plan import SitePlan, SubnetPlan
from bootstrapd.dhcp.shard import WHOLE, Shard
from bootstrapd.errors import StoreError

__all__ = ["Destination", "Drop", "DropReason", "Engine", "Outcome", "Reply", "Rx", "Silent"]

ZERO = reply.ZERO
MAX_HOPS = 16  # RFC 1542 4.1.1: relays discard requests whose hops field exceeds 16
# Message types a server sends, or a client may never send to one (RFC 2131 table 2, RFC 3203).
_SERVER_TYPES = frozenset(
    {MessageType.OFFER, MessageType.ACK, MessageType.NAK, MessageType.FORCERENEW}
    | {MessageType.LEASEUNASSIGNED, MessageType.LEASEUNKNOWN, MessageType.LEASEACTIVE}
)
# Records a client may DECLINE or RELEASE: what we offered or acknowledged to it.
_HELD = frozenset({LeaseState.OFFERED, LeaseState.BOUND})

Handler = Callable[[SitePlan, Message, Rx, float], Outcome]


@dataclass(frozen=True, slots=True)
class Client:
    """Who sent a message, as the config sees it. The derived fields are computed once per packet in
    _client (the engine asks each of them several times)."""

    identity: bytes  # leases.client_identity: option 61, else htype + chaddr
    mac: str  # chaddr in the config's MAC form
    subnet: SubnetPlan
    reservation: Reservation | None  # the device's reservation, if any (in any subnet)
    device_class: DeviceClass | None
    class_name: str | None  # device_class.name
    hostname: str | None  # the reservation's host name: option 12 of the replies, the lease's name
    reserved_here: IPv4Address | None  # the reserved address, when it is in the subnet the client is on


class Engine:
    def __init__(self, site: Site, store: LeaseStore, shard: Shard = WHOLE) -> None:
        self._store = store
        self._shard = shard  # the part of every pool this engine offers (shard.py)
        self._plan = SitePlan(site, store, shard)
        self._handlers: dict[MessageType, Handler] = {
            MessageType.DISCOVER: self.process_discover,
            MessageType.REQUEST: self.process_request,
            MessageType.DECLINE: self.process_decline,
            MessageType.RELEASE: self.process_release,
            MessageType.INFORM: self.process_inform,
        }
        self._counts: tuple[float, SitePlan, dict[str, dict[LeaseState, int]]] | None = None

    def reload(self, site: Site) -> None:
        """Serve `site` from now on. Leases are kept as they are; one that no longer fits a pool or
        reservation gets a NAK at its next renewal. If building the new plan fails, the old one stays."""
        self._plan = SitePlan(site, self._store, self._shard)
        self._counts = None

    def handle(self, msg: Message, rx: Rx, now: float) -> Outcome:
        refused = _accept(msg)
        if refused is not None:
            return refused
        plan = self._plan
        msg_type = msg.msg_type
        assert msg_type is not None  # _accept checked it
        handler = self._handlers.get(msg_type)
        if handler is None:
            return Drop(DropReason.NOT_FOR_US, f"{msg_type.name} is not served")
        try:
            return handler(plan, msg, rx, now)
        except StoreError as e:  # no reply rather than one whose lease may be lost
            return Drop(DropReason.STORE_FAILED, str(e))

    # -- one process function per message type (RFC 2131 4.3) ---------------------------------------

    def process_discover(self, plan: SitePlan, msg: Message, rx: Rx, now: float) -> Outcome:
        """RFC 2131 4.3.1: choose an address, hold it for offer_hold, OFFER it."""
        client = _client(plan, msg, rx, use_ciaddr=False)
        if isinstance(client, Drop):
            return client
        prior = self._store.get_by_client(client.identity)
        address = client.reserved_here or client.subnet.allocator.pick_given(prior, client.identity, msg.requested_ip,
                                                                           now)  # fmt: skip
        if address is None:
            return Drop(DropReason.POOL_EXHAUSTED, f"no free address in {client.subnet.prefix}")
        hold_until = now + plan.dhcp.offer_hold
        lease = self._store.get_by_address(address)
        # A client that still holds a bound lease on the address keeps it as it is; otherwise hold.
        if lease is None or not _is_client(lease, client) or not _bound_until(lease, hold_until):
            lease = self._lease(client, msg, address, LeaseState.OFFERED, hold_until, prior, now)
            self._store.put(lease, force=client.reserved_here is not None and address == client.reserved_here)
        return self._offer_or_ack(plan, msg, MessageType.OFFER, client, lease, prior is None)

    def process_request(self, plan: SitePlan, msg: Message, rx: Rx, now: float) -> Outcome:
        """RFC 2131 4.3.2: tell the client state from option 54, option 50 and ciaddr."""
        server_id = msg.server_id
        if server_id is not None and server_id != plan.server_id:
            self._forget_offer(plan, msg, server_id, now)
            return Drop(DropReason.OTHER_SERVER, f"client chose server {server_id}")
        if msg.ciaddr == ZERO and msg.requested_ip is None:
            return Drop(DropReason.RFC_VIOLATION, "REQUEST with neither ciaddr nor option 50")
        client = _client(plan, msg, rx, use_ciaddr=True)
        if isinstance(client, Drop):
            return self._renewal_outside_subnets(plan, msg, client)
        if msg.ciaddr != ZERO:  # RENEWING (unicast) or REBINDING (broadcast): the same answer
            return self._renewing(plan, msg, client, msg.ciaddr, now)
        requested = msg.requested_ip
        assert requested is not None
        if server_id is not None:  # SELECTING: the client chose our OFFER; ACK it while it may be the client's
            if self._may_have(client, requested, now):
                return self._ack(plan, msg, client, requested, now)
            return self._nak(plan, msg, client, f"{requested} is not available")
        return self._init_reboot(plan, msg, client, requested, now)

    def process_decline(self, plan: SitePlan, msg: Message, rx: Rx, now: float) -> Outcome:
        """RFC 2131 4.3.3: the client found the address in use; keep it out for decline_probation."""
        server_id = msg.server_id
        if server_id is not None and server_id != plan.server_id:
            return Drop(DropReason.OTHER_SERVER, f"DECLINE to server {server_id}")
        address = msg.requested_ip
        if address is None:
            return Drop(DropReason.RFC_VIOLATION, "DECLINE without option 50")
        record = self._store.get_by_address(address)
        if record is None or record.client_id != _identity(msg) or record.state not in _HELD:
            return Drop(DropReason.NO_LEASE, f"DECLINE of {address}, which this client does not hold")
        lease = replace(record, state=LeaseState.DECLINED, expires=now + plan.dhcp.decline_probation, updated=now)
        self._store.put(lease)
        return Silent("decline", lease)

    def process_release(self, plan: SitePlan, msg: Message, rx: Rx, now: float) -> Outcome:
        """RFC 2131 4.3.4: free the address, keep the record so the client can get it back."""
        server_id = msg.server_id
        if server_id is not None and server_id != plan.server_id:
            return Drop(DropReason.OTHER_SERVER, f"RELEASE to server {server_id}")
        if msg.ciaddr == ZERO:
            return Drop(DropReason.RFC_VIOLATION, "RELEASE without ciaddr")
        record = self._store.get_by_address(msg.ciaddr)
        if record is None or record.client_id != _identity(msg) or record.state not in _HELD:
            return Drop(DropReason.NO_LEASE, f"RELEASE of {msg.ciaddr}, which this client does not hold")
        lease = replace(record, state=LeaseState.RELEASED, expires=now, updated=now)
        self._store.put(lease)
        return Silent("release", lease)

    def process_inform(self, plan: SitePlan, msg: Message, rx: Rx, now: float) -> Outcome:
        """RFC 2131 4.3.5: configuration for a client that has its address already; no lease."""
        client = _client(plan, msg, rx, use_ciaddr=True)
        if isinstance(client, Drop):
            return client
        body = reply.body_for(client.subnet.options[client.class_name], client.hostname)
        message = reply.inform_message(plan, msg, body)
        dest = reply.destination(plan, msg, MessageType.ACK, ZERO)
        if msg.giaddr == ZERO and msg.ciaddr == ZERO and rx.src_ip != ZERO:
            dest = Destination(rx.src_ip, plan.client_port, None, False)  # a client that left ciaddr 0
        address = msg.ciaddr if msg.ciaddr != ZERO else None
        return reply.finish(
            msg, message, dest, MessageType.ACK,
            device_class=client.class_name, address=address, lease=None, new_device=False,
        )  # fmt: skip

    # -- REQUEST by client state (RFC 2131 4.3.2) -----------------------------------------------------

    def _init_reboot(self, plan: SitePlan, msg: Message, client: Client, address: IPv4Address, now: float) -> Outcome:
        """A rebooted client asks to keep its address: ACK if it is its own and on this network."""
        if not client.subnet.contains(address):
            return self._refuse(plan, msg, client, DropReason.NOT_AUTHORITATIVE, f"{address}: wrong network")
        if not self._owns(client, address):
            # RFC 2131 4.3.2: no record of this client -> silent, unless we are authoritative.
            return self._refuse(plan, msg, client, DropReason.NO_LEASE, f"{address} is not the client's")
        if not self._may_have(client, address, now):  # ours, but the config no longer allows it
            return self._nak(plan, msg, client, f"{address} is no longer valid here")
        return self._ack(plan, msg, client, address, now)

    def _renewing(self, plan: SitePlan, msg: Message, client: Client, address: IPv4Address, now: float) -> Outcome:
        """RENEWING or REBINDING: extend the lease on ciaddr. A lease the current config no longer
        allows (pool or reservation changed, client moved) is NAKed whatever `authoritative` says."""
        if not self._owns(client, address):
            return self._refuse(plan, msg, client, DropReason.NO_LEASE, f"no lease of {address}")
        if not self._may_have(client, address, now):
            return self._nak(plan, msg, client, f"{address} is no longer valid here")
        return self._ack(plan, msg, client, address, now)

    def _renewal_outside_subnets(self, plan: SitePlan, msg: Message, refused: Drop) -> Outcome:
        """A renewal of a lease of ours whose subnet is gone from the config gets a NAK."""
        if refused.reason is DropReason.NO_SUBNET and msg.ciaddr != ZERO and msg.giaddr == ZERO:
            record = self._store.get_by_address(msg.ciaddr)
            if record is not None and record.client_id == _identity(msg) and record.state in _HELD:
                return self._nak(plan, msg, None, f"{msg.ciaddr} is outside every subnet served")
        return refused

    # -- decisions ------------------------------------------------------------------------------------

    def _owns(self, client: Client, address: IPv4Address) -> bool:
        """The address is reserved for the client, or the store's record of it is the client's."""
        if client.reserved_here is not None and address == client.reserved_here:
            return True
        return _is_client(self._store.get_by_address(address), client)

    def _may_have(self, client: Client, address: IPv4Address, now: float) -> bool:
        """The config and the store allow the client this address now. Reservations always win: a
        reserved device gets its reserved address and no other; nobody else ever gets that address."""
        if not client.subnet.contains(address):
            return False
        reserved = client.reserved_here
        if reserved is not None:
            return address == reserved
        return client.subnet.allocator.available(address, client.identity, now)

    def _forget_offer(self, plan: SitePlan, msg: Message, chosen: IPv4Address, now: float) -> None:
        """SELECTING another server's OFFER (RFC 2131 4.3.2): free the address we held for the client.
        When the chosen server is a partner node (one shared store) and the record is of the address the
        client chose, the record is that node's offer, about to be its ACK: leave it."""
        own = self._store.get_by_client(_identity(msg))
        if own is None or own.state is not LeaseState.OFFERED:
            return
        if own.address == msg.requested_ip and chosen in plan.site.store.partners:
            return
        self._store.put(replace(own, state=LeaseState.EXPIRED, expires=now, updated=now))

    # -- writing leases and replies ---------------------------------------------------------------------

    def _lease(
        self, client: Client, msg: Message, address: IPv4Address, state: LeaseState, expires: float,
        prior: Lease | None, now: float,
    ) -> Lease:  # fmt: skip
        return Lease(
            address=address,
            client_id=client.identity,
            chaddr=msg.chaddr,
            state=state,
            subnet=client.subnet.prefix,
            expires=expires,
            first_seen=prior.first_seen if prior is not None else now,
            updated=now,
            hostname=client.hostname or msg.hostname,
            vendor_class=msg.vendor_class,
            device_class=client.class_name,
        )

    def _ack(self, plan: SitePlan, msg: Message, client: Client, address: IPv4Address, now: float) -> Reply:
        """Bind the address for lease_time and ACK it (the shell flushes the store before sending)."""
        prior = self._store.get_by_client(client.identity)
        expires = now + plan.dhcp.lease_time
        lease = self._lease(client, msg, address, LeaseState.BOUND, expires, prior, now)
        self._store.put(lease, force=client.reserved_here is not None and address == client.reserved_here)
        return self._offer_or_ack(plan, msg, MessageType.ACK, client, lease, prior is None)

    def _offer_or_ack(
        self, plan: SitePlan, msg: Message, msg_type: MessageType, client: Client, lease: Lease, new: bool
    ) -> Reply:
        options = client.subnet.options[client.class_name]
        body = options if client.hostname is None else reply.body_for(options, client.hostname)
        dest = reply.destination(plan, msg, msg_type, lease.address)
        return reply.lease_reply(
            plan, msg, msg_type, lease.address, body, dest,
            device_class=client.class_name, lease=lease, new_device=new,
        )  # fmt: skip

    def _nak(self, plan: SitePlan, msg: Message, client: Client | None, text: str) -> Reply:
        message = reply.nak_message(plan, msg, text)
        dest = reply.destination(plan, msg, MessageType.NAK, ZERO)
        return reply.finish(
            msg, message, dest, MessageType.NAK,
            device_class=client.class_name if client else None, address=None, lease=None, new_device=False,
        )  # fmt: skip

    def _refuse(self, plan: SitePlan, msg: Message, client: Client, reason: DropReason, text: str) -> Outcome:
        """NAK when authoritative (site-yaml.md `dhcp.authoritative`), else stay silent."""
        if plan.dhcp.authoritative:
            return self._nak(plan, msg, client, text)
        return Drop(reason, text)

    # -- gauges (O(records): for the shell's periodic metrics, not per packet) ---------------------------

    def pool_sizes(self) -> dict[str, int]:
        """Addresses in the dynamic pools per subnet prefix (reserved and server addresses excluded)."""
        return {s.prefix: s.allocator.size for s in self._plan.subnets}

    def active_leases(self, now: float) -> dict[str, int]:
        """BOUND, unexpired leases per subnet prefix."""
        return {prefix: counts[LeaseState.BOUND] for prefix, counts in self._subnet_counts(now).items()}

    def offers_held(self, now: float) -> int:
        """Addresses held for an OFFER not yet taken up."""
        return sum(counts[LeaseState.OFFERED] for counts in self._subnet_counts(now).values())

    def _subnet_counts(self, now: float) -> dict[str, dict[LeaseState, int]]:
        # The shell reads all gauges with one `now`: count the store once for them.
        plan = self._plan
        if self._counts is None or self._counts[0] != now or self._counts[1] is not plan:
            counts = {s.prefix: self._store.counts(s.prefix, now) for s in plan.subnets}
            self._counts = (now, plan, counts)
        return self._counts[2]


# -- accept filters and the client's identity -----------------------------------------------------------


def _accept(msg: Message) -> Drop | None:
    """What no DHCP server answers (RFC 2131 2 and table 5, RFC 1542 4.1.1)."""
    if msg.op != Op.BOOTREQUEST:
        return Drop(DropReason.RFC_VIOLATION, f"op {msg.op} is not BOOTREQUEST")
    msg_type = msg.msg_type
    if msg_type is None:
        return Drop(DropReason.RFC_VIOLATION, "no valid message type (option 53)")
    if msg_type in _SERVER_TYPES:
        return Drop(DropReason.RFC_VIOLATION, f"{msg_type.name} is not sent by clients")
    if msg.hops > MAX_HOPS:
        return Drop(DropReason.RFC_VIOLATION, f"hops {msg.hops} exceeds {MAX_HOPS}")
    if msg.htype == 1 and msg.hlen != 6:
        return Drop(DropReason.RFC_VIOLATION, f"Ethernet chaddr with hlen {msg.hlen}")
    if not any(msg.chaddr) and not msg.client_id:
        return Drop(DropReason.RFC_VIOLATION, "neither chaddr nor client id (option 61)")
    return None


def _identity(msg: Message) -> bytes:
    return client_identity(msg.client_id, msg.htype, msg.chaddr)


def _client(plan: SitePlan, msg: Message, rx: Rx, *, use_ciaddr: bool) -> Client | Drop:
    """Subnet (relay's giaddr, else a unicast client's ciaddr, else the receiving interface),
    reservation and class of the sender; Drop when no subnet serves it or the device is ignored."""
    if msg.relayed:
        selector = msg.giaddr
    elif use_ciaddr and msg.ciaddr != ZERO and not rx.broadcast:
        selector = msg.ciaddr
    else:
        selector = rx.local_address or plan.server_id
    subnet = plan.subnet_of(selector)
    if subnet is None:
        return Drop(DropReason.NO_SUBNET, f"no subnet for {selector}")
    reservation = plan.reservation(msg) if plan.reservations else None
    # Without classes and a reservation nothing can match (the common lab case): skip the classifier.
    device_class = plan.device_class(msg, reservation) if plan.has_classes or reservation is not None else None
    if device_class is None and reservation is None and plan.dhcp.unknown_devices is UnknownDevices.IGNORE:
        return Drop(DropReason.UNKNOWN_DEVICE, f"no class matched vendor class {msg.vendor_class!r}")
    if reservation is None:
        hostname = reserved_here = None
    else:
        hostname = reservation.hostname
        reserved_here = reservation.address if subnet.contains(reservation.address) else None
    class_name = device_class.name if device_class is not None else None
    identity = client_identity(msg.client_id, msg.htype, msg.chaddr)
    return Client(identity, msg.chaddr_mac, subnet, reservation, device_class, class_name, hostname,
                  reserved_here)  # fmt: skip


def _is_client(lease: Lease | None, client: Client) -> bool:
    """The record is the client's own (a DECLINED one is quarantine, not the client's any more)."""
    return lease is not None and lease.client_id == client.identity and lease.state is not LeaseState.DECLINED


def _bound_until(lease: Lease, when: float) -> bool:
    return lease.state is LeaseState.BOUND and lease.expires >= when


