"""One DHCP worker process (`dhcp.workers` >= 1): `python -m bootstrapd dhcp-worker ...`, started by the main
process (transport/dhcp_workers.py), never by hand.

It serves DHCP exactly as the main process does with `workers: 0` (transport/dhcp.py), for the clients of its
RFC 3074 buckets and from its part of every pool (dhcp/shard.py), with its own lease store. Every worker binds
the DHCP port on the same interfaces (SO_REUSEADDR): each gets every broadcast and ignores the other workers'
clients; a unicast datagram reaches one socket only, so the worker that gets one for another worker's client
passes it on to that worker's inbox. Lease events, replies and metrics go to the main process over the channel
(transport/dhcp_channel.py). SIGHUP: read the site file again; SIGTERM: stop; the main process's death: SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from bootstrapd.config import check_site
from bootstrapd.config.model import Site
from bootstrapd.dhcp.leases import Lease, LeaseState, effective_state
from bootstrapd.dhcp.outcome import Reply, Silent
from bootstrapd.dhcp.shard import Shard
from bootstrapd.dhcp.store_sqlite import DB_NAME, SqliteLeaseStore, open_readonly, open_store, shard_db_name
from bootstrapd.errors import BootstrapdError
from bootstrapd.observability.logging import configure, get_logger
from bootstrapd.observability.metrics import Metrics
from bootstrapd.observability.worker_metrics import snapshot
from bootstrapd.transport.dhcp_channel import ChannelSender, decode_forward, encode_forward, encode_lease

PR_SET_PDEATHSIG = 1
METRICS_EVERY_S = 1.0
REPLAY_BATCH = 512  # bound leases sent per loop turn at start (the main process's lease mirror and DNS)


def open_worker_store(state_dir: str, shard: Shard, log: Any) -> SqliteLeaseStore:
    """One worker: leases.sqlite3, as with `workers: 0`. Several: leases-<k>.sqlite3, started (once) from the
    records of leases.sqlite3 whose address is in this worker's part of the pools, so no address held there
    is offered to another client. A client whose address falls in another worker's part gets a NAK at its
    renewal from its own worker and a new address (RFC 2131 4.3.2)."""
    if shard.whole:
        return open_store(state_dir)
    path = Path(state_dir) / shard_db_name(shard.index)
    fresh = not path.exists()
    store = open_store(state_dir, name=path.name)
    old = Path(state_dir) / DB_NAME
    if fresh and old.is_file():
        source = open_readonly(old)
        try:
            moved = [lease for lease in source.iter_all() if shard.owns_address(int(lease.address))]
        finally:
            source.close()
        for lease in moved:
            store.put(lease, force=True)
        store.flush()
        log.info("dhcp.store_split", source=str(old), store=str(path), records=len(moved))
    return store


class Worker:
    def __init__(self, path: str, site: Site, shard: Shard, channel: socket.socket, inbox: socket.socket,
                 peers: list[socket.socket]) -> None:
        self.path = path
        self.site = site
        self.shard = shard
        self.channel = channel
        self.inbox = inbox
        self.peers = peers  # peers[k]: worker k's inbox (our own unused)
        self.metrics = Metrics()
        self.log = get_logger(site=site.site, worker=shard.index)
        self.server: Any = None
        self._stop = asyncio.Event()
        self.sender: ChannelSender | None = None

    async def main(self) -> int:
        from bootstrapd import heap
        from bootstrapd.transport.dhcp import DhcpServer

        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload)
        self.sender = ChannelSender(self.channel, loop.call_soon, self.metrics.dhcp_channel_drops.inc)
        try:
            store = open_worker_store(self.site.state_dir, self.shard, self.log)
        except BootstrapdError as e:
            self.log.error("dhcp.worker_start_failed", error=str(e))
            return 1
        admit = None if self.shard.whole else self.admit
        self.server = DhcpServer(self.site, store, self.metrics, self.log, on_lease=self.lease_event,
                                 on_outcome=self.outcome, shard=self.shard, admit=admit,
                                 before_send=self.sender.flush)  # a burst's records before its replies
        try:
            await self.server.start()
        except OSError as e:
            self.log.error("dhcp.worker_start_failed", error=str(e))
            store.close()
            return 1
        loop.add_reader(self.inbox.fileno(), self._forwarded)
        self.sender.send_now(["R", os.getpid()])
        tasks = [asyncio.create_task(self._replay(store)), asyncio.create_task(self._report())]
        heap.settle()
        tasks.append(asyncio.create_task(heap.sweep_forever(self.log)))
        await self._stop.wait()
        for task in tasks:
            task.cancel()
        loop.remove_reader(self.inbox.fileno())
        await self.server.stop()
        self._send_metrics()
        store.close()
        return 0

    # -- the shard filter ---------------------------------------------------------------------------------
    def admit(self, data: bytes, ifname: str, addr: tuple[Any, int], broadcast: bool, waited: float) -> bool:
        owner = self.shard.owner(data)
        if owner == self.shard.index:
            return True
        if not broadcast:  # only we got it: pass it to the worker that serves this client
            arrival = time.time() - waited
            try:
                self.peers[owner].send(encode_forward(data, ifname, (str(addr[0]), int(addr[1])), arrival))
                self.metrics.dhcp_forwarded.inc()
            except OSError:
                self.metrics.dhcp_channel_drops.inc()
        return False

    def _forwarded(self) -> None:
        for _ in range(64):
            try:
                datagram = self.inbox.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            try:
                data, ifname, source, arrival = decode_forward(datagram)
            except (ValueError, UnicodeDecodeError, struct.error):
                continue
            self.server.enqueue(data, ifname, source, waited=max(0.0, time.time() - arrival))

    # -- to the main process ------------------------------------------------------------------------------
    def lease_event(self, event: str, lease: Lease) -> None:
        assert self.sender is not None
        self.sender.record(["L", event, encode_lease(lease)])

    def outcome(self, outcome: Reply | Silent) -> None:
        assert self.sender is not None
        lease = outcome.lease
        if lease is None or not lease.chaddr:  # what the tracker ignores
            return
        if isinstance(outcome, Silent):
            self.sender.record(["O", outcome.event, None, encode_lease(lease)])
        else:
            self.sender.record(["O", outcome.msg_type.name, outcome.device_class, encode_lease(lease)])

    async def _replay(self, store: SqliteLeaseStore) -> None:
        """The bound leases at start, as `bound` events: the main process's lease mirror (device
        identification by address) and DNS lease records, also after this worker was restarted."""
        now = time.time()
        bound = [lease for lease in store.iter_all() if effective_state(lease, now) is LeaseState.BOUND]
        for i, lease in enumerate(bound):
            self.lease_event("bound", lease)
            if i % REPLAY_BATCH == REPLAY_BATCH - 1:
                await asyncio.sleep(0)

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(METRICS_EVERY_S)
            self._send_metrics()

    def _send_metrics(self) -> None:
        assert self.sender is not None
        self.sender.send_now(["M", snapshot(self.metrics.registry)])

    def reload(self) -> None:
        loaded = check_site(self.path)
        if loaded.site is None:  # the main process has logged the errors already
            self.log.error("dhcp.worker_reload_rejected", errors=len(loaded.errors))
            return
        try:
            self.server.reload(loaded.site)
        except BootstrapdError as e:
            self.log.error("dhcp.worker_reload_rejected", error=str(e))
            return
        self.site = loaded.site
        self.log.info("dhcp.worker_reloaded", digest=loaded.digest[:12])


def _die_with_parent() -> None:
    """SIGTERM when the main process dies, however it dies (prctl PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)


def run_worker(path: str, index: int, count: int, channel_fd: int, inbox_fd: int, peer_fds: list[int]) -> int:
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # until Worker.main handles it: a reload must not kill us
    _die_with_parent()
    if os.getppid() == 1:  # the main process died before prctl took effect
        return 1
    loaded = check_site(path)
    if loaded.site is None:
        print(f"bootstrapd dhcp-worker: {path} is invalid", file=sys.stderr)
        return 1
    site = loaded.site
    configure(site.logging.format, site.logging.level)
    socks = [socket.socket(fileno=fd) for fd in (channel_fd, inbox_fd, *peer_fds)]
    for s in socks:
        s.setblocking(False)
    worker = Worker(path, site, Shard(index, count), socks[0], socks[1], socks[2:])
    return asyncio.run(worker.main())
