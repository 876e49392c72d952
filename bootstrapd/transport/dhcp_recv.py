"""The receive side of the DHCP shell: what the kernel tells about a datagram, and what it dropped."""

from __future__ import annotations

import socket
import struct
import time

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
CMSG_SPACE = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16)  # struct in_pktinfo, struct timeval
_TIMEVAL = struct.Struct("@qq")
_IPPROTO_IP, _SOL_SOCKET = socket.IPPROTO_IP, socket.SOL_SOCKET  # module attribute lookups, twice per datagram


def ancillary(ancdata: list[tuple[int, int, bytes]]) -> tuple[bool, float]:
    """From IP_PKTINFO: was the datagram's IP destination a broadcast (not our unicast address)? From
    SO_TIMESTAMP: how long it waited in the kernel's buffer (0 when unknown)."""
    broadcast = False
    waited = 0.0
    for level, kind, data in ancdata:
        if level == _IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            broadcast = data[8:12] == b"\xff\xff\xff\xff" or data[11] == 255
        elif level == _SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= _TIMEVAL.size:
            sec, usec = _TIMEVAL.unpack_from(data)
            waited = max(0.0, time.time() - (sec + usec / 1e6))
    return broadcast, waited


def kernel_udp_drops(port: int) -> int:
    """Datagrams the kernel dropped on sockets bound to `port` in this network namespace (/proc/net/udp)."""
    total = 0
    try:
        with open("/proc/net/udp") as f:
            next(f)
            for line in f:
                cols = line.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port:
                    total += int(cols[-1])
    except (OSError, ValueError, IndexError, StopIteration):
        return 0
    return total
