"""Who is asking: the device behind a file request, from three kinds of evidence (design.md, "The file service").

Precedence is path > User-Agent > lease: a MAC in the requested name (`$MA.cfg`) is what the phone was told
to fetch; the User-Agent's bracketed MAC is configurable on the phone; the source address's lease can be stale
(a NATed or relayed client, an address reused). Every disagreement is kept in `Device.conflicts` so the
shell can log and count it; none of them refuses the request by itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import NamedTuple

from bootstrapd.config.types import ValueProblem, parse_mac
from bootstrapd.files.names import NameMatch
from bootstrapd.files.outcome import Device, IdentifiedBy


class LeaseInfo(NamedTuple):
    """What the DHCP side knows of an address's current holder (a plain 2-tuple `(mac, vendor_class)` also
    does)."""

    mac: str  # canonical 00:56:2b:04:36:15
    vendor_class: str | None = None  # option 60, e.g. CP-7841-3PCC
    device_class: str | None = None  # the matched dhcp.classes name


LeaseOf = Callable[[IPv4Address], "LeaseInfo | tuple[str, str | None] | None"]

# Cisco-CP-7832-3PCC/11.0.1 (00562b043615); tolerant: any vendor prefix, optional firmware, MAC spelled
# with or without separators, anything around it. The firmware reaches templates, so it is held to a
# version's characters.
_UA_PRODUCT = re.compile(r"(?:^|[\s-])(CP-[0-9][0-9A-Za-z]{1,9}-3PCC)(?:/([0-9A-Za-z._-]{1,32}))?", re.IGNORECASE)
_UA_MAC = re.compile(r"\(\s*((?:[0-9A-Fa-f]{2}[:-]?){5}[0-9A-Fa-f]{2})\s*\)")
_PRODUCT = re.compile(r"^(?:CP-)?([0-9][0-9A-Za-z]{1,9})-3PCC$", re.IGNORECASE)
MAX_UA = 512  # longer User-Agents are not parsed (bounded work per request)


@dataclass(frozen=True, slots=True)
class UserAgent:
    model: str | None  # CP-7832-3PCC
    firmware: str | None  # 11.0.1
    mac: str | None  # canonical


def parse_user_agent(text: str | None) -> UserAgent:
    """Model, firmware and MAC of a phone's User-Agent; whatever cannot be read is None."""
    if not text or len(text) > MAX_UA:
        return UserAgent(None, None, None)
    product = _UA_PRODUCT.search(text)
    mac = _UA_MAC.search(text)
    model = pn_of(product.group(1)) if product else None
    firmware = product.group(2) if product and product.group(2) else None
    return UserAgent(model, firmware, _mac(mac.group(1)) if mac else None)


def _mac(text: str) -> str | None:
    try:
        return parse_mac(text)
    except ValueProblem:
        return None  # mixed separators (00:56-2b0436:15): not a MAC anyone wrote


def pn_of(text: str | None) -> str | None:
    """`CP-7841-3PCC` from `7841-3pcc`, `CP-7841-3PCC` (an option 60 value, a captured model); else None."""
    if not text:
        return None
    m = _PRODUCT.match(text.strip().rstrip("\0"))
    return f"CP-{m.group(1).upper()}-3PCC" if m else None


def identify(
    path: NameMatch | None, user_agent: str | None, client: IPv4Address, lease_of: LeaseOf
) -> tuple[Device, str | None]:
    """The device, and its DHCP class name when the lease that says so belongs to it."""
    ua = parse_user_agent(user_agent)
    lease = _lease(lease_of, client)
    macs = [(IdentifiedBy.PATH, path.mac if path else None), (IdentifiedBy.USER_AGENT, ua.mac),
            (IdentifiedBy.LEASE, lease.mac if lease else None)]
    models = [(IdentifiedBy.PATH, path.pn if path else None), (IdentifiedBy.USER_AGENT, ua.model),
              (IdentifiedBy.LEASE, pn_of(lease.vendor_class) if lease else None)]
    conflicts = _disagreements(macs, "") + _disagreements(models, "_model")
    by, mac = next(((src, m) for src, m in macs if m), (IdentifiedBy.NONE, None))
    model = next((m for _, m in models if m), None)
    device_class = lease.device_class if lease and lease.mac == mac else None
    return Device(mac, by, model, ua.firmware, tuple(conflicts)), device_class


def _lease(lease_of: LeaseOf, client: IPv4Address) -> LeaseInfo | None:
    found = lease_of(client)
    if not found:
        return None
    return found if isinstance(found, LeaseInfo) else LeaseInfo(*found)


def _disagreements(values: list[tuple[IdentifiedBy, str | None]], suffix: str) -> list[str]:
    known = [(src, v) for src, v in values if v]
    if len({v for _, v in known}) < 2:
        return []
    return [f"{src.value}{suffix}={v}" for src, v in known]
