"""The real daemon's syslog sink under a flood in the lab: 200 unleased senders at 10,000 datagrams/s
(bench/bootstorm/syslogflood.py) while ten phones that hold a lease from the daemon log their lines, and
the daemon is stopped for 1.5 s in the middle (SIGSTOP: what a box too busy to schedule it does). The
receive buffer (syslog.receive_buffer, beyond net.core.rmem_max with SO_RCVBUFFORCE) holds that backlog
(with the 4 MiB of before, the kernel dropped hundreds to thousands), so the kernel drops nothing, and
every phone's line is accepted while the flood's backlog is shed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrapd.lab import Host, Lab, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.dhcp_client import RawClient, mac
from tests.integration.test_syslog import METRICS, PORT, SERVER
from tests.labreq import require_lab

pytestmark = pytest.mark.lab

FLOOD = Path(__file__).resolve().parents[2] / "bench" / "bootstorm" / "syslogflood.py"
FLOOD_FIRST, SOURCES, RATE, SECONDS = "198.18.1.1", 200, 10_000, 4.0  # 50/s per source: under rate_limit
PHONES, LINES = 10, 20  # each leased phone logs LINES lines spread over the flood
STOP_AT, STOPPED = 1.0, 1.5  # seconds into the flood, and for how long the daemon is stopped

# Inside the phones' namespace: each (address, mac) of the JSON argument sends `lines` resync lines from its
# leased address, spread over `seconds`; prints how many were sent.
PHONE_LINES = """
import json, socket, sys, time
server, port, lines, seconds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
phones = []
for address, mac in json.loads(sys.argv[5]):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((address, 0))
    phones.append((s, mac))
sent, t0 = 0, time.monotonic()
for i in range(lines):
    time.sleep(max(0.0, t0 + i * seconds / lines - time.monotonic()))
    for s, mac in phones:
        s.sendto(f"<134>CP-7841-3PCC {mac} -- Requesting resync http://198.18.0.1/{i}.xml".encode(), (server, port))
        sent += 1
print(json.dumps({"sent": sent}))
"""


@dataclass
class FloodLab:
    daemon: Daemon
    server: Host
    phones: Host
    flooder: Host


@pytest.fixture
def env(tmp_path: Path) -> Iterator[FloodLab]:
    require_lab()
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        staging = {"prefix": "198.18.0.0/23", "pools": ["198.18.0.100-198.18.0.199"], "router": "198.18.0.1"}
        site = site_config(syslog={"port": PORT}, metrics={"listen": METRICS},
                           logging={"format": "json", "level": "info"}, dhcp__subnets=[staging])
        daemon = Daemon(lan.server, tmp_path, site).start()
        phones = lan.static_client("198.18.0.250/23", name="phones")
        flooder = lan.static_client("198.18.1.250/23", name="flooder")
        batch = "".join(f"address add 198.18.1.{i + 1}/23 dev eth0\n" for i in range(SOURCES))
        subprocess.run(["ip", "-n", flooder.netns, "-batch", "-"], input=batch, text=True, check=True, timeout=60)
        yield FloodLab(daemon, lan.server, phones, flooder)
        assert daemon.stop() == 0
    finally:
        lab.close()


def lease_phones(env: FloodLab) -> dict[str, str]:
    """DORA for PHONES clients from the phones' namespace, then their addresses on its interface: {address: mac}."""
    with RawClient(env.phones) as client:
        acks = client.dora([mac(500 + i) for i in range(PHONES)])
    assert len(acks) == PHONES, acks
    leased = {a.yiaddr: chaddr for chaddr, a in acks.items()}
    for address in leased:
        env.phones.add_address("eth0", f"{address}/23")
    return leased


def metric(env: FloodLab, name: str, labels: str = "") -> float:
    code = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
    text = env.server.run([sys.executable, "-c", code], timeout=10).stdout
    prefixes = (f"{name}{{{labels}}} ",) if labels else (f"{name} ", f"{name}{{")  # no labels: every series
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(prefixes))


def test_a_stalled_sink_under_a_flood_drops_nothing_and_hears_every_leased_phone(env: FloodLab) -> None:
    leased = lease_phones(env)
    started = env.daemon.wait_for("syslog.started")[-1]
    assert started["receive_buffer_forced"] and started["receive_buffer"] >= 32 << 20  # the kernel doubles it
    flood = env.flooder.popen([sys.executable, str(FLOOD), "--first", FLOOD_FIRST, "--sources", str(SOURCES),
                               "--rate", str(RATE), "--duration", str(SECONDS), "--server", SERVER,
                               "--port", str(PORT)], stdout=subprocess.PIPE, text=True)
    phones = None
    try:
        assert flood.stdout is not None and json.loads(flood.stdout.readline()) == {"ready": True}
        phones = env.phones.popen([sys.executable, "-c", PHONE_LINES, SERVER, str(PORT), str(LINES),
                                   str(SECONDS - 0.5), json.dumps(list(leased.items()))],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(STOP_AT)
        env.daemon.signal(signal.SIGSTOP)
        try:
            time.sleep(STOPPED)
        finally:
            env.daemon.signal(signal.SIGCONT)
        sent = json.loads(flood.communicate(timeout=30)[0].splitlines()[-1])["sent"]
        assert json.loads(phones.communicate(timeout=30)[0]) == {"sent": PHONES * LINES}
    finally:
        for proc in (flood, phones):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert sent >= RATE * SECONDS / 2  # a flood even on a slow box: 5,000/s queue 5 MB a second
    time.sleep(2.5)  # the sink works through its backlog; counts reach Prometheus once a second
    assert metric(env, "bootstrapd_syslog_kernel_receive_drops") == 0
    got = [e for e in env.daemon.events() if e.get("event") == "syslog.message" and e.get("source") in leased]
    for address, chaddr in leased.items():
        mine = [e for e in got if e["source"] == address]
        assert len(mine) == LINES and {e["mac"] for e in mine} == {chaddr}, (address, len(mine))
    accepted = metric(env, "bootstrapd_syslog_messages_total")
    counted = metric(env, "bootstrapd_syslog_drops_total")  # every reason (a slow box may rate-limit some)
    assert accepted + counted == sent + PHONES * LINES  # every datagram accounted for: none lost unseen
    assert metric(env, "bootstrapd_syslog_drops_total", 'reason="shed"') > 0  # the backlog was shed, not parsed
    stalls = env.daemon.wait_for("loop.stalled")
    assert any(e["late"] >= STOPPED * 0.8 for e in stalls), stalls  # the loop-lag monitor saw the stop
