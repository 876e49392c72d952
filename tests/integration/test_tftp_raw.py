"""The TFTP shell against a hand-written client that loses chosen packets, replays ACKs, talks from the
wrong port, sends hostile datagrams and hostile names (tests/integration/tftp_client.py)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bootstrapd.lab import Host, Lab, staging_lan
from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Data, Error, Oack
from tests.integration.tftp_client import RawClient, netns_socket
from tests.integration.tftp_fixtures import SERVER, Harness, client_host
from tests.labreq import require_lab

pytestmark = pytest.mark.lab

FAST = ("--timeout", "0.3", "--retries", "4", "--max-wait", "3")
SMALL = os.urandom(5000)


@dataclass
class RawLab:
    client: Host
    harness: Harness
    root: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RawLab]:
    require_lab()
    base = tmp_path_factory.mktemp("tftp-raw")
    root = base / "root"
    root.mkdir()
    (root / "small.bin").write_bytes(SMALL)
    with open(root / "big40.bin", "wb") as f:  # 40 MB: past 65535 blocks at blksize 512
        f.truncate(40 * 1024 * 1024)
        for off in range(0, 40 * 1024 * 1024, 4 * 1024 * 1024):
            f.seek(off)
            f.write(os.urandom(4096))
    (base / "root-evil").mkdir()  # a sibling whose name starts with the root's
    (base / "root-evil" / "secret").write_text("outside")
    (base / "outside.txt").write_text("outside")
    os.symlink(base / "outside.txt", root / "link-out")
    os.mkfifo(root / "fifo")
    (root / "subdir").mkdir()
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        client = client_host(lan)
        harness = Harness(lan.server, root, base, 69, *FAST)
        yield RawLab(client, harness, root)
        harness.stop()
    finally:
        lab.close()


@pytest.fixture
def raw(env: RawLab) -> Iterator[RawClient]:
    c = RawClient(env.client, (SERVER, 69))
    yield c
    c.close()


def sessions(h: Harness) -> float:
    return h.metrics()["bootstrapd_tftp_sessions"]


def wait_idle(h: Harness, timeout: float = 6.0) -> None:
    deadline = time.monotonic() + timeout
    while sessions(h) != 0:
        assert time.monotonic() < deadline, "sessions still open"
        time.sleep(0.2)


@pytest.mark.parametrize(("options", "oack"), [
    ((("blksize", "1468"), ("tsize", "0"), ("windowsize", "16")),
     {"blksize": "1468", "tsize": "5000", "windowsize": "16"}),
    ((("blksize", "9000"),), {"blksize": "1468"}),  # clamped to blksize_max (and the MTU)
    ((("blksize", "65465"),), None),  # out of RFC 2348's range: ignored, no OACK, 512-byte blocks
    ((("timeout", "256"), ("tsize", "0")), {"tsize": "5000"}),
    ((("blksize", "1024"), ("blksize", "800")), None),  # repeated: ignored
    ((("foo", "bar"),), None),
])
def test_negotiation_over_the_wire(raw: RawClient, options: tuple[tuple[str, str], ...],
                                   oack: dict[str, str] | None) -> None:
    res = raw.fetch("small.bin", options)
    assert res.oack == oack
    assert bytes(res.data) == SMALL
    if oack is None:
        assert len(packet.parse(res.packets[0]).payload) == 512  # type: ignore[union-attr]


def test_lost_oack_is_sent_again(raw: RawClient) -> None:
    lost = []
    res = raw.fetch("small.bin", (("tsize", "0"),), drop=lambda kind, n: kind == "oack" and not lost.append(1)
                    and len(lost) == 1)
    assert bytes(res.data) == SMALL and len(lost) >= 2


def test_lost_data_is_sent_again(raw: RawClient) -> None:
    seen = []
    res = raw.fetch("small.bin", drop=lambda kind, n: kind == "data" and n == 3 and seen.count(3) == 0
                    and not seen.append(3))
    assert bytes(res.data) == SMALL and seen == [3]


def test_lost_ack_gets_the_block_again(raw: RawClient) -> None:
    skipped = []
    res = raw.fetch("small.bin", skip_ack=lambda n: n == 2 and not skipped and not skipped.append(2))
    assert bytes(res.data) == SMALL and skipped == [2]


def test_lost_final_ack_ends_in_bounded_time_and_frees_the_slot(env: RawLab, raw: RawClient) -> None:
    start = time.monotonic()
    res = raw.fetch("small.bin", skip_ack=lambda n: n == 10)  # 5000 bytes: block 10 is the last
    assert bytes(res.data) == SMALL
    env.harness.wait_for("files.fetch", 8, result="timeout", requested="small.bin")
    assert time.monotonic() - start < 8
    wait_idle(env.harness)


def test_replayed_acks_cause_no_duplicate_burst(raw: RawClient) -> None:
    raw.send_request("small.bin")
    first = raw.recv(2)
    assert first is not None
    _, tid = first
    for _ in range(10):
        raw.sock.sendto(packet.encode_ack(1), tid)
    got = []
    while (pkt := raw.recv(0.2)) is not None:  # less than the 0.3 s retransmission timeout
        got.append(packet.parse(pkt[0]))
    assert got == [Data(2, SMALL[512:1024])]


def test_40mb_at_blksize_512_wraps_block_numbers(env: RawLab, raw: RawClient) -> None:
    res = raw.fetch("big40.bin", (("windowsize", "32"), ("tsize", "0")), timeout=120)
    assert res.oack == {"windowsize": "32", "tsize": str(40 * 1024 * 1024)}
    want = hashlib.sha256((env.root / "big40.bin").read_bytes()).hexdigest()
    assert hashlib.sha256(res.data).hexdigest() == want


def test_wrong_port_gets_error_5_and_the_transfer_goes_on(env: RawLab, raw: RawClient) -> None:
    raw.send_request("small.bin")
    first = raw.recv(2)
    assert first is not None
    intruder = netns_socket(env.client)
    try:
        intruder.sendto(packet.encode_ack(1), first[1])
        intruder.settimeout(2)
        reply, addr = intruder.recvfrom(600)
        assert packet.parse(reply) == Error(5, "Unknown transfer ID") and addr == first[1]
    finally:
        intruder.close()
    data = bytearray(first[0][4:])
    block = 1
    while True:
        raw.sock.sendto(packet.encode_ack(block), first[1])
        got = raw.recv(2)
        assert got is not None
        data += got[0][4:]
        block += 1
        if len(got[0]) < 516:
            raw.sock.sendto(packet.encode_ack(block), first[1])
            break
    assert bytes(data) == SMALL
    assert env.harness.metrics()['bootstrapd_tftp_drops_total{reason="unknown_tid"}'] >= 1


HOSTILE = [b"", b"\x00", b"\x00\x01\x00", b"\x00\x01no-nul-anywhere", b"\x00\x01x\x00octet\x00" + b"a\x001\x00" * 200,
           b"\x00\x01" + b"N" * 4096 + b"\x00octet\x00", b"\x00\x04\x00\x01", b"\x00\x03\x00\x01xx", b"\xff" * 700]


def test_hostile_datagrams_are_dropped_or_refused_and_serving_goes_on(env: RawLab, raw: RawClient) -> None:
    before = env.harness.metrics()
    for datagram in HOSTILE:
        raw.sock.sendto(datagram, (SERVER, 69))
    replies = []
    while (got := raw.recv(0.3)) is not None:
        replies.append(packet.parse(got[0]))
    assert replies and all(r == Error(4, "malformed request") for r in replies)
    assert bytes(raw.fetch("small.bin").data) == SMALL
    after = env.harness.metrics()
    key = 'bootstrapd_tftp_drops_total{reason="parse_failed"}'
    assert after[key] - before.get(key, 0) >= 6


TRAVERSAL = [
    ("../../etc/passwd", 2, "traversal"),
    ("/etc/passwd", 1, "not_found"),  # leading slashes dropped: inside the root, and not there
    ("a/../../x", 2, "traversal"),
    ("..\\x", 2, "traversal"),
    ("//etc/x", 1, "not_found"),
    ("../root-evil/secret", 2, "traversal"),
    ("link-out", 2, "traversal"),
    ("fifo", 2, "not_regular"),
    ("subdir", 2, "not_regular"),
]


@pytest.mark.parametrize(("name", "code", "reason"), TRAVERSAL)
def test_names_outside_the_jail_are_refused(env: RawLab, raw: RawClient, name: str, code: int,
                                            reason: str) -> None:
    before = env.harness.fetches(reason)
    res = raw.fetch(name)
    assert res.error is not None and res.error[0] == code and not res.data
    assert env.harness.fetches(reason) == before + 1
    assert bytes(raw.fetch("small.bin").data) == SMALL  # still serving


def test_session_cap_refuses_with_a_clear_error_then_recovers(env: RawLab, tmp_path: Path) -> None:
    cap = Harness(env.harness.host, env.root, tmp_path, 1069, "--max-sessions", "3", *FAST)
    holders = [RawClient(env.client, (SERVER, 1069)) for _ in range(3)]
    late = RawClient(env.client, (SERVER, 1069))
    try:
        for h in holders:  # each asks and never ACKs: three sessions held until they time out
            h.send_request("small.bin")
            assert h.recv(2) is not None
        late.send_request("small.bin")
        got = late.recv(2)
        assert got is not None
        pkt = packet.parse(got[0])
        assert isinstance(pkt, Error) and pkt.code == 0 and "busy" in pkt.message.lower()
        assert cap.fetches("session_limit") == 1
        assert cap.metrics()["bootstrapd_tftp_sessions"] == 3
        wait_idle(cap)
        assert bytes(late.fetch("small.bin").data) == SMALL
    finally:
        for c in (*holders, late):
            c.close()
        cap.stop()


def test_tsize_probe_then_the_real_request_is_served(env: RawLab, raw: RawClient) -> None:
    """A client that only wanted the size answers our OACK with ERROR 8 and asks again (from the same
    port): the probe ends as options_refused, the second request gets the file."""
    before = env.harness.fetches("options_refused")
    raw.send_request("small.bin", (("tsize", "0"),))
    got = raw.recv(2)
    assert got is not None and packet.parse(got[0]) == Oack((("tsize", "5000"),))
    raw.sock.sendto(packet.encode_error(packet.ErrorCode.OPTION_REFUSED, "tsize probe"), got[1])
    res = raw.fetch("small.bin", (("tsize", "0"), ("blksize", "1024")))
    assert bytes(res.data) == SMALL and res.oack == {"tsize": "5000", "blksize": "1024"}
    env.harness.wait_for("files.fetch", 5, result="options_refused", requested="small.bin")
    assert env.harness.fetches("options_refused") == before + 1


def test_a_file_replaced_by_rename_reaches_the_client_whole_old(env: RawLab, raw: RawClient) -> None:
    old, new = os.urandom(2 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    path = env.root / "swap.bin"
    path.write_bytes(old)

    def swap(block: int) -> None:
        if block == 10:
            (env.root / "swap.tmp").write_bytes(new)
            os.replace(env.root / "swap.tmp", path)

    res = raw.fetch("swap.bin", (("blksize", "1468"),), on_block=swap)
    assert res.error is None and bytes(res.data) == old
    assert bytes(raw.fetch("swap.bin", (("blksize", "1468"),)).data) == new


def test_a_big_file_rewritten_in_place_fails_rather_than_mix(env: RawLab, raw: RawClient) -> None:
    path = env.root / "inplace.bin"
    path.write_bytes(os.urandom(2 * 1024 * 1024))

    def rewrite(block: int) -> None:
        if block == 10:
            with open(path, "r+b") as f:
                f.seek(1024 * 1024)
                f.write(b"X" * 4096)
            os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))  # a coarse clock still moves

    res = raw.fetch("inplace.bin", (("blksize", "1468"),), on_block=rewrite)
    assert res.error == (0, "file changed during transfer")
    assert env.harness.wait_for("files.fetch", 5, result="file_changed", requested="inplace.bin")


def test_a_small_file_rewritten_in_place_is_sent_as_it_was(env: RawLab, raw: RawClient) -> None:
    path = env.root / "profile.xml"
    old = os.urandom(20000)
    path.write_bytes(old)

    def rewrite(block: int) -> None:
        if block == 5:
            path.write_bytes(b"new" * 100)

    res = raw.fetch("profile.xml", on_block=rewrite)
    assert bytes(res.data) == old
    assert bytes(raw.fetch("profile.xml").data) == b"new" * 100


def test_wildcard_listener_replies_from_the_address_asked(env: RawLab, tmp_path: Path) -> None:
    """Bound to 0.0.0.0, the transfer's socket is bound to the RRQ's destination (IP_PKTINFO): a client
    that asked the second address hears from that address, not from the interface's primary one."""
    env.harness.host.add_address("stg0", "198.18.0.5/23")
    wild = Harness(env.harness.host, env.root, tmp_path, 3069, "--address", "0.0.0.0", *FAST)
    try:
        for target in (SERVER, "198.18.0.5"):
            c = RawClient(env.client, (target, 3069))
            try:
                res = c.fetch("small.bin", (("blksize", "1468"),))
            finally:
                c.close()
            assert bytes(res.data) == SMALL and res.server_tid is not None and res.server_tid[0] == target
            assert res.oack == {"blksize": "1468"}
    finally:
        wild.stop()
