"""Resource records as values: owner, type, TTL and dnslib RDATA (dnslib is only our codec)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dnslib import RR, DNSLabel

from bootstrapd.dns.names import Name, labels, to_text
from bootstrapd.dns.wire import qtype_text


@dataclass(frozen=True)
class Record:
    """One resource record; `rdata` is a dnslib RD instance (A, SRV, SOA ...)."""

    name: Name
    rtype: int
    ttl: int
    rdata: Any

    def to_dnslib(self) -> Any:
        return RR(dname(self.name), self.rtype, ttl=self.ttl, rdata=self.rdata)

    def __str__(self) -> str:
        """Zone-file form, e.g. `prov1.staging.example.net. 300 IN A 198.18.0.10`."""
        return f"{to_text(self.name)} {self.ttl} IN {qtype_text(self.rtype)} {self.rdata}"


# The RRsets owned by one name, by type.
Node = Mapping[int, tuple[Record, ...]]


@dataclass(frozen=True)
class Apex:
    """A zone we own. `negative_soa` carries the RFC 2308 section 3 TTL: min(SOA TTL, SOA MINIMUM)."""

    name: Name
    soa: Record
    negative_soa: Record


def dname(name: Name) -> Any:
    """A dnslib label for a wire name."""
    return DNSLabel(labels(name))
