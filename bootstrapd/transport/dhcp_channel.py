"""The channels between the main process and its DHCP workers (docs/architecture.md, Processes).

Two kinds, both AF_UNIX SOCK_DGRAM socketpairs that the main process creates and keeps open (so that a
restarted worker inherits the same ones):
- the worker's channel to the main process: JSON records, batched into one datagram per event-loop turn
  (at most BATCH records or MAX_DATAGRAM bytes). Sent non-blocking: when the main process is behind and the
  buffer is full, the batch is dropped and counted (bootstrapd_dhcp_channel_drops_total), never waited for.
    ["L", event, lease]              a lease event after its commit: bound | release | decline
    ["O", kind, device_class, lease] a reply sent (OFFER, ACK) or a RELEASE/DECLINE (release | decline)
    ["M", families]                  the worker's metrics, cumulative (so a dropped one loses nothing)
    ["R", pid]                       the worker is listening
- each worker's inbox: DHCP datagrams another worker received by unicast for a client of this worker
  (on Linux a unicast datagram reaches one of the sockets sharing a port, not all of them).
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

from bootstrapd.dhcp.leases import Lease, LeaseState

BATCH = 64  # records per datagram: the main process handles one datagram per readiness callback
MAX_DATAGRAM = 60_000
BUFFER_BYTES = 4 << 20
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
_STATES = {s.value: s for s in LeaseState}
_FORWARD = struct.Struct("!d4sHB")  # arrival (epoch seconds), source address, source port, interface name length


def pair() -> tuple[socket.socket, socket.socket]:
    """A datagram socketpair with large buffers: (end the main process keeps, end a worker inherits)."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    for s in (a, b):
        for force, plain in ((SO_SNDBUFFORCE, socket.SO_SNDBUF), (SO_RCVBUFFORCE, socket.SO_RCVBUF)):
            try:
                s.setsockopt(socket.SOL_SOCKET, force, BUFFER_BYTES)
            except OSError:  # without CAP_NET_ADMIN: what net.core.[rw]mem_max allows
                with contextlib.suppress(OSError):
                    s.setsockopt(socket.SOL_SOCKET, plain, BUFFER_BYTES)
        s.setblocking(False)
    return a, b


def encode_lease(lease: Lease) -> list[Any]:
    return [int(lease.address), lease.client_id.hex(), lease.chaddr.hex(), lease.state.value, lease.subnet,
            lease.expires, lease.first_seen, lease.updated, lease.hostname, lease.vendor_class, lease.device_class]


def decode_lease(fields: list[Any]) -> Lease:
    """Raises ValueError, KeyError or TypeError on a malformed record."""
    address, client_id, chaddr, state, subnet, expires, first_seen, updated, hostname, vendor, klass = fields
    return Lease(address=IPv4Address(address), client_id=bytes.fromhex(client_id), chaddr=bytes.fromhex(chaddr),
                 state=_STATES[state], subnet=str(subnet), expires=float(expires), first_seen=float(first_seen),
                 updated=float(updated), hostname=hostname, vendor_class=vendor, device_class=klass)


def encode_forward(data: bytes, ifname: str, source: tuple[str, int], arrival: float) -> bytes:
    """`arrival`: when the datagram reached the first worker's socket, so that the owner's queue age (and its
    `stale` drop of old DISCOVERs under overload) counts the detour too."""
    name = ifname.encode()
    return _FORWARD.pack(arrival, socket.inet_aton(source[0]), source[1], len(name)) + name + data


def decode_forward(datagram: bytes) -> tuple[bytes, str, tuple[str, int], float]:
    """(DHCP datagram, interface, source, arrival); raises ValueError or struct.error when malformed."""
    arrival, ip, port, n = _FORWARD.unpack_from(datagram)
    start = _FORWARD.size
    name = datagram[start:start + n].decode()
    return datagram[start + n:], name, (socket.inet_ntoa(ip), port), arrival


class ChannelSender:
    """The worker's end of its channel: records are batched per event-loop turn, sent without blocking."""

    def __init__(self, sock: socket.socket, schedule: Callable[[Callable[[], None]], Any],
                 on_drop: Callable[[int], None]) -> None:
        self._sock = sock
        self._schedule = schedule  # loop.call_soon
        self._on_drop = on_drop  # records lost because the main process was behind
        self._pending: list[list[Any]] = []

    def record(self, rec: list[Any]) -> None:
        if not self._pending:
            self._schedule(self.flush)
        self._pending.append(rec)

    def send_now(self, rec: list[Any]) -> bool:
        """One record in a datagram of its own (metrics snapshots, ready)."""
        return self._send([rec])

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        for i in range(0, len(pending), BATCH):
            self._send(pending[i:i + BATCH])

    def _send(self, records: list[list[Any]]) -> bool:
        data = json.dumps(records, separators=(",", ":")).encode()
        if len(data) > MAX_DATAGRAM and len(records) > 1:  # unusually long records: halve the batch
            half = len(records) // 2
            return self._send(records[:half]) & self._send(records[half:])
        try:
            self._sock.send(data)
            return True
        except OSError:  # BlockingIOError: the main process is behind; others: it is gone
            self._on_drop(len(records))
            return False


def decode_records(datagram: bytes) -> list[list[Any]]:
    """The records of one channel datagram; raises ValueError when it is not a JSON list of lists."""
    records = json.loads(datagram)
    if not isinstance(records, list) or not all(isinstance(r, list) and r for r in records):
        raise ValueError("not a list of records")
    return records
