"""A and PTR records for leased devices (site file `dns.lease_records`).

The DHCP side calls `add` when a lease is bound and `remove` when it ends, through the small
`LeaseRecords` protocol, so DNS also works with no DHCP at all. The table holds only (label, address)
pairs: it does not know the domain, so it survives a reload that changes the zone. Each change is
reported to `on_change` so that the responder drops only the prepared answers it affects.

Not thread-safe: call it from the event loop thread that serves DNS.
"""

from __future__ import annotations

import ipaddress
import operator
from collections.abc import Callable
from typing import Protocol

from bootstrapd.dns.names import host_label

IPv4Address = ipaddress.IPv4Address
ChangeListener = Callable[[bytes, IPv4Address], None]
address_int: Callable[[IPv4Address], int] = operator.attrgetter("_ip")  # int(address) without a Python frame


class LeaseRecords(Protocol):
    """What the DHCP side needs: publish and withdraw one device's name."""

    def add(self, hostname: str, address: IPv4Address) -> bool:
        """Publish `hostname.<domain> A address` and its PTR; False when hostname is not a DNS label."""
        ...

    def remove(self, hostname: str, address: IPv4Address) -> None:
        """Withdraw the records, if `hostname` still maps to `address`."""
        ...


def lease_name(hostname: str | None, chaddr: str) -> str:
    """The name a lease is published under: its host name when it is a valid label, else `SEP<MAC>`.

    `chaddr` may use any separator; `SEP` + upper-case hex is how Cisco phones name themselves.
    """
    if hostname and host_label(hostname) is not None:
        return hostname.rstrip("\x00").strip()
    return "SEP" + "".join(filter(str.isalnum, chaddr)).upper()


class LeaseTable:
    """Current lease names: one address per label and one label per address (latest wins)."""

    def __init__(self) -> None:
        self.by_label: dict[bytes, IPv4Address] = {}
        self.by_address: dict[IPv4Address, bytes] = {}
        # Leased addresses per leading one, two and three octets (bytes keys: built by slicing, no tuples).
        self._prefixes: dict[bytes, int] = {}
        self.on_change: ChangeListener | None = None

    def __len__(self) -> int:
        return len(self.by_label)

    def add(self, hostname: str, address: IPv4Address) -> bool:
        label = host_label(hostname)
        if label is None:
            return False
        # `is not None` first: comparing None with an IPv4Address raises and catches an AttributeError inside
        # ipaddress (the reflected __eq__), on every new device's first lease.
        old_address = self.by_label.get(label)
        if old_address is not None:
            if old_address == address:
                return True
            self._drop(label, old_address)
        old_label = self.by_address.get(address)
        if old_label is not None:
            self._drop(old_label, address)
        self.by_label[label] = address
        self.by_address[address] = label
        self._count(address, +1)
        self._changed(label, address)
        return True

    def remove(self, hostname: str, address: IPv4Address) -> None:
        label = host_label(hostname)
        if label is None:
            return
        current = self.by_label.get(label)
        if current is not None and current == address:
            self._drop(label, current)

    def has_prefix(self, octets: tuple[int, ...]) -> bool:
        """True when some leased address starts with these octets (an empty non-terminal in in-addr.arpa)."""
        return bytes(octets) in self._prefixes

    def _drop(self, label: bytes, address: IPv4Address) -> None:
        del self.by_label[label]
        del self.by_address[address]
        self._count(address, -1)
        self._changed(label, address)

    def _count(self, address: IPv4Address, delta: int) -> None:
        packed = address_int(address).to_bytes(4, "big")  # address.packed, without two Python calls
        prefixes = self._prefixes
        for key in (packed[:1], packed[:2], packed[:3]):
            count = prefixes.get(key, 0) + delta
            if count > 0:
                prefixes[key] = count
            else:
                prefixes.pop(key, None)

    def _changed(self, label: bytes, address: IPv4Address) -> None:
        if self.on_change is not None:
            self.on_change(label, address)
