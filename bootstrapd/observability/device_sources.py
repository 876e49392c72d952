"""Each shell's outcome as a funnel event for one device: who it is about, which kind, what it tells.

A file transfer names its device by the MAC the file service identified (path, User-Agent or lease); a
syslog message by the MAC it carries, else by the lease of its source address. Nothing here keeps state
beyond bounded memos of the DHCP path's pure helpers.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
from collections.abc import Callable
from typing import Protocol

from bootstrapd.files.inventory import Inventory, read_inventory
from bootstrapd.files.outcome import Fetched, Refused, Rendered
from bootstrapd.floor.funnel import Detail, Kind, clip, is_profile_name
from bootstrapd.floor.report import safe
from bootstrapd.observability.metrics import model_label

QTYPE_A, QTYPE_AAAA, QTYPE_SRV = 1, 28, 33  # RFC 1035 3.2.2, RFC 3596, RFC 2782
QUERY_TYPES = frozenset({QTYPE_A, QTYPE_AAAA, QTYPE_SRV})  # what the DNS shell needs to report to us

Lookup = Callable[[str], "bytes | None"]  # leased address -> chaddr


class SyslogMessage(Protocol):
    """What the syslog sink's parser hands over (bootstrapd/syslog); only these attributes are read."""

    @property
    def kind(self) -> enum.Enum: ...  # .value: resync_requested ... upgrade_failed, or other
    @property
    def mac(self) -> str | None: ...  # 00:56:2b:04:36:15
    @property
    def model(self) -> str | None: ...
    @property
    def url(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...
    @property
    def text(self) -> str: ...


_SYSLOG_KINDS = {k.value: k for k in (
    Kind.RESYNC_REQUESTED, Kind.RESYNC_SUCCEEDED, Kind.RESYNC_FAILED,
    Kind.UPGRADE_REQUESTED, Kind.UPGRADE_SUCCEEDED, Kind.UPGRADE_FAILED,
)}


def chaddr_of(mac: str) -> bytes | None:
    """The 6 octets of a MAC as another shell spelt it, or None when it is not one."""
    try:
        octets = bytes.fromhex(mac.replace(":", "").replace("-", ""))
    except ValueError:
        return None
    return octets if len(octets) == 6 else None


def fetch_event(outcome: Fetched | Refused, by_address: Lookup) -> tuple[bytes, Kind, Detail, str] | None:
    """(chaddr, kind, detail, history text) of a transfer, or None when it names nobody we can tell."""
    req = outcome.request
    who = outcome.resolution.device if isinstance(outcome, Fetched) else outcome.device
    chaddr = chaddr_of(who.mac) if who is not None and who.mac else None
    if chaddr is None and req is not None:
        chaddr = by_address(str(req.client))
    if chaddr is None or req is None:
        return None
    name = safe(req.name) or ""
    protocol = req.protocol.value
    if isinstance(outcome, Fetched):
        profile = isinstance(outcome.resolution, Rendered) or is_profile_name(req.name)
        kind = Kind.PROFILE_FETCHED if profile else Kind.FILE_FETCHED
        text = f"{protocol} {name}: sent {outcome.bytes_sent} bytes in {outcome.seconds:.3f} s"
    else:
        kind = Kind.FILE_REFUSED
        text = f"{protocol} {name}: refused {safe(outcome.reason)} (status {outcome.status})"
    detail = Detail(address=str(req.client), model=who.model if who else None,
                    firmware=who.firmware if who else None, file=clip(req.name), protocol=protocol,
                    conflict=", ".join(who.conflicts) if who is not None and who.conflicts else None)
    return chaddr, kind, detail, text


def syslog_event(source: ipaddress.IPv4Address, msg: SyslogMessage,
                 by_address: Lookup) -> tuple[bytes, Kind, Detail] | None:
    """(chaddr, kind, detail) of a message: the MAC it names wins over its source address's lease."""
    address = str(source)  # once: an IPv4Address's str() is computed anew each time
    leased = by_address(address)
    named = chaddr_of(msg.mac) if msg.mac else None
    chaddr = named or leased
    if chaddr is None:
        return None
    conflict = None
    if named is not None and leased is not None and named != leased:
        conflict = f"syslog={named.hex(':')} lease={leased.hex(':')} from {source}"
    kind = _SYSLOG_KINDS.get(str(msg.kind.value), Kind.SYSLOG_OTHER)
    detail = Detail(address=address, model=msg.model, url=msg.url, error=msg.error, conflict=conflict)
    return chaddr, kind, detail


def inventory_path(site: object) -> str | None:
    """`files.inventory` (an absolute path) when the site has one."""
    path = getattr(getattr(site, "files", None), "inventory", None)
    return str(path) if path else None


def load_inventory(site: object) -> tuple[Inventory | None, list[str]]:
    """The site's inventory and its problems; None when it has none, or none of it could be read (then
    nobody is `missing` or `unexpected`, rather than everybody unexpected)."""
    path = inventory_path(site)
    if not path:
        return None, []
    inventory, diags = read_inventory(path)
    problems = [str(d) for d in diags]
    return (inventory if inventory.rows or not diags else None), problems


# Per DHCP report (two per DORA) these were a str() of the address and a regex match of option 60. The
# text is cached by the address's int: an IPv4Address's own hash is a Python call that hashes its hex text.
_TEXTS: dict[int, str] = {}
_MAX_TEXTS = 8192


def address_text(address: ipaddress.IPv4Address) -> str:
    key = int(address)
    text = _TEXTS.get(key)
    if text is None:
        if len(_TEXTS) >= _MAX_TEXTS:
            _TEXTS.clear()
        text = _TEXTS[key] = str(address)
    return text


@functools.lru_cache(maxsize=8192)
def dhcp_detail(address: str, vendor_class: str | None) -> Detail:
    """What a DHCP reply tells: the address (as text) and the model from option 60, if it names one."""
    return Detail(address=address, model=_model(vendor_class))


@functools.lru_cache(maxsize=256)
def _model(vendor_class: str | None) -> str | None:
    model = model_label(vendor_class)
    return model if model != "other" else None
