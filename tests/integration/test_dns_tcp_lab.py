"""DNS over TCP is not held hostage by idle clients (issue 10 item 3): the real daemon in the lab, idle
connections from one lab host, dig and a pipelining client from another (and from the same one)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from bootstrapd.lab.netns import stop_process
from tests.integration.daemon import Daemon
from tests.integration.dns_fixtures import dns_site_config
from tests.labreq import require_lab

SERVER = "198.18.0.1"
HTTPS = "_ciscoprov-https._tls.staging.test"

pytestmark = pytest.mark.lab

# Opens argv[1] connections to the server, half silent and half sending a length prefix only, says
# "ready" and holds them until stdin closes.
HOG = f"""
import socket, sys
held = []
for i in range(int(sys.argv[1])):
    s = socket.create_connection(("{SERVER}", 53), timeout=5)
    if i % 2:
        s.sendall(b"\\x00\\x40")
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"""

# One connection, rounds of: open 8 idle connections around it, send 3 queries back to back, read the
# 3 answers. Prints how many answers came back on that one connection.
PIPELINER = f"""
import socket, struct, sys
def q(qid):
    name = b"".join(bytes([len(l)]) + l.encode() for l in "{HTTPS}".split(".")) + b"\\x00"
    m = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + name + b"\\x00\\x21\\x00\\x01"
    return struct.pack("!H", len(m)) + m
def read(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out
main = socket.create_connection(("{SERVER}", 53), timeout=3)
idle, got = [], 0
try:
    for r in range(10):
        idle += [socket.create_connection(("{SERVER}", 53), timeout=3) for _ in range(8)]
        main.sendall(b"".join(q(r * 3 + i) for i in range(3)))
        for i in range(3):
            size = struct.unpack("!H", read(main, 2))[0]
            assert struct.unpack("!H", read(main, size)[:2])[0] == r * 3 + i
            got += 1
except (OSError, ConnectionError) as exc:
    print(exc, file=sys.stderr)
print(got)
"""


@dataclass
class TcpLab:
    lan: StagingLan
    daemon: Daemon
    asker: Host  # 198.18.0.200
    hog: Host  # 198.18.0.201


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TcpLab]:
    require_lab()
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        daemon = Daemon(lan.server, tmp_path_factory.mktemp("dns-tcp"), dns_site_config()).start()
        asker = lan.static_client("198.18.0.200/23", name="asker")
        yield TcpLab(lan, daemon, asker, lan.static_client("198.18.0.201/23", name="hog"))
    finally:
        lab.close()


def hold_idle(host: Host, count: int) -> subprocess.Popen[str]:
    proc = host.popen([sys.executable, "-c", HOG, str(count)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                      text=True)
    assert proc.stdout is not None
    if proc.stdout.readline().strip() != "ready":
        stop_process(proc)
        pytest.fail("the idle connections could not be opened")
    return proc


def release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    stop_process(proc, grace=5)


def test_dig_over_tcp_answers_while_another_address_holds_64_idle_connections(env: TcpLab) -> None:
    hog = hold_idle(env.hog, 64)
    try:
        for _ in range(3):
            t0 = time.monotonic()
            out = env.asker.run(["dig", f"@{SERVER}", "+tcp", "+time=1", "+tries=1", HTTPS, "SRV"], check=False)
            elapsed = time.monotonic() - t0
            assert "status: NOERROR" in out.stdout and "ANSWER: 2" in out.stdout, out.stdout + out.stderr
            assert elapsed < 1.5, f"dig took {elapsed:.2f} s"
    finally:
        release(hog)


def test_a_pipelining_client_keeps_its_connection_among_idle_ones(env: TcpLab) -> None:
    """Idle connections opened around it from its own address (80, over every cap) and from another
    (64): its 30 queries are all answered on its one connection."""
    hog = hold_idle(env.hog, 64)
    try:
        out = env.asker.run([sys.executable, "-c", PIPELINER], check=False)
        assert out.stdout.strip() == "30", out.stdout + out.stderr
    finally:
        release(hog)
