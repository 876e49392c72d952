"""The DNS server over real sockets on loopback: UDP (batched and plain I/O) and TCP framing, limits,
metrics, the per-query log event, reload and lease records. dnspython is the client and the parser."""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from bootstrapd.config.model import Record, RecordType
from bootstrapd.errors import ConfigError
from bootstrapd.transport import dns_mmsg
from tests.integration.dns_fixtures import InProcessServer, capture_logger
from tests.unit.dns_site import RECORDS, make_site, query

HOST = "127.0.0.1"
HTTPS = "_ciscoprov-https._tls.staging.example.net"
IO_MODES = [pytest.param(False, id="recvfrom")] + (
    [pytest.param(True, id="recvmmsg")] if dns_mmsg.available() else []
)


@pytest.fixture(params=IO_MODES)
def srv(request: pytest.FixtureRequest) -> Iterator[InProcessServer]:
    server = InProcessServer(make_site(), batch_io=request.param)
    try:
        yield server
    finally:
        server.close()


def udp(srv: InProcessServer, name: str, rdtype: str | int = "A", edns: int = -1, payload: int = 1232
        ) -> dns.message.Message:
    msg = dns.message.make_query(name, dns.rdatatype.RdataType.make(rdtype), use_edns=edns, payload=payload)
    reply: dns.message.Message = dns.query.udp(msg, HOST, port=srv.port, timeout=3)
    return reply


def tcp(srv: InProcessServer, name: str, rdtype: str = "A") -> dns.message.Message:
    reply: dns.message.Message = dns.query.tcp(dns.message.make_query(name, rdtype), HOST, port=srv.port, timeout=3)
    return reply


def connect(srv: InProcessServer) -> socket.socket:
    sock = socket.create_connection((HOST, srv.port), timeout=3)
    return sock


def framed(wire: bytes) -> bytes:
    return struct.pack("!H", len(wire)) + wire


def read_framed(sock: socket.socket) -> bytes:
    head = sock.recv(2, socket.MSG_WAITALL)
    assert len(head) == 2, "connection closed"
    (size,) = struct.unpack("!H", head)
    return sock.recv(size, socket.MSG_WAITALL)


def closed_by_peer(sock: socket.socket, within: float = 3.0) -> bool:
    sock.settimeout(within)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_srv_nxdomain_refused(srv: InProcessServer, transport: str) -> None:
    ask = udp if transport == "udp" else tcp
    msg = ask(srv, HTTPS, "SRV")
    assert msg.flags & dns.flags.AA and not msg.flags & dns.flags.RA
    assert [rd.target.to_text() for rd in msg.answer[0]] == ["prov1.staging.example.net.", "prov2.staging.example.net."]
    assert {rrset.name.to_text() for rrset in msg.additional} == {"prov1.staging.example.net.",
                                                                 "prov2.staging.example.net."}
    msg = ask(srv, "nope.staging.example.net")
    assert msg.rcode() == dns.rcode.NXDOMAIN and msg.authority[0].rdtype == dns.rdatatype.SOA
    assert ask(srv, "example.com").rcode() == dns.rcode.REFUSED


def test_truncated_over_udp_complete_over_tcp(srv: InProcessServer) -> None:
    site_records = (*RECORDS, *(Record("big", RecordType.TXT, f"{i:02d}" + "x" * 200) for i in range(6)))
    srv.call(srv.server.reload, make_site(records=site_records))
    small = udp(srv, "big.staging.example.net", "TXT", edns=0, payload=512)
    assert small.flags & dns.flags.TC and small.answer == []
    full = tcp(srv, "big.staging.example.net", "TXT")
    assert not full.flags & dns.flags.TC and len(full.answer[0]) == 6


def test_a_second_server_on_the_same_port_fails_to_start(srv: InProcessServer) -> None:
    with pytest.raises(OSError):
        InProcessServer(make_site(), bind=[(HOST, srv.port)])
    assert udp(srv, HTTPS, "SRV").rcode() == dns.rcode.NOERROR


def test_tcp_several_queries_per_connection_in_order(srv: InProcessServer) -> None:
    names = [HTTPS, "prov1.staging.example.net", "nope.staging.example.net"]
    with connect(srv) as sock:
        sock.sendall(b"".join(framed(query(n, "SRV" if n == HTTPS else "A", qid=i)) for i, n in enumerate(names)))
        replies = [dns.message.from_wire(read_framed(sock)) for _ in names]
        assert [m.id for m in replies] == [0, 1, 2]
        assert [m.rcode() for m in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
        sock.sendall(framed(query(HTTPS, "SRV", qid=3)))  # and the connection stays open for more
        assert dns.message.from_wire(read_framed(sock)).id == 3


def connect_from(srv: InProcessServer, source: str) -> socket.socket:
    return socket.create_connection((HOST, srv.port), timeout=3, source_address=(source, 0))


def answered(sock: socket.socket, qid: int = 1) -> bool:
    """Whether a query on `sock` gets its answer (False: the server has closed the connection)."""
    try:
        sock.sendall(framed(query(HTTPS, "SRV", qid=qid)))
        return dns.message.from_wire(read_framed(sock)).id == qid
    except (AssertionError, ConnectionError):
        return False


def test_tcp_idle_connections_are_closed() -> None:
    server = InProcessServer(make_site(), tcp_idle_timeout=0.3)
    try:
        with connect(server) as sock:
            sock.sendall(framed(query(HTTPS, "SRV")))
            read_framed(sock)
            assert closed_by_peer(sock)
    finally:
        server.close()


def test_tcp_query_not_delivered_in_time_closes_the_connection() -> None:
    """A connection that sends nothing, or a length prefix and then nothing, is closed after the short
    query timeout, not the idle timeout; one that has been answered may stay idle for longer."""
    server = InProcessServer(make_site(), tcp_query_timeout=1.0, tcp_idle_timeout=10)
    try:
        with connect(server) as silent, connect(server) as prefix_only, connect(server) as served:
            prefix_only.sendall(b"\x00\x20")
            assert answered(served)
            t0 = time.monotonic()
            assert closed_by_peer(silent) and closed_by_peer(prefix_only)
            assert time.monotonic() - t0 < 3
            assert not closed_by_peer(served, within=1.5)
            assert answered(served, qid=2)
        server.stop()
        assert server.sample("bootstrapd_dns_drops_total", reason="tcp_timeout") == 2
    finally:
        server.close()


def test_tcp_full_slots_close_the_longest_idle_connection() -> None:
    server = InProcessServer(make_site(), max_tcp_connections=2)
    try:
        with connect(server) as oldest, connect(server) as busy:
            assert answered(oldest) and answered(busy)
            assert answered(busy, qid=2)  # busy's idle clock restarts: `oldest` is the longest idle
            with connect_from(server, "127.0.0.2") as newcomer:
                assert answered(newcomer)  # admitted, not refused
                assert closed_by_peer(oldest)
                assert answered(busy, qid=3)
        server.stop()
        assert server.sample("bootstrapd_dns_drops_total", reason="idle_evicted") == 1
    finally:
        server.close()


def test_tcp_per_source_cap_evicts_within_that_source() -> None:
    server = InProcessServer(make_site(), max_tcp_connections=8, max_tcp_per_source=2)
    try:
        with connect(server) as first, connect_from(server, "127.0.0.2") as other:
            assert answered(first) and answered(other)
            with connect(server) as second, connect(server) as third:
                assert answered(third)
                assert closed_by_peer(first)  # the source's longest idle gave way ...
                assert answered(second) and answered(other, qid=2)  # ... and nobody else's
    finally:
        server.close()


def test_tcp_oversized_message_closes_connection(srv: InProcessServer) -> None:
    with connect(srv) as sock:
        sock.sendall(struct.pack("!H", 60000) + b"\x00" * 100)
        assert closed_by_peer(sock)
    assert tcp(srv, HTTPS, "SRV").rcode() == dns.rcode.NOERROR


def test_malformed_datagrams_then_still_answering(srv: InProcessServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        sock.sendto(b"\x01\x02\x03", (HOST, srv.port))  # short header: dropped
        sock.sendto(b"\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x3fxx", (HOST, srv.port))  # cut label
        reply = dns.message.from_wire(sock.recvfrom(4096)[0])
        assert reply.id == 0xABCD and reply.rcode() == dns.rcode.FORMERR
        with pytest.raises(TimeoutError):
            sock.recvfrom(4096)  # nothing for the short one
    assert udp(srv, HTTPS, "SRV").rcode() == dns.rcode.NOERROR


def test_burst_of_queries_all_answered(srv: InProcessServer) -> None:
    """More datagrams than one batch: every one gets its own answer."""
    wires = [query(HTTPS if i % 3 else f"n{i}.staging.example.net", "SRV", qid=i) for i in range(600)]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        sock.settimeout(3)
        ids = set()
        for chunk in range(0, len(wires), 100):
            for wire in wires[chunk : chunk + 100]:
                sock.sendto(wire, (HOST, srv.port))
            for _ in range(100):
                msg = dns.message.from_wire(sock.recvfrom(4096)[0])
                assert msg.rcode() == (dns.rcode.NOERROR if msg.id % 3 else dns.rcode.NXDOMAIN)
                ids.add(msg.id)
    assert ids == set(range(600))


def test_metrics_count_queries_responses_drops_and_latency(srv: InProcessServer) -> None:
    for _ in range(3):
        udp(srv, HTTPS, "SRV")
    udp(srv, "nope.staging.example.net")
    tcp(srv, HTTPS, "SRV")
    udp(srv, "prov1.staging.example.net", 65280)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00", (HOST, srv.port))
    udp(srv, "example.com")  # after the short one: it has been read when this is answered
    srv.stop()
    q = "bootstrapd_dns_queries_total"
    assert srv.sample(q, qtype="SRV", transport="udp") == 3
    assert srv.sample(q, qtype="SRV", transport="tcp") == 1
    assert srv.sample(q, qtype="other", transport="udp") == 2  # TYPE65280 and the unreadable one
    assert srv.sample("bootstrapd_dns_responses_total", rcode="NOERROR") == 5
    assert srv.sample("bootstrapd_dns_responses_total", rcode="NXDOMAIN") == 1
    assert srv.sample("bootstrapd_dns_responses_total", rcode="REFUSED") == 1
    assert srv.sample("bootstrapd_dns_drops_total", reason="short_header") == 1
    assert srv.sample("bootstrapd_dns_response_seconds_count") == 7
    assert 0 < srv.sample("bootstrapd_dns_response_seconds_sum") < 7
    assert srv.sample("bootstrapd_dns_internal_errors_total") == 0


def test_one_debug_event_per_query() -> None:
    log, capture = capture_logger(logging.DEBUG)
    server = InProcessServer(make_site(), log=log)
    try:
        udp(server, "Prov1.Staging.Example.NET")
        tcp(server, "nope.staging.example.net", "SRV")
    finally:
        server.close()
    events = [e for e in capture.entries if e["event"] == "dns.query"]
    assert [(e["qname"], e["qtype"], e["rcode"], e["transport"]) for e in events] == [
        ("prov1.staging.example.net.", "A", "NOERROR", "udp"),
        ("nope.staging.example.net.", "SRV", "NXDOMAIN", "tcp"),
    ]
    assert all(e["log_level"] == "debug" for e in events)


def test_no_query_events_at_info() -> None:
    log, capture = capture_logger(logging.INFO)
    server = InProcessServer(make_site(), log=log)
    try:
        udp(server, HTTPS, "SRV")
    finally:
        server.close()
    assert [e["event"] for e in capture.entries if e["event"] == "dns.query"] == []


def test_reload_swaps_zone_and_serial(srv: InProcessServer) -> None:
    before = udp(srv, "staging.example.net", "SOA").answer[0][0].serial
    assert udp(srv, "new.staging.example.net").rcode() == dns.rcode.NXDOMAIN
    srv.call(srv.server.reload, make_site(records=(*RECORDS, Record("new", RecordType.A, "198.18.0.77"))))
    msg = udp(srv, "new.staging.example.net")
    assert msg.answer[0][0].address == "198.18.0.77"
    assert udp(srv, "staging.example.net", "SOA").answer[0][0].serial != before


def test_invalid_reload_keeps_serving_the_old_zone(srv: InProcessServer) -> None:
    broken = make_site(records=(Record("x", RecordType.CNAME, "prov1"), Record("x", RecordType.A, "198.18.0.1")))
    with pytest.raises(ConfigError):
        srv.call(srv.server.reload, broken)
    assert udp(srv, HTTPS, "SRV").rcode() == dns.rcode.NOERROR


def test_lease_records_are_served_and_survive_reload(srv: InProcessServer) -> None:
    address = ipaddress.IPv4Address("198.18.0.150")
    srv.call(srv.server.lease_records.add, "SEP00562B043615", address)
    assert udp(srv, "sep00562b043615.staging.example.net").answer[0][0].address == "198.18.0.150"
    srv.call(srv.server.reload, make_site(records=(*RECORDS, Record("new", RecordType.A, "198.18.0.77"))))
    assert udp(srv, "150.0.18.198.in-addr.arpa", "PTR").answer[0][0].target.to_text() == (
        "sep00562b043615.staging.example.net.")
    srv.call(srv.server.lease_records.remove, "SEP00562B043615", address)
    assert udp(srv, "sep00562b043615.staging.example.net").rcode() == dns.rcode.NXDOMAIN


def test_a_lease_change_is_seen_by_the_next_query_while_the_name_is_hammered(srv: InProcessServer) -> None:
    """Answers come from a cache of prepared replies that a lease change must invalidate, while another
    client keeps asking for the same name: once `add` returns, no query may see the old address."""
    name = "sep00562b043699.staging.example.net"
    stop = threading.Event()

    def hammer() -> None:  # keeps the name's prepared answer being rebuilt and read all the time
        wire = query(name, "A")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.2)
            while not stop.is_set():
                for _ in range(8):
                    sock.sendto(wire, (HOST, srv.port))
                with contextlib.suppress(TimeoutError):
                    for _ in range(8):
                        sock.recvfrom(4096)

    thread = threading.Thread(target=hammer, daemon=True)
    thread.start()
    try:
        for k in range(150):
            address = ipaddress.IPv4Address("198.18.0.100") + k % 2
            srv.call(srv.server.lease_records.add, "SEP00562B043699", address)
            answer = udp(srv, name).answer
            assert answer and answer[0][0].address == str(address), f"change {k}: {answer}"
    finally:
        stop.set()
        thread.join(5)
