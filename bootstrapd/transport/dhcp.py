"""The DHCP shell: sockets per interface, admission control, group commit, RFC 2131 section 4.1 delivery.

The receiver only enqueues, into a queue bounded by the time the worker needs to serve it (transport/
dhcp_admit.py: REQUESTs before DISCOVERs, the excess shed early as `overload`). One worker takes a burst,
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
import sys
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType, address_int, parse
from bootstrapd.dhcp.engine import Engine
from bootstrapd.dhcp.leases import NO_LOST, Lease, LeaseState, LeaseStore
from bootstrapd.dhcp.outcome import Drop, DropReason, Reply, Rx, Silent, lost_race
from bootstrapd.dhcp.shard import WHOLE, Shard
from bootstrapd.errors import ParseError, StoreError
from bootstrapd.observability.metrics import Metrics, model_label
from bootstrapd.transport.dhcp_admit import ADMISSION_S, DISCOVER_FIRST, AdmissionQueue, peek_type, prioritised
from bootstrapd.transport.dhcp_recv import CMSG_SPACE, IP_PKTINFO, SO_TIMESTAMP, ancillary, kernel_udp_drops
from bootstrapd.transport.dhcp_send import ReplySender, enlarge_send_buffer
from bootstrapd.transport.dhcp_sync import CommitSyncer
from bootstrapd.transport.l2 import L2Sender, interface_address

SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
MAX_DATAGRAM = 1500  # bounded reads: anything longer is not a DHCP packet we answer
# Packets served as one burst. Every reply of a burst leaves at its end (after its commit): at ~50 us a packet,
# 64 keep that under 4 ms, and a DNS query or a TFTP block waits behind at most one burst.
BURST_LIMIT = 64
# Datagrams read per wake-up: more than arrive while the worker serves one burst even at several times our
# capacity, so that the excess is shed here, counted, instead of ageing in the kernel's buffer.
READ_LIMIT = 1024
RX_CACHE = 4096  # sources whose Rx is kept
OVERLOAD_LOG_S = 5.0  # at most one `dhcp.drop reason=overload` warning per interval while shedding
# Under overload a DISCOVER that waited this long is dropped (`stale`): its client retransmits within seconds
# (RFC 2131 4.1), and the time is better spent on REQUESTs that finish exchanges already begun.
STALE_DISCOVER_S = 1.0
INF = float("inf")
_LABEL = {t: t.name.lower() for t in MessageType}  # metric labels (Enum.name is a Python-level property)

LeaseHook = Callable[[str, Lease], None]  # (event, lease) after durable commit
OutcomeHook = Callable[[Reply | Silent], None]  # every reply sent and RELEASE/DECLINE, after durable commit
# Given (a DHCP worker: transport/dhcp_worker.py), the hooks of a burst run before its replies are sent and
# this is called between the two: the worker writes the hooks' channel records, so that the main process can
# read a lease before its client, which gets the ACK, can ask the main process for anything.
BeforeSend = Callable[[], None]
# (datagram, interface, source, broadcast, seconds it waited already) -> serve it here? False: another
# worker's client (transport/dhcp_worker.py ignores or forwards it); called before it is queued or counted.
AdmitHook = Callable[[bytes, str, tuple[Any, int], bool, float], bool]
Queued = tuple[bytes, str, tuple[Any, int], bool, float]  # (datagram, interface, source, broadcast, perf_counter)
Served = tuple[Reply | Silent, str, float]  # (outcome, interface, perf_counter when it was queued)


@dataclass
class _Listener:
    ifname: str
    sock: socket.socket
    l2: L2Sender | None
    address: ipaddress.IPv4Address | None
    sender: ReplySender


class DhcpServer:
    def __init__(self, site: Site, store: LeaseStore, metrics: Metrics, log: Any,
                 on_lease: LeaseHook | None = None, on_outcome: OutcomeHook | None = None,
                 shard: Shard = WHOLE, admit: AdmitHook | None = None,
                 before_send: BeforeSend | None = None) -> None:
        self.site = site
        self.store = store
        self.metrics = metrics
        self.log = log
        self.engine = Engine(site, store, shard)
        self._admit = admit
        self._on_lease = on_lease
        self._on_outcome = on_outcome
        self._before_send = before_send
        check = getattr(log, "is_enabled_for", None)
        self._log_info = bool(check(logging.INFO)) if check is not None else True
        self._children: dict[tuple[int, str], Any] = {}
        self._admission: AdmissionQueue[Queued] = AdmissionQueue(ADMISSION_S, _queued_at)
        self._next_burst: asyncio.Handle | None = None  # the scheduled _drain while work waits
        # Group commit (transport/dhcp_sync.py): bursts committed, their replies waiting for the disk.
        self._syncer: CommitSyncer | None = None
        self._commit: Callable[[], int] | None = None
        self._parked: deque[tuple[int, list[Served]]] = deque()
        self._shed_count = 0  # shed since the last overload warning
        self._next_overload_log = 0.0
        self._listeners: dict[str, _Listener] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._store_failed = False
        self._store_down = False
        self._batch: dict[Any, int] | None = None  # counts of the burst being served (see _inc)
        self._rx: dict[tuple[str, tuple[Any, int], bool], Rx] = {}
        # The per-message-type children of the received and sent counters, looked up once (see _tally).
        self._received: dict[MessageType | None, Any] = {}
        self._sent: dict[MessageType, Any] = {}
        self._device_children: dict[tuple[str | None, str | None], tuple[Any, Any]] = {}
        # Called with False when a shared store becomes unreachable, True when it is back (systemd STATUS=).
        self.on_store_state: Callable[[bool], None] | None = None

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
        commit, sync = getattr(self.store, "commit", None), getattr(self.store, "sync", None)
        if commit is not None and sync is not None and not self.store.shared:
            self._commit = commit
            self._syncer = CommitSyncer(sync, self._synced, loop)
            background = getattr(self.store, "checkpoint_in_background", None)
            if background is not None:
                background(self.log)
        self._tasks = [asyncio.create_task(self._housekeeping())]
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
        if self._next_burst is not None:
            self._next_burst.cancel()
            self._next_burst = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._finish_parked()  # while the sockets are open: what was committed is answered
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
        syncer = self._syncer
        if syncer is not None:
            syncer.busy = True
        try:
            self._read(sock, ifname)
        finally:
            if syncer is not None:
                self._callback_ends(syncer)

    def _callback_ends(self, syncer: CommitSyncer) -> None:
        """The end of a DHCP callback: replies whose sync finished meanwhile leave now (dhcp_sync.py)."""
        syncer.busy = False
        if self._parked and self._parked[0][0] <= max(syncer.durable, syncer.failed):
            self._synced()

    def _read(self, sock: socket.socket, ifname: str) -> None:
        try:
            for _ in range(READ_LIMIT):  # bounded work per wake-up; the rest waits in the kernel buffer
                try:
                    data, ancdata, _flags, addr = sock.recvmsg(MAX_DATAGRAM + 1, CMSG_SPACE)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError as e:
                    self.log.warning("dhcp.socket_error", interface=ifname, error=str(e))
                    return
                broadcast, waited = ancillary(ancdata)
                self._queue(data, ifname, addr, broadcast, waited)
        finally:
            # Served right here, in the reader's callback: a task woken by an Event cost two more turns of the
            # loop per burst, and at a few thousand packets a second most bursts are a single packet.
            if self._next_burst is None and self._admission:
                self._drain()

    def enqueue(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool = False,
                waited: float = 0.0) -> None:
        """Queue one datagram; `waited` is how long it has been in the kernel's buffer already. It is served
        from the running loop's next turn."""
        self._queue(data, ifname, addr, broadcast, waited)
        if self._next_burst is None and self._admission:
            self._next_burst = asyncio.get_running_loop().call_soon(self._drain)

    def _queue(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool, waited: float) -> None:
        if self._admit is not None and not self._admit(data, ifname, addr, broadcast, waited):
            return
        if len(data) > MAX_DATAGRAM:
            self._drop(DropReason.PARSE_FAILED, ifname=ifname, detail="oversized datagram")
            return
        item = (data, ifname, addr, broadcast, time.perf_counter() - waited)
        shed = self._admission.admit(item, data[240:243] == DISCOVER_FIRST)
        if shed is not None:
            self._shed(shed)

    def _shed(self, item: Queued) -> None:
        """Counted, not parsed (that is the point); logged as one warning per OVERLOAD_LOG_S."""
        data = item[0]
        self._inc(self.metrics.dhcp_received, peek_type(data))
        self._inc(self.metrics.dhcp_drops, DropReason.OVERLOAD.value)
        self._shed_count += 1
        mono = time.monotonic()
        if mono >= self._next_overload_log:
            self._next_overload_log = mono + OVERLOAD_LOG_S
            self.log.warning("dhcp.drop", reason=DropReason.OVERLOAD.value, shed=self._shed_count,
                             queued=len(self._admission), limit=self._admission.limit,
                             cost_us=round(self._admission.cost_s * 1e6))
            self._shed_count = 0

    def _drain(self) -> None:
        """Serve one burst; if more waits, the next burst is a turn of the loop away, so that the readers
        (and DNS, files, syslog) run between bursts."""
        self._next_burst = None
        admission, syncer = self._admission, self._syncer
        if syncer is not None:
            syncer.busy = True
        try:
            if admission:
                self._process(admission.take(BURST_LIMIT, time.perf_counter(), self._shed))
        finally:
            if admission and self._next_burst is None:
                self._next_burst = asyncio.get_running_loop().call_soon(self._drain)
            if syncer is not None:
                self._callback_ends(syncer)

    def _process(self, burst: list[Queued]) -> None:
        started = time.thread_time()
        try:
            self._counted(self._serve, burst)
        finally:
            self._admission.served(len(burst), time.thread_time() - started)

    def _counted(self, work: Callable[[Any], None], arg: Any) -> None:
        """work(arg) with its counts added up and pushed once at the end (see _inc)."""
        batch: dict[Any, int] = {}
        self._batch = batch
        try:
            work(arg)
        finally:
            self._batch = None
            for child, n in batch.items():
                child.inc(n)

    def _serve(self, burst: list[Queued]) -> None:
        """The REQUESTs (and the rest) first, committed on their own (SQLite): their ACKs' sync runs in the sync
        thread while the loop serves the DISCOVERs, whose OFFERs (written to memory only) then need no
        sync at all."""
        now = time.time()
        first, last = prioritised(burst, time.perf_counter() - STALE_DISCOVER_S, self._stale)
        if self._commit is None:  # a flush per burst (PostgreSQL: one round trip, offers are rows there too)
            self._serve_part(first + last, now)
            return
        for part in (first, last):
            if part:
                self._serve_part(part, now)

    def _serve_part(self, part: list[Queued], now: float) -> None:
        outcomes: list[Served] = []
        self._store_failed = False
        for data, ifname, addr, broadcast, t0 in part:
            outcome = self._handle(data, ifname, addr, broadcast, now)
            if outcome is not None:
                outcomes.append((outcome, ifname, t0))
        if not outcomes:
            return
        try:
            if self._store_failed:  # the store discarded this burst's earlier writes too
                raise StoreError("a write of this burst failed")
            if self._commit is not None:  # durable before any reply of this burst leaves, off the loop
                seq = self._commit()
                if seq:
                    assert self._syncer is not None
                    self._parked.append((seq, outcomes))
                    self._syncer.request(seq)
                    return
                lost = NO_LOST  # nothing written: nothing to wait for
            else:
                lost = self.store.flush()  # durable before any ACK of this burst leaves (design.md convention 5)
        except StoreError as e:
            # The store discarded the burst's writes: no reply may promise a lease that is not on disk.
            self.log.error("dhcp.store_failed", error=str(e), replies_dropped=len(outcomes))
            for _ in outcomes:
                self._drop(DropReason.STORE_FAILED)
            self._store_health(str(e))
            return
        if self.store.shared:
            self._remote_changes()
        self._deliver(outcomes, lost)

    def _deliver(self, outcomes: list[Served], lost: frozenset[ipaddress.IPv4Address]) -> None:
        """Send a durable burst's replies, then its hooks (tracker, DNS records)."""
        mono = time.monotonic()
        latencies: list[float] = []
        if self._before_send is not None:  # a worker: the burst's channel records before its replies
            self._hooks_first(outcomes, lost, mono, latencies, self._before_send)
        else:
            for outcome, ifname, t0 in outcomes:
                if lost and lost_race(outcome, lost):
                    self._lost(outcome, ifname)
                    continue
                if isinstance(outcome, Reply) and self._send(outcome, ifname, mono):
                    latencies.append(time.perf_counter() - t0)
                self._after(outcome)  # the lease is durable whether or not its reply left
        observe_all(self.metrics.dhcp_latency, latencies)
        for listener in self._listeners.values():
            listener.sender.check(mono)

    def _hooks_first(self, outcomes: list[tuple[Reply | Silent, str, float]], lost: frozenset[Any], mono: float,
                     latencies: list[float], before_send: BeforeSend) -> None:
        """With `before_send`: every hook of the burst, then `before_send` (the DHCP worker writes the
        records to the main process), then the replies. A client acts on its ACK (HTTP, TFTP, syslog to the
        main process) only after the main process's channel holds its lease."""
        sending: list[tuple[Reply, str, float]] = []
        for outcome, ifname, t0 in outcomes:
            if lost and lost_race(outcome, lost):
                self._lost(outcome, ifname)
                continue
            self._after(outcome)  # the lease is durable whether or not its reply leaves
            if isinstance(outcome, Reply):
                sending.append((outcome, ifname, t0))
        before_send()
        for reply, ifname, t0 in sending:
            if self._send(reply, ifname, mono):
                latencies.append(time.perf_counter() - t0)

    def _synced(self) -> None:
        """On the loop: the sync thread finished a sync (dhcp_sync.py)."""
        syncer = self._syncer
        if syncer is not None:
            self._release(syncer.durable, syncer.failed, syncer.error)

    def _release(self, durable: int, failed: int, error: Exception | None) -> None:
        """Send the parked replies of the commits up to `durable`; drop those up to `failed` (their sync
        failed: not known to be on disk, no reply may promise them; the leases stay, a retry is answered)."""
        parked = self._parked
        if not parked or parked[0][0] > max(durable, failed):
            return
        started = time.thread_time()
        try:
            self._counted(self._release_upto, (max(durable, failed), failed, error))
        finally:
            self._admission.charge(time.thread_time() - started)

    def _release_upto(self, args: tuple[int, int, Exception | None]) -> None:
        upto, failed, error = args
        parked = self._parked
        while parked and parked[0][0] <= upto:
            seq, outcomes = parked.popleft()
            if seq > failed:
                self._deliver(outcomes, NO_LOST)
                continue
            self.log.error("dhcp.store_failed", error=str(error), replies_dropped=len(outcomes))
            for _ in outcomes:
                self._drop(DropReason.STORE_FAILED)

    def _finish_parked(self) -> None:
        """At stop: make every commit durable here and answer what waited for it, then end the thread."""
        syncer, self._syncer, self._commit = self._syncer, None, None
        if syncer is None:
            return
        syncer.close()
        try:
            self.store.flush()
        except StoreError as e:
            self._release(0, sys.maxsize, e)
        self._release(sys.maxsize, syncer.failed, syncer.error)

    def _lost(self, outcome: Reply | Silent, ifname: str) -> None:
        """Another node wrote this address first: no reply, no lease hooks (it is not our lease)."""
        lease = outcome.lease
        assert lease is not None
        msg_type = outcome.msg_type.name if isinstance(outcome, Reply) else outcome.event.upper()
        xid = outcome.message.xid if isinstance(outcome, Reply) else None
        self._drop(DropReason.LOST_RACE, ifname=ifname, xid=xid, chaddr=lease.chaddr.hex(":"),
                   address=str(lease.address), msg_type=msg_type)

    def _stale(self, ifname: str) -> None:
        self._inc(self.metrics.dhcp_received, "discover")
        self._drop(DropReason.STALE, ifname=ifname, msg_type="DISCOVER")

    def _handle(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool,
                now: float) -> Reply | Silent | None:
        try:
            msg = parse(data)
        except ParseError as e:
            self._drop(DropReason.PARSE_FAILED, ifname=ifname, detail=str(e))
            return None
        mtype = msg.msg_type
        child = self._received.get(mtype)
        if child is None:
            label = _LABEL[mtype] if mtype else "none"
            child = self._received[mtype] = self._counter(self.metrics.dhcp_received, label)
        batch = self._batch
        if batch is None:
            child.inc()
        else:  # _tally(child), inline: once per packet
            batch[child] = batch.get(child, 0) + 1
        if self._store_down and mtype is MessageType.DISCOVER:  # no new address without the shared store
            self._drop(DropReason.STORE_DOWN, ifname=ifname, xid=msg.xid, chaddr=msg.chaddr_mac)
            return None
        listener = self._listeners.get(ifname)
        if listener is not None and listener.sender.held:
            listener.sender.heard_from(addr[0])
        rx = self._rx.get((ifname, addr, broadcast))
        if rx is None:  # one per relay or client source: most packets come from a few of them
            if len(self._rx) >= RX_CACHE:
                self._rx.clear()
            rx = Rx(ifname, listener.address if listener else None, _ipv4(addr[0]), int(addr[1]), broadcast)
            self._rx[(ifname, addr, broadcast)] = rx
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
            self._new_device(outcome.device_class, msg.vendor_class)
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

    def _new_device(self, device_class: str | None, vendor_class: str | None) -> None:
        """Count a device seen for the first time, by class and by model: the two counter children are
        looked up once per (class, vendor class), which a floor has a handful of (bounded all the same)."""
        key = (device_class, vendor_class)
        children = self._device_children.get(key)
        if children is None:
            if len(self._device_children) >= RX_CACHE:
                self._device_children.clear()
            children = self._device_children[key] = (
                self._counter(self.metrics.devices_by_class, device_class or "none"),
                self._counter(self.metrics.devices_by_model, _model_label(vendor_class)),
            )
        for child in children:
            self._tally(child)

    def _inc(self, family: Any, label: str) -> None:
        """Count one; within a burst the counts are added up and pushed once at its end (each inc() of
        prometheus_client takes a lock: ten of them per DORA were a measurable share of its cost)."""
        self._tally(self._counter(family, label))

    def _tally(self, child: Any) -> None:
        batch = self._batch
        if batch is None:
            child.inc()
        else:
            batch[child] = batch.get(child, 0) + 1

    def _counter(self, family: Any, label: str) -> Any:
        """The labelled child of a one-label counter, looked up once (labels() costs a lock and a dict)."""
        key = (id(family), label)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(label)
        return child

    def _drop(self, reason: DropReason, **fields: Any) -> None:
        self._inc(self.metrics.dhcp_drops, reason.value)
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
        target = _text(address_int(reply.destination.ip))  # an int key: IPv4Address hashes in Python
        failed = listener.sender.send(reply, target, now)
        if failed is None:
            child = self._sent.get(reply.msg_type)
            if child is None:
                child = self._sent[reply.msg_type] = self._counter(self.metrics.dhcp_sent, _LABEL[reply.msg_type])
            batch = self._batch
            if batch is None:
                child.inc()
            else:  # _tally(child), inline: once per reply
                batch[child] = batch.get(child, 0) + 1
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
            for _ in range(5 if self.store.shared else 1):
                await asyncio.sleep(1 if self.store.shared else 5)
                self._refresh()
            self._update_gauges(time.time())
            self.metrics.dhcp_kernel_drops.set(kernel_udp_drops(self.site.listen.dhcp_port))

    def _refresh(self) -> None:
        """A shared store: read the other nodes' writes while idle, and reconnect after an outage."""
        if not self.store.shared:
            return
        error = ""
        try:
            self.store.refresh()
        except StoreError as e:
            error = str(e)
        self._store_health(error)
        self._remote_changes()

    def _store_health(self, error: str) -> None:
        """Follow the shared store's connection: down, new addresses pause (DISCOVERs dropped `store_down`)."""
        down = not getattr(self.store, "up", True)
        if down == self._store_down:
            return
        self._store_down = down
        self.metrics.store_up.set(0 if down else 1)
        if down:
            self.log.error("dhcp.store_unreachable", error=error, detail="new addresses paused")
        else:
            self.log.info("dhcp.store_reconnected")
        if self.on_store_state is not None:
            self.on_store_state(not down)

    def _remote_changes(self) -> None:
        """Other nodes' lease changes, as the lease hook's events (DNS's lease records follow them)."""
        take = getattr(self.store, "take_remote", None)
        if take is None or self._on_lease is None:
            return
        for before, after in take():
            bound = after is not None and after.state is LeaseState.BOUND
            if before is not None and before.state is LeaseState.BOUND and not (
                bound and after is not None and (after.client_id, after.hostname) == (before.client_id, before.hostname)
            ):
                self._on_lease("released", before)
            if bound and after is not None:
                self._on_lease("bound", after)

    def _update_gauges(self, now: float) -> None:
        for subnet, size in self.engine.pool_sizes().items():
            self.metrics.dhcp_pool_size.labels(subnet=subnet).set(size)
        for subnet, count in self.engine.active_leases(now).items():
            self.metrics.dhcp_leases_active.labels(subnet=subnet).set(count)
        self.metrics.dhcp_offers_held.set(self.engine.offers_held(now))


def observe_all(histogram: Any, values: list[float]) -> None:
    """histogram.observe(v) for each of a burst's values, with one lock per bucket touched instead of two per
    value (and no Python calls per value). Uses prometheus_client's Histogram fields `_upper_bounds` (ending
    in +Inf), `_buckets` and `_sum`; without them, observe() each (tests/unit/test_dhcp_fast.py compares)."""
    if not values:
        return
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets) or bounds[-1] != INF:
        for value in values:
            histogram.observe(value)
        return
    counts = [0] * len(bounds)
    for value in values:
        counts[bisect_left(bounds, value)] += 1  # the first bound >= value, as observe() picks it
    total.inc(sum(values))
    for i, count in enumerate(counts):
        if count:
            buckets[i].inc(count)


def _queued_at(item: Queued) -> float:
    return item[4]


@functools.lru_cache(maxsize=256)
def _model_label(vendor_class: str | None) -> str:
    return model_label(vendor_class)


@functools.lru_cache(maxsize=4096)
def _text(address: int) -> str:
    return str(ipaddress.IPv4Address(address))


@functools.lru_cache(maxsize=4096)
def _ipv4(text: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(text)
