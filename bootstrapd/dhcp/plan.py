"""One site's DHCP configuration compiled for the packet path: subnets with their allocators, reservations
by MAC, the class matcher, and every (subnet, class) option set encoded once.

The engine builds a SitePlan at start and at each reload and swaps it in whole, so one packet always sees
one consistent config. Nothing here reads or writes the store except through the allocators' reads.
"""

from __future__ import annotations

from ipaddress import IPv4Address

from bootstrapd.config.model import DeviceClass, Options, RawOption, Reservation, Site, Subnet
from bootstrapd.dhcp.allocator import Allocator, build_allocators
from bootstrapd.dhcp.classify import Classifier
from bootstrapd.dhcp.codec import Message, address_int, encode_options_into
from bootstrapd.dhcp.leases import LeaseView
from bootstrapd.dhcp.options import (
    PROVISIONING_CODES,
    OptionCode,
    encode_options,
    encode_raw,
    encode_string,
    encode_u32,
)
from bootstrapd.dhcp.shard import WHOLE, Shard

# Options as (code, value) in the order they should be sent when nothing else decides.
OptionList = tuple[tuple[int, bytes], ...]
# Encoded options: the bytes, the codes left out for lack of room, the budget left after them.
EncodedOptions = tuple[bytes, tuple[int, ...], int]
_RELAY = int(OptionCode.RELAY_AGENT_INFO)


class OptionSet:
    """The options one kind of device gets, ascending by code, and their order per request list.

    Phones of one model send one request list, so the ordered list is cached by the raw option 55
    bytes; the cache is bounded so that clients inventing request lists cannot grow it.
    """

    __slots__ = ("_by_request", "_encoded", "items")
    CACHE_LIMIT = 64

    def __init__(self, items: OptionList) -> None:
        self.items = items
        self._by_request: dict[bytes, OptionList] = {}
        self._encoded: dict[tuple[bytes, int], EncodedOptions | None] = {}

    def encoded(self, request_list: bytes | None, budget: int) -> EncodedOptions | None:
        """ordered(request_list) on the wire within `budget` bytes: (bytes, codes left out, budget left).
        Cached, as the same phones get the same bytes; None when the set holds option 82, which
        codec.build_dropping treats specially (callers encode the whole message then)."""
        key = (request_list or b"", budget)
        if key in self._encoded:
            return self._encoded[key]
        items = self.ordered(request_list)
        result: EncodedOptions | None = None
        if all(code != _RELAY for code, _ in items):
            buf = bytearray()
            dropped: list[int] = []
            left = encode_options_into(buf, items, budget, dropped)
            result = (bytes(buf), tuple(dropped), left)
        if len(self._encoded) < self.CACHE_LIMIT:
            self._encoded[key] = result
        return result

    def ordered(self, request_list: bytes | None) -> OptionList:
        """The client's requested codes first, in its order, then the others ascending. Every option is
        kept: a class's options go out whether requested or not (mpp-bootstrap.md section 2)."""
        if not request_list:
            return self.items
        cached = self._by_request.get(request_list)
        if cached is None:
            cached = order_options(self.items, request_list)
            if len(self._by_request) < self.CACHE_LIMIT:
                self._by_request[request_list] = cached
        return cached

    def with_option(self, code: int, value: bytes) -> OptionSet:
        """A copy with one more option (a reservation's hostname): per device, so not shared."""
        return OptionSet(tuple(sorted((*(i for i in self.items if i[0] != code), (code, value)))))


def order_options(items: OptionList, request_list: bytes) -> OptionList:
    pending = dict(items)
    out: list[tuple[int, bytes]] = []
    for code in request_list:
        value = pending.pop(code, None)
        if value is not None:
            out.append((code, value))
    out.extend(item for item in items if item[0] in pending)
    return tuple(out)


class SubnetPlan:
    """One configured subnet, ready for lookups."""

    __slots__ = ("allocator", "config", "netmask", "network", "options", "prefix")

    def __init__(self, config: Subnet, allocator: Allocator, options: dict[str | None, OptionSet]) -> None:
        self.config = config
        self.prefix = str(config.prefix)  # Lease.subnet and the metric label
        self.network = int(config.prefix.network_address)
        self.netmask = int(config.prefix.netmask)
        self.allocator = allocator
        self.options = options  # by class name (None: no class matched)

    def contains(self, address: IPv4Address) -> bool:
        return address_int(address) & self.netmask == self.network


class SitePlan:
    """Everything the engine derives from a Site, computed once per (re)load."""

    def __init__(self, site: Site, store: LeaseView, shard: Shard = WHOLE) -> None:
        dhcp = site.dhcp
        self.site = site
        self.dhcp = dhcp
        self.server_id = site.listen.address
        self.server_port = site.listen.dhcp_port
        self.client_port = site.listen.dhcp_port + 1
        # RFC 2132 9.2, 9.11, 9.12: the lease time and T1 = 50 %, T2 = 87.5 % of it (RFC 2131 4.4.5).
        # per message type: options 53, 54, 51, 58, 59 encoded and as (code, value) (reply.py)
        self.reply_heads: dict[int, tuple[bytes, OptionList]] = {}
        self.lease_times: OptionList = (
            (int(OptionCode.LEASE_TIME), encode_u32(dhcp.lease_time)),
            (int(OptionCode.RENEWAL_TIME), encode_u32(dhcp.lease_time // 2)),
            (int(OptionCode.REBINDING_TIME), encode_u32(dhcp.lease_time * 7 // 8)),
        )
        self.classifier = Classifier(dhcp.classes)
        self.has_classes = bool(dhcp.classes)
        self.reservations = {r.mac: r for r in dhcp.reservations}
        allocators = build_allocators(dhcp, site.listen.address, store, shard)
        self.subnets = tuple(SubnetPlan(s, allocators[str(s.prefix)], _subnet_options(site, s)) for s in dhcp.subnets)

    def subnet_of(self, address: IPv4Address) -> SubnetPlan | None:
        a = address_int(address)
        for subnet in self.subnets:
            if a & subnet.netmask == subnet.network:  # subnet.contains(address), once per packet
                return subnet
        return None

    def reservation(self, msg: Message) -> Reservation | None:
        """The device's reservation, by MAC (site-yaml.md: reservations are per device)."""
        return self.reservations.get(msg.chaddr_mac) if msg.hlen == 6 else None

    def device_class(self, msg: Message, reservation: Reservation | None) -> DeviceClass | None:
        """The reservation's `class` when it names one, else the first class that matches."""
        if reservation is not None and reservation.class_ is not None:
            named = self.classifier.by_name(reservation.class_)
            if named is not None:
                return named
        return self.classifier.classify(msg.vendor_class, msg.chaddr_mac, msg.hostname)


def _subnet_options(site: Site, subnet: Subnet) -> dict[str | None, OptionSet]:
    """The option set of every class in `subnet`, and of devices no class matched (key None)."""
    base = subnet.options.over(site.dhcp.options)
    out: dict[str | None, OptionSet] = {None: OptionSet(_option_list(site, subnet, base, None))}
    for device_class in site.dhcp.classes:
        items = _option_list(site, subnet, device_class.options.over(base), device_class.name)
        out[device_class.name] = OptionSet(items)
    return out


def _option_list(site: Site, subnet: Subnet, options: Options, class_name: str | None) -> OptionList:
    """Layered options (default < subnet < class), the subnet's own (1, 3), the domain (15) and the raw
    options of this class; ascending by code. Provisioning codes only for a matched class."""
    values: dict[int, bytes] = {
        OptionCode.SUBNET_MASK: subnet.prefix.netmask.packed,
        OptionCode.DOMAIN_NAME: encode_string(site.domain),
    }
    if subnet.router is not None:
        values[OptionCode.ROUTER] = subnet.router.packed
    values.update(encode_options(options))
    for raw in site.dhcp.raw_options:
        if _raw_applies(raw, class_name):
            values[raw.code] = encode_raw(raw.type, raw.value)
    if class_name is None:  # mpp-bootstrap.md 3: never 150/159/160 to a device no class matched
        for code in PROVISIONING_CODES:
            values.pop(code, None)
    return tuple((int(code), values[code]) for code in sorted(values))


def _raw_applies(raw: RawOption, class_name: str | None) -> bool:
    return not raw.classes or (class_name is not None and class_name in raw.classes)
