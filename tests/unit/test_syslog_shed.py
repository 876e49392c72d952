"""The sink's overload shedding on a real UDP socket on loopback: once a wakeup leaves the socket backlogged,
datagrams from senders without a lease are shed unread for SHED_HOLD seconds, a leased sender's are still
handled, and shedding ends after the hold."""

from __future__ import annotations

import socket
from pathlib import Path

import yaml

from bootstrapd.config.loader import load_site
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.syslog import RECV_BUDGET, SHED_HOLD, SyslogServer

LEASED = "127.0.0.2"  # the one sender `known` says holds a lease; 127.0.0.1 floods


def server(tmp_path: Path, now: list[float], heard: list[str], *,
           lookup: bool = True) -> tuple[SyslogServer, socket.socket, Metrics]:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump({
        "site": "shed", "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
        "domain": "staging.example.net", "state_dir": str(tmp_path),
        "dhcp": {"subnets": [{"prefix": "127.0.0.0/24", "pools": ["127.0.0.100-127.0.0.200"]}]},
        "syslog": {"rate_limit": 100000}}))
    metrics = Metrics()
    sink = SyslogServer(load_site(str(path)), metrics, on_message=lambda _t, src, _m: heard.append(str(src)),
                        known=(lambda host: host == LEASED) if lookup else None, clock=lambda: now[0])
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sink, sock, metrics


def shed(sink: SyslogServer, metrics: Metrics) -> float | None:
    sink.flush()
    return metrics.registry.get_sample_value("bootstrapd_syslog_drops_total", {"reason": "shed"})


def send(sock: socket.socket, source: str, count: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for i in range(count):
            s.sendto(f"<134>CP-7841-3PCC 00:56:2b:00:00:01 -- Requesting resync http://x/{i}".encode(),
                     sock.getsockname())


def test_a_backlog_sheds_unleased_senders_and_keeps_hearing_leased_ones(tmp_path: Path) -> None:
    now = [100.0]
    heard: list[str] = []
    sink, sock, metrics = server(tmp_path, now, heard)
    try:
        send(sock, "127.0.0.1", RECV_BUDGET + 100)
        send(sock, LEASED, 3)
        sink._ready(sock)  # a full budget parsed: the socket is still backlogged, shedding starts
        assert len(heard) == RECV_BUDGET and shed(sink, metrics) == 0
        sink._ready(sock)  # the flood's rest shed unread, the leased sender's lines handled
        assert shed(sink, metrics) == 100
        assert heard[RECV_BUDGET:] == [LEASED] * 3
        now[0] += SHED_HOLD + 0.1  # the hold is over: everybody is parsed again
        send(sock, "127.0.0.1", 1)
        sink._ready(sock)
        assert heard[-1] == "127.0.0.1" and shed(sink, metrics) == 100
    finally:
        sock.close()


def test_without_a_lease_lookup_it_never_sheds(tmp_path: Path) -> None:
    heard: list[str] = []
    sink, sock, metrics = server(tmp_path, [0.0], heard, lookup=False)
    try:
        send(sock, "127.0.0.1", RECV_BUDGET + 50)
        sink._ready(sock)
        sink._ready(sock)
        assert len(heard) == RECV_BUDGET + 50 and shed(sink, metrics) == 0
    finally:
        sock.close()
