"""Which device class a client belongs to (site-yaml.md `dhcp.classes`, mpp-bootstrap.md section 2).

Classes are checked in order; the first whose every given match key matches wins. Within one key any
pattern may match. Globs are fnmatch-style and case-insensitive; option 60 and option 12 lose trailing
NULs first (older Cisco phones append one). MAC prefixes are compared on the canonical form
`00:56:2b:04:36:15`, as the config loader writes them. Patterns are compiled once per config.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from bootstrapd.config.model import DeviceClass


def _glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    """One regex for all patterns of a key (None when the key is not given)."""
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p.casefold())})" for p in patterns))


@dataclass(frozen=True)
class _Compiled:
    device_class: DeviceClass
    vendor_class: re.Pattern[str] | None
    mac_prefixes: tuple[str, ...] | None
    hostname: re.Pattern[str] | None

    def matches(self, vendor_class: str | None, mac: str, hostname: str | None) -> bool:
        if self.vendor_class is None and self.mac_prefixes is None and self.hostname is None:
            return False  # a class with no keys is a config error; never let it match everyone
        if self.vendor_class is not None and (
            vendor_class is None or not self.vendor_class.match(vendor_class.rstrip("\0").casefold())
        ):
            return False
        if self.mac_prefixes is not None and not mac.lower().startswith(self.mac_prefixes):
            return False
        return self.hostname is None or (
            hostname is not None and self.hostname.match(hostname.rstrip("\0").casefold()) is not None
        )


class Classifier:
    """The classes of one config, compiled; build it when the config is (re)loaded."""

    def __init__(self, classes: tuple[DeviceClass, ...]) -> None:
        self._compiled = tuple(
            _Compiled(
                c,
                _glob_regex(c.match.vendor_class),
                tuple(p.lower() for p in c.match.mac_prefix) or None,
                _glob_regex(c.match.hostname),
            )
            for c in classes
        )
        self._by_name = {c.name: c for c in classes}

    def classify(self, vendor_class: str | None, chaddr_mac: str, hostname: str | None) -> DeviceClass | None:
        """The first class that matches the client, or None. `chaddr_mac` is `Message.chaddr_mac`."""
        for compiled in self._compiled:
            if compiled.matches(vendor_class, chaddr_mac, hostname):
                return compiled.device_class
        return None

    def by_name(self, name: str) -> DeviceClass | None:
        """A class named by a reservation's `class:` key."""
        return self._by_name.get(name)


def classify(
    classes: tuple[DeviceClass, ...], vendor_class: str | None, chaddr_mac: str, hostname: str | None
) -> DeviceClass | None:
    """One-off form of Classifier(classes).classify(...); the engine keeps a Classifier instead."""
    return Classifier(classes).classify(vendor_class, chaddr_mac, hostname)
