"""Relay agents for the lab: relayed DISCOVERs (scapy-built BOOTP, giaddr set) sent from UDP 67 of a lab host
to the server's unicast address, as a relay agent sends them (RFC 2131 section 4.1, RFC 1542 section 4).

Test side: `RelayFlood(host, server, dead=[giaddr, ...], healthy=giaddr)` starts this file as a child
process in `host`'s namespace; `stop()` ends it and returns the counts. Namespace side (`main`): every
1/rate seconds one DISCOVER per dead giaddr (an address no host owns, so the server's reply to giaddr:67
waits on ARP) and, every tenth tick, one for `healthy` (this host's own address: it receives the OFFER on
its socket, like a relay that is up). Runs until stdin closes; prints one JSON line of counts.
"""

from __future__ import annotations

import json
import os
import select
import socket
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bootstrapd.lab import Host

CHADDRS_PER_RELAY = 16  # a fixed set per relay: the pools never run dry, every DISCOVER is answered


def discover(xid: int, chaddr: bytes, giaddr: str) -> bytes:
    from scapy.layers.dhcp import BOOTP, DHCP

    return bytes(BOOTP(op=1, hops=1, xid=xid, giaddr=giaddr, chaddr=chaddr)
                 / DHCP(options=[("message-type", "discover"), ("vendor_class_id", b"CP-8841-3PCC"), "end"]))


class RelayFlood:
    def __init__(self, host: Host, server: str, dead: list[str], healthy: str, rate: float = 100.0) -> None:
        argv = [sys.executable, os.path.abspath(__file__), server, str(rate), healthy, *dead]
        self.proc = host.popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if json.loads(self.proc.stdout.readline() or "{}").get("ready") is not True:
            raise RuntimeError("relay_flood did not start")

    def stop(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.close()
        line = self.proc.stdout.readline()
        self.proc.wait(10)
        self.proc.stdout.close()
        result: dict[str, Any] = json.loads(line)
        return result


def main(server: str, rate: float, healthy: str, dead: list[str]) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", 67))
    relays = [healthy, *dead]
    templates = {g: [discover(0, bytes([2, 0xd0, r, 0, 0, n]), g) for n in range(CHADDRS_PER_RELAY)]
                 for r, g in enumerate(relays)}
    counts = {"sent_dead": 0, "sent_healthy": 0, "offers_healthy": 0, "send_errors": 0}
    pending: set[bytes] = set()  # xids of healthy DISCOVERs not yet answered
    print(json.dumps({"ready": True}), flush=True)
    tick, period, start = 0, 1.0 / rate, time.monotonic()
    while True:
        wait = max(0.0, start + tick * period - time.monotonic())
        ready = select.select([sock, sys.stdin], [], [], wait)[0]
        if sys.stdin in ready:
            break
        if sock in ready:
            data = sock.recv(2048)
            if len(data) > 240 and data[0] == 2 and data[4:8] in pending:
                pending.discard(data[4:8])
                counts["offers_healthy"] += 1
            continue
        for giaddr in relays if tick % 10 == 0 else dead:
            xid = os.urandom(4)
            template = templates[giaddr][tick % CHADDRS_PER_RELAY]
            try:
                sock.sendto(template[:4] + xid + template[8:], (server, 67))
            except OSError:
                counts["send_errors"] += 1
                continue
            if giaddr == healthy:
                pending.add(xid)
                counts["sent_healthy"] += 1
            else:
                counts["sent_dead"] += 1
        tick += 1
    deadline = time.monotonic() + 1.0  # the OFFERs to the last few DISCOVERs are still on their way
    while pending and (left := deadline - time.monotonic()) > 0 and select.select([sock], [], [], left)[0]:
        data = sock.recv(2048)
        if data[4:8] in pending:
            pending.discard(data[4:8])
            counts["offers_healthy"] += 1
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4:])
