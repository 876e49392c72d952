"""Responder properties: no bytes make our code fail (no SERVFAIL from a bug), every reply parses in
dnspython and answers the query it came from, and the prepared fast path agrees with a fresh build."""

from __future__ import annotations

import dns.edns
import dns.flags
import dns.message
import dns.rdatatype
import dns.tsigkeyring
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bootstrapd.dns import Rcode, Responder, Zone
from tests.unit.dns_site import make_site, query

SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
R = Responder(Zone.from_site(make_site()))
NAMES = ["_ciscoprov-https._tls.staging.example.net", "prov1.staging.example.net", "www.staging.example.net",
         "nope.staging.example.net", "example.com", "10.0.18.198.in-addr.arpa", "staging.example.net"]
TYPES = ["A", "AAAA", "SRV", "TXT", "PTR", "NS", "SOA", "CNAME", "ANY", "MX", "HTTPS", "CAA", 65280]


def check(data: bytes, tcp: bool = False) -> None:
    reply, outcome = R.respond(data, tcp=tcp)
    assert outcome.error is None, outcome.error
    assert outcome.rcode is not Rcode.SERVFAIL
    if reply is None:
        assert outcome.drop is not None
        return
    assert reply[:2] == data[:2]  # the client's ID
    assert len(reply) <= (65535 if tcp else 1232)
    msg = dns.message.from_wire(reply, ignore_trailing=False, keyring=False)  # our BADKEY TSIG is unsigned
    assert msg.flags & dns.flags.QR and not msg.flags & dns.flags.RA


@SETTINGS
@given(st.binary(max_size=600), st.booleans())
def test_any_bytes(data: bytes, tcp: bool) -> None:
    check(data, tcp)


@SETTINGS
@given(st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(-1, 0), st.integers(0, 5000),
       st.data(), st.booleans())
def test_mutated_queries(name: str, rdtype: str | int, edns: int, payload: int, data: st.DataObject,
                         tcp: bool) -> None:
    wire = bytearray(query(name, rdtype, edns=edns, payload=payload))
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(wire)))
    check(bytes(wire[:cut] if data.draw(st.booleans()) else wire), tcp)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(-1, 0), st.integers(0, 5000),
       st.booleans(), st.integers(0, 0xFFFF), st.randoms())
def test_prepared_equals_fresh(name: str, rdtype: str | int, edns: int, payload: int, tcp: bool, qid: int,
                               rnd: object) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in name)  # type: ignore[attr-defined]
    wire = query(mixed, rdtype, edns=edns, payload=payload, qid=qid)
    fresh = Responder(Zone.from_site(make_site())).respond(wire, tcp=tcp)[0]
    R.respond(wire, tcp=tcp)
    assert R.respond(wire, tcp=tcp)[0] == fresh
    check(wire, tcp)



@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.sampled_from(TYPES), st.lists(st.tuples(st.sampled_from([8, 10, 12, 15, 65001]),
       st.binary(max_size=44)), max_size=3), st.data(), st.booleans())
def test_same_bytes_same_reply_cold_or_prepared(name: str, rdtype: str | int, options: list[tuple[int, bytes]],
                                                data: st.DataObject, tcp: bool) -> None:
    """EDNS options, some mangled in their lengths or contents: a responder that has the name's answer
    prepared replies exactly as one that never saw it (the fast path applies the slow path's rules)."""
    wire = bytearray(query(name, rdtype, edns=0, options=[dns.edns.GenericOption(c, v) for c, v in options]))
    opt_at = len(query(name, rdtype))  # the OPT follows the question
    for _ in range(data.draw(st.integers(0, 2))):
        at = data.draw(st.integers(opt_at, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    fresh = Responder(Zone.from_site(make_site())).respond(bytes(wire), tcp=tcp)
    R.respond(query(name, rdtype, edns=0), tcp=tcp)  # prepares the name's answer
    assert R.respond(bytes(wire), tcp=tcp)[0] == fresh[0]
    check(bytes(wire), tcp)


KEYRING = dns.tsigkeyring.from_text({"name.": "c2VjcmV0c2VjcmV0c2VjcmV0"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(NAMES), st.sampled_from(TYPES), st.integers(-1, 0), st.data(), st.booleans())
def test_mutated_signed_queries(name: str, rdtype: str | int, edns: int, data: st.DataObject, tcp: bool) -> None:
    """TSIG-signed queries with octets changed or cut (mostly in the TSIG): replies parse, cold equals
    prepared, and nothing fails in our code."""
    msg = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), use_edns=edns)
    msg.use_tsig(KEYRING, keyname="name.", algorithm="hmac-sha256")
    wire = bytearray(msg.to_wire())
    start = len(query(name, rdtype, edns=edns))
    for _ in range(data.draw(st.integers(0, 3))):
        at = data.draw(st.integers(start - 4 if data.draw(st.booleans()) else 0, len(wire) - 1))
        wire[at] = data.draw(st.integers(0, 255))
    cut = bytes(wire[: data.draw(st.integers(start, len(wire)))] if data.draw(st.booleans()) else wire)
    fresh = Responder(Zone.from_site(make_site())).respond(cut, tcp=tcp)
    R.respond(query(name, rdtype, edns=edns), tcp=tcp)
    assert R.respond(cut, tcp=tcp)[0] == fresh[0]
    check(cut, tcp)
