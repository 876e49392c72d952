"""The asyncio shell around the DNS responder: UDP and TCP sockets, logging, metrics, reload.

UDP: the socket is registered with `loop.add_reader` and drained up to `UDP_BUDGET` datagrams per wakeup.
Answering inline is bounded work (a dictionary lookup and a join on the hot path), so there is no queue
between receive and reply; datagrams beyond what we keep up with wait in (and overflow from) the kernel's
receive buffer, which the kernel counts.
TCP (RFC 7766): two-octet length framing, several queries per connection answered in order, an idle
timeout between queries, a short one for delivering a query (the first one counted from the accept),
caps on connections in total and per client address that close the longest-idle connection to make
room (bootstrapd.transport.dns_tcp), and a bound on message size.
Counts are kept in plain dicts per query and pushed to Prometheus every `FLUSH_INTERVAL` seconds and on
stop, because prometheus_client's labelled calls cost more than answering a prepared query.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import structlog

from bootstrapd.config.model import Site
from bootstrapd.dns import LeaseRecords, LeaseTable, Responder, Zone
from bootstrapd.dns.outcome import DropReason, Outcome, dropped
from bootstrapd.dns.wire import Rcode
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport import dns_mmsg, dns_tcp
from bootstrapd.transport.dns_tcp import Slot, TcpSlots, read_message

UDP_BATCH = 64  # datagrams per recvmmsg (or per wakeup without it)
# Datagrams answered per wakeup before yielding to the event loop (DHCP shares it), in as many recvmmsg
# rounds as it takes: a short round does not end the wakeup, because at moderate rates more queries arrive
# while one batch is answered, and one more recvmmsg (about 2 us when empty) is cheaper than a trip through
# epoll and the event loop. Ending after a fixed 4 rounds instead cost 0.3-0.8 us more CPU per query and
# doubled p99 at half our peak (bench/dns README, session 2).
UDP_BUDGET = 4 * UDP_BATCH
UDP_RECV_SIZE = 4096  # larger datagrams are cut by the kernel and then FORMERR
UDP_RCVBUF = 4 << 20  # ride out bursts (the kernel caps it at net.core.rmem_max)
FLUSH_INTERVAL = 1.0
EPHEMERAL_TRIES = 8  # port 0: free UDP ports tried until one whose TCP twin is free too

_SEND_FAILED = dropped(DropReason.SEND_FAILED)
_CONNECTION_LIMIT = dropped(DropReason.CONNECTION_LIMIT)
_EVICTED = dropped(DropReason.IDLE_EVICTED)
_NOT_QUERIES = (DropReason.CONNECTION_LIMIT, DropReason.SEND_FAILED, DropReason.IDLE_EVICTED, DropReason.TCP_TIMEOUT)

# (client address, qname, qtype, rcode) of an answered query: the device tracker's view of DNS.
QueryHook = Callable[[str, str, int, Rcode], None]


class _Stats:
    """Per-query counts in dicts keyed by Outcome (identity-hashed, one per prepared answer) and latency
    in local buckets; `flush` pushes them to Prometheus in bulk."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.counts: dict[str, dict[Outcome, int]] = {"udp": {}, "tcp": {}}
        hist = metrics.dns_latency
        self.bounds: list[float] = list(getattr(hist, "_upper_bounds", [])) or [float("inf")]
        self.buckets = [0] * len(self.bounds)
        self.latency_sum = 0.0

    def record(self, outcome: Outcome, transport: str, seconds: float | None) -> None:
        counts = self.counts[transport]
        counts[outcome] = counts.get(outcome, 0) + 1
        if seconds is not None:
            self.buckets[bisect.bisect_left(self.bounds, seconds)] += 1
            self.latency_sum += seconds

    def observe(self, replies: int, seconds: float) -> None:
        """`replies` answers that each took `seconds` from our receive to our send."""
        self.buckets[bisect.bisect_left(self.bounds, seconds)] += replies
        self.latency_sum += replies * seconds

    def flush(self) -> None:
        m = self.metrics
        for transport, counts in self.counts.items():
            items = list(counts.items())
            counts.clear()
            for outcome, n in items:
                if outcome.drop in _NOT_QUERIES:
                    m.dns_drops.labels(outcome.drop.value).inc(n)  # not a query of its own
                    continue
                m.dns_queries.labels(outcome.qtype_label, transport).inc(n)
                if outcome.drop is not None:
                    m.dns_drops.labels(outcome.drop.value).inc(n)
                if outcome.rcode is not None:
                    m.dns_responses.labels(outcome.rcode.name).inc(n)
                if outcome.error is not None:
                    m.dns_errors.inc(n)
        self._flush_latency()

    def _flush_latency(self) -> None:
        buckets, total = self.buckets[:], self.latency_sum
        self.buckets[:] = [0] * len(self.bounds)
        self.latency_sum = 0.0
        count = sum(buckets)
        if not count:
            return
        hist = self.metrics.dns_latency
        values = getattr(hist, "_buckets", None)
        if values is None or len(values) != len(buckets):  # prometheus_client changed: approximate
            for _ in range(count):
                hist.observe(total / count)
            return
        # Bulk add into the histogram's own per-bucket values (what observe() increments one at a time).
        for value, n in zip(values, buckets, strict=True):
            if n:
                value.inc(n)
        hist._sum.inc(total)


def _debug_enabled(log: Any) -> bool:
    check = getattr(log, "is_enabled_for", None)
    return bool(check(logging.DEBUG)) if check is not None else True


class DnsServer:
    """Authoritative DNS for one site on UDP and TCP."""

    def __init__(
        self,
        site: Site,
        metrics: Metrics,
        log: Any | None = None,
        *,
        bind: Sequence[tuple[str, int]] | None = None,
        tcp_idle_timeout: float = 10.0,
        tcp_query_timeout: float = 3.0,
        max_tcp_connections: int = 64,
        max_tcp_per_source: int = 16,
        batch_io: bool | None = None,
        prepared_answers: int = 20_000,
        on_query: QueryHook | None = None,
        on_query_types: Collection[int] = (),
        serial: int | None = None,
    ) -> None:
        """`bind` overrides (listen.address, listen.dns_port), e.g. a loopback port for tests (port 0
        picks a free one, shared by UDP and TCP); on TCP, `tcp_query_timeout` bounds the wait for a whole
        query (the first from the accept, later ones from their length prefix) and `tcp_idle_timeout` the
        wait for a later one's prefix; `max_tcp_per_source` (a quarter of the slots: one address never
        holds them all) and `max_tcp_connections` cap connections, the longest idle giving way to a new
        one; `batch_io` forces recvmmsg/sendmmsg on or off (None: whenever available);
        `prepared_answers` bounds the prepared-reply cache (0: build every reply, for measurement);
        `on_query` is called for each answered query whose qtype is in `on_query_types` (the filter
        keeps other queries from paying for the client address); `serial` is the SOA serial (default: a
        hash of the site's content)."""
        self._metrics = metrics
        self._log = log if log is not None else structlog.get_logger("bootstrapd.dns").bind()
        self._debug = _debug_enabled(self._log)
        self._bind = list(bind) if bind else [(str(site.listen.address), site.listen.dns_port)]
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_query_timeout = tcp_query_timeout
        self._slots = TcpSlots(max_tcp_connections, max_tcp_per_source)
        self.batch_io = dns_mmsg.available() if batch_io is None else batch_io
        self.prepared_answers = prepared_answers
        self._leases = LeaseTable()
        self._responder = self._build(site, serial)
        self._stats = _Stats(metrics)
        self._udp: list[socket.socket] = []
        self._tcp: list[asyncio.Server] = []
        self._connections: set[asyncio.Task[Any]] = set()
        self._flusher: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.addresses: list[tuple[str, int]] = []
        self._on_query = on_query
        self._on_query_types = frozenset(on_query_types)

    @property
    def lease_records(self) -> LeaseRecords:
        """For the DHCP side: publish and withdraw leased devices' A and PTR records."""
        return self._leases

    @property
    def responder(self) -> Responder:
        return self._responder

    def _build(self, site: Site, serial: int | None) -> Responder:
        zone = Zone.from_site(site, lease_records=self._leases, serial=serial)
        for note in zone.ignored:
            self._log.warning("dns.record_ignored", detail=note)
        responder = Responder(zone, cache_entries=self.prepared_answers)
        self._leases.on_change = responder.lease_changed
        return responder

    def reload(self, site: Site, serial: int | None = None) -> None:
        """Swap in a zone built from `site`; on ConfigError the running zone keeps serving.

        Listening addresses are not rebound: changing them needs a restart.
        """
        self._responder = self._build(site, serial)
        self._debug = _debug_enabled(self._log)
        self._log.info("dns.reloaded", zones=len(self._responder.zone.apexes))

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            for host, port in self._bind:
                await self._listen(host, port)
        except BaseException:
            await self.stop()
            raise
        self._flusher = self._loop.call_later(FLUSH_INTERVAL, self._flush)
        self._log.info("dns.started", addresses=[f"{h}:{p}" for h, p in self.addresses])

    async def _listen(self, host: str, port: int) -> None:
        """UDP and TCP on one port. Port 0 takes the kernel's free UDP port, whose TCP twin may be some
        client's ephemeral port: then another free port is tried rather than failing the start."""
        for attempt in range(EPHEMERAL_TRIES):
            sock = self._udp_socket(host, port)
            bound = sock.getsockname()[1]
            try:
                server = await asyncio.start_server(
                    self._tcp_client, host, bound, reuse_address=True, limit=dns_tcp.MAX_QUERY + 2
                )
            except OSError as err:
                if port != 0 or err.errno != errno.EADDRINUSE or attempt == EPHEMERAL_TRIES - 1:
                    raise
                self._close_udp(sock)
                continue
            self._tcp.append(server)
            self.addresses.append((host, bound))
            return

    def _close_udp(self, sock: socket.socket) -> None:
        if self._loop is not None:
            self._loop.remove_reader(sock.fileno())
        self._udp.remove(sock)
        sock.close()

    def _udp_socket(self, host: str, port: int) -> socket.socket:
        assert self._loop is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            # No SO_REUSEADDR: on Linux it would let a second instance share the UDP port silently.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            sock.bind((host, port))
            sock.setblocking(False)
            if self.batch_io:
                self._loop.add_reader(sock.fileno(), self._udp_ready_batch, dns_mmsg.BatchSocket(sock, UDP_BATCH))
            else:
                self._loop.add_reader(sock.fileno(), self._udp_ready, sock)
        except BaseException:
            sock.close()
            raise
        self._udp.append(sock)
        return sock

    async def stop(self) -> None:
        for sock in self._udp:
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._udp.clear()
        for server in self._tcp:
            server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._tcp:
            await server.wait_closed()
        self._tcp.clear()
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self._stats.flush()
        self.addresses.clear()

    def _flush(self) -> None:
        self._stats.flush()
        assert self._loop is not None
        self._flusher = self._loop.call_later(FLUSH_INTERVAL, self._flush)

    def _udp_ready(self, sock: socket.socket) -> None:
        # The hot loop: names bound once per wakeup, counting inlined (see _Stats.record).
        respond = self._responder.respond
        stats = self._stats
        counts = stats.counts["udp"]
        buckets, bounds = stats.buckets, stats.bounds
        clock, bucket_of = time.perf_counter, bisect.bisect_left
        debug = self._debug
        spent = 0.0
        for _ in range(UDP_BATCH):
            try:
                data, peer = sock.recvfrom(UDP_RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # e.g. a queued ICMP error; the socket stays usable
                self._log.warning("dns.udp_error", error=str(exc))
                break
            start = clock()
            reply, outcome = respond(data)
            if reply is not None:
                try:
                    sock.sendto(reply, peer)
                except OSError:
                    counts[_SEND_FAILED] = counts.get(_SEND_FAILED, 0) + 1
                else:
                    seconds = clock() - start
                    buckets[bucket_of(bounds, seconds)] += 1
                    spent += seconds
            counts[outcome] = counts.get(outcome, 0) + 1
            if debug or outcome.error is not None:
                self._event(outcome, "udp", peer)
            if self._on_query is not None and outcome.qtype in self._on_query_types:
                self._report(peer[0], outcome)
        stats.latency_sum += spent

    def _udp_ready_batch(self, io: dns_mmsg.BatchSocket) -> None:
        """The hot loop with recvmmsg/sendmmsg: one system call each way per batch of datagrams."""
        respond = self._responder.respond
        stats = self._stats
        counts = stats.counts["udp"]
        clock = time.perf_counter
        handled = 0
        while handled < UDP_BUDGET:
            start = clock()
            try:
                outcomes, answered, failed = io.exchange(respond)
            except OSError as exc:
                self._log.warning("dns.udp_error", error=str(exc))
                return
            if not outcomes:
                return
            handled += len(outcomes)
            errors = False
            for outcome in outcomes:
                counts[outcome] = counts.get(outcome, 0) + 1
                if outcome.error is not None:
                    errors = True
            if failed:
                counts[_SEND_FAILED] = counts.get(_SEND_FAILED, 0) + failed
            stats.observe(answered - failed, clock() - start)
            if errors or self._debug:
                for i, outcome in enumerate(outcomes):
                    self._event(outcome, "udp", io.peer(i))
            if self._on_query is not None:
                for i, outcome in enumerate(outcomes):
                    if outcome.qtype in self._on_query_types:
                        self._report(io.peer(i)[0], outcome)

    def _report(self, client: str, outcome: Outcome) -> None:
        if self._on_query is not None and outcome.qname is not None and outcome.rcode is not None:
            assert outcome.qtype is not None
            self._on_query(client, outcome.qname, outcome.qtype, outcome.rcode)

    def _event(self, outcome: Outcome, transport: str, peer: Any) -> None:
        if outcome.error is not None:
            self._log.error("dns.internal_error", error=outcome.error, client=str(peer[0]))
        self._log.debug(
            "dns.query",
            qname=outcome.qname,
            qtype=outcome.qtype_label if outcome.qtype_label != "other" else outcome.qtype,
            rcode=outcome.rcode.name if outcome.rcode is not None else None,
            outcome="drop" if outcome.drop else "reply",
            reason=outcome.drop.value if outcome.drop else None,
            truncated=outcome.truncated,
            transport=transport,
            client=str(peer[0]),
        )

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername") or ("?", 0)
        task = asyncio.current_task()
        slot, evicted = (None, None) if task is None else self._slots.admit(
            str(peer[0]), writer.transport.abort, time.monotonic())
        if evicted is not None:
            self._stats.record(_EVICTED, "tcp", None)
            if self._debug:
                self._log.debug("dns.tcp_evicted", client=evicted.source, idle_since=evicted.last,
                                for_client=str(peer[0]))
        if task is None or slot is None:
            self._stats.record(_CONNECTION_LIMIT, "tcp", None)
            writer.close()
            return
        self._connections.add(task)
        try:
            await self._tcp_serve(reader, writer, peer, slot)
        except (ConnectionError, TimeoutError, asyncio.IncompleteReadError):
            pass
        finally:
            self._slots.release(slot)
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1.0)

    async def _tcp_serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: Any,
                         slot: Slot) -> None:
        first = True
        while True:
            data = await read_message(reader, first, self.tcp_query_timeout, self.tcp_idle_timeout)
            if not isinstance(data, bytes):
                if data is not None:
                    self._stats.record(data, "tcp", None)
                return
            first = False
            self._slots.touch(slot, time.monotonic())
            start = time.perf_counter()
            reply, outcome = self._responder.respond(data, tcp=True)
            if self._debug or outcome.error is not None:
                self._event(outcome, "tcp", peer)
            if reply is None:
                self._stats.record(outcome, "tcp", None)
                return
            if self._on_query is not None and outcome.qtype in self._on_query_types:
                self._report(peer[0], outcome)
            writer.write(len(reply).to_bytes(2, "big") + reply)
            await asyncio.wait_for(writer.drain(), self.tcp_idle_timeout)
            self._stats.record(outcome, "tcp", time.perf_counter() - start)
