"""DNS protocol constants (RFC 1035 section 4.1.1 unless noted) and the EDNS(0) OPT record we send."""

from __future__ import annotations

import enum

HEADER_LEN = 12  # RFC 1035 section 4.1.1
PLAIN_UDP_LIMIT = 512  # RFC 1035 section 2.3.4: without EDNS, UDP replies stop here
OUR_UDP_SIZE = 1232  # DNS flag day 2020: no IP fragmentation on common paths
TCP_LIMIT = 65535  # RFC 1035 section 4.2.2: two-octet length prefix

# Header flag bits, split by the byte they live in (byte 2 and byte 3 of the header).
QR = 0x80  # byte 2: response
OPCODE_MASK = 0x78  # byte 2: bits 1-4
AA = 0x04  # byte 2: authoritative answer
TC = 0x02  # byte 2: truncated
RD = 0x01  # byte 2: recursion desired (copied from the query)
CD = 0x10  # byte 3: checking disabled (RFC 6840 section 5.9: copied from the query)

CLASS_IN = 1  # RFC 1035 section 3.2.4


class Rcode(enum.IntEnum):
    """Response codes: RFC 1035 section 4.1.1 (NOTAUTH: RFC 8945); BADVERS is RFC 6891 section 9 (extended,
    via OPT)."""

    NOERROR = 0
    FORMERR = 1
    SERVFAIL = 2
    NXDOMAIN = 3
    NOTIMP = 4
    REFUSED = 5
    NOTAUTH = 9  # RFC 8945 section 5.2: TSIG from a key we do not hold
    BADVERS = 16


class TsigError(enum.IntEnum):
    """The TSIG record's Error field (RFC 8945 section 3); only the one we send."""

    BADKEY = 17  # the key is not one we hold (RFC 8945 section 5.2.2)


class QType(enum.IntEnum):
    """Types we serve or name in metrics (RFC 1035 section 3.2.2 and the RFC in each comment)."""

    A = 1
    NS = 2
    CNAME = 5
    SOA = 6
    PTR = 12
    MX = 15
    TXT = 16
    AAAA = 28  # RFC 3596
    SRV = 33  # RFC 2782
    NAPTR = 35  # RFC 3403
    OPT = 41  # RFC 6891
    DS = 43  # RFC 4034
    RRSIG = 46  # RFC 4034
    DNSKEY = 48  # RFC 4034
    SVCB = 64  # RFC 9460
    HTTPS = 65  # RFC 9460
    TSIG = 250  # RFC 8945
    IXFR = 251  # RFC 1995
    AXFR = 252  # RFC 5936
    ANY = 255  # RFC 8482: answered minimally
    CAA = 257  # RFC 8659


_QTYPE_NAMES = {t.value: t.name for t in QType}


def qtype_label(qtype: int) -> str:
    """A bounded metric label: the type's name when we know it, else `other`."""
    return _QTYPE_NAMES.get(qtype, "other")


def qtype_text(qtype: int) -> str:
    """For logs: the name, or RFC 3597's TYPEnnn."""
    return _QTYPE_NAMES.get(qtype, f"TYPE{qtype}")


def opt_record(do: bool, ext_rcode: int = 0) -> bytes:
    """Our OPT pseudo-RR (RFC 6891 section 6.1.2): root owner, CLASS = our UDP size, TTL = extended
    rcode, version 0 and the DO bit (copied from the query, RFC 3225 section 3), no options."""
    ttl = (ext_rcode << 24) | (0x8000 if do else 0)
    return (
        b"\x00"
        + QType.OPT.to_bytes(2, "big")
        + OUR_UDP_SIZE.to_bytes(2, "big")
        + ttl.to_bytes(4, "big")
        + b"\x00\x00"
    )


OPT_PLAIN = opt_record(do=False)
OPT_DO = opt_record(do=True)
OPT_LEN = len(OPT_PLAIN)
