"""The TFTP shell: the request socket, one socket per transfer, timers, the shared files, logs and metrics.

Requests arrive on `address:port`. Each accepted RRQ gets its own socket bound to the local address the
RRQ was sent to (port ephemeral, RFC 1350 section 4), so replies leave from the address the client used.
A datagram on a transfer's socket from another address or port gets ERROR 5 and the transfer goes on.
Write requests get ERROR 2; nothing is ever written. At most `max_sessions` transfers run at once; the
rest get ERROR 0 "server busy" and are counted. Each transfer's end is one `Fetched`/`Refused` value,
logged as `files.fetch`, counted, and handed to `on_fetch`.

Timers are lazy: a transfer keeps one `call_at` handle; ACKs only move the session's deadline, and a timer
that fires early re-arms itself for the current deadline. A small transfer thus costs one timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from bootstrapd.files.outcome import Device, Fetched, FileRequest, Miss, MissReason, Protocol, Refused, Rendered, Static
from bootstrapd.observability.metrics import Metrics
from bootstrapd.tftp import packet
from bootstrapd.tftp.options import Limits, Negotiated, negotiate
from bootstrapd.tftp.packet import ErrorCode, Mode, Opcode, Request, TftpParseError
from bootstrapd.tftp.session import Closed, End, Session, Source, Step, Timing, netascii
from bootstrapd.transport.files_cache import BytesSource, FileCache, Reader, SharedFile
from bootstrapd.transport.tftp_support import (
    IP_PKTINFO,
    MISS_ERROR,
    MISS_TEXT,
    Reason,
    Unavailable,
    fetch_fields,
    interface_mtu,
    local_address,
)
from bootstrapd.transport.tftp_workers import Report, Workers, closed_of, job_header

RECV_REQUEST = packet.MAX_REQUEST + 1  # one byte more than a request may have: longer ones are refused
RECV_SESSION = 2048  # ACKs are 4 bytes; anything longer from the client is garbage, truncated
POLL_MAX = 256  # ready transfers served per poll
POLL_ROUNDS = 8  # polls per event-loop wake-up before yielding to the other services
BURST = 64  # datagrams read per wake-up before yielding to the loop
NETASCII_MAX = 16 << 20  # netascii is translated in memory; firmware is never asked for in netascii
PKTINFO_SPACE = socket.CMSG_SPACE(12)

Resolve = Callable[[FileRequest], Rendered | Static | Miss]
OnFetch = Callable[[Fetched | Refused], None]


class Transfer:
    """One RRQ being served: its socket, its session, its timer."""

    __slots__ = (
        "fd",
        "peer",
        "request",
        "resolution",
        "server",
        "session",
        "shared",
        "sock",
        "started",
        "timer",
    )

    def __init__(self, server: TftpServer, sock: socket.socket, session: Session, request: FileRequest,
                 resolution: Rendered | Static, peer: tuple[str, int], shared: SharedFile | None) -> None:
        self.server, self.sock, self.session = server, sock, session
        self.request, self.resolution, self.peer, self.shared = request, resolution, peer, shared
        self.started = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.fd = sock.fileno()  # -1 once handed to a worker process

    def handed_off(self) -> None:
        """A worker serves the socket now: this process stops watching it, and keeps its copy only to send
        the client an ERROR should the worker die."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        self.server.unwatch(self.fd)
        self.fd = -1

    def readable(self) -> None:
        # One datagram per wake-up: a transfer socket rarely holds more than one ACK, and the poller is
        # level-triggered, so a second read would mostly cost a failing system call and an exception.
        try:
            data, addr = self.sock.recvfrom(RECV_SESSION)
        except OSError:
            return  # nothing after all, or ICMP port unreachable and the like: the timer decides
        if addr != self.peer:
            self.server.unknown_tid(self.sock, addr)
            return
        step = self.session.receive(data, self.server.now())
        if step.closed is None and len(step.send) == 1 and self.timer is not None:  # lock-step's common case
            with contextlib.suppress(OSError):  # a full buffer: the retransmission timer covers it
                self.sock.sendto(step.send[0], addr)
            return
        self.apply(step)

    def expire(self) -> None:
        self.timer = None
        loop = self.server.loop
        now = loop.time()
        if now < self.session.deadline:
            self.timer = loop.call_at(self.session.deadline, self.expire)
            return
        self.apply(self.session.expire(now))

    def apply(self, step: Step) -> bool:
        """Send what the step says; True when the transfer is over."""
        sendto, peer = self.sock.sendto, self.peer
        for datagram in step.send:
            try:
                sendto(datagram, peer)
            except OSError:
                break  # send buffer full or network down: the retransmission timer covers it
        if step.closed is not None:
            self.server.finish(self, step.closed)
            return True
        if self.timer is None and step.deadline is not None:
            self.timer = self.server.loop.call_at(step.deadline, self.expire)
        return False

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.fd >= 0:
            self.server.unwatch(self.fd)
        self.sock.close()
        if self.shared is not None:
            self.shared.release()
            self.shared = None


class TftpServer:
    def __init__(self, address: str, port: int, resolve: Resolve, on_fetch: OnFetch, metrics: Metrics,
                 log: Any, *, max_sessions: int = 1000, blksize_max: int = 1468, windowsize_max: int = 64,
                 timing: Timing | None = None, workers: int = 0) -> None:
        self.address, self.port = address, port
        self.resolve, self.on_fetch, self.metrics, self.log = resolve, on_fetch, metrics, log
        self.max_sessions = max_sessions
        self.blksize_max, self.windowsize_max = blksize_max, windowsize_max
        self.timing = timing or Timing()
        self.transfers: set[Transfer] = set()
        self.peak_sessions = 0  # the most transfers seen at once (tests check the cap holds)
        self.cache = FileCache()
        self.sock: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop  # set by start()
        self.now: Callable[[], float]  # the loop's clock, set by start()
        self._limits: dict[str, Limits] = {}  # per local address: the MTU of its interface
        self._wildcard = address in ("", "0.0.0.0")  # then IP_PKTINFO tells which address was asked
        # The transfers' sockets sit in one epoll of our own, itself one reader of the event loop: a wake-up
        # serves every ready transfer in one pass instead of one event-loop callback per socket, and a
        # transfer's start and end cost an epoll_ctl rather than a selector re-registration.
        self._epoll: select.epoll | None = None
        self._by_fd: dict[int, Transfer] = {}
        self.workers = Workers(workers, self._worker_report, self._worker_lost,
                               metrics.tftp_worker_restarts.inc, log) if workers > 0 else None
        m = metrics
        self._fetches = m.files_fetches
        self._bytes = m.files_bytes_sent.labels(Protocol.TFTP.value)
        self._sessions = m.tftp_sessions

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.now = self.loop.time
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((self.address, self.port))
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.port = sock.getsockname()[1]
        if self._wildcard:
            sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        self.loop.add_reader(sock.fileno(), self._readable)
        self._epoll = select.epoll()
        self.loop.add_reader(self._epoll.fileno(), self._poll)
        if self.workers is not None:
            self.workers.start(self.loop)
        self.log.info("tftp.started", address=self.address, port=self.port,
                      workers=len(self.workers.slots) if self.workers else 0)

    async def stop(self) -> None:
        if self.sock is not None:
            self.loop.remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
        if self.workers is not None:
            self.workers.stop()
        for transfer in list(self.transfers):
            self.finish(transfer, Closed(End.ABORTED, detail=Reason.SHUTDOWN.value), Reason.SHUTDOWN.value)
        if self._epoll is not None:
            self.loop.remove_reader(self._epoll.fileno())
            self._epoll.close()
            self._epoll = None
        self.cache.close()

    def _poll(self) -> None:
        if self._epoll is None:
            return
        by_fd, poll = self._by_fd, self._epoll.poll
        for _ in range(POLL_ROUNDS):  # ACKs that arrived while we sent are served before yielding
            ready = poll(0, POLL_MAX)
            if not ready:
                return
            for fd, _ in ready:
                transfer = by_fd.get(fd)
                if transfer is not None:
                    transfer.readable()

    def unwatch(self, fd: int) -> None:
        self._by_fd.pop(fd, None)
        if self._epoll is not None:
            with contextlib.suppress(OSError):
                self._epoll.unregister(fd)

    def _readable(self) -> None:
        assert self.sock is not None
        for _ in range(BURST):
            try:
                if self._wildcard:
                    data, anc, _, addr = self.sock.recvmsg(RECV_REQUEST, PKTINFO_SPACE)
                    local = local_address(anc) or self.address
                else:
                    data, addr = self.sock.recvfrom(RECV_REQUEST)
                    local = self.address
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            try:
                self._datagram(data, addr, local)
            except Exception as exc:  # a bug must not stop the listener
                self.metrics.tftp_drops.labels("internal_error").inc()
                self.log.error("tftp.internal_error", error=repr(exc), client=addr[0])

    def _datagram(self, data: bytes, addr: tuple[str, int], local: str) -> None:
        try:
            pkt = packet.parse(data)
        except TftpParseError as exc:
            self.metrics.tftp_drops.labels("parse_failed").inc()
            if data[:2] in (b"\x00\x01", b"\x00\x02"):  # a malformed request still gets told why
                self._error(addr, ErrorCode.ILLEGAL_OPERATION, "malformed request")
            self.log.debug("tftp.drop", reason="parse_failed", client=addr[0], error=str(exc))
            return
        if not isinstance(pkt, Request):
            self.metrics.tftp_drops.labels("not_a_request").inc()
            return
        request = FileRequest(pkt.filename, Protocol.TFTP, ipaddress.IPv4Address(addr[0]))
        if pkt.opcode is Opcode.WRQ:
            return self._refuse(request, addr, Reason.WRITE_REFUSED.value, ErrorCode.ACCESS_VIOLATION,
                                "Write not allowed")
        if pkt.mode not in (Mode.OCTET.value, Mode.NETASCII.value):
            return self._refuse(request, addr, Reason.BAD_MODE.value, ErrorCode.ILLEGAL_OPERATION,
                                "Unknown mode")
        if len(self.transfers) >= self.max_sessions:
            return self._refuse(request, addr, Reason.SESSION_LIMIT.value, ErrorCode.NOT_DEFINED,
                                "Server busy: too many transfers, retry later")
        self._serve(pkt, request, addr, local)

    def _serve(self, pkt: Request, request: FileRequest, addr: tuple[str, int], local: str) -> None:
        try:
            resolution = self.resolve(request)
        except Exception as exc:
            self.log.error("tftp.resolve_failed", error=repr(exc), requested=request.name)
            return self._refuse(request, addr, Reason.INTERNAL_ERROR.value, ErrorCode.NOT_DEFINED, "Server error")
        if isinstance(resolution, Miss):
            code = MISS_ERROR[resolution.reason]
            return self._refuse(request, addr, resolution.reason.value, code, MISS_TEXT[code], resolution.device)
        opened = self._source(resolution, pkt.mode == Mode.NETASCII.value)
        if isinstance(opened, Unavailable):
            code = opened.code
            return self._refuse(request, addr, opened.reason, code, MISS_TEXT[code], resolution.device)
        source, shared = opened
        negotiated = negotiate(pkt.options, self._limits_for(local), source.size)
        session = Session(source, negotiated, self.timing)
        try:
            sock = self._session_socket(local)
        except OSError as exc:
            if shared is not None:
                shared.release()
            self.log.error("tftp.socket_failed", error=str(exc))
            return self._refuse(request, addr, Reason.INTERNAL_ERROR.value, ErrorCode.NOT_DEFINED, "Server error")
        transfer = Transfer(self, sock, session, request, resolution, addr, shared)
        self.transfers.add(transfer)
        self.peak_sessions = max(self.peak_sessions, len(self.transfers))
        self._sessions.inc()
        assert self._epoll is not None
        self._epoll.register(transfer.fd, select.EPOLLIN)
        self._by_fd[transfer.fd] = transfer
        if not transfer.apply(session.start(self.loop.time())) and shared is not None and shared.fd >= 0:
            self._hand_off(transfer, shared, negotiated)

    def _hand_off(self, transfer: Transfer, shared: SharedFile, negotiated: Negotiated) -> None:
        """A big file's transfer, started here, goes on in a worker process when one has room."""
        if self.workers is None:
            return
        header = job_header(transfer.peer, negotiated, self.timing, shared.key, transfer.session.progress())
        if self.workers.offer(transfer, header, [transfer.fd, shared.fd]):
            transfer.handed_off()
            self.metrics.tftp_worker_transfers.inc()

    def _worker_report(self, transfer: Transfer, report: Report) -> None:
        session = transfer.session
        session.payload_sent, session.retransmits = int(report["sent"]), int(report["retransmits"])
        if report["unknown_tid"]:
            self.metrics.tftp_drops.labels("unknown_tid").inc(int(report["unknown_tid"]))
        self.finish(transfer, closed_of(report), report.get("reason"))

    def _worker_lost(self, transfer: Transfer) -> None:
        with contextlib.suppress(OSError):  # from the transfer's own port, so the client heeds it
            transfer.sock.sendto(packet.encode_error(ErrorCode.NOT_DEFINED, "Server error"), transfer.peer)
        self.finish(transfer, Closed(End.ABORTED, ErrorCode.NOT_DEFINED, "the transfer's worker process died"),
                    Reason.WORKER_LOST.value)

    def _limits_for(self, local: str) -> Limits:
        limits = self._limits.get(local)
        if limits is None:
            if len(self._limits) > 64:  # bounded: addresses come and go
                self._limits.clear()
            limits = self._limits[local] = Limits(self.blksize_max, self.windowsize_max, interface_mtu(local))
        return limits

    def _session_socket(self, local: str) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.bind((local, 0))  # the address the RRQ was sent to; an ephemeral port (TID)
        except BaseException:
            sock.close()
            raise
        return sock

    def _source(self, resolution: Rendered | Static,
                ascii_mode: bool) -> tuple[Source, SharedFile | None] | Unavailable:
        shared: SharedFile | None = None
        if isinstance(resolution, Rendered):
            source: Source = BytesSource(resolution.body)
        else:
            try:
                shared = self.cache.acquire(resolution.path)
            except FileNotFoundError:
                return Unavailable(MissReason.NOT_FOUND.value, ErrorCode.FILE_NOT_FOUND)
            except OSError:
                return Unavailable(MissReason.UNREADABLE.value, ErrorCode.ACCESS_VIOLATION)
            source = Reader(shared) if shared.fd >= 0 else shared
        if ascii_mode:
            if source.size > NETASCII_MAX:
                if shared is not None:
                    shared.release()
                return Unavailable(Reason.TOO_BIG_FOR_NETASCII.value, ErrorCode.NOT_DEFINED)
            text = source.read(0, source.size)
            if shared is not None:
                shared.release()
            return BytesSource(netascii(text)), None
        return source, shared

    def unknown_tid(self, sock: socket.socket, addr: tuple[str, int]) -> None:
        """RFC 1350 section 4: a packet from a TID not of this transfer gets ERROR 5; ours goes on."""
        self.metrics.tftp_drops.labels("unknown_tid").inc()
        with contextlib.suppress(OSError):
            sock.sendto(packet.encode_error(ErrorCode.UNKNOWN_TID, "Unknown transfer ID"), addr)

    def _error(self, addr: tuple[str, int], code: ErrorCode, text: str) -> None:
        assert self.sock is not None
        with contextlib.suppress(OSError):
            self.sock.sendto(packet.encode_error(code, text), addr)

    def _refuse(self, request: FileRequest, addr: tuple[str, int], reason: str, code: ErrorCode, text: str,
                device: Device | None = None) -> None:
        self._error(addr, code, text)
        self._end(Refused(request, reason, int(code), device), addr, None)

    def finish(self, transfer: Transfer, closed: Closed, reason: str | None = None) -> None:
        if transfer not in self.transfers:
            return
        self.transfers.discard(transfer)
        self._sessions.dec()
        transfer.close()
        session = transfer.session
        seconds = time.monotonic() - transfer.started
        self._bytes.inc(session.payload_sent)
        if session.retransmits:
            self.metrics.tftp_retransmissions.inc(session.retransmits)
        outcome: Fetched | Refused
        if closed.end is End.OK:
            outcome = Fetched(transfer.request, transfer.resolution, 0, session.source.size, seconds)
        else:
            outcome = Refused(transfer.request, reason or closed.end.value, closed.error_sent,
                              transfer.resolution.device, session.payload_sent, seconds)
        self._end(outcome, transfer.peer, transfer, closed.detail)

    def _end(self, outcome: Fetched | Refused, addr: tuple[str, int], transfer: Transfer | None,
             detail: str = "") -> None:
        fields = fetch_fields(outcome, addr, transfer.session if transfer else None, detail)
        if transfer is not None and isinstance(outcome, Refused):  # a refused transfer still had a file
            resolution = transfer.resolution
            fields["resolved"] = resolution.path if isinstance(resolution, Static) else resolution.profile
        self._fetches.labels(Protocol.TFTP.value, fields["result"]).inc()
        self.log.info("files.fetch", **fields)
        try:
            self.on_fetch(outcome)
        except Exception as exc:
            self.log.error("tftp.on_fetch_failed", error=repr(exc))
