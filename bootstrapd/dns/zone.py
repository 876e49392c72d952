"""The zones we are authoritative for, built from the site file (and the lease table).

One forward zone at `domain` and one in-addr.arpa zone per octet-aligned block of each DHCP subnet. Rules
a reader might not guess:
- Names are relative to `domain` unless they end with a dot; `@` is the apex.
- An in-zone NS name with no A or AAAA record gets `A listen.address`: we are that name server.
- Every A record inside a served reverse zone gets a PTR, unless a PTR is configured there; when several
  names share an address, the first one in the file wins.
- Lease records never shadow configured data: a lease whose name already has records, or whose address
  already has a PTR, is not published for that part.
- Records outside every zone we serve (say a PTR for a subnet missing from dhcp.subnets) can never be
  asked for: they are left out and listed in `Zone.ignored` so the shell can warn.
- The SOA serial is a stable hash of the site's content (or a caller's value, e.g. from the file's sha):
  it changes whenever the configuration does. We refuse zone transfers and have no secondaries, so it
  need not increase.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Mapping

from dnslib import PTR, A

from bootstrapd.config.model import Site
from bootstrapd.dns.build import ZoneBuilder
from bootstrapd.dns.leases import LeaseTable
from bootstrapd.dns.names import Name, ancestors, labels, parent, reverse_name, reverse_octets
from bootstrapd.dns.records import Apex, Node, Record, dname
from bootstrapd.dns.wire import QType


def site_serial(site: Site) -> int:
    """A 32-bit serial that changes with the site's content (dataclass reprs are deterministic)."""
    digest = hashlib.sha256(repr(site).encode()).digest()
    return int.from_bytes(digest[:4], "big") or 1


class Zone:
    """Static records by owner, overlaid with the lease table; lookups go through `node`."""

    def __init__(
        self,
        domain: Name,
        apexes: Mapping[Name, Apex],
        nodes: Mapping[Name, Node],
        leases: LeaseTable | None,
        lease_ttl: int,
    ) -> None:
        self.domain = domain
        self.apexes = dict(apexes)
        self._nodes = nodes
        self._ents = frozenset(
            a for owner in nodes for a in ancestors(owner) if a not in nodes and self.apex_of(a) is not None
        )
        self.leases = leases
        self.lease_ttl = lease_ttl
        self.ignored: tuple[str, ...] = ()  # configured records outside every zone we serve

    @classmethod
    def from_site(cls, site: Site, lease_records: LeaseTable | None = None, serial: int | None = None) -> Zone:
        """Build every zone of `site`; raises ConfigError for data that cannot be served."""
        builder = ZoneBuilder(site, serial if serial is not None else site_serial(site))
        leases = lease_records if site.dns.lease_records else None
        zone = cls(builder.domain, builder.apexes, builder.build(), leases, site.dns.ttl)
        zone.ignored = tuple(builder.ignored)
        return zone

    def records(self) -> Iterator[Record]:
        """Every configured record (not lease records), grouped by owner: e.g. to write a zone file."""
        for node in self._nodes.values():
            for rrset in node.values():
                yield from rrset

    def apex_of(self, name: Name) -> Apex | None:
        """The closest enclosing zone we serve, or None (then the answer is REFUSED)."""
        for candidate in ancestors(name):
            apex = self.apexes.get(candidate)
            if apex is not None:
                return apex
        return None

    def node(self, name: Name) -> Node:
        """The RRsets owned by `name`: configured data first, else lease A / PTR records."""
        static = self._nodes.get(name)
        if static is not None:
            return static
        if self.leases is None:
            return {}
        if parent(name) == self.domain:
            address = self.leases.by_label.get(labels(name)[0])
            if address is not None:
                return {QType.A: (Record(name, QType.A, self.lease_ttl, A(str(address))),)}
        octets = reverse_octets(name)
        if octets is not None and len(octets) == 4:
            label = self.leases.by_address.get(ipaddress.IPv4Address(bytes(octets)))
            target = Name(bytes((len(label),)) + label + self.domain) if label is not None else None
            if target is not None and target not in self._nodes:  # a configured name: not this device's
                return {QType.PTR: (Record(name, QType.PTR, self.lease_ttl, PTR(dname(target))),)}
        return {}

    def is_empty_non_terminal(self, name: Name) -> bool:
        """A name with no records but with names below it (RFC 8020: NODATA, not NXDOMAIN)."""
        if name in self._ents:
            return True
        if self.leases is None:
            return False
        octets = reverse_octets(name)
        return octets is not None and 0 < len(octets) < 4 and self.leases.has_prefix(octets)

    def lease_names(self, label: bytes, address: ipaddress.IPv4Address) -> list[Name]:
        """Names whose answers change when this lease comes or goes (for targeted cache invalidation)."""
        forward = Name(bytes((len(label),)) + label + self.domain)
        reverse = reverse_name(address)
        zone = self.apex_of(reverse)
        names = [forward]
        for name in ancestors(reverse):
            if zone is None or name == zone.name:
                break
            names.append(name)
        return names


