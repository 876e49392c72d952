"""Big files served by the TFTP transfer workers (`files.tftp.workers`, transport/tftp_worker*.py):
lock-step clients at once get the file whole with the same outcomes, log and metrics as in-loop transfers;
a stranger's datagram gets ERROR 5; a worker killed mid-transfer ends that transfer as refused with an
ERROR to the client, is started again and serves the next one; the main process keeps no descriptor and
stop() leaves no worker behind."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from bootstrapd.lab import Lab, staging_lan
from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Data, Error, Oack
from tests.integration.tftp_client import RawClient, Result, netns_socket
from tests.integration.tftp_fixtures import SERVER, Harness, client_host

pytestmark = pytest.mark.lab

SIZE = 8 * 1024 * 1024
BLK = (("blksize", "1468"),)
FAST = ("--timeout", "0.5", "--retries", "4", "--max-wait", "5")


def worker_pids(h: Harness) -> list[int]:
    h.metrics()
    return list(h.events("harness.metrics")[-1]["workers"])


def holding(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (the worker serving its transfer)."""
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_workers_serve_big_files_survive_a_killed_worker_and_leave_nothing(lab: Lab, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    body = os.urandom(SIZE)
    big = root / "sip88xx.12-0-1MPP.loads"
    big.write_bytes(body)
    want = hashlib.sha256(body).hexdigest()
    lan = staging_lan(lab, clients=0)
    client = client_host(lan)
    h = Harness(lan.server, root, tmp_path, 69, "--workers", "2", *FAST)
    first = worker_pids(h)
    assert len(first) == 2
    fds_before = h.fd_count()

    # 4 lock-step clients at once, split over the two workers.
    results: list[Result | BaseException] = [RuntimeError("not run")] * 4

    def fetch(i: int) -> None:
        c = RawClient(client, (SERVER, 69))
        try:
            results[i] = c.fetch(big.name, BLK, timeout=90)
        except BaseException as exc:  # reported below
            results[i] = exc
        finally:
            c.close()

    threads = [threading.Thread(target=fetch, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for r in results:
        assert isinstance(r, Result), r
        assert r.error is None and hashlib.sha256(r.data).hexdigest() == want
    events = h.wait_for("files.fetch", 10, count=4, requested=big.name)
    for e in events:
        assert (e["result"], e["status"], e["bytes"], e["blksize"], e["windowsize"]) == ("ok", None, SIZE, 1468, 1)
        assert e["resolved"] == str(big.resolve()) and e["client"].startswith("198.18.0.200:")
    m = h.metrics()
    assert m["bootstrapd_tftp_worker_transfers_total"] == 4
    assert m['bootstrapd_files_fetches_total{protocol="tftp",result="ok"}'] == 4
    assert m['bootstrapd_files_bytes_sent_total{protocol="tftp"}'] >= 4 * SIZE
    assert m["bootstrapd_tftp_sessions"] == 0

    # A stranger's datagram to a worker's transfer gets ERROR 5 from it; the transfer goes on.
    c = RawClient(client, (SERVER, 69))
    intruder = netns_socket(client)
    try:
        c.send_request(big.name, BLK)
        got = c.recv(5)
        assert got is not None and packet.parse(got[0]) == Oack((("blksize", "1468"),))
        tid = got[1]
        intruder.sendto(packet.encode_ack(0), tid)
        intruder.settimeout(5)
        reply, addr = intruder.recvfrom(600)
        assert packet.parse(reply) == Error(5, "Unknown transfer ID") and addr == tid
        data, block = bytearray(), 0
        while True:
            c.sock.sendto(packet.encode_ack(block), tid)
            got = c.recv(5)
            assert got is not None
            pkt = packet.parse(got[0])
            assert isinstance(pkt, Data)
            if pkt.block == (block + 1) & 0xFFFF:
                data += pkt.payload
                block += 1
                if len(pkt.payload) < 1468:
                    c.sock.sendto(packet.encode_ack(block), tid)
                    break
    finally:
        intruder.close()
        c.close()
    assert hashlib.sha256(data).hexdigest() == want
    h.wait_for("files.fetch", 10, count=5, requested=big.name, result="ok")
    assert h.metrics()['bootstrapd_tftp_drops_total{reason="unknown_tid"}'] == 1

    # A lost ACK: the worker's timer sends the block again, once, and the count reaches the log and metrics.
    retransmitted = h.metrics().get("bootstrapd_tftp_retransmissions_total", 0)
    c = RawClient(client, (SERVER, 69))
    try:
        skipped: list[int] = []
        res = c.fetch(big.name, BLK, skip_ack=lambda n: n == 100 and not skipped and not skipped.append(n),
                      timeout=60)
    finally:
        c.close()
    assert res.error is None and hashlib.sha256(res.data).hexdigest() == want and skipped == [100]
    again = h.wait_for("files.fetch", 10, count=6, requested=big.name, result="ok")[-1]
    assert again["retransmits"] >= 1 and again["bytes"] == SIZE
    assert h.metrics()["bootstrapd_tftp_retransmissions_total"] == retransmitted + again["retransmits"]

    # SIGKILL the worker serving a transfer: the client hears ERROR 0, the transfer ends as refused.
    killed: list[int] = []

    def kill(block: int) -> None:
        if block == 200 and not killed:
            pid = next(p for p in first if holding(p, big.resolve()))
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    c = RawClient(client, (SERVER, 69))
    try:
        start = time.monotonic()
        res = c.fetch(big.name, BLK, on_block=kill, timeout=30)
        assert killed and res.error is not None and res.error[0] == 0
        assert time.monotonic() - start < 20
        lost = h.wait_for("files.fetch", 5, result="worker_lost", requested=big.name)[0]
        assert lost["status"] == 0 and lost["resolved"] == str(big.resolve())
        # started again, and the new one serves the next big transfer
        h.wait_for("tftp.worker_started", 10, count=3)
        second = worker_pids(h)
        assert len(second) == 2 and killed[0] not in second
        res = c.fetch(big.name, BLK, timeout=60)
        assert res.error is None and hashlib.sha256(res.data).hexdigest() == want
    finally:
        c.close()
    m = h.metrics()
    assert m["bootstrapd_tftp_worker_restarts_total"] == 1
    assert m["bootstrapd_tftp_worker_transfers_total"] == 8
    assert m['bootstrapd_files_fetches_total{protocol="tftp",result="worker_lost"}'] == 1
    assert m["bootstrapd_tftp_sessions"] == 0
    assert h.fd_count() == fds_before
    h.stop()
    assert h.proc.returncode == 0
    for pid in second:  # stop() waited for its workers: none is left, not even as a zombie
        assert not os.path.exists(f"/proc/{pid}")
