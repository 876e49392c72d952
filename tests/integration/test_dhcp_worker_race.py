"""`dhcp.workers: 1`: a phone that asks the main process for something the moment it has its ACK is still
known by its lease there, against the real daemon.

The worker sends the ACK; the lease reaches the main process over the channel (transport/dhcp_channel.py),
one datagram per loop turn. The main process is stopped (SIGSTOP) while the worker serves a few other phones
(a backlog on the channel) and then this phone's DORA, and while the phone fetches its profile over TFTP and
HTTP, looks up the provisioning SRV record and logs its resync lines behind a syslog flood from an unleased
sender (so the sink sheds what comes from senders without a lease); then SIGCONT: the requests and the
channel's datagrams wait in their sockets together, the requests' sockets served in the first loop turns
while the channel's backlog would take a turn per datagram. Each lookup by address that misses reads the
channel first (DhcpWorkers.drain), so the fetches are `identified_by: lease`, the SRV query and the lines
are the phone's, and its stage moves past `leased`.
"""

from __future__ import annotations

import ipaddress
import json
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from bootstrapd.lab import Host, Lab, staging_lan
from bootstrapd.transport.dhcp_channel import decode_records, pair
from tests.integration.daemon import Daemon, files_section, site_config
from tests.integration.dhcp_client import RawClient, mac
from tests.integration.test_dhcp_clients import need
from tests.labreq import require_lab

pytestmark = pytest.mark.lab

CONFIG = Path(__file__).resolve().parents[2] / "config"
SERVER, SYSLOG_PORT = "198.18.0.1", 514
MODEL = "CP-7841-3PCC"
PROFILE = f"{MODEL}.cfg"  # the bootstrap profile ($PN.cfg): for any device, by its lease when the name has no MAC
OTHERS = 8  # phones served while the main process is stopped: 2 channel datagrams each (OFFER, ACK)
FLOOD = 3000  # datagrams from an unleased sender ahead of the phone's lines: the sink's first wakeup
# parses 256 of them, then sheds unleased senders for a second

# In the flooder's namespace: FLOOD datagrams to the sink. (PHONE_LINES below: the phone's lines.)
FLOOD_LINES = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[3])):
    s.sendto(b"<134>flood line %d" % i, (sys.argv[1], int(sys.argv[2])))
"""


@dataclass
class RaceLab:
    daemon: Daemon
    phone: Host  # a DHCP client: no address until its ACK
    flooder: Host  # 198.18.1.250: a static address, no lease
    work: Path


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RaceLab]:
    require_lab()
    need("curl")
    need("dig")
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        shutil.copy(CONFIG / "inventory.csv", tmp_path / "inventory.csv")
        (tmp_path / "root").mkdir()
        files = files_section(tmp_path, tmp_path / "root", tmp_path / "inventory.csv")
        site = site_config(files=files, syslog={"port": SYSLOG_PORT}, dhcp__workers=1,
                           logging={"format": "json", "level": "info"})
        daemon = Daemon(lan.server, tmp_path, site).start()
        daemon.wait_for("dhcp.worker_ready")
        daemon.wait_for("files.listening")
        phone = lan.add_client(name="phone")
        flooder = lan.static_client("198.18.1.250/23", name="flooder")
        yield RaceLab(daemon, phone, flooder, tmp_path)
        assert daemon.stop() == 0
    finally:
        lab.close()


def devices(env: RaceLab) -> dict[str, dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", "devices", "--json", "-c", str(env.daemon.site_path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return {row["mac"]: row for row in json.loads(proc.stdout)}


def wait_events(env: RaceLab, event: str, count: int, timeout: float = 10.0, **fields: str) -> list[dict[str, Any]]:
    """The daemon's `event` events with the fields given (an address with or without its port), once there
    are `count`."""
    deadline = time.monotonic() + timeout
    while True:
        found = [e for e in env.daemon.events() if e.get("event") == event
                 and all(str(e.get(k, "")).split(":")[0] == v for k, v in fields.items())]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def wait_stage(env: RaceLab, chaddr: str, stage: str, timeout: float = 10.0) -> dict[str, Any]:
    """The phone's row once its stage is `stage` (the tracker writes once a second), else the last one."""
    deadline = time.monotonic() + timeout
    while True:
        row = devices(env).get(chaddr, {})
        if row.get("stage") == stage or time.monotonic() > deadline:
            return row
        time.sleep(0.3)


# What the phone does after its ACK, and the stage it must reach. Each alone shows that its own lookup reads
# the channel (in `everything` the first of them in the loop turn reads it for the others).
ACTIONS = {
    "everything": (("tftp", "http", "dns", "syslog"), "resync_succeeded"),
    "tftp": (("tftp",), "profile_fetched"),
    "http": (("http",), "profile_fetched"),
    "dns": (("dns",), "srv_looked_up"),
    "syslog": (("syslog",), "resync_succeeded"),
}
PHONE_LINES = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for line in sys.argv[3:]:
    s.sendto(line.encode(), (sys.argv[1], int(sys.argv[2])))
"""


@pytest.mark.parametrize("what", list(ACTIONS))
def test_a_phone_that_asks_right_after_its_ack_is_known_by_its_lease(env: RaceLab, what: str) -> None:
    actions, stage = ACTIONS[what]
    phone = mac(700)
    fetches: dict[str, subprocess.Popen[Any]] = {}
    srv: subprocess.Popen[Any] | None = None
    env.daemon.signal(signal.SIGSTOP)  # the main process only: the worker keeps serving
    try:
        with RawClient(env.phone) as client:
            for n in range(OTHERS):  # one DORA at a time: separate bursts, separate channel datagrams
                assert len(client.dora([mac(800 + n)], vendor_class=MODEL)) == 1
            ack = client.dora([phone], vendor_class=MODEL)[phone]
        env.phone.add_address("eth0", f"{ack.yiaddr}/23")
        for proto in ("tftp", "http"):
            if proto in actions:
                out = env.work / f"profile.{proto}"
                fetches[proto] = env.phone.popen(["curl", "-sS", "--max-time", "20", "-o", str(out),
                                                  f"{proto}://{SERVER}/{PROFILE}"], stderr=subprocess.PIPE, text=True)
        if "dns" in actions:
            srv = env.phone.popen(["dig", "+short", f"@{SERVER}", "+time=15", "+tries=1",
                                   "_ciscoprov-http._tcp.staging.test", "SRV"], stdout=subprocess.PIPE, text=True)
        if "syslog" in actions:
            env.flooder.run([sys.executable, "-c", FLOOD_LINES, SERVER, str(SYSLOG_PORT), str(FLOOD)])
            lines = [f"<134>{MODEL} {phone} -- Requesting resync http://{SERVER}/{PROFILE}",
                     f"<134>{MODEL} {phone} -- Successful resync http://{SERVER}/{PROFILE}"]
            env.phone.run([sys.executable, "-c", PHONE_LINES, SERVER, str(SYSLOG_PORT), *lines])
        time.sleep(1.0)  # curl and dig have sent their requests (the kernel completed the TCP handshake)
    finally:
        env.daemon.signal(signal.SIGCONT)
    for proc in fetches.values():
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
    if srv is not None:
        assert srv.communicate(timeout=30)[0].split(), "no SRV answer"

    wrong = []  # every misattribution at once
    fetched = {e["protocol"]: e for e in wait_events(env, "files.fetch", len(fetches), client=ack.yiaddr)}
    for proto in fetches:
        event = fetched.get(proto, {})
        if (event.get("identified_by"), event.get("mac")) != ("lease", phone):
            wrong.append(f"{proto} fetch identified_by={event.get('identified_by')} mac={event.get('mac')}")
    if "syslog" in actions:
        assert wait_events(env, "syslog.shedding", 1)  # the phone's lines came while the sink shed
        heard = [e["kind"] for e in wait_events(env, "syslog.message", 2, source=ack.yiaddr)]
        if heard != ["resync_requested", "resync_succeeded"]:
            wrong.append(f"syslog lines heard: {heard}")
    row = wait_stage(env, phone, stage)
    if row.get("stage") != stage:
        wrong.append(f"stage {row.get('stage')}, not {stage}")
    assert not wrong, wrong


# In the server's namespace: every DHCPACK that leaves `stg0`, with the kernel's timestamp of its departure
# (SO_TIMESTAMPNS on a packet socket, which sees outgoing frames), as one JSON line {yiaddr: ns} when stdin
# closes.
ACK_SNIFFER = """
import json, select, socket, struct, sys
SO_TIMESTAMPNS = 35
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))  # ETH_P_ALL: outgoing frames too
s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
s.bind(("stg0", 0))
print(json.dumps({"ready": True}), flush=True)
acks = {}
while True:
    ready = select.select([s, sys.stdin], [], [])[0]
    if sys.stdin in ready and not sys.stdin.readline():
        break
    if s not in ready:
        continue
    frame, anc, _, _ = s.recvmsg(2048, 64)
    if len(frame) < 42 or frame[12:14] != b"\\x08\\x00" or frame[23] != 17:
        continue
    udp = 14 + (frame[14] & 15) * 4
    if frame[udp:udp + 2] != b"\\x00\\x43":
        continue
    bootp = frame[udp + 8:]
    opts, i, mtype = bootp[240:], 0, None
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if opts[i] == 53:
            mtype = opts[i + 2]
        i += 2 + opts[i + 1]
    if mtype == 5:
        sec, ns = struct.unpack("qq", anc[0][2][:16])
        acks.setdefault(socket.inet_ntoa(bootp[16:20]), sec * 10**9 + ns)
print(json.dumps(acks), flush=True)
"""
SO_TIMESTAMPNS = 35  # socket(7): SCM_TIMESTAMPNS, a struct timespec


def stamped(sock: socket.socket) -> Iterator[tuple[int, list[list[Any]]]]:
    """(kernel receive timestamp in ns, records) of every datagram waiting on our end of a channel."""
    while True:
        try:
            data, anc, _, _ = sock.recvmsg(1 << 16, 64)
        except BlockingIOError:
            return
        sec, ns = struct.unpack("qq", anc[0][2][:16])
        yield sec * 10**9 + ns, decode_records(data)


def test_a_worker_writes_a_burst_s_leases_to_the_channel_before_its_acks_leave(tmp_path: Path) -> None:
    """The real worker process (`bootstrapd dhcp-worker`), with this test as its main process: the `bound`
    lease event of every ACK of a burst is in the channel before that ACK leaves the interface (the
    kernel's timestamps of both, on one clock), so a phone can never ask the main process anything before
    the main process could know its lease."""
    require_lab()
    lab = Lab()
    worker: subprocess.Popen[Any] | None = None
    try:
        lan = staging_lan(lab, clients=1)
        site = site_config(dhcp__workers=1, logging={"format": "json", "level": "info"},
                           state_dir=str(tmp_path / "state"))
        (tmp_path / "state").mkdir()
        site_path = tmp_path / "site.yaml"
        site_path.write_text(yaml.safe_dump(site, sort_keys=False))
        channel, child = pair()
        inbox_send, inbox_recv = pair()
        channel.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        fds = [child.fileno(), inbox_recv.fileno(), inbox_send.fileno()]
        with open(tmp_path / "worker.log", "w") as log:
            worker = lan.server.popen([sys.executable, "-m", "bootstrapd", "dhcp-worker", "-c", str(site_path),
                                       "--index", "0", "--count", "1", "--fds", ",".join(map(str, fds))],
                                      pass_fds=fds, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not any(r[0] == "R" for _, records in stamped(channel) for r in records):
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            assert time.monotonic() < deadline, "the worker never said it was ready"
            select.select([channel], [], [], 0.5)
        sniffer = lan.server.popen([sys.executable, "-c", ACK_SNIFFER], stdin=subprocess.PIPE,
                                   stdout=subprocess.PIPE, text=True)
        assert sniffer.stdout is not None
        assert json.loads(sniffer.stdout.readline()) == {"ready": True}
        phones = [mac(900 + n) for n in range(40)]
        with RawClient(lan.clients[0]) as client:
            acks = client.dora(phones, vendor_class=MODEL)  # 40 REQUESTs, answered in one or a few bursts
        assert len(acks) == len(phones)
        time.sleep(0.5)
        left = json.loads(sniffer.communicate(timeout=10)[0])  # (closes its stdin)
        bound: dict[str, int] = {}
        for ns, records in stamped(channel):
            for r in records:
                if r[0] == "L" and r[1] == "bound":
                    bound.setdefault(str(ipaddress.IPv4Address(r[2][0])), ns)
        assert set(left) == set(bound) == {a.yiaddr for a in acks.values()}
        late = {a: round((bound[a] - left[a]) / 1e3, 1) for a in left if bound[a] >= left[a]}
        assert not late, f"lease events after their ACK left (us): {late}"
    finally:
        if worker is not None and worker.poll() is None:
            worker.terminate()
            worker.wait(10)
        lab.close()
