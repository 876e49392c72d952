"""TFTP load generator: `transfers` downloads of one file by `concurrency` asyncio clients (lock-step, or
windowed when the server accepts windowsize). Prints one JSON line: transfers, failures, seconds, bytes.

Runs inside the bench's client namespace: `python -m bench.tftp.load --server 198.18.0.1 --name f ...`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time

from bootstrapd.tftp import packet
from bootstrapd.tftp.packet import Data, Oack, Opcode, Request


class Failed(Exception):
    pass


async def fetch(loop: asyncio.AbstractEventLoop, sock: socket.socket, server: tuple[str, int], name: str,
                options: tuple[tuple[str, str], ...], timeout: float, retries: int) -> int:
    request = packet.encode_request(Request(Opcode.RRQ, name, "octet", options))
    await loop.sock_sendto(sock, request, server)
    last_sent, dest, blksize, window = request, server, 512, 1
    expected, got, misses = 1, 0, 0
    while True:
        try:
            raw, addr = await asyncio.wait_for(loop.sock_recvfrom(sock, 65536), timeout)
        except TimeoutError:
            misses += 1
            if misses > retries:
                raise Failed("timeout") from None
            await loop.sock_sendto(sock, last_sent, dest)
            continue
        pkt = packet.parse(raw)
        dest = addr
        if isinstance(pkt, packet.Error):
            raise Failed(f"error {pkt.code} {pkt.message}")
        if isinstance(pkt, Oack):
            opts = dict(pkt.options)
            blksize, window = int(opts.get("blksize", 512)), int(opts.get("windowsize", 1))
            last_sent = packet.encode_ack(0)
            await loop.sock_sendto(sock, last_sent, dest)
            continue
        if not isinstance(pkt, Data):
            raise Failed("unexpected packet")
        if pkt.block != expected & 0xFFFF:
            if (expected - pkt.block) & 0xFFFF < 0x8000:  # an old block: re-acknowledge where we are
                await loop.sock_sendto(sock, packet.encode_ack(expected - 1), dest)
            continue
        misses = 0
        got += len(pkt.payload)
        final = len(pkt.payload) < blksize
        if final or expected % window == 0:
            last_sent = packet.encode_ack(expected)
            await loop.sock_sendto(sock, last_sent, dest)
        expected += 1
        if final:
            return got


async def run(args: argparse.Namespace) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    options: list[tuple[str, str]] = []
    if args.blksize:
        options.append(("blksize", str(args.blksize)))
    if args.windowsize:
        options.append(("windowsize", str(args.windowsize)))
    todo = iter(range(args.transfers))
    stop_at = time.monotonic() + args.seconds if args.seconds else float("inf")
    stats = {"transfers": 0, "failures": 0, "bytes": 0, "short": 0}

    async def worker() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sock.bind(("0.0.0.0", 0))
        try:
            for _ in todo:
                if time.monotonic() >= stop_at:
                    break
                try:
                    n = await fetch(loop, sock, (args.server, args.port), args.name, tuple(options),
                                    args.timeout, args.retries)
                except Failed:
                    stats["failures"] += 1
                    sock.close()  # a fresh TID: late packets of the failed transfer must not confuse the next
                    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                    sock.bind(("0.0.0.0", 0))
                    continue
                stats["transfers"] += 1
                stats["bytes"] += n
                if args.size is not None and n != args.size:
                    stats["short"] += 1
        finally:
            sock.close()

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return dict(stats, seconds=time.monotonic() - start)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--server", required=True)
    p.add_argument("--port", type=int, default=69)
    p.add_argument("--name", required=True)
    p.add_argument("--size", type=int)
    p.add_argument("--transfers", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--blksize", type=int, default=0)
    p.add_argument("--windowsize", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--seconds", type=float, default=0.0, help="start no transfer after this long (0: no limit)")
    args = p.parse_args(argv)
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
