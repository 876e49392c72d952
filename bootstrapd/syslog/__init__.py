"""The syslog sink's pure core: a lenient parser of the phones' datagrams (`parse`) and the sink's
admission rules (`Admission`: staging subnets, bounded size, per-source rate limit)."""

from bootstrapd.syslog.admit import MAX_DATAGRAM, Admission, DropReason
from bootstrapd.syslog.parse import OUR_TEMPLATES, Kind, SyslogMessage, normalise_mac, parse

__all__ = ["MAX_DATAGRAM", "OUR_TEMPLATES", "Admission", "DropReason", "Kind", "SyslogMessage",
           "normalise_mac", "parse"]
