"""Many simulated phones in one process on one interface (the imperative shell around the cores).

One AF_PACKET socket sends every phone's DHCP frames (each with its own MAC as Ethernet source) and reads
replies, sorted to phones by chaddr. asyncio drives the DHCP timers. A phone that is BOUND gets its address
added to the interface (phones share this namespace's IP stack; batched `ip -batch`), then provisions in a
worker thread with sockets bound to that address. At the end the added addresses are removed again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import dataclasses
import functools
import random
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bootstrapd.dhcp.codec import MessageType
from bootstrapd.sim.dhcp import ClientState, DhcpClient, Outgoing, Retransmit
from bootstrapd.sim.fetch import tls_context
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.provision import Provisioning, Settings, provision
from bootstrapd.sim.report import PhoneReport, Stage
from bootstrapd.sim.resync import Resync, Resyncer, ResyncSettings
from bootstrapd.sim.wire import FrameCache, parse_reply, reply_chaddr

ETH_P_IP = 0x0800
SO_RCVBUFFORCE = 33
Emit = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class SimConfig:
    interface: str = "eth0"
    seed: int = 0
    spread: float = 1.0  # phones power on at uniform random times within this many seconds
    timeout: float = 60.0  # the whole run, DHCP included
    retransmit: Retransmit = field(default_factory=Retransmit)
    settings: Settings = field(default_factory=Settings)
    workers: int = 32  # provisioning threads
    resync: ResyncSettings = field(default_factory=ResyncSettings)


@dataclass
class _Run:
    phone: Phone
    client: DhcpClient
    report: PhoneReport
    powered: float = 0.0
    timer: asyncio.TimerHandle | None = None
    future: asyncio.Future[Provisioning] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Simulator:
    def __init__(self, phones: Sequence[Phone], config: SimConfig, emit: Emit | None = None) -> None:
        # A stop signal of this run's own: phones waiting out a retry delay give up when it ends.
        self._resync = dataclasses.replace(config.resync, stop=threading.Event())
        self.config = config
        self.emit = emit or (lambda event: None)
        self.runs = [self._new_run(p) for p in phones]
        self._by_chaddr = {r.phone.chaddr: r for r in self.runs}
        if len(self._by_chaddr) != len(self.runs):
            raise ValueError("two phones share a MAC")
        self._pending: list[_Run] = []  # bound, address not yet added
        self._added: list[str] = []  # "a.b.c.d/len" put on the interface
        self._remaining = len(self.runs)
        self._done = asyncio.Event()
        self._wake = asyncio.Event()
        self._sock: socket.socket | None = None
        self._t0 = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool = concurrent.futures.ThreadPoolExecutor(config.workers, thread_name_prefix="phone")
        self._tls = tls_context(config.settings.ca_file)
        self._frames = FrameCache()
        for r in self.runs:  # pay scapy before the first power-on, so that the storm is not stretched by it
            self._frames.prepare(r.phone)

    def _new_run(self, phone: Phone) -> _Run:
        rng = random.Random(f"{self.config.seed}:{phone.mac}")
        return _Run(phone, DhcpClient(rng, self.config.retransmit), PhoneReport(phone.mac, phone.model))

    async def run(self) -> list[PhoneReport]:
        loop = self._loop = asyncio.get_running_loop()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)  # the event loop (DHCP timing) must not wait long behind fetch threads
        self._sock, sink = _open_sockets(self.config.interface)
        loop.add_reader(self._sock.fileno(), self._on_frames)
        adder = asyncio.create_task(self._add_addresses())
        self._t0 = loop.time()
        power = random.Random(self.config.seed)
        for r in self.runs:
            r.timer = loop.call_at(self._t0 + power.uniform(0, self.config.spread), self._power_on, r)
        try:
            await asyncio.wait_for(self._done.wait(), self.config.timeout)
        except TimeoutError:
            pass
        finally:
            self._resync.stop.set()
            loop.remove_reader(self._sock.fileno())
            adder.cancel()
            for r in self.runs:
                if r.timer is not None:
                    r.timer.cancel()
            await self._finish_provisioning()
            self._pool.shutdown(wait=False, cancel_futures=True)
            await _ip_batch(self.config.interface, "del", self._added)
            self._sock.close()
            if sink is not None:
                sink.close()
            sys.setswitchinterval(switch)
        return [self._final(r) for r in self.runs]

    # -- DHCP --------------------------------------------------------------------------------------------
    def _power_on(self, r: _Run) -> None:
        now = asyncio.get_running_loop().time()
        r.timer = None
        r.powered = now
        r.report.powered_at = now - self._t0
        r.report.stage = Stage.DHCP
        self._send(r, r.client.start(now))

    def _send(self, r: _Run, out: Outgoing | None) -> None:
        if out is None:
            return
        assert self._sock is not None
        with contextlib.suppress(BlockingIOError):  # a full send queue is a lost frame; the timer resends
            self._sock.send(self._frames.frame(r.phone, out))
        if r.timer is not None:
            r.timer.cancel()
        if r.client.deadline is not None:
            r.timer = asyncio.get_running_loop().call_at(r.client.deadline, self._on_timer, r)

    def _on_timer(self, r: _Run) -> None:
        r.timer = None
        self._send(r, r.client.timeout(asyncio.get_running_loop().time()))

    def _on_frames(self) -> None:
        assert self._sock is not None
        now = asyncio.get_running_loop().time()
        for _ in range(32):  # bounded, so that power-ons and timers still run on time during a flood
            try:
                frame, addr = self._sock.recvfrom(65535)
            except BlockingIOError:
                return
            if addr[2] == socket.PACKET_OUTGOING:
                continue
            chaddr = reply_chaddr(frame)
            r = self._by_chaddr.get(chaddr) if chaddr else None
            if r is None or r.client.state in (ClientState.BOUND, ClientState.INIT):
                continue
            msg = parse_reply(frame)
            if msg is None:
                continue
            self._send(r, r.client.receive(msg, now))
            if r.client.lease is not None:
                self._bound(r, now)

    def _bound(self, r: _Run, now: float) -> None:
        if r.timer is not None:
            r.timer.cancel()
            r.timer = None
        assert r.client.lease is not None
        r.report.stage = Stage.LEASED
        r.report.address = str(r.client.lease.address)
        r.report.dhcp_seconds = now - r.powered
        r.extra["bound"] = now
        self.emit({"event": "leased", "mac": r.phone.mac, "address": r.report.address, "t": now - self._t0})
        self._pending.append(r)
        self._wake.set()

    # -- after DHCP -------------------------------------------------------------------------------------
    async def _add_addresses(self) -> None:
        """Put leased addresses on the interface in batches, then start each phone's provisioning."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.01)  # gather the phones bound in the same moment into one batch
            batch, self._pending = self._pending, []
            held = set(self._added)
            items = []
            for r in batch:
                assert r.client.lease is not None
                item = f"{r.client.lease.address}/{r.client.lease.prefixlen}"
                if item in held:
                    r.report.reason = f"address {r.client.lease.address} is also leased to another phone here"
                    self._finished(r)
                    continue
                held.add(item)
                items.append(item)
                r.extra["item"] = item
            await _ip_batch(self.config.interface, "add", items)
            self._added += items
            for r in batch:
                if "item" in r.extra:
                    r.future = loop.run_in_executor(self._pool, self._provision, r)
                    r.future.add_done_callback(functools.partial(self._provisioned, r))

    def _provision(self, r: _Run) -> Provisioning:
        assert r.client.lease is not None
        started = time.monotonic()
        # Its own generator: SRV choices do not depend on how many DHCP retransmissions drew from the other.
        rng = random.Random(f"{self.config.seed}:{r.phone.mac}:provision")
        result = provision(r.phone, r.client.lease, rng, self.config.settings, self._tls)
        r.extra["provision_seconds"] = time.monotonic() - started
        if result.fetched and result.source is not None and result.fetcher is not None:
            self._from_thread({"event": "fetched", "mac": r.phone.mac, "url": result.url})
            option66 = r.client.lease.options.get(66, b"").rstrip(b"\0").decode("ascii", "replace").strip()
            resyncer = Resyncer(r.phone, str(r.client.lease.address), result.fetcher, option66 or None,
                                self._resync, self._from_thread)
            r.extra["resync"] = resyncer.run(result.source, result.params)
        return result

    def _from_thread(self, event: dict[str, Any]) -> None:
        """Emit from a phone's worker thread: the event loop writes it (emit is not thread-safe)."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._emit_now, event)

    def _emit_now(self, event: dict[str, Any]) -> None:
        assert self._loop is not None
        self.emit({**event, "t": self._loop.time() - self._t0})

    def _provisioned(self, r: _Run, future: asyncio.Future[Provisioning]) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        p = Provisioning(reason=f"simulator error: {exc!r}") if exc else future.result()
        rep = r.report
        rep.found_by, rep.url, rep.size, rep.reason, rep.attempts = p.found_by, p.url, p.size, p.reason, p.attempts
        bound = r.extra["bound"]
        resync: Resync | None = r.extra.get("resync")
        worked = r.extra.get("provision_seconds", 0.0) + (resync.seconds if resync else 0.0)
        setup = asyncio.get_running_loop().time() - bound - worked  # address set-up and the thread's start
        rep.discovery_seconds = setup + p.discovery_seconds
        rep.fetch_seconds = p.fetch_seconds if p.found_by else None
        rep.stage = Stage.FETCHED if p.fetched else Stage.FOUND if p.found_by else Stage.LEASED
        if resync is not None:
            rep.add_resync(resync)
        self._finished(r)

    def _finished(self, r: _Run) -> None:
        now = asyncio.get_running_loop().time()
        r.report.seconds = now - r.powered
        rep = r.report
        self.emit({"event": "done", "mac": rep.mac, "stage": rep.stage.value, "resync": rep.resync,
                   "t": now - self._t0})
        self._remaining -= 1
        if self._remaining == 0:
            self._done.set()

    async def _finish_provisioning(self) -> None:
        running = [r.future for r in self.runs if r.future is not None and not r.future.done()]
        if running:
            await asyncio.wait(running, timeout=15.0)

    def _final(self, r: _Run) -> PhoneReport:
        rep = r.report
        rep.discovers = r.client.sent[MessageType.DISCOVER]
        rep.requests = r.client.sent[MessageType.REQUEST]
        rep.naks = r.client.naks
        if rep.stage is Stage.DHCP:
            rep.reason = (f"no lease after {rep.discovers} DISCOVER and {rep.requests} REQUEST"
                          + (f", {rep.naks} NAK" if rep.naks else ""))
            rep.seconds = self._t0 + self.config.timeout - r.powered
        elif rep.stage is Stage.OFF:
            rep.reason = "not powered on before the run ended"
        elif rep.seconds is None:
            rep.reason = rep.reason or "still provisioning when the run ended"
        return rep


# Classic BPF: accept only unfragmented IPv4/UDP from port 67 to port 68, so that the phones' own DNS, HTTP
# and TFTP traffic on the same interface never reaches this socket (it would cost the event loop dearly).
_DHCP_REPLIES = [
    (0x28, 0, 0, 12),      # ldh [12]             Ethernet type
    (0x15, 0, 10, 0x800),  # jeq IPv4 ? next : drop
    (0x30, 0, 0, 23),      # ldb [23]             IP protocol
    (0x15, 0, 8, 17),      # jeq UDP ? next : drop
    (0x28, 0, 0, 20),      # ldh [20]             flags and fragment offset
    (0x45, 6, 0, 0x1FFF),  # jset fragment ? drop : next
    (0xB1, 0, 0, 14),      # ldxb 4*([14]&0xf)    IP header length
    (0x48, 0, 0, 14),      # ldh [x+14]           UDP source port
    (0x15, 0, 3, 67),      # jeq 67 ? next : drop
    (0x48, 0, 0, 16),      # ldh [x+16]           UDP destination port
    (0x15, 0, 1, 68),      # jeq 68 ? accept : drop
    (0x06, 0, 0, 0x40000),  # ret: accept the whole frame
    (0x06, 0, 0, 0),       # ret: drop
]
SO_ATTACH_FILTER = 26


def _attach_filter(sock: socket.socket) -> None:
    code = b"".join(struct.pack("HBBI", *insn) for insn in _DHCP_REPLIES)
    buf = ctypes.create_string_buffer(code)
    prog = struct.pack("HL", len(_DHCP_REPLIES), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)


def _open_sockets(iface: str) -> tuple[socket.socket, socket.socket | None]:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    _attach_filter(sock)
    sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 32 << 20)  # a storm of replies must not overflow
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind((iface, 0))
    sock.setblocking(False)
    # Broadcast replies reach this namespace's IP stack too: without a socket on port 68 it would answer them
    # with ICMP port unreachable. This one only absorbs them (the AF_PACKET socket reads every reply).
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
        sink.bind(("0.0.0.0", 68))
    except OSError:
        sink.close()
        return sock, None
    return sock, sink


async def _ip_batch(iface: str, verb: str, items: list[str]) -> None:
    """`ip -force -batch -` with one `addr add|del` per address (one process for a whole batch)."""
    if not items:
        return
    script = "".join(f"addr {verb} {item} dev {iface}\n" for item in items).encode()
    proc = await asyncio.create_subprocess_exec("ip", "-force", "-batch", "-", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await proc.communicate(script)
