"""The asyncio shell of the phones' syslog sink: one UDP socket on listen.address:syslog.port.

Per datagram: admission (staging subnets, size, per-source rate; bootstrapd.syslog.admit), the lenient
parse, one `syslog.message` log event, and the `on_message` hook, which must stay cheap (it runs on the
event loop DHCP and DNS share; storing is its own business, e.g. the device tracker's batched writes).
Datagrams are read into a buffer one byte larger than the admitted maximum, so an oversized one is seen
as such (and dropped) without ever reading 64 KiB. Counts go to Prometheus once a second, like DNS's.

Overload: a full message costs the loop ~100 us (parse, log event, the tracker's fold), so a flood of a
few thousand datagrams a second fills the socket buffer and the kernel drops at random, the phones' own
resync lines with the flood. When a wakeup ends with its budget used up (the socket still backlogged), the
sink sheds for SHED_HOLD seconds: datagrams from senders that hold no lease (`known`) are counted as `shed`
without being parsed (a few us each), so the floor's phones keep being heard. What shedding cannot help
with is a loop that does not run at all: on a busy box the daemon waited for a CPU for up to 1.2 s
(`loop.stalled`, bench/bootstorm/RESULTS.md), so the socket's receive buffer (syslog.receive_buffer, 16 MiB
by default, beyond net.core.rmem_max where CAP_NET_ADMIN allows) holds ~2 s of a 20,000/s flood.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from ipaddress import IPv4Address
from typing import Any

import structlog

from bootstrapd.config.model import Site
from bootstrapd.observability.metrics import Metrics
from bootstrapd.syslog import MAX_DATAGRAM, Admission, DropReason, Kind, SyslogMessage, parse
from bootstrapd.transport.dhcp_recv import kernel_udp_drops

RECV_BUDGET = 256  # datagrams handled per wakeup before yielding to DHCP and DNS
# A shed datagram costs ~2 us against ~55 us parsed and logged: it takes 1/SHED_WEIGHT of the budget. With a
# whole budget per wakeup, a loop busy elsewhere (TLS handshakes of a storm) drained 256 per turn, less than
# a 20,000/s flood brings, and the kernel dropped the rest (bench/bootstorm/RESULTS.md, 30,000 per run).
SHED_WEIGHT = 16
SHED_HOLD = 1.0  # seconds of shedding after a wakeup that left the socket backlogged
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)  # Linux socket(7); Python names it only on some builds
FLUSH_INTERVAL = 1.0

# (receive time as wall-clock seconds, source address, parsed message)
MessageHook = Callable[[float, IPv4Address, SyslogMessage], None]
# Does this source address (as recvfrom gives it) hold a lease? Called per datagram while shedding: a dict lookup.
KnownSource = Callable[[str], bool]


def staging_networks(site: Site) -> list[Any]:
    return [subnet.prefix for subnet in site.dhcp.subnets]


def receive_buffer(sock: socket.socket, size: int) -> tuple[int, bool]:
    """Ask for `size` bytes of receive buffer: SO_RCVBUFFORCE first (needs CAP_NET_ADMIN; goes beyond
    net.core.rmem_max, like unbound's so-rcvbuf), else SO_RCVBUF (capped there by the kernel). Returns
    (what the kernel reports, whether the force worked)."""
    forced = True
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:  # EPERM without the capability: the plain option, logged by the caller when capped
        forced = False
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF), forced


class SyslogServer:
    """Receives, filters, parses and hands on the phones' syslog datagrams."""

    def __init__(self, site: Site, metrics: Metrics, log: Any | None = None, *,
                 on_message: MessageHook | None = None, known: KnownSource | None = None,
                 refresh: Callable[[], int] | None = None, bind: tuple[str, int] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        """`bind` overrides (listen.address, syslog.port), e.g. ("127.0.0.1", 0) in tests; without `known`
        the sink never sheds. `refresh` (dhcp.workers >= 1): read the leases waiting in the DHCP workers'
        channels, returning how many datagrams it read; a wakeup that would shed calls it once and asks
        `known` again."""
        conf = site.syslog
        if conf is None:
            raise ValueError("the site has no syslog section")
        self._metrics = metrics
        self._log = log if log is not None else structlog.get_logger("bootstrapd.syslog").bind()
        self._bind = bind or (str(site.listen.address), conf.port)
        self._rcvbuf = conf.receive_buffer
        self._on_message = on_message
        self._known = known
        self._refresh = refresh
        self._shed_until = 0.0  # clock(): shed while before this
        self._shedding = False  # for the log: one event when shedding starts, one when it ends
        self._clock, self._wall = clock, wall
        self.admission = Admission(staging_networks(site), conf.rate_limit)
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._flusher: asyncio.TimerHandle | None = None
        self._messages: dict[str, int] = {}
        self._drops: dict[DropReason, int] = {}
        self._errors = 0
        self.address: tuple[str, int] | None = None
        for kind in Kind:  # every series exists from the start, so rate() and alerts see the first one
            metrics.syslog_messages.labels(kind=kind.value)
        for reason in DropReason:
            metrics.syslog_drops.labels(reason=reason.value)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            got, forced = receive_buffer(sock, self._rcvbuf)
            sock.bind(self._bind)
            sock.setblocking(False)
            self._loop.add_reader(sock.fileno(), self._ready, sock)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self.address = sock.getsockname()
        self._flusher = self._loop.call_later(FLUSH_INTERVAL, self._flush)
        self._metrics.syslog_receive_buffer.set(got)
        self._log.info("syslog.started", address=f"{self.address[0]}:{self.address[1]}",
                       rate_limit=self.admission.rate, receive_buffer=got, receive_buffer_forced=forced)
        if got < 2 * self._rcvbuf:  # the kernel reports twice what it grants
            self._log.warning("syslog.receive_buffer_capped", asked=self._rcvbuf, got=got,
                              hint="grant CAP_NET_ADMIN or raise net.core.rmem_max (systemd/bootstrapd.sysctl)")

    async def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None:
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        self.flush()

    def reload(self, site: Site) -> None:
        """New subnets and rate limit; the port applies at restart."""
        if site.syslog is not None:
            self.admission.reconfigure(staging_networks(site), site.syslog.rate_limit)

    def _ready(self, sock: socket.socket) -> None:
        known = self._known if self._known is not None and self._clock() < self._shed_until else None
        shed = known is not None
        if self._shedding and not shed:
            self._shedding = False
            self._log.info("syslog.shedding_ended")
        budget = RECV_BUDGET * SHED_WEIGHT
        # While shedding, with `refresh`: what came from senders without a lease (yet), kept until the end of
        # the wakeup (at most RECV_BUDGET * SHED_WEIGHT datagrams of up to MAX_DATAGRAM bytes); without it,
        # only counted.
        unknown: list[tuple[bytes, str]] = []
        refresh, shed_count = self._refresh, 0
        try:
            while budget > 0:
                try:
                    data, (host, _port) = sock.recvfrom(MAX_DATAGRAM + 1)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError as e:  # e.g. ICMP errors queued on the socket: never fatal to the sink
                    self._log.debug("syslog.receive_failed", error=str(e))
                    break
                if known is not None and not known(host):
                    if refresh is None:  # nothing could make it known: just count it
                        shed_count += 1
                    else:
                        unknown.append((data, host))
                    budget -= 1
                    continue
                budget -= SHED_WEIGHT
                self.handle(data, IPv4Address(host), host)
        finally:
            if unknown:
                self._shed(unknown)
            if shed_count:
                self._drops[DropReason.SHED] = self._drops.get(DropReason.SHED, 0) + shed_count
        if budget <= 0 and self._known is not None:  # probably more queued than we can parse
            self._shed_until = self._clock() + SHED_HOLD
            if not self._shedding:
                self._shedding = True
                self._log.info("syslog.shedding", hold=SHED_HOLD)

    def _shed(self, unknown: list[tuple[bytes, str]]) -> None:
        """Shed what came from senders without a lease, but first (once per wakeup) let `refresh` read the
        leases waiting in the DHCP workers' channels: a phone logs right after its ACK, and its lease
        reached that channel before the ACK left, so before its lines reached our socket."""
        count = len(unknown)
        known = self._known
        if self._refresh is not None and known is not None and self._refresh():
            for data, host in unknown:
                if known(host):
                    count -= 1
                    self.handle(data, IPv4Address(host), host)
        if count:
            self._drops[DropReason.SHED] = self._drops.get(DropReason.SHED, 0) + count

    def handle(self, data: bytes, source: IPv4Address, host: str | None = None) -> SyslogMessage | None:
        """One datagram from `source` (`host`: its dotted quad when the caller has it; str() of an address
        costs more than the rest of the log event's fields): the accepted message, or None when dropped."""
        reason = self.admission.admit(self._clock(), source, len(data))
        if reason is not None:
            self._drops[reason] = self._drops.get(reason, 0) + 1
            return None
        msg = parse(data)
        kind = msg.kind.value
        self._messages[kind] = self._messages.get(kind, 0) + 1
        self._log.info("syslog.message", source=host or str(source), mac=msg.mac, kind=kind, model=msg.model,
                       url=msg.url, error=msg.error, text=msg.text, severity=msg.severity)
        if self._on_message is not None:
            try:
                self._on_message(self._wall(), source, msg)
            except Exception as e:  # a bug in the hook: counted and logged, the sink keeps receiving
                self._errors += 1
                self._log.error("syslog.hook_error", error=repr(e))
        return msg

    def flush(self) -> None:
        """Push the counts since the last flush to Prometheus (and log a summary of drops)."""
        m = self._metrics
        messages, drops, errors = self._messages, self._drops, self._errors
        self._messages, self._drops, self._errors = {}, {}, 0
        for kind, n in messages.items():
            m.syslog_messages.labels(kind=kind).inc(n)
        for reason, n in drops.items():
            m.syslog_drops.labels(reason=reason.value).inc(n)
        if errors:
            m.syslog_errors.inc(errors)
        m.syslog_sources.set(len(self.admission))
        if self.address is not None:  # /proc/net/udp of this namespace: a few sockets, read once a second
            m.syslog_kernel_drops.set(kernel_udp_drops(self.address[1]))
        if drops:
            self._log.info("syslog.dropped", **{r.value: n for r, n in drops.items()})

    def _flush(self) -> None:
        self.flush()
        assert self._loop is not None
        self._flusher = self._loop.call_later(FLUSH_INTERVAL, self._flush)
