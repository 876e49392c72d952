"""Which datagrams the sink accepts: from the staging subnets, of a bounded size, at a bounded rate per
source. Pure: the shell passes the receive time; the per-source table is bounded (least recently heard
sources are forgotten first, and come back with a full bucket)."""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network

# RFC 5424 section 6.1: receivers SHOULD accept 2048 octets. A phone's line is a few hundred; anything
# longer is not a phone we know, so it is dropped whole rather than parsed in part.
MAX_DATAGRAM = 2048
MAX_SOURCES = 4096  # per-source buckets kept; a /20 of phones fits


class DropReason(enum.Enum):
    """Why a datagram was not accepted; the value is the log field and the metric label."""

    FOREIGN_SOURCE = "foreign_source"  # sender outside every dhcp.subnets prefix
    RATE_LIMITED = "rate_limited"  # over syslog.rate_limit datagrams per second from one source
    OVERSIZED = "oversized"  # longer than MAX_DATAGRAM (RFC 5424 section 6.1)
    EMPTY = "empty"  # zero bytes: nothing to record
    # The sink fell behind (its socket stayed backlogged) and the sender holds no lease: dropped unread, so
    # that the leased phones' lines get through a flood instead of being lost in the kernel with the rest.
    SHED = "shed"


@dataclass(slots=True)
class _Bucket:
    tokens: float
    last: float


class Admission:
    """Token buckets per source address (capacity `burst`, refilled at `rate` per second)."""

    def __init__(self, networks: Iterable[IPv4Network], rate: float, *, burst: float | None = None,
                 max_sources: int = MAX_SOURCES, max_datagram: int = MAX_DATAGRAM) -> None:
        self._nets = [(int(n.network_address), int(n.netmask)) for n in networks]
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1))
        self.max_sources = max_sources
        self.max_datagram = max_datagram
        self._buckets: OrderedDict[int, _Bucket] = OrderedDict()

    def __len__(self) -> int:
        return len(self._buckets)

    def reconfigure(self, networks: Iterable[IPv4Network], rate: float) -> None:
        """New subnets and rate (a reload); known sources keep their buckets."""
        self._nets = [(int(n.network_address), int(n.netmask)) for n in networks]
        self.rate = float(rate)
        self.burst = float(max(rate, 1))

    def inside(self, source: IPv4Address) -> bool:
        addr = int(source)
        return any(addr & mask == net for net, mask in self._nets)

    def admit(self, now: float, source: IPv4Address, size: int) -> DropReason | None:
        """None when the datagram is accepted, else why not. Checked in this order so that a foreign
        sender never gets a bucket (the table holds only staging addresses)."""
        if not self.inside(source):
            return DropReason.FOREIGN_SOURCE
        if size > self.max_datagram:
            return DropReason.OVERSIZED
        if size == 0:
            return DropReason.EMPTY
        return None if self._take(now, int(source)) else DropReason.RATE_LIMITED

    def _take(self, now: float, key: int) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_sources:
                self._buckets.popitem(last=False)
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        else:
            self._buckets.move_to_end(key)
            elapsed = max(0.0, now - bucket.last)  # a clock that steps back refills nothing
            bucket.tokens = min(self.burst, bucket.tokens + elapsed * self.rate)
            bucket.last = now
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True
