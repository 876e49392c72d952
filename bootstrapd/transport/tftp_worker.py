"""A TFTP transfer worker process: continues big transfers the main process started, on a core of its own.

`python -m bootstrapd.transport.tftp_worker FD`, spawned by transport/tftp_workers.py with one end of a
SOCK_SEQPACKET socketpair as FD. Each message from the main process is one transfer: a JSON header (peer,
negotiated options, timing, the file's identity, the session's `Progress`) with two descriptors attached
(SCM_RIGHTS): the transfer's UDP socket and the open file. The worker rebuilds the same pure `Session` and
serves all its transfers from one epoll and a timer heap, without an asyncio loop in between; when a
transfer ends it sends one JSON report back (how it ended, bytes, retransmissions, unknown-TID datagrams).
The main process logs, counts and hands on the outcome as for any transfer.

The worker exits when the main process closes its end (stop, or the main process died). It ignores SIGINT
and SIGTERM, which reach the whole process group or cgroup on Ctrl-C or `systemctl stop`: the main process
decides when transfers end.
"""

from __future__ import annotations

import contextlib
import heapq
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from bootstrapd.tftp import packet
from bootstrapd.tftp.options import Negotiated
from bootstrapd.tftp.packet import ErrorCode
from bootstrapd.tftp.session import Closed, End, Progress, Session, Step, Timing
from bootstrapd.transport.files_cache import Reader, SharedFile

RECV_SESSION = 2048  # as the main process: ACKs are 4 bytes, anything longer is garbage, truncated
RECV_CONTROL = 1 << 16
POLL_MAX = 256
INTERNAL = "internal_error"  # the shell's Reason.INTERNAL_ERROR
ERROR_5 = packet.encode_error(ErrorCode.UNKNOWN_TID, "Unknown transfer ID")


class Job:
    __slots__ = ("armed", "file_fd", "id", "peer", "session", "sock", "unknown_tid")

    def __init__(self, job_id: int, sock: socket.socket, file_fd: int, peer: tuple[str, int],
                 session: Session) -> None:
        self.id, self.sock, self.file_fd, self.peer, self.session = job_id, sock, file_fd, peer, session
        self.armed = False  # one timer-heap entry at most (lazy timers, as in the main process)
        self.unknown_tid = 0


def session_from(header: dict[str, Any], file_fd: int) -> Session:
    """The session a job header describes, over the file descriptor that came with it."""
    key = tuple(header["key"])
    shared = SharedFile((key[0], key[1], key[2], key[3]), int(key[3]), fd=file_fd)
    oack = tuple((str(n), str(v)) for n, v in header["oack"])
    negotiated = Negotiated(int(header["blksize"]), int(header["windowsize"]), header["timeout"], oack)
    session = Session(Reader(shared), negotiated, Timing(*header["timing"]))
    session.resume(Progress(*header["progress"]))
    return session


class Worker:
    def __init__(self, control: socket.socket) -> None:
        self.control = control
        self.epoll = select.epoll()
        self.epoll.register(control.fileno(), select.EPOLLIN)
        self.jobs: dict[int, Job] = {}  # by socket descriptor
        self.timers: list[tuple[float, int, Job]] = []
        self._seq = 0

    def run(self) -> None:
        control_fd, jobs, poll, monotonic, timers = self.control.fileno(), self.jobs, self.epoll.poll, \
            time.monotonic, self.timers
        while True:
            timeout = max(0.0, timers[0][0] - monotonic()) if timers else -1.0
            ready = poll(timeout, POLL_MAX)
            now = monotonic()  # one clock reading per batch: the batch takes well under a millisecond
            for fd, _ in ready:
                job = jobs.get(fd)
                if job is None:
                    if fd == control_fd and not self._control():
                        return
                    continue
                sock = job.sock
                try:
                    data, addr = sock.recvfrom(RECV_SESSION)
                except OSError:
                    continue  # nothing after all, or an ICMP error: the timer decides
                if addr != job.peer:
                    self._stranger(job, addr)
                    continue
                try:
                    step = job.session.receive(data, now)
                except Exception as exc:  # a bug ends this transfer, not the worker's others
                    self._finish(job, Closed(End.ABORTED, detail=f"worker error: {exc!r}"), INTERNAL)
                    continue
                if step.closed is None and len(step.send) == 1 and job.armed:  # lock-step's common case
                    with contextlib.suppress(OSError):  # a full buffer: the retransmission timer covers it
                        sock.sendto(step.send[0], addr)
                else:
                    self._apply(job, step)
            if timers and timers[0][0] <= now:
                self._expire(now)

    def _stranger(self, job: Job, addr: tuple[str, int]) -> None:
        """RFC 1350 section 4: a datagram from another TID gets ERROR 5, and the transfer goes on."""
        job.unknown_tid += 1
        with contextlib.suppress(OSError):
            job.sock.sendto(ERROR_5, addr)

    def _expire(self, now: float) -> None:
        timers = self.timers
        while timers and timers[0][0] <= now:
            job = heapq.heappop(timers)[2]
            job.armed = False
            if self.jobs.get(job.sock.fileno()) is not job:
                continue  # ended meanwhile
            if now < job.session.deadline:
                self._arm(job, job.session.deadline)
                continue
            try:
                step = job.session.expire(now)
            except Exception as exc:
                self._finish(job, Closed(End.ABORTED, detail=f"worker error: {exc!r}"), INTERNAL)
                continue
            self._apply(job, step)

    def _arm(self, job: Job, deadline: float) -> None:
        self._seq += 1
        heapq.heappush(self.timers, (deadline, self._seq, job))
        job.armed = True

    def _apply(self, job: Job, step: Step) -> None:
        sendto, peer = job.sock.sendto, job.peer
        for datagram in step.send:
            try:
                sendto(datagram, peer)
            except OSError:
                break  # send buffer full or network down: the retransmission timer covers it
        if step.closed is not None:
            self._finish(job, step.closed)
        elif not job.armed and step.deadline is not None:
            self._arm(job, step.deadline)

    def _control(self) -> bool:
        """One job from the main process; False when the main process closed its end."""
        try:
            msg, fds, _, _ = socket.recv_fds(self.control, RECV_CONTROL, 2)
        except InterruptedError:
            return True
        if not msg and not fds:
            return False
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            return True
        sock = socket.socket(fileno=fds[0])
        try:
            header = json.loads(msg)
            session = session_from(header, fds[1])
            peer = (str(header["peer"][0]), int(header["peer"][1]))
        except (ValueError, KeyError, TypeError, IndexError):
            sock.close()
            os.close(fds[1])
            return True  # a malformed job cannot be reported against anything: the main process's bug
        sock.setblocking(False)
        job = Job(int(header["id"]), sock, fds[1], peer, session)
        self.jobs[sock.fileno()] = job
        self.epoll.register(sock.fileno(), select.EPOLLIN)
        self._arm(job, session.deadline)
        return True

    def _finish(self, job: Job, closed: Closed, reason: str | None = None) -> None:
        del self.jobs[job.sock.fileno()]
        self.epoll.unregister(job.sock.fileno())
        job.sock.close()
        os.close(job.file_fd)
        s = job.session
        report = {"id": job.id, "end": closed.end.value, "error": closed.error_sent, "detail": closed.detail,
                  "sent": s.payload_sent, "retransmits": s.retransmits, "unknown_tid": job.unknown_tid,
                  "reason": reason}
        self.control.send(json.dumps(report).encode())


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    control = socket.socket(fileno=int(argv[0]))
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the main process went away
        Worker(control).run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
