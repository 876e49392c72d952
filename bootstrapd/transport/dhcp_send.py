"""Delivering DHCP replies (RFC 2131 section 4.1) so that a destination that never answers ARP cannot starve
the others.

A reply unicast to a routed address (a relay's giaddr, a renewing client's ciaddr) whose next hop does not
answer ARP waits ~3 s in the kernel's neighbour queue, and all that time it holds space in the send buffer
of the socket it was sent on. A few such destinations used to fill the one shared buffer, and then every
send failed with EAGAIN, the phones' broadcast OFFERs included. So:

1. Broadcast and layer-2 unicast replies are Ethernet frames we build and write to the AF_PACKET socket:
   they need no ARP and so never queue behind it (and never share a buffer with routed unicast). Without
   CAP_NET_RAW they fall back to the UDP socket; then only (3) protects them.
2. Routed unicast replies go through the interface's UDP socket, whose send buffer is made as large as the
   kernel allows (SNDBUF_BYTES): room for what dead destinations queue before (3) notices them.
3. A bound per destination. The kernel keeps at most unres_qlen_bytes (~208 KiB) queued per unresolved
   next hop, but for 3 s per attempt and again on every attempt. After a burst (at most every OUTQ_EVERY_S,
   at once after an EAGAIN) we read the socket's queued bytes (SIOCOUTQ, one ioctl): a healthy
   destination's datagram leaves the buffer within microseconds, so more than OUTQ_SUSPECT bytes means
   something waits on ARP. Then (at most every DIAGNOSE_EVERY_S) the neighbour table says which next hops
   are unresolved; a destination recently sent to whose next hop is unresolved in two diagnoses in a row (a
   new neighbour is unresolved for a millisecond, a dead one for seconds) is held for HOLD_S: replies to it
   are dropped and counted `destination_unreachable` instead of queued. A datagram from it lifts the hold
   early.
Nothing of (3) runs while the buffer stays empty: the hot path costs a dict store per unicast reply.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import socket
import struct
import sys
import termios
from typing import Any

from bootstrapd.dhcp.outcome import DropReason, Reply
from bootstrapd.transport.l2 import L2Sender, udp_frame

SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SNDBUF_BYTES = 4 << 20  # SO_SNDBUF is capped at net.core.wmem_max unless CAP_NET_ADMIN allows FORCE
OUTQ_SUSPECT = 64 << 10  # ~50 replies queued in the kernel: far above what resolved destinations leave
DIAGNOSE_EVERY_S = 0.25
# A dead next hop fills the buffer for seconds; at a few thousand bursts a second, one ioctl per burst was a
# measurable share of a single-packet burst's cost.
OUTQ_EVERY_S = 0.01
HOLD_S = 5.0  # past one 3 s ARP attempt; a relay that is back waits at most this (its clients retransmit)
IDLE_S = 5.0  # a destination not sent to for this long is forgotten
MAX_TRACKED = 8192  # destinations remembered between prunes: bounds memory and a diagnosis (~1 us each)
BROADCAST_MAC = b"\xff" * 6
BROADCAST_IP = ipaddress.IPv4Address("255.255.255.255")
_INT = struct.Struct("@i")


def enlarge_send_buffer(sock: socket.socket) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, SNDBUF_BYTES)
    except OSError:  # no CAP_NET_ADMIN: as much as net.core.wmem_max allows
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF_BYTES)


class ReplySender:
    """Sends the replies leaving one interface; `send` says why a reply did not leave (None: it left)."""

    def __init__(self, ifname: str, sock: socket.socket, l2: L2Sender | None,
                 address: ipaddress.IPv4Address | None, port: int, log: Any) -> None:
        self.ifname = ifname
        self.sock = sock
        self.l2 = l2 if address is not None else None  # a frame needs our IP source address
        self.address = address
        self.port = port
        self.log = log
        self.held: dict[str, float] = {}  # destination -> monotonic time its hold ends
        self._last_sent: dict[str, float] = {}  # routed unicast destination -> monotonic time of last send
        self._suspects: set[str] = set()  # unresolved in the last diagnosis
        self._unicast_sent = False  # since the last check
        self._queue_full = False
        self._next_diagnosis = 0.0
        self._next_outq = 0.0
        self._next_prune = 0.0

    def send(self, reply: Reply, target: str, now: float) -> DropReason | None:
        """`target`: reply.destination.ip as text; `now`: monotonic time of the burst."""
        dest = reply.destination
        if self.l2 is not None and (dest.l2_unicast is not None or dest.broadcast):
            assert self.address is not None
            dst_mac = BROADCAST_MAC if dest.l2_unicast is None else dest.l2_unicast[:6]
            try:
                self.l2.send(udp_frame(self.l2.mac, dst_mac, self.address, dest.ip, self.port, dest.port,
                                       reply.wire))
                return None
            except OSError as e:  # e.g. the device queue is full: the UDP socket broadcasts it instead
                self.log.debug("dhcp.l2_failed", interface=self.ifname, error=str(e))
        if dest.l2_unicast is not None or dest.broadcast:
            target = "255.255.255.255"
        else:
            if self.held and self._is_held(target, now):
                return DropReason.DESTINATION_UNREACHABLE
            self._last_sent[target] = now
            self._unicast_sent = True
        try:
            self.sock.sendto(reply.wire, (target, dest.port))
        except BlockingIOError:
            self._queue_full = True
            return DropReason.SEND_QUEUE_FULL
        except OSError as e:
            self.log.info("dhcp.send_error", interface=self.ifname, to=target, error=str(e))
            return DropReason.SEND_FAILED
        return None

    def _is_held(self, target: str, now: float) -> bool:
        until = self.held.get(target)
        if until is None:
            return False
        if now < until:
            return True
        del self.held[target]
        return False

    def heard_from(self, source: str) -> None:
        """A datagram came from `source`: it answers ARP again (call only while `held` is not empty)."""
        if self.held.pop(source, None) is not None:
            self.log.info("dhcp.destination_reachable", interface=self.ifname, to=source)

    def check(self, now: float) -> None:
        """After a burst's sends: look for destinations that hold the send buffer (module docstring, 3)."""
        if now >= self._next_prune:
            self._prune(now)
        if not (self._unicast_sent or self._queue_full) or now < self._next_diagnosis:
            return
        if not self._queue_full:
            if now < self._next_outq:
                return
            self._next_outq = now + OUTQ_EVERY_S
        self._unicast_sent = False
        if not self._queue_full and self._queued() < OUTQ_SUSPECT:
            self._suspects.clear()
            return
        self._queue_full = False
        self._next_diagnosis = now + DIAGNOSE_EVERY_S
        self._diagnose(now)

    def _queued(self) -> int:
        try:
            return int(_INT.unpack(fcntl.ioctl(self.sock.fileno(), termios.TIOCOUTQ, b"\0" * _INT.size))[0])
        except OSError:
            return 0

    def _diagnose(self, now: float) -> None:
        unresolved = unresolved_neighbours(self.ifname)
        if not unresolved:
            self._suspects.clear()
            return
        routes = routes_of(self.ifname)
        suspects = {d for d in self._last_sent if d not in self.held and next_hop(d, routes) in unresolved}
        for target in suspects & self._suspects:
            self.held[target] = now + HOLD_S
            self.log.warning("dhcp.destination_unreachable", interface=self.ifname, to=target,
                             next_hop=next_hop(target, routes), hold_s=HOLD_S)
        self._suspects = suspects

    def _prune(self, now: float) -> None:
        self._next_prune = now + 1.0
        if len(self._last_sent) > MAX_TRACKED:
            self._last_sent.clear()
        idle = now - IDLE_S
        for target in [t for t, last in self._last_sent.items() if last < idle]:
            del self._last_sent[target]
        for target in [t for t, until in self.held.items() if until <= now]:
            del self.held[target]


Route = tuple[int, int, int]  # (network, mask, gateway or 0 for on-link), host byte order


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return ""


def unresolved_neighbours(ifname: str, table: str | None = None) -> set[str]:
    """IPv4 neighbours on `ifname` without a link-layer address (INCOMPLETE or FAILED: flags 0x0) in
    `table`, the text of /proc/net/arp (read when None)."""
    lines = (_read("/proc/net/arp") if table is None else table).splitlines()[1:]
    return {cols[0] for cols in map(str.split, lines) if len(cols) >= 6 and cols[5] == ifname and cols[2] == "0x0"}


def routes_of(ifname: str, table: str | None = None) -> list[Route]:
    """The IPv4 routes via `ifname` in `table`, the text of /proc/net/route (the main table; read when None),
    longest prefix first. Policy routing is not followed: a destination it routes elsewhere is never held."""
    routes: list[Route] = []
    for cols in map(str.split, (_read("/proc/net/route") if table is None else table).splitlines()[1:]):
        if len(cols) >= 8 and cols[0] == ifname:
            with contextlib.suppress(ValueError):
                net, gateway, mask = (int.from_bytes(bytes.fromhex(cols[i]), sys.byteorder) for i in (1, 2, 7))
                routes.append((net, mask, gateway))
    routes.sort(key=lambda r: -r[1])
    return routes


def next_hop(target: str, routes: list[Route]) -> str | None:
    """The neighbour a datagram to `target` goes to: the gateway of the longest matching route, or `target`
    itself on-link; None when no route via the interface matches."""
    addr = int(ipaddress.IPv4Address(target))
    for net, mask, gateway in routes:
        if addr & mask == net:
            return str(ipaddress.IPv4Address(gateway or addr))
    return None
