"""A lease is on disk before its ACK leaves, seen at the system-call level.

strace follows every thread of the real daemon while real clients (udhcpc) bind, renew and move: each
DHCPACK's send must come after an fdatasync of the lease store's WAL that finished after the last write
to it. (The shell commits on its event loop and waits for the disk in a thread: transport/dhcp_sync.py.)
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from bootstrapd.lab import Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.test_dhcp_clients import need, udhcpc

MAGIC = bytes.fromhex("63825363")
ACK = 5
# pid syscall(fd<path>, ...: a whole call, or its start ("<unfinished ...>"), or its end ("<... x resumed>").
CALL = re.compile(r"^(\d+) +(?:(\w+)\((\d+)<([^>]*)>(.*)|<\.\.\. (\w+) resumed>(.*))$")
BYTES = re.compile(r'"((?:\\x[0-9a-f]{2})*)"')


def unescape(escaped: str) -> bytes:
    """What strace -xx printed as \\xNN escapes."""
    return bytes.fromhex(escaped.replace("\\x", ""))


def message_type(escaped: str) -> int | None:
    """The DHCP message type (option 53) of a datagram or frame strace printed."""
    data = unescape(escaped)
    at = data.find(MAGIC)
    if at < 0:
        return None
    i = at + 4
    while i + 1 < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, length = data[i], data[i + 1]
        if code == 53 and length == 1 and i + 2 < len(data):
            return data[i + 2]
        i += 2 + length
    return None


def check_order(lines: list[str]) -> tuple[int, int]:
    """(ACKs sent, WAL syncs finished); fails at the first ACK sent while a WAL write was not yet synced."""
    dirty = False  # a write to the WAL since the last finished sync
    acks = syncs = 0
    pending_sync: set[str] = set()  # threads inside an fdatasync/fsync of the WAL that started clean
    for line in lines:
        m = CALL.match(line)
        if m is None:
            continue
        pid, name, _fd, path, rest, resumed, resumed_rest = m.groups()
        if resumed is not None:  # the end of a call that started earlier
            if resumed in ("fdatasync", "fsync") and pid in pending_sync and "= 0" in resumed_rest:
                pending_sync.discard(pid)
                dirty, syncs = False, syncs + 1
            continue
        if unescape(path).endswith(b"-wal"):
            if name in ("write", "pwrite64"):
                dirty = True
                pending_sync.clear()  # a sync already running may not cover this write
            elif name in ("fdatasync", "fsync"):
                if "<unfinished ...>" in rest:
                    pending_sync.add(pid)
                elif "= 0" in rest:
                    dirty, syncs = False, syncs + 1
        elif name in ("sendto", "sendmsg", "write") and (payload := BYTES.search(rest)) is not None \
                and message_type(payload.group(1)) == ACK:
            acks += 1
            assert not dirty, f"a DHCPACK left before the WAL write before it was synced: {line[:200]}"
    return acks, syncs


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=2)


def test_every_ack_leaves_after_the_sync_that_made_its_lease_durable(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc", "strace")
    daemon = Daemon(lan.server, tmp_path, site_config()).start()
    assert daemon.proc is not None
    trace, errors = tmp_path / "strace.txt", tmp_path / "strace.err"
    with open(errors, "w") as err:
        tracer = subprocess.Popen(
            [shutil.which("strace") or "strace", "-f", "-p", str(daemon.proc.pid), "-o", str(trace), "-y", "-xx",
             "-s", "2048", "-e", "trace=write,pwrite64,fdatasync,fsync,sendto,sendmsg"],
            stdout=subprocess.DEVNULL, stderr=err)
    try:
        deadline = time.monotonic() + 10
        while "attached" not in errors.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)  # every thread attached
        bound = 0
        for _ in range(3):  # a new binding, then the same client again (its lease rewritten)
            for client in lan.clients:
                env = udhcpc(client, tmp_path, "-V", "CP-8841-3PCC")
                bound += bool(env.get("ip"))
        assert bound == 6
    finally:
        tracer.send_signal(signal.SIGINT)  # detaches; the daemon runs on
        tracer.wait(10)
    acks, syncs = check_order(trace.read_text(errors="replace").splitlines())
    assert acks >= 6, f"strace saw {acks} ACKs"
    assert syncs >= 1
    daemon.stop()
