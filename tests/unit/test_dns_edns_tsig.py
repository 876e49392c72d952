"""What RFCs 6891, 7873 and 8945 say MUST happen, and one answer per question: TSIG without keys is
NOTAUTH/BADKEY, error replies carry our OPT, malformed OPT options are FORMERR, and the same bytes get the
same reply whether or not the name's answer is prepared. dnspython builds queries and parses replies."""

from __future__ import annotations

import struct

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdtypes.ANY.TSIG
import dns.tsig
import dns.tsigkeyring
import pytest
from dns_site import make_site, query, responder

from bootstrapd.dns import LeaseTable, Responder, Zone

HTTPS = "_ciscoprov-https._tls.staging.example.net"
KEYRING = dns.tsigkeyring.from_text({"name.": "c2VjcmV0c2VjcmV0c2VjcmV0"})
NOTAUTH, BADKEY = 9, 17  # RFC 8945 sections 5.2.2 and 3


def signed(name: str = HTTPS, rdtype: str = "SRV", edns: int = -1, qid: int = 4711) -> bytes:
    msg = dns.message.make_query(name, rdtype, use_edns=edns)
    msg.id = qid
    msg.use_tsig(KEYRING, keyname="name.", algorithm="hmac-sha256")
    return msg.to_wire()


def cold_and_warm(wire: bytes, tcp: bool = False) -> tuple[bytes, bytes]:
    """The reply from a responder that never saw the name, and from one whose answer is prepared."""
    cold, _ = responder().respond(wire, tcp=tcp)
    warm_r = responder()
    msg = dns.message.from_wire(wire, keyring=False, ignore_trailing=True, continue_on_error=True)
    if msg.question:  # prepare the question's answer with a plain query first
        q = msg.question[0]
        warm_r.respond(query(q.name.to_text(), q.rdtype, edns=0))
        warm_r.respond(query(q.name.to_text(), q.rdtype))
    warm, _ = warm_r.respond(wire, tcp=tcp)
    assert cold is not None and warm is not None
    return cold, warm


def parse(wire: bytes) -> dns.message.Message:
    return dns.message.from_wire(wire, keyring=False)


# --- TSIG: we hold no keys (RFC 8945 section 5.2.2) -------------------------------------------------


@pytest.mark.parametrize("edns", [-1, 0])
@pytest.mark.parametrize("tcp", [False, True])
def test_tsig_signed_query_is_notauth_badkey_unsigned(edns: int, tcp: bool) -> None:
    wire = signed(edns=edns, qid=777)
    for reply in cold_and_warm(wire, tcp):
        msg = parse(reply)
        assert msg.rcode() == NOTAUTH and msg.id == 777
        assert msg.answer == [] and msg.question[0].name.to_text() == HTTPS + "."
        assert msg.tsig is not None and msg.keyname.to_text() == "name."
        [rd] = msg.tsig
        assert isinstance(rd, dns.rdtypes.ANY.TSIG.TSIG)
        assert (rd.error, rd.mac, rd.original_id, rd.other) == (BADKEY, b"", 777, b"")
        assert rd.algorithm.to_text() == "hmac-sha256."
        assert msg.edns == edns  # our OPT, before the TSIG, when the query had one
        with pytest.raises(dns.tsig.PeerBadKey):  # what a client holding the key reads
            dns.message.from_wire(reply, keyring=KEYRING, request_mac=b"")


def test_tsig_not_last_is_formerr() -> None:
    wire = signed(edns=0)
    # Swap the TSIG and the OPT: additional section is OPT (11 octets) then TSIG, after the question.
    q_end = len(query(HTTPS, "SRV"))
    opt, tsig = wire[q_end : q_end + 11], wire[q_end + 11 :]
    swapped = wire[:q_end] + tsig + opt
    for reply in cold_and_warm(swapped):
        assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


def test_two_tsig_records_are_formerr() -> None:
    wire = signed()
    q_end = len(query(HTTPS, "SRV"))
    doubled = wire[:10] + struct.pack("!H", 2) + wire[12:] + wire[q_end:]
    for reply in cold_and_warm(doubled):
        assert dns.message.from_wire(reply).rcode() == dns.rcode.FORMERR


# --- error replies carry our OPT (RFC 6891 section 7) -----------------------------------------------


def header_only_with_cookie() -> bytes:
    """What `dig +cookie +header-only` sends: no question, an OPT with a client cookie."""
    opt = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x0c\x00\x0a\x00\x08" + b"\x01\x02\x03\x04\x05\x06\x07\x08"
    return b"\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x01" + opt


def two_questions_with_opt() -> bytes:
    plain, with_opt = query(HTTPS, "SRV"), query(HTTPS, "SRV", edns=0)
    question, opt = plain[12:], with_opt[len(plain) :]
    return plain[:4] + b"\x00\x02\x00\x00\x00\x00\x00\x01" + question + question + opt


def opcode_with_opt(opcode: int) -> bytes:
    msg = dns.message.make_query("staging.example.net", "SOA", use_edns=0)
    msg.set_opcode(dns.opcode.Opcode(opcode))
    return msg.to_wire()


@pytest.mark.parametrize(("make", "rcode"), [
    (header_only_with_cookie, dns.rcode.FORMERR),
    (two_questions_with_opt, dns.rcode.FORMERR),
    (lambda: opcode_with_opt(dns.opcode.NOTIFY), dns.rcode.NOTIMP),
    (lambda: opcode_with_opt(dns.opcode.STATUS), dns.rcode.NOTIMP),
    (lambda: query("example.com", "A", edns=0), dns.rcode.REFUSED),
    (lambda: query("staging.example.net", "OPT", edns=0), dns.rcode.FORMERR),
], ids=["header-only+cookie", "two-questions", "notify", "status", "refused", "qtype-opt"])
def test_error_replies_carry_our_opt(make: object, rcode: int) -> None:
    wire = make()  # type: ignore[operator]
    for reply in cold_and_warm(wire):
        msg = dns.message.from_wire(reply)
        assert msg.rcode() == rcode
        assert msg.edns == 0 and msg.payload == 1232


def test_servfail_carries_our_opt() -> None:
    leases = LeaseTable()
    r = Responder(Zone.from_site(make_site(), lease_records=leases))
    leases.by_label[b"broken"] = "not an address"  # type: ignore[assignment]  # corrupt state: a "bug"
    reply, outcome = r.respond(query("broken.staging.example.net", "A", edns=0, do=True))
    msg = dns.message.from_wire(reply or b"")
    assert msg.rcode() == dns.rcode.SERVFAIL and outcome.error
    assert msg.edns == 0 and msg.ednsflags & dns.flags.DO


# --- malformed OPT options: FORMERR, cold or warm ------------------------------------------------------


def with_opt_rdata(rdata: bytes, name: str = HTTPS, rdtype: str = "SRV") -> bytes:
    wire = query(name, rdtype, edns=0)  # ends with the OPT's RDLENGTH (0)
    return wire[:-2] + struct.pack("!H", len(rdata)) + rdata


@pytest.mark.parametrize("rdata", [
    b"\x00\x0a\x00\x08abc",  # option length past RDATA
    b"\x00\x0a\x00",  # an option header cut short
    b"\x00\x0a\x00\x08abcdefgh\x00",  # a stray octet after the last option
    b"\x00\x0a\x00\x02ab",  # COOKIE: a client cookie is 8 octets (RFC 7873 section 5.2.2)
    b"\x00\x0a\x00\x0babcdefghijk",  # COOKIE: server cookie shorter than 8
    b"\x00\x0a\x00\x29" + b"x" * 41,  # COOKIE: longer than 40
], ids=["overrun", "cut-header", "stray", "cookie-2", "cookie-11", "cookie-41"])
@pytest.mark.parametrize("tcp", [False, True])
def test_malformed_options_are_formerr_cold_and_warm(rdata: bytes, tcp: bool) -> None:
    cold, warm = cold_and_warm(with_opt_rdata(rdata), tcp)
    assert cold == warm
    assert dns.message.from_wire(cold).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("rdata", [
    b"",
    b"\x00\x0a\x00\x08abcdefgh",  # client cookie
    b"\x00\x0a\x00\x18" + b"c" * 24,  # client and server cookie
    b"\xff\x00\x00\x00",  # an unknown option, empty
    b"\x00\x0c\x00\x04\x00\x00\x00\x00\x00\x0a\x00\x08abcdefgh",  # padding then cookie
], ids=["none", "client-cookie", "server-cookie", "unknown", "padding+cookie"])
def test_well_formed_options_answered(rdata: bytes) -> None:
    cold, warm = cold_and_warm(with_opt_rdata(rdata))
    assert cold == warm
    msg = dns.message.from_wire(cold)
    assert msg.rcode() == dns.rcode.NOERROR and len(msg.answer[0]) == 2 and msg.edns == 0

