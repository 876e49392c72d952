"""The responder on the wire: header bits, negative answers, EDNS(0), truncation and the error ladder.
dnspython builds the queries and parses every reply."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdatatype
import pytest
from dns_site import RECORDS, SRV, make_site, parse, query, responder, texts

from bootstrapd.config.model import Record, RecordType, Soa, SrvService, SrvTarget
from bootstrapd.dns import DropReason, LeaseTable, Rcode, Responder, Zone

HTTPS = "_ciscoprov-https._tls.staging.example.net"


@pytest.fixture(scope="module")
def r() -> Responder:
    return responder()


def answer(r: Responder, wire: bytes, tcp: bool = False) -> dns.message.Message:
    reply, _ = r.respond(wire, tcp=tcp)
    msg: dns.message.Message = parse(reply)
    return msg


@pytest.mark.parametrize("rd", [True, False])
@pytest.mark.parametrize("cd", [True, False])
def test_authoritative_answer_flags(r: Responder, rd: bool, cd: bool) -> None:
    for _ in range(2):  # the first reply is built, the second comes prepared: both must be right
        msg = answer(r, query(HTTPS, "SRV", rd=rd, cd=cd, qid=321))
        assert msg.id == 321
        assert msg.flags & dns.flags.QR and msg.flags & dns.flags.AA
        assert not msg.flags & dns.flags.RA and not msg.flags & dns.flags.TC
        assert bool(msg.flags & dns.flags.RD) is rd
        assert bool(msg.flags & dns.flags.CD) is cd
        assert msg.rcode() == dns.rcode.NOERROR


def test_srv_answer_has_targets_addresses_in_additional(r: Responder) -> None:
    msg = answer(r, query(HTTPS, "SRV"))
    assert texts(msg.answer) == [
        f"{HTTPS}. 300 IN SRV 10 60 443 prov1.staging.example.net.",
        f"{HTTPS}. 300 IN SRV 20 0 443 prov2.staging.example.net.",
    ]
    assert texts(msg.additional) == [
        "prov1.staging.example.net. 300 IN A 198.18.0.10",
        "prov2.staging.example.net. 300 IN A 198.18.0.11",
        "prov2.staging.example.net. 300 IN AAAA 2001:db8::11",
    ]


def test_question_case_is_echoed_in_question_and_answer(r: Responder) -> None:
    r.respond(query(HTTPS, "SRV"))  # prepared from the lower-case spelling
    mixed = "_CiscoProv-HTTPS._tls.STAGING.example.Net"
    reply, _ = r.respond(query(mixed, "SRV"))
    assert reply is not None and mixed.encode().split(b".")[1] in reply
    msg = parse(reply)
    assert msg.question[0].name.to_text() == mixed + "."
    assert msg.answer[0].name.to_text() == mixed + "."


@pytest.mark.parametrize(("name", "rcode"), [("nope.staging.example.net", "NXDOMAIN"),
                                             ("prov1.staging.example.net", "NOERROR")])
def test_negative_answers_carry_soa_with_negative_ttl(name: str, rcode: str) -> None:
    for ttl, minimum, expected in [(300, 60, 60), (30, 60, 30)]:  # RFC 2308 section 3: the smaller one
        site = make_site(ttl=ttl, soa=Soa(minimum=minimum))
        msg = answer(responder(site), query(name, "TXT"))
        assert dns.rcode.to_text(msg.rcode()) == rcode
        assert msg.flags & dns.flags.AA
        assert msg.answer == []
        [soa] = msg.authority
        assert soa.rdtype == dns.rdatatype.SOA and soa.ttl == expected
        assert soa.name.to_text() == "staging.example.net."


def test_outside_our_zones_refused_without_aa(r: Responder) -> None:
    msg = answer(r, query("example.com", "A"))
    assert msg.rcode() == dns.rcode.REFUSED
    assert not msg.flags & dns.flags.AA
    assert (msg.answer, msg.authority, msg.additional) == ([], [], [])


@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_zone_transfers_refused(r: Responder, rdtype: str) -> None:
    for tcp in (False, True):
        assert answer(r, query("staging.example.net", rdtype), tcp=tcp).rcode() == dns.rcode.REFUSED


def test_other_classes_refused(r: Responder) -> None:
    assert answer(r, query("version.bind", "TXT", rdclass="CH")).rcode() == dns.rcode.REFUSED
    assert answer(r, query("prov1.staging.example.net", "A", rdclass="HS")).rcode() == dns.rcode.REFUSED


def test_any_is_minimal(r: Responder) -> None:
    msg = answer(r, query("prov2.staging.example.net", "ANY"))
    assert len(msg.answer) == 1 and msg.answer[0].rdtype == dns.rdatatype.A


# --- EDNS(0) -----------------------------------------------------------------------------------------


def test_edns_opt_echoed_with_our_size(r: Responder) -> None:
    msg = answer(r, query(HTTPS, "SRV", edns=0, payload=4096))
    assert msg.edns == 0 and msg.payload == 1232
    assert not msg.ednsflags & dns.flags.DO
    assert len(msg.answer) == 1 and len(msg.additional) == 3


def test_edns_do_bit_copied(r: Responder) -> None:
    msg = answer(r, query(HTTPS, "SRV", edns=0, do=True))
    assert msg.ednsflags & dns.flags.DO


def test_no_opt_without_edns(r: Responder) -> None:
    assert answer(r, query(HTTPS, "SRV")).edns == -1


def test_edns_version_above_zero_is_badvers(r: Responder) -> None:
    msg = answer(r, query(HTTPS, "SRV", edns=1))
    assert msg.rcode() == dns.rcode.BADVERS
    assert msg.edns == 0 and msg.answer == []


def test_two_opt_records_are_formerr(r: Responder) -> None:
    wire = query(HTTPS, "SRV", edns=0)
    opt = wire[-11:]
    doubled = wire[:10] + struct.pack("!H", 2) + wire[12:] + opt
    assert answer(r, doubled).rcode() == dns.rcode.FORMERR


# --- truncation ----------------------------------------------------------------------------------------

MANY = SrvService(
    "_ciscoprov-https._tls",
    tuple(SrvTarget(f"provisioning-server-{i:02d}.long-label-for-size", 443, 10, 0) for i in range(13)),
)


@pytest.fixture(scope="module")
def big() -> Responder:
    """An SRV RRset of 1125 octets (targets outside the zone: no glue): over 512, under 1232."""
    return responder(make_site(srv=(MANY, *SRV[1:])))


@pytest.mark.parametrize(("edns", "payload", "tc"), [(-1, 0, True), (0, 512, True), (0, 1000, True),
                                                     (0, 1232, False), (0, 4096, False), (0, 100, True)])
def test_udp_size_limit(big: Responder, edns: int, payload: int, tc: bool) -> None:
    reply, outcome = big.respond(query(HTTPS, "SRV", edns=edns, payload=payload or 1232))
    msg = parse(reply)
    assert reply is not None and len(reply) <= max(512, min(payload, 1232))
    assert bool(msg.flags & dns.flags.TC) is tc and outcome.truncated is tc
    assert (len(msg.answer[0]) if msg.answer else 0) == (0 if tc else 13)
    assert msg.question[0].name.to_text() == HTTPS + "."
    assert msg.edns == edns


def test_tcp_carries_the_whole_answer(big: Responder) -> None:
    msg = answer(big, query(HTTPS, "SRV"), tcp=True)
    assert not msg.flags & dns.flags.TC and len(msg.answer[0]) == 13


def test_additional_dropped_before_setting_tc() -> None:
    """RFC 2181 section 9: an answer that fits without its glue is sent without TC."""
    services = (SrvService("_ciscoprov-https._tls", tuple(SrvTarget(f"p{i}", 443) for i in range(8))),)
    records = RECORDS + tuple(Record(f"p{i}", RecordType.A, f"198.18.1.{i}") for i in range(8))
    r = responder(make_site(srv=services, records=records))
    full, _ = r.respond(query(HTTPS, "SRV"), tcp=True)
    assert len(parse(full).additional) == 8 and full is not None and len(full) > 512
    msg = answer(r, query(HTTPS, "SRV"))
    assert not msg.flags & dns.flags.TC
    assert len(msg.answer[0]) == 8 and msg.additional == []


# --- the error ladder ---------------------------------------------------------------------------------


@pytest.mark.parametrize("wire", [b"", b"\x12", b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00"])
def test_short_header_dropped(r: Responder, wire: bytes) -> None:
    reply, outcome = r.respond(wire)
    assert reply is None and outcome.drop is DropReason.SHORT_HEADER


def test_responses_are_not_answered(r: Responder) -> None:
    reply, _ = r.respond(query(HTTPS, "SRV"))
    assert reply is not None
    again, outcome = r.respond(reply)
    assert again is None and outcome.drop is DropReason.NOT_A_QUERY


@pytest.mark.parametrize("tail", [b"\x05abc", b"\xff" * 30, b"\x03abc\x00\x00", b"\xc0\x0c\x00\x01\x00\x01"])
def test_malformed_question_is_formerr(r: Responder, tail: bytes) -> None:
    wire = b"\xbe\xef\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + tail
    reply, outcome = r.respond(wire)
    msg = parse(reply)
    assert msg.id == 0xBEEF and msg.rcode() == dns.rcode.FORMERR and outcome.rcode is Rcode.FORMERR
    assert msg.flags & dns.flags.RD and not msg.flags & dns.flags.AA


def test_not_exactly_one_question_is_formerr(r: Responder) -> None:
    wire = query(HTTPS, "SRV")
    none = wire[:4] + b"\x00\x00" + wire[6:12]
    two = wire[:4] + b"\x00\x02" + wire[6:] + wire[12:]
    assert answer(r, none).rcode() == dns.rcode.FORMERR
    assert answer(r, two).rcode() == dns.rcode.FORMERR


def test_asking_for_opt_is_formerr(r: Responder) -> None:
    assert answer(r, query("staging.example.net", "OPT")).rcode() == dns.rcode.FORMERR


@pytest.mark.parametrize("opcode", [dns.opcode.IQUERY, dns.opcode.STATUS, dns.opcode.NOTIFY, dns.opcode.UPDATE])
def test_other_opcodes_notimp(r: Responder, opcode: int) -> None:
    msg = dns.message.make_query("staging.example.net", "SOA")
    msg.set_opcode(dns.opcode.Opcode(opcode))
    reply = answer(r, msg.to_wire())
    assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == opcode


def test_update_with_a_non_soa_question_gets_a_notimp_every_parser_reads(r: Responder) -> None:
    # An UPDATE's first section is its zone and must be SOA (RFC 2136 2.3): echoing an A question made
    # dnspython reject our NOTIMP as malformed (found by the property test).
    msg = dns.message.make_query("_ciscoprov-https._tls.staging.example.net", "A")
    wire = bytearray(msg.to_wire())
    wire[2] = (wire[2] & 0x87) | (dns.opcode.UPDATE << 3)
    reply = answer(r, bytes(wire))
    assert reply.rcode() == dns.rcode.NOTIMP and reply.opcode() == dns.opcode.UPDATE


def test_a_bug_in_our_code_is_servfail_and_reported() -> None:
    leases = LeaseTable()
    r = Responder(Zone.from_site(make_site(), lease_records=leases))
    leases.by_label[b"broken"] = "not an address"  # type: ignore[assignment]  # corrupt state: a "bug"
    reply, outcome = r.respond(query("broken.staging.example.net", "A", qid=99))
    msg = parse(reply)
    assert msg.id == 99 and msg.rcode() == dns.rcode.SERVFAIL
    assert outcome.rcode is Rcode.SERVFAIL and outcome.error
    reply, outcome = r.respond(query(HTTPS, "SRV"))  # and it keeps answering
    assert parse(reply).rcode() == dns.rcode.NOERROR and outcome.error is None


def test_outcome_names_the_question(r: Responder) -> None:
    _, outcome = r.respond(query("Prov1.Staging.Example.Net", "AAAA"))
    assert (outcome.qname, outcome.qtype, outcome.qtype_label, outcome.rcode) == (
        "prov1.staging.example.net.", 28, "AAAA", Rcode.NOERROR)
    _, outcome = r.respond(query("prov1.staging.example.net", 65280))
    assert outcome.qtype_label == "other" and outcome.qtype == 65280
