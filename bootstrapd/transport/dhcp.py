"""The DHCP shell: sockets per interface, a bounded queue, group commit, RFC 2131 section 4.1 delivery.

The receiver only enqueues (bounded; a full queue is a counted drop). One worker drains whatever has arrived,
runs the pure engine on each packet, makes the burst's leases durable with ONE store flush, then sends the
burst's replies: a lease is on disk before its ACK leaves, and a burst costs one fsync, not one per packet.
How replies leave, so that one that waits on ARP cannot starve the others: transport/dhcp_send.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType, parse
from bootstrapd.dhcp.engine import Engine
from bootstrapd.dhcp.leases import Lease, LeaseStore
from bootstrapd.dhcp.outcome import Drop, DropReason, Reply, Rx, Silent
from bootstrapd.dhcp.shard import WHOLE, Shard
from bootstrapd.errors import ParseError, StoreError
from bootstrapd.observability.metrics import Metrics, model_label
from bootstrapd.transport.dhcp_send import ReplySender, enlarge_send_buffer
from bootstrapd.transport.l2 import L2Sender, interface_address

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
MAX_DATAGRAM = 1500  # bounded reads: anything longer is not a DHCP packet we answer
QUEUE_LIMIT = 4096
BURST_LIMIT = 256
# Under overload a DISCOVER that waited this long is dropped (`stale`): its client retransmits within seconds
# (RFC 2131 4.1), and the time is better spent on REQUESTs that finish exchanges already begun.
STALE_DISCOVER_S = 1.0
_DISCOVER_FIRST = b"\x35\x01\x01"  # option 53 = DISCOVER as the first option, where clients put it

LeaseHook = Callable[[str, Lease], None]  # (event, lease) after durable commit
OutcomeHook = Callable[[Reply | Silent], None]  # every reply sent and RELEASE/DECLINE, after durable commit
# (datagram, interface, source, broadcast, seconds it waited already) -> serve it here? False: another
# worker's client (transport/dhcp_worker.py ignores or forwards it); called before it is queued or counted.
AdmitHook = Callable[[bytes, str, tuple[Any, int], bool, float], bool]
Queued = tuple[bytes, str, tuple[Any, int], bool, float]  # (datagram, interface, source, broadcast, perf_counter)


IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29)
_CMSG_SPACE = socket.CMSG_SPACE(12) + socket.CMSG_SPACE(16)  # struct in_pktinfo, struct timeval
_TIMEVAL = struct.Struct("@qq")


@dataclass
class _Listener:
    ifname: str
    sock: socket.socket
    l2: L2Sender | None
    address: ipaddress.IPv4Address | None
    sender: ReplySender


def _ancillary(ancdata: list[tuple[int, int, bytes]]) -> tuple[bool, float]:
    """From IP_PKTINFO: was the datagram's IP destination a broadcast (not our unicast address)? From
    SO_TIMESTAMP: how long it waited in the kernel's buffer (0 when unknown)."""
    broadcast = False
    waited = 0.0
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            broadcast = data[8:12] == b"\xff\xff\xff\xff" or data[11] == 255
        elif level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(data) >= _TIMEVAL.size:
            sec, usec = _TIMEVAL.unpack_from(data)
            waited = max(0.0, time.time() - (sec + usec / 1e6))
    return broadcast, waited


class DhcpServer:
    def __init__(self, site: Site, store: LeaseStore, metrics: Metrics, log: Any,
                 on_lease: LeaseHook | None = None, on_outcome: OutcomeHook | None = None,
                 shard: Shard = WHOLE, admit: AdmitHook | None = None) -> None:
        self.site = site
        self.store = store
        self.metrics = metrics
        self.log = log
        self.engine = Engine(site, store, shard)
        self._admit = admit
        self._on_lease = on_lease
        self._on_outcome = on_outcome
        check = getattr(log, "is_enabled_for", None)
        self._log_info = bool(check(logging.INFO)) if check is not None else True
        self._children: dict[tuple[int, str], Any] = {}
        self._queue: asyncio.Queue[Queued] = asyncio.Queue(QUEUE_LIMIT)
        self._listeners: dict[str, _Listener] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._store_failed = False

    # -- life cycle ---------------------------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for ifname in self.site.listen.interfaces:
            sock = self._socket(ifname)
            loop.add_reader(sock.fileno(), partial(self._readable, sock, ifname))
            l2 = L2Sender.open(ifname)
            if l2 is None:
                self.log.warning("dhcp.no_l2", interface=ifname, detail="no CAP_NET_RAW: unicast replies broadcast")
            addr = interface_address(ifname)
            sender = ReplySender(ifname, sock, l2, addr, self.site.listen.dhcp_port, self.log)
            self._listeners[ifname] = _Listener(ifname, sock, l2, addr, sender)
            self.log.info("dhcp.listening", interface=ifname, address=str(addr), port=self.site.listen.dhcp_port)
        self._tasks = [asyncio.create_task(self._worker()), asyncio.create_task(self._housekeeping())]
        self._update_gauges(time.time())

    def _socket(self, ifname: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, ifname.encode())
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
            with contextlib.suppress(OSError):  # the queue age of a packet includes its wait in the kernel
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            enlarge_send_buffer(sock)  # routed unicast replies wait here for ARP (dhcp_send.py)
            sock.bind(("0.0.0.0", self.site.listen.dhcp_port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        loop = asyncio.get_running_loop()
        for listener in self._listeners.values():
            loop.remove_reader(listener.sock.fileno())
            listener.sock.close()
            if listener.l2:
                listener.l2.close()
        self._listeners.clear()
        self.store.flush()

    def reload(self, site: Site) -> None:
        self.site = site
        self.engine.reload(site)
        self._update_gauges(time.time())

    # -- receive ------------------------------------------------------------------------------------------
    def _readable(self, sock: socket.socket, ifname: str) -> None:
        for _ in range(64):  # bounded work per wake-up; the rest waits in the kernel buffer
            try:
                data, ancdata, _flags, addr = sock.recvmsg(MAX_DATAGRAM + 1, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self.log.warning("dhcp.socket_error", interface=ifname, error=str(e))
                return
            broadcast, waited = _ancillary(ancdata)
            self.enqueue(data, ifname, addr, broadcast, waited)

    def enqueue(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool = False,
                waited: float = 0.0) -> None:
        """Queue one datagram; `waited` is how long it has been in the kernel's buffer already."""
        if self._admit is not None and not self._admit(data, ifname, addr, broadcast, waited):
            return
        if len(data) > MAX_DATAGRAM:
            self._drop(DropReason.PARSE_FAILED, ifname=ifname, detail="oversized datagram")
            return
        try:
            self._queue.put_nowait((data, ifname, addr, broadcast, time.perf_counter() - waited))
        except asyncio.QueueFull:
            self._drop(DropReason.QUEUE_FULL, ifname=ifname)

    async def _worker(self) -> None:
        while True:
            first = await self._queue.get()
            burst = [first]
            while len(burst) < BURST_LIMIT and not self._queue.empty():
                burst.append(self._queue.get_nowait())
            self._process(burst)

    def _process(self, burst: list[Queued]) -> None:
        now = time.time()
        outcomes: list[tuple[Reply | Silent, str, float]] = []
        self._store_failed = False
        for data, ifname, addr, broadcast, t0 in _prioritised(burst, time.perf_counter() - STALE_DISCOVER_S,
                                                              self._stale):
            outcome = self._handle(data, ifname, addr, broadcast, now)
            if outcome is not None:
                outcomes.append((outcome, ifname, t0))
        if not outcomes:
            return
        try:
            if self._store_failed:  # the store discarded this burst's earlier writes too
                raise StoreError("a write of this burst failed")
            self.store.flush()  # durable before any ACK of this burst leaves (design.md convention 5)
        except StoreError as e:
            # The store discarded the burst's writes: no reply may promise a lease that is not on disk.
            self.log.error("dhcp.store_failed", error=str(e), replies_dropped=len(outcomes))
            for _ in outcomes:
                self._drop(DropReason.STORE_FAILED)
            return
        mono = time.monotonic()
        for outcome, ifname, t0 in outcomes:
            if isinstance(outcome, Reply) and self._send(outcome, ifname, mono):
                self.metrics.dhcp_latency.observe(time.perf_counter() - t0)
            self._after(outcome)  # the lease is durable whether or not its reply left
        for listener in self._listeners.values():
            listener.sender.check(mono)

    def _stale(self, ifname: str) -> None:
        self._counter(self.metrics.dhcp_received, "discover").inc()
        self._drop(DropReason.STALE, ifname=ifname, msg_type="DISCOVER")

    def _handle(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool,
                now: float) -> Reply | Silent | None:
        try:
            msg = parse(data)
        except ParseError as e:
            self._drop(DropReason.PARSE_FAILED, ifname=ifname, detail=str(e))
            return None
        mtype = msg.msg_type
        self._counter(self.metrics.dhcp_received, mtype.name.lower() if mtype else "none").inc()
        listener = self._listeners.get(ifname)
        if listener is not None and listener.sender.held:
            listener.sender.heard_from(addr[0])
        rx = Rx(ifname, listener.address if listener else None, _ipv4(addr[0]), int(addr[1]), broadcast)
        try:
            outcome = self.engine.handle(msg, rx, now)
        except StoreError as e:
            self._store_failed = True
            self._drop(DropReason.STORE_FAILED, ifname=ifname, xid=msg.xid, chaddr=msg.chaddr_mac, detail=str(e))
            return None
        except Exception as e:  # a bug in the core: count it, drop the packet, keep serving
            self.metrics.dhcp_errors.inc()
            self.log.error("dhcp.internal_error", xid=f"{msg.xid:#010x}", chaddr=msg.chaddr_mac, error=repr(e))
            self._drop(DropReason.INTERNAL_ERROR, ifname=ifname, xid=msg.xid, chaddr=msg.chaddr_mac)
            return None
        if isinstance(outcome, Drop):
            self._store_failed |= outcome.reason is DropReason.STORE_FAILED
            self._drop(outcome.reason, ifname=ifname, xid=msg.xid, chaddr=msg.chaddr_mac, detail=outcome.detail,
                       msg_type=mtype.name if mtype else None)
            return None
        if isinstance(outcome, Reply) and outcome.new_device:
            self._counter(self.metrics.devices_by_class, outcome.device_class or "none").inc()
            self._counter(self.metrics.devices_by_model, _model_label(msg.vendor_class)).inc()
        if not self._log_info:  # the fields below cost more than the engine's work for a packet
            return outcome
        log_fields = {"xid": f"{msg.xid:#010x}", "chaddr": msg.chaddr_mac, "interface": ifname}
        if msg.relay_agent_info:
            log_fields["relay_agent_info"] = msg.relay_agent_info.hex()
        if isinstance(outcome, Reply):
            self.log.info(f"dhcp.{outcome.msg_type.name.lower()}", **log_fields, msg_type=mtype.name if mtype else None,
                          device_class=outcome.device_class, address=str(outcome.address or ""),
                          vendor_class=msg.vendor_class)
        else:
            self.log.info(f"dhcp.{outcome.event}", **log_fields,
                          address=str(outcome.lease.address) if outcome.lease else None)
        return outcome

    def _counter(self, family: Any, label: str) -> Any:
        """The labelled child of a one-label counter, looked up once (labels() costs a lock and a dict)."""
        key = (id(family), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(label)
        return child

    def _drop(self, reason: DropReason, **fields: Any) -> None:
        self._counter(self.metrics.dhcp_drops, reason.value).inc()
        if "xid" in fields and isinstance(fields["xid"], int):
            fields["xid"] = f"{fields['xid']:#010x}"
        level = self.log.warning if reason is DropReason.POOL_EXHAUSTED else self.log.info
        level("dhcp.drop", reason=reason.value, **{k: v for k, v in fields.items() if v})

    # -- send ---------------------------------------------------------------------------------------------
    def _send(self, reply: Reply, ifname: str, now: float) -> bool:
        """Send one reply; counted as sent only once the kernel took it, else as a drop. True if sent."""
        listener = self._listeners.get(ifname)
        if listener is None:
            return False
        target = _text(reply.destination.ip)
        failed = listener.sender.send(reply, target, now)
        if failed is None:
            self._counter(self.metrics.dhcp_sent, reply.msg_type.name.lower()).inc()
            return True
        self._drop(failed, ifname=ifname, xid=reply.message.xid, chaddr=reply.message.chaddr_mac, to=target,
                   msg_type=reply.msg_type.name)
        return False

    def _after(self, outcome: Reply | Silent) -> None:
        if self._on_outcome is not None:
            self._on_outcome(outcome)
        if self._on_lease is None:
            return
        if isinstance(outcome, Reply):
            if outcome.msg_type is MessageType.ACK and outcome.lease is not None:
                self._on_lease("bound", outcome.lease)
        elif outcome.lease is not None:
            self._on_lease(outcome.event, outcome.lease)

    # -- periodic -----------------------------------------------------------------------------------------
    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(5)
            self._update_gauges(time.time())
            self.metrics.dhcp_kernel_drops.set(kernel_udp_drops(self.site.listen.dhcp_port))

    def _update_gauges(self, now: float) -> None:
        for subnet, size in self.engine.pool_sizes().items():
            self.metrics.dhcp_pool_size.labels(subnet=subnet).set(size)
        for subnet, count in self.engine.active_leases(now).items():
            self.metrics.dhcp_leases_active.labels(subnet=subnet).set(count)
        self.metrics.dhcp_offers_held.set(self.engine.offers_held(now))


def _prioritised(burst: list[Queued], stale_before: float, on_stale: Callable[[str], None]) -> list[Queued]:
    """The burst in arrival order, except that DISCOVERs go last (a REQUEST completes an exchange, a
    DISCOVER only starts one) and DISCOVERs queued before `stale_before` are dropped. Recognises the
    usual layout only (option 53 first); any other packet keeps its place, which is merely less fair."""
    first: list[Queued] = []
    last: list[Queued] = []
    for item in burst:
        if item[0][240:243] == _DISCOVER_FIRST:
            if item[4] < stale_before:
                on_stale(item[1])
            else:
                last.append(item)
        else:
            first.append(item)
    return first + last if last else first


@functools.lru_cache(maxsize=256)
def _model_label(vendor_class: str | None) -> str:
    return model_label(vendor_class)


@functools.lru_cache(maxsize=4096)
def _text(address: ipaddress.IPv4Address) -> str:
    return str(address)


@functools.lru_cache(maxsize=4096)
def _ipv4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)


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
