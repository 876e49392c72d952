"""recvmmsg/sendmmsg through ctypes on real loopback sockets: batches in and out, and errno read right:
an empty socket is "nothing waiting" in any thread, a real failure is an OSError with its errno."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Iterator

import pytest

from bootstrapd.transport import dns_mmsg

pytestmark = pytest.mark.skipif(not dns_mmsg.available(), reason="no recvmmsg/sendmmsg here")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    server.bind(("127.0.0.1", 0))
    server.setblocking(False)
    client.settimeout(2)
    try:
        yield server, client
    finally:
        server.close()
        client.close()


def test_a_batch_is_read_and_every_sender_gets_its_own_answer(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    io = dns_mmsg.BatchSocket(server, batch=8)
    for i in range(5):
        client.sendto(b"q%d" % i, server.getsockname())
    outcomes, answered, failed = io.exchange(lambda data: (data.upper(), data))
    assert (outcomes, answered, failed) == ([b"q0", b"q1", b"q2", b"q3", b"q4"], 5, 0)
    assert io.peer(0) == ("127.0.0.1", client.getsockname()[1])
    assert [client.recv(64) for _ in range(5)] == [b"Q0", b"Q1", b"Q2", b"Q3", b"Q4"]
    assert io.exchange(lambda data: (data, data)) == ([], 0, 0)  # drained


def test_empty_socket_is_nothing_waiting_in_every_thread(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    io = dns_mmsg.BatchSocket(server)
    assert io.recv() == 0
    results: list[int | BaseException] = []

    def elsewhere() -> None:  # errno lives per thread: a cell from the first thread would read a stale value
        try:
            results.append(io.recv())
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    thread = threading.Thread(target=elsewhere)
    thread.start()
    thread.join(5)
    assert results == [0]
    assert io.recv() == 0


def test_a_real_failure_is_an_oserror_with_its_errno(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _ = pair
    io = dns_mmsg.BatchSocket(server)
    assert io.recv() == 0  # EAGAIN first, so the errno cell is set up
    server.close()
    with pytest.raises(OSError) as info:
        io.recv()
    assert info.value.errno == errno.EBADF
