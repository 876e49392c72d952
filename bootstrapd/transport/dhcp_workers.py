"""The main process's side of `dhcp.workers` >= 1: it starts the DHCP worker processes, restarts one that
dies, forwards SIGHUP, stops them on SIGTERM, and turns their channel records into what `workers: 0` gets
from the in-process DhcpServer's hooks: lease events (DNS lease records), outcomes (the device tracker), a
mirror of the bound leases (`store.get_by_address`, for the file service's device identification) and
their metrics (one scrape, observability/worker_metrics.py).

Stands in for transport/dhcp.DhcpServer in service.py: start, stop, reload, store.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from bootstrapd.config.model import Site
from bootstrapd.dhcp.codec import MessageType
from bootstrapd.dhcp.leases import Lease
from bootstrapd.errors import BootstrapdError, StoreError
from bootstrapd.observability.metrics import Metrics
from bootstrapd.observability.worker_metrics import MergedRegistry, parse_snapshot
from bootstrapd.transport.dhcp_channel import decode_lease, decode_records, pair

START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
RESTART_DELAYS_S = (0.2, 1.0, 5.0)  # after the 1st, 2nd, 3rd+ death in a row (a worker up 60 s resets it)
STABLE_S = 60.0
# Datagrams (of up to 64 records) a lookup that missed reads from each channel at most (drain): 0.8 ms each
# when full of new devices' ACKs, so a miss costs the loop at most ~25 ms (work the loop would do anyway, a
# datagram per turn), and one recv (~2 us) when the channel is empty.
DRAIN_LIMIT = 32
LeaseHook = Callable[[str, Lease], None]
EventHook = Callable[[MessageType | None, Lease, str | None], None]  # DeviceTracker.dhcp_event


LAYOUT_FILE = "leases-workers"  # in state_dir: the dhcp.workers (>= 2) that split the lease stores


def check_store_layout(state_dir: str, workers: int) -> None:
    """Refuse a worker count the lease stores were not split for. Worker k of N offers the pool addresses
    a mod N == k: with another N, addresses held in one worker's store would be offered by another, and
    with 0 or 1 worker leases.sqlite3 is the store from before the split. Raises StoreError."""
    marker = Path(state_dir) / LAYOUT_FILE
    try:
        split = int(marker.read_text().strip())
    except FileNotFoundError:
        split = 0
    except (OSError, ValueError) as e:
        raise StoreError(f"{marker}: unreadable ({e})") from e
    if split and split != workers:
        raise StoreError(f"{state_dir} holds the lease stores of dhcp.workers: {split} (leases-<k>.sqlite3); "
                         f"serving them with dhcp.workers: {workers} could give one address twice. Set it back, "
                         f"or move the leases-* files away to start afresh")
    if workers >= 2 and not split:
        try:
            marker.write_text(f"{workers}\n")
        except OSError as e:
            raise StoreError(f"cannot write {marker}: {e}") from e


class WorkerStartError(BootstrapdError):
    """A DHCP worker process exited or stayed silent before it was listening."""


class LeaseMirror:
    """The bound leases of every worker by address, from their `bound`/`release`/`decline` events."""

    def __init__(self) -> None:
        self._by_address: dict[IPv4Address, Lease] = {}

    def apply(self, event: str, lease: Lease) -> None:
        if event == "bound":
            self._by_address[lease.address] = lease
        else:
            held = self._by_address.get(lease.address)
            if held is not None and held.client_id == lease.client_id:
                del self._by_address[lease.address]

    def get_by_address(self, address: IPv4Address) -> Lease | None:
        return self._by_address.get(address)

    def __len__(self) -> int:
        return len(self._by_address)


@dataclass
class _Slot:
    index: int
    channel: socket.socket  # the main process's end
    child_channel: socket.socket  # the worker's end, kept for its restarts
    inbox_recv: socket.socket  # the worker's inbox
    inbox_send: socket.socket  # every worker may write to it
    proc: asyncio.subprocess.Process | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    deaths: int = 0
    started: float = 0.0


class DhcpWorkers:
    def __init__(self, path: str, site: Site, metrics: Metrics, merged: MergedRegistry, log: Any,
                 on_lease: LeaseHook | None = None, on_event: EventHook | None = None) -> None:
        self.path = path
        self.site = site
        self.metrics = metrics
        self.merged = merged
        self.log = log
        self.store = LeaseMirror()
        self._on_lease = on_lease
        self._on_event = on_event
        self.count = site.dhcp.workers
        self._slots: list[_Slot] = []
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.count >= (os.cpu_count() or 1):  # they would take turns on the cores with DNS and the rest
            self.log.warning("dhcp.workers_exceed_cores", workers=self.count, cpus=os.cpu_count())
        for k in range(self.count):
            channel, child = pair()
            inbox_send, inbox_recv = pair()
            self._slots.append(_Slot(k, channel, child, inbox_recv, inbox_send))
            loop.add_reader(channel.fileno(), self._readable, self._slots[-1])
        for slot in self._slots:
            await self._spawn(slot)
        try:
            await asyncio.wait_for(asyncio.gather(*(self._ready(s) for s in self._slots)), START_TIMEOUT_S)
        except TimeoutError as e:
            raise WorkerStartError(f"DHCP workers not listening within {START_TIMEOUT_S:.0f} s") from e
        self._watchers = [asyncio.create_task(self._watch(s)) for s in self._slots]
        self.metrics.dhcp_workers.set(self.count)

    async def _ready(self, slot: _Slot) -> None:
        assert slot.proc is not None
        waiting = asyncio.create_task(slot.ready.wait())
        exited = asyncio.create_task(slot.proc.wait())
        await asyncio.wait({waiting, exited}, return_when=asyncio.FIRST_COMPLETED)
        if not slot.ready.is_set():
            waiting.cancel()
            raise WorkerStartError(f"DHCP worker {slot.index} exited ({slot.proc.returncode}) before listening")
        exited.cancel()

    async def _spawn(self, slot: _Slot) -> None:
        fds = [slot.child_channel.fileno(), slot.inbox_recv.fileno(), *(s.inbox_send.fileno() for s in self._slots)]
        argv = [sys.executable, "-m", "bootstrapd", "dhcp-worker", "-c", self.path, "--index", str(slot.index),
                "--count", str(self.count), "--fds", ",".join(map(str, fds))]
        slot.ready.clear()
        slot.proc = await asyncio.create_subprocess_exec(*argv, pass_fds=fds)
        slot.started = time.monotonic()
        self.log.info("dhcp.worker_started", worker=slot.index, pid=slot.proc.pid)

    async def _watch(self, slot: _Slot) -> None:
        """Restart the worker whenever it dies (its leases are in its own store: none is lost)."""
        while True:
            assert slot.proc is not None
            code = await slot.proc.wait()
            if self._stopping:
                return
            self.merged.retire(slot.index)
            self.metrics.dhcp_worker_restarts.inc()
            self.metrics.dhcp_workers.dec()
            slot.deaths = 1 if time.monotonic() - slot.started > STABLE_S else slot.deaths + 1
            delay = RESTART_DELAYS_S[min(slot.deaths, len(RESTART_DELAYS_S)) - 1]
            self.log.error("dhcp.worker_died", worker=slot.index, pid=slot.proc.pid, returncode=code,
                           restart_in_s=delay)
            await asyncio.sleep(delay)
            await self._spawn(slot)
            self.metrics.dhcp_workers.inc()

    # -- the channel --------------------------------------------------------------------------------------
    def _readable(self, slot: _Slot) -> None:
        """One datagram (up to 64 records) per callback: DNS and the rest get the loop in between."""
        self._take(slot)

    def drain(self) -> int:
        """Read what waits on the channels now, without blocking: at most DRAIN_LIMIT datagrams each; how
        many were read. For a lookup by source address that missed (a fetch, a syslog datagram, a tracker
        attribution): a worker writes a burst's records before its replies leave, so the lease of a client
        that asks us anything after its ACK is in the channel, but its request's socket may have come
        before the channel in this loop turn, or the channel may hold a backlog."""
        n = 0
        for slot in self._slots:
            for _ in range(DRAIN_LIMIT):
                if not self._take(slot):
                    break
                n += 1
        return n

    def _take(self, slot: _Slot) -> bool:
        """Handle one datagram of `slot`'s channel; False when none was waiting."""
        try:
            datagram = slot.channel.recv(1 << 16)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # closed (at stop)
            return False
        try:
            records = decode_records(datagram)
        except ValueError:
            self.metrics.dhcp_channel_drops.inc()
            return True
        for record in records:
            try:
                self._record(slot, record)
            except (ValueError, KeyError, TypeError) as e:
                self.metrics.dhcp_channel_drops.inc()
                self.log.warning("dhcp.channel_bad_record", worker=slot.index, error=repr(e))
        return True

    def _record(self, slot: _Slot, record: list[Any]) -> None:
        kind = record[0]
        if kind == "L":
            lease = decode_lease(record[2])
            self.store.apply(str(record[1]), lease)
            if self._on_lease is not None:
                self._on_lease(str(record[1]), lease)
        elif kind == "O":
            if self._on_event is not None:
                what = str(record[1])
                msg_type = None if what in ("release", "decline") else MessageType[what]
                self._on_event(msg_type, decode_lease(record[3]), record[2])
        elif kind == "M":
            self.merged.update(slot.index, parse_snapshot(record[1]))
        elif kind == "R":
            slot.ready.set()
            self.log.info("dhcp.worker_ready", worker=slot.index, pid=record[1])
        else:
            raise ValueError(f"unknown record {kind!r}")

    # -- control ------------------------------------------------------------------------------------------
    def reload(self, site: Site) -> None:
        """SIGHUP to every worker: each reads the (already checked) site file again. `workers` itself and
        what transport/dhcp.py opens at start apply at restart."""
        self.site = site
        self._signal(signal.SIGHUP, ready_only=True)  # one still starting reads the file anyway

    def _signal(self, sig: int, ready_only: bool = False) -> None:
        for slot in self._slots:
            if ready_only and not slot.ready.is_set():
                continue
            if slot.proc is not None and slot.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.proc.send_signal(sig)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._watchers:
            task.cancel()
        self._signal(signal.SIGTERM)
        procs = [s.proc for s in self._slots if s.proc is not None]
        try:
            await asyncio.wait_for(asyncio.gather(*(p.wait() for p in procs)), STOP_TIMEOUT_S)
        except TimeoutError:
            self._signal(signal.SIGKILL)
            await asyncio.gather(*(p.wait() for p in procs))
        loop = asyncio.get_running_loop()
        for slot in self._slots:
            with contextlib.suppress(OSError, ValueError):
                while True:  # the last records: final metrics, leases of the last burst
                    self._readable_once(slot)
            loop.remove_reader(slot.channel.fileno())
            for s in (slot.channel, slot.child_channel, slot.inbox_recv, slot.inbox_send):
                s.close()
        self.metrics.dhcp_workers.set(0)

    def _readable_once(self, slot: _Slot) -> None:
        datagram = slot.channel.recv(1 << 16)  # raises BlockingIOError when empty
        for record in decode_records(datagram):
            with contextlib.suppress(ValueError, KeyError, TypeError):
                self._record(slot, record)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.returncode is None]
