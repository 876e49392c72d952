"""A raw TFTP client for the lab tests: sockets made inside a lab namespace from the test process.

`netns_socket(host)` enters the host's network namespace on this thread just long enough to create a UDP
socket (a socket belongs to the namespace it was created in), so one test process can play hundreds of
clients without a subprocess each. `RawClient` speaks RFC 1350 by hand and can lose chosen packets.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from bootstrapd.lab import Host
from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Data, Oack, Opcode, Request

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@contextlib.contextmanager
def in_netns(host: Host) -> Iterator[None]:
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{host.netns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


def netns_socket(host: Host, bind: str = "0.0.0.0") -> socket.socket:
    with in_netns(host):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((bind, 0))
    return sock


@dataclass
class Result:
    data: bytearray = field(default_factory=bytearray)
    oack: dict[str, str] | None = None
    error: tuple[int, str] | None = None
    server_tid: tuple[str, int] | None = None
    packets: list[bytes] = field(default_factory=list)  # everything received, in order


# A drop rule sees (kind, block) of each received packet and says whether to ignore it; an ack rule
# says whether to send the ACK of a block (False: the ACK is "lost").
Drop = Callable[[str, int], bool]


class RawClient:
    def __init__(self, host: Host, server: tuple[str, int]) -> None:
        self.sock = netns_socket(host)
        self.server = server

    def close(self) -> None:
        self.sock.close()

    def send_request(self, name: str, options: tuple[tuple[str, str], ...] = (), mode: str = "octet",
                     opcode: Opcode = Opcode.RRQ) -> None:
        self.sock.sendto(packet.encode_request(Request(opcode, name, mode, options)), self.server)

    def recv(self, timeout: float) -> tuple[bytes, tuple[str, int]] | None:
        self.sock.settimeout(timeout)
        try:
            return self.sock.recvfrom(70000)
        except TimeoutError:
            return None

    def fetch(self, name: str, options: tuple[tuple[str, str], ...] = (), *, drop: Drop | None = None,
              skip_ack: Callable[[int], bool] | None = None, on_block: Callable[[int], None] | None = None,
              timeout: float = 15.0) -> Result:
        """Lock-step (or windowed, ACKing each window's last block) download; raises on a stall."""
        self.send_request(name, options)
        res, expected, blksize, window = Result(), 1, 512, 1  # RFC 1350's until an OACK says otherwise
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.recv(deadline - time.monotonic())
            if got is None:
                break
            raw, addr = got
            pkt = packet.parse(raw)
            kind = type(pkt).__name__.lower()
            block = getattr(pkt, "block", 0)
            if drop is not None and drop(kind, block):
                continue
            res.packets.append(raw)
            res.server_tid = res.server_tid or addr
            if isinstance(pkt, packet.Error):
                res.error = (pkt.code, pkt.message)
                return res
            if isinstance(pkt, Oack):
                res.oack = dict(pkt.options)
                blksize = int(res.oack.get("blksize", 512))
                window = int(res.oack.get("windowsize", 1))
                self.sock.sendto(packet.encode_ack(0), addr)
                continue
            assert isinstance(pkt, Data)
            if pkt.block == (expected - 1) & 0xFFFF and expected > 1:  # a retransmission: ACK it again
                self.sock.sendto(packet.encode_ack(pkt.block), addr)
            elif pkt.block == expected & 0xFFFF:
                res.data += pkt.payload
                expected += 1
                if on_block is not None:
                    on_block(expected - 1)
                last = len(pkt.payload) < blksize
                if (last or (expected - 1) % window == 0) and not (skip_ack and skip_ack(expected - 1)):
                    self.sock.sendto(packet.encode_ack(pkt.block), addr)
                if last:
                    return res
        raise TimeoutError(f"transfer of {name!r} stalled at block {expected}")


async def storm_fetch(sock: socket.socket, server: tuple[str, int], name: str, *, busy_retries: int = 50,
                      timeout: float = 1.0, budget: float = 60.0) -> bytes:
    """One lock-step download on a non-blocking socket with asyncio; retries when the server is busy and
    re-sends its last packet when nothing arrives within `timeout`."""
    import asyncio
    import random

    loop = asyncio.get_running_loop()
    request = packet.encode_request(Request(Opcode.RRQ, name, "octet"))
    end = time.monotonic() + budget
    for _ in range(busy_retries):
        data, expected, last_sent, dest = bytearray(), 1, request, server
        await loop.sock_sendto(sock, request, server)
        while time.monotonic() < end:
            try:
                raw, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 2048), timeout)
            except TimeoutError:
                await loop.sock_sendto(sock, last_sent, dest)
                continue
            pkt = packet.parse(raw)
            if isinstance(pkt, packet.Error):
                if pkt.code == 0 and "busy" in pkt.message.lower():
                    await asyncio.sleep(0.05 + random.random() * 0.2)
                    break
                raise RuntimeError(f"server error {pkt.code}: {pkt.message}")
            assert isinstance(pkt, Data)
            dest = addr
            if pkt.block == expected & 0xFFFF:
                data += pkt.payload
                expected += 1
            last_sent = packet.encode_ack(pkt.block)
            await loop.sock_sendto(sock, last_sent, dest)
            if len(pkt.payload) < 512 and pkt.block == (expected - 1) & 0xFFFF:
                return bytes(data)
        else:
            raise TimeoutError(f"{name}: no whole transfer within {budget}s")
    raise RuntimeError(f"{name}: busy {busy_retries} times")
