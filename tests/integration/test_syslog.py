"""The syslog sink of the real daemon (`bootstrapd run` with `syslog:`) in the lab: util-linux `logger` and
raw UDP sockets on the staging LAN send the phones' lines; the daemon logs one `syslog.message` per accepted
datagram and counts what it drops (rate limit, foreign sender, oversized) on its metrics endpoint."""

from __future__ import annotations

import re
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from bootstrapd.lab import Host, Lab, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.labreq import require_lab

SERVER = "198.18.0.1"
PORT = 514
METRICS = "198.18.0.1:9267"
RATE = 20
LINE = "CP-7841-3PCC 00:56:2b:04:36:15 -- Requesting resync tftp://198.18.0.1:69/CP-7841-3PCC.cfg"

pytestmark = pytest.mark.lab

# Raw datagrams from a client namespace: stdin holds the hex of each datagram, one a line.
SEND = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for h in sys.stdin.read().split("\\n"):
    s.sendto(bytes.fromhex(h), (sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class SyslogLab:
    daemon: Daemon
    server: Host
    phone: Host  # 198.18.0.120, inside the staging subnet 198.18.0.0/24
    flooder: Host  # 198.18.0.121, likewise
    foreign: Host  # 198.18.1.200: on the wire, but outside every dhcp.subnets prefix


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SyslogLab]:
    require_lab()
    if shutil.which("logger") is None:
        pytest.fail("logger (util-linux, Debian bsdutils) is not installed")
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        daemon = Daemon(lan.server, tmp_path_factory.mktemp("syslog-daemon"), syslog_site()).start()
        yield SyslogLab(daemon, lan.server, lan.static_client("198.18.0.120/23", name="phone"),
                        lan.static_client("198.18.0.121/23", name="flooder"),
                        lan.static_client("198.18.1.200/23", name="foreign"))
        assert daemon.stop() == 0  # SIGTERM: the sink closes with the rest
        assert daemon.wait_for("service.stopped")
    finally:
        lab.close()


def syslog_site(*extra_subnets: dict[str, Any]) -> dict[str, Any]:
    staging = {"prefix": "198.18.0.0/24", "pools": ["198.18.0.100-198.18.0.199"], "router": "198.18.0.1"}
    # receive_buffer: the default's (16 MiB) backlog would outlast the kernel-drop test's 25,000 datagrams
    return site_config(syslog={"port": PORT, "rate_limit": RATE, "receive_buffer": 4 << 20}, metrics={"listen": METRICS},
                       logging={"format": "json", "level": "info"}, dhcp__subnets=[staging, *extra_subnets])


def send(host: Host, *datagrams: bytes) -> None:
    host.run([sys.executable, "-c", SEND, SERVER, str(PORT)], input="\n".join(d.hex() for d in datagrams), timeout=20)


def logger(host: Host, fmt: str, message: str) -> None:
    host.run(["logger", "--server", SERVER, "--port", str(PORT), "--udp", fmt, "-t", "phone", message])


def messages(env: SyslogLab, source: str) -> list[dict[str, Any]]:
    return [e for e in env.daemon.events() if e.get("event") == "syslog.message" and e.get("source") == source]


def wait_messages(env: SyslogLab, source: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while len(found := messages(env, source)) < count:
        assert time.monotonic() < deadline, f"{len(found)} of {count} messages from {source}"
        time.sleep(0.05)
    return found


def metric(env: SyslogLab, name: str, **labels: str) -> float:
    code = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
    text = env.server.run([sys.executable, "-c", code], timeout=10).stdout
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    found = re.search(rf"^{name}{{{re.escape(sel)}}} (\S+)$" if sel else rf"^{name} (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def wait_metric(env: SyslogLab, minimum: float, name: str, **labels: str) -> float:
    deadline = time.monotonic() + 10  # counts are pushed once a second
    while (value := metric(env, name, **labels)) < minimum and time.monotonic() < deadline:
        time.sleep(0.2)
    return value


def test_logger_rfc3164_and_rfc5424_lines_are_parsed(env: SyslogLab) -> None:
    before = len(messages(env, "198.18.0.120"))
    logger(env.phone, "--rfc3164", LINE)
    logger(env.phone, "--rfc5424", "CP-7841-3PCC 00562b043615 \u2013- Resync failed: HTTP 404 Not Found")
    got = wait_messages(env, "198.18.0.120", before + 2)[before:]
    first, second = sorted(got, key=lambda e: e["kind"])
    assert (first["kind"], first["mac"], first["url"]) == (
        "resync_failed", "00:56:2b:04:36:15", None)
    assert first["error"] == "HTTP 404 Not Found"
    assert (second["kind"], second["mac"], second["url"], second["text"]) == (
        "resync_requested", "00:56:2b:04:36:15", "tftp://198.18.0.1:69/CP-7841-3PCC.cfg", LINE)
    assert second["model"] == "CP-7841-3PCC"
    assert wait_metric(env, 1, "bootstrapd_syslog_messages_total", kind="resync_failed") >= 1


def test_raw_datagrams_our_template_and_bare_lines(env: SyslogLab) -> None:
    before = len(messages(env, "198.18.0.120"))
    send(env.phone,
         b"<134>bootstrapd 00562b043615 CP-8851-3PCC -- Successful upgrade http://198.18.0.1:80/sip88xx.loads -- ",
         b"CP-8851-3PCC 00:56:2b:04:36:16 \xe2\x80\x94 Upgrade failed: image rejected")
    got = wait_messages(env, "198.18.0.120", before + 2)[before:]
    assert [(e["kind"], e["mac"], e["url"], e["error"]) for e in got] == [
        ("upgrade_succeeded", "00:56:2b:04:36:15", "http://198.18.0.1:80/sip88xx.loads", None),
        ("upgrade_failed", "00:56:2b:04:36:16", None, "image rejected"),
    ]


def test_rate_limit_drops_and_counts_the_excess(env: SyslogLab) -> None:
    send(env.flooder, *[f"<134>CP-7841-3PCC 00:56:2b:00:00:01 -- Requesting resync http://x/{i}".encode()
                        for i in range(200)])
    dropped = wait_metric(env, 150, "bootstrapd_syslog_drops_total", reason="rate_limited")
    accepted = len(messages(env, "198.18.0.121"))
    assert RATE <= accepted <= 60  # a bucket of RATE, plus what refilled while the burst was sent
    assert dropped == 200 - accepted
    # The phone next to it is not limited by its neighbour's flood.
    before = len(messages(env, "198.18.0.120"))
    send(env.phone, b"<134>CP-7841-3PCC 00:56:2b:04:36:15 -- hello")
    assert wait_messages(env, "198.18.0.120", before + 1)[-1]["kind"] == "other"


def test_sender_outside_the_staging_subnets_is_ignored_and_counted(env: SyslogLab) -> None:
    logger(env.foreign, "--rfc3164", LINE)
    send(env.foreign, LINE.encode())
    assert wait_metric(env, 2, "bootstrapd_syslog_drops_total", reason="foreign_source") == 2
    assert messages(env, "198.18.1.200") == []


def test_hostile_datagrams_do_not_crash_it(env: SyslogLab) -> None:
    before = len(messages(env, "198.18.0.120"))
    send(env.phone, b"A" * 65_507, b"\x00" * 1500, b"<13>\xff\xfe\xc3\x28 invalid \xed\xa0\x80 utf-8",
         b"<999>\x1b[2J\x1b[31mred\nDec  1 00:00:00 forged: line\r\nx,y", b"")
    assert wait_metric(env, 1, "bootstrapd_syslog_drops_total", reason="oversized") == 1
    assert wait_metric(env, 1, "bootstrapd_syslog_drops_total", reason="empty") == 1
    got = wait_messages(env, "198.18.0.120", before + 3)[before:]
    assert len(got) == 3
    for event in got:
        assert event["kind"] == "other" and event["text"].isprintable()
        assert "\x1b" not in event["text"] and "\n" not in event["text"]
    logger(env.phone, "--rfc5424", LINE)  # still serving
    assert wait_messages(env, "198.18.0.120", before + 4)[-1]["kind"] == "resync_requested"
    assert env.daemon.proc is not None and env.daemon.proc.poll() is None


def test_reload_takes_new_subnets(env: SyslogLab) -> None:
    """SIGHUP with 198.18.1.0/24 added to dhcp.subnets: the sender that was foreign is heard."""
    env.daemon.write_site(syslog_site({"prefix": "198.18.1.0/24"}))
    env.daemon.signal(signal.SIGHUP)
    env.daemon.wait_for("service.reloaded")
    send(env.foreign, LINE.encode())
    got = wait_messages(env, "198.18.1.200", 1)
    assert (got[0]["kind"], got[0]["mac"]) == ("resync_requested", "00:56:2b:04:36:15")


def test_kernel_receive_drops_are_exported_and_a_backlog_is_shed(env: SyslogLab) -> None:
    """A sink that falls behind (here: the daemon stopped) loses datagrams in the kernel; the gauge says how many."""
    assert env.daemon.proc is not None
    env.daemon.proc.send_signal(signal.SIGSTOP)
    try:  # 25,000 small datagrams (~1 KiB of buffer each) overflow what this site asks for (4 MiB, doubled)
        send(env.flooder, *[f"<134>flood {i}".encode() for i in range(25000)])
    finally:
        env.daemon.proc.send_signal(signal.SIGCONT)
    assert wait_metric(env, 1, "bootstrapd_syslog_kernel_receive_drops") >= 1
    # What did fit in the buffer was read as a backlog: the sink shed it (the flooder holds no lease).
    assert wait_metric(env, 1, "bootstrapd_syslog_drops_total", reason="shed") >= 1
    assert env.daemon.wait_for("syslog.shedding")
