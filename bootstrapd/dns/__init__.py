"""Authoritative DNS core: zone from the site file, lookup, and the bytes-in/bytes-out responder.

No I/O here (design.md convention 1): bootstrapd.transport.dns owns the sockets, logs and metrics.
"""

from bootstrapd.dns.leases import LeaseRecords, LeaseTable, lease_name
from bootstrapd.dns.lookup import Lookup, Result, lookup
from bootstrapd.dns.outcome import DropReason, Outcome
from bootstrapd.dns.responder import Responder
from bootstrapd.dns.wire import QType, Rcode
from bootstrapd.dns.zone import Zone, site_serial

__all__ = [
    "DropReason",
    "LeaseRecords",
    "LeaseTable",
    "Lookup",
    "Outcome",
    "QType",
    "Rcode",
    "Responder",
    "Result",
    "Zone",
    "lease_name",
    "lookup",
    "site_serial",
]
