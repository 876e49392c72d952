"""The phone's stub resolver against scripted DNS servers on 127.0.0.1: SRV with additional A records,
fallback to TCP on a truncated answer, the next server when one is silent."""

from __future__ import annotations

import random
import socket
import struct
import threading
from collections.abc import Iterator

import dnslib
import pytest

from bootstrapd.sim.resolver import ResolveError, Resolver
from bootstrapd.sim.srv import SrvTarget

NAME = "_ciscoprov-https._tls.staging.test"


def answer(query: dnslib.DNSRecord, truncated: bool = False) -> bytes:
    reply = query.reply()
    if truncated:
        reply.header.tc = 1
        return reply.pack()
    if query.q.qtype == dnslib.QTYPE.SRV:
        for prio, weight, target in ((10, 60, "prov1"), (20, 0, "prov2")):
            reply.add_answer(dnslib.RR(NAME, dnslib.QTYPE.SRV, rdata=dnslib.SRV(prio, weight, 443, f"{target}.staging.test")))
        reply.add_ar(dnslib.RR("prov1.staging.test", dnslib.QTYPE.A, rdata=dnslib.A("198.18.0.10")))
    elif str(query.q.qname) == "prov2.staging.test.":
        reply.add_answer(dnslib.RR("prov2.staging.test", dnslib.QTYPE.A, rdata=dnslib.A("198.18.0.11")))
    else:
        reply.header.rcode = dnslib.RCODE.NXDOMAIN
    return reply.pack()


@pytest.fixture
def dns(request: pytest.FixtureRequest) -> Iterator[int]:
    """UDP and TCP on one port; UDP answers truncated when the test is parametrised with True."""
    truncate = getattr(request, "param", False)
    tcp = socket.create_server(("127.0.0.1", 0))
    port = tcp.getsockname()[1]
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", port))
    stop = threading.Event()

    def serve_udp() -> None:
        udp.settimeout(0.05)
        while not stop.is_set():
            try:
                data, peer = udp.recvfrom(512)
            except TimeoutError:
                continue
            udp.sendto(answer(dnslib.DNSRecord.parse(data), truncate), peer)

    def serve_tcp() -> None:
        tcp.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = tcp.accept()
            except TimeoutError:
                continue
            with conn:
                data = conn.recv(4096)
                out = answer(dnslib.DNSRecord.parse(data[2:]))
                conn.sendall(struct.pack("!H", len(out)) + out)

    threads = [threading.Thread(target=f, daemon=True) for f in (serve_udp, serve_tcp)]
    for t in threads:
        t.start()
    try:
        yield port
    finally:
        stop.set()
        for t in threads:
            t.join()
        udp.close()
        tcp.close()


def resolver(port: int, servers: tuple[str, ...] = ("127.0.0.1",)) -> Resolver:
    return Resolver(servers, "127.0.0.1", random.Random(1), timeout=0.3, port=port)


@pytest.mark.parametrize("dns", [False, True], indirect=True, ids=["udp", "truncated-then-tcp"])
def test_srv_answer_with_additional_addresses(dns: int) -> None:
    got = resolver(dns).srv(NAME)
    assert got.rcode == "NOERROR"
    assert got.records == (SrvTarget(10, 60, 443, "prov1.staging.test"), SrvTarget(20, 0, 443, "prov2.staging.test"))
    assert got.addresses == {"prov1.staging.test": ["198.18.0.10"]}


def test_a_lookup_and_literals(dns: int) -> None:
    r = resolver(dns)
    assert r.address("prov2.staging.test") == "198.18.0.11"
    assert r.address("198.18.0.12") == "198.18.0.12"  # no query for an address literal
    with pytest.raises(ResolveError, match="NXDOMAIN"):
        r.address("nothing.staging.test")


def test_a_silent_server_is_skipped(dns: int) -> None:
    assert resolver(dns, ("127.0.0.2", "127.0.0.1")).srv(NAME).rcode == "NOERROR"


def test_no_server_answers() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        with pytest.raises(ResolveError, match="no answer"):
            resolver(silent.getsockname()[1]).srv(NAME)
