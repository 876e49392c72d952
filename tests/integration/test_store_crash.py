"""A lease store killed with SIGKILL keeps every lease it reported flushed, and only whole bursts.

The writer is a real child process (no namespace needed); the test kills only that child, by PID.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.store_sqlite import open_store

TOTAL = 200
BURST = 10
NOW = 1_700_000_000.0

# Puts TOTAL leases in bursts of BURST, one flush per burst, reporting each flush. With a stop point it puts
# the next burst without flushing, says so, and waits to be killed.
WRITER = """
import sys, time
from ipaddress import IPv4Address
from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.dhcp.store_sqlite import open_store

state_dir, total, burst, stop = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
NOW = float(sys.argv[5])
store = open_store(state_dir)
done = 0
while done < total:
    for n in range(done, min(done + burst, total)):
        store.put(Lease(address=IPv4Address(0xC6120000 + 1 + n), client_id=b"\\x01" + n.to_bytes(6, "big"),
                        chaddr=n.to_bytes(6, "big"), state=LeaseState.BOUND, subnet="198.18.0.0/16",
                        expires=NOW + 3600, first_seen=NOW, updated=NOW, hostname=f"phone{n}"))
    if done == stop:
        print("PENDING", done + burst, flush=True)
        time.sleep(60)
    store.flush()
    done = min(done + burst, total)
    print("FLUSHED", done, flush=True)
print("DONE", flush=True)
time.sleep(60)
"""


def expected(n: int) -> Lease:
    return Lease(
        address=IPv4Address(0xC6120000 + 1 + n),
        client_id=b"\x01" + n.to_bytes(6, "big"),
        chaddr=n.to_bytes(6, "big"),
        state=LeaseState.BOUND,
        subnet="198.18.0.0/16",
        expires=NOW + 3600,
        first_seen=NOW,
        updated=NOW,
        hostname=f"phone{n}",
    )


Writer = Callable[[int], "subprocess.Popen[str]"]


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[Writer]:
    procs: list[subprocess.Popen[str]] = []

    def start(stop: int) -> subprocess.Popen[str]:
        argv = [sys.executable, "-c", WRITER, str(tmp_path), str(TOTAL), str(BURST), str(stop), repr(NOW)]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def read_until(proc: subprocess.Popen[str], word: str, at_least: int = 0, timeout: float = 90) -> int:
    """Read the child's reports until `word n` with n >= at_least; returns the last flushed count seen.
    The timeout is generous: ten fsyncs on a disk shared with other heavy writers took over 30 s here.
    Raw reads of the pipe: a buffered readline takes every queued line at once, and the next select would
    then wait for the child's next line (60 s later, after it went on flushing: CI saw 20 leases too many)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    flushed, pending = 0, b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                what, _, count = line.decode().partition(" ")
                if what == "FLUSHED":
                    flushed = int(count)
                if what == word and int(count) >= at_least:
                    return flushed
    raise AssertionError(f"writer never reported {word} {at_least} (exit code {proc.poll()})")


def kill(proc: subprocess.Popen[str]) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL


def reopened(state_dir: Path) -> list[Lease]:
    store = open_store(state_dir)  # also proves the dead writer's lock is gone
    try:
        return list(store.iter_all())
    finally:
        store.close()


def test_kill_during_a_burst_keeps_exactly_the_flushed_bursts(tmp_path: Path, writer: Writer) -> None:
    proc = writer(100)
    assert read_until(proc, "PENDING", 110) == 100
    kill(proc)
    assert reopened(tmp_path) == [expected(n) for n in range(100)]


def test_kill_at_any_moment_loses_no_flushed_lease(tmp_path: Path, writer: Writer) -> None:
    proc = writer(-1)  # never stops by itself
    reported = read_until(proc, "FLUSHED", 50)
    kill(proc)
    leases = reopened(tmp_path)
    assert len(leases) >= reported
    assert len(leases) % BURST == 0  # a burst is committed whole or not at all
    assert leases == [expected(n) for n in range(len(leases))]
