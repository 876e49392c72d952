"""What happened to one query, for the shell to log and count (cores never log or count)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from bootstrapd.dns.wire import Rcode


class DropReason(enum.Enum):
    """Why a query got no reply at all; the value is the log field and the metric label."""

    SHORT_HEADER = "short_header"  # fewer than 12 octets: not even an ID to answer to (RFC 1035 4.1.1)
    NOT_A_QUERY = "not_a_query"  # QR set: a response; answering could start a loop between servers
    TOO_LONG = "too_long"  # TCP message over our bound, connection closed (design.md convention 9)
    CONNECTION_LIMIT = "connection_limit"  # TCP connection refused: no slot (caps of 0)
    IDLE_EVICTED = "idle_evicted"  # TCP connection closed, longest idle, to make room (RFC 7766 6.2.3)
    TCP_TIMEOUT = "tcp_timeout"  # TCP connection closed: a query not delivered whole in the short timeout
    SEND_FAILED = "send_failed"  # socket buffer full or unreachable peer


@dataclass(frozen=True, slots=True, eq=False)
class Outcome:
    """One query's fate. Prepared replies share one Outcome each, so the hot path allocates none.

    Identity equality and hash: the shell counts outcomes in a dict per query, and hashing by fields
    (an IntEnum among them) would cost more than answering."""

    qname: str | None  # lower-case presentation form, None when the question could not be read
    qtype: int | None
    qtype_label: str  # bounded metric label: a known type's name or `other`
    rcode: Rcode | None  # None when dropped
    drop: DropReason | None = None
    error: str | None = None  # a bug in our code (answered SERVFAIL): the exception, for the log
    truncated: bool = False  # TC set: the client should retry over TCP


def dropped(reason: DropReason) -> Outcome:
    return Outcome(None, None, "other", None, drop=reason)
