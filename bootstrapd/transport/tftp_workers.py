"""The main process's side of the TFTP transfer workers (`files.tftp.workers`, transport/tftp_worker.py).

Lock-step transfers of big files are bound by the round trip per block, and one event loop serves every
block of every transfer from one core. The workers spread them over the other cores: the main process
answers the RRQ as always (resolution, jail, negotiation, the OACK or first DATA), then hands a transfer
of a big file (a descriptor-backed shared file: above files_cache.SNAPSHOT_MAX) to the least busy worker
with room, passing the transfer's socket and the file's descriptor over a Unix socketpair (SCM_RIGHTS).
The worker's report comes back here and the server finishes the transfer exactly as an in-loop one (log,
metrics, `on_fetch`, session count), so the cap and the device tracker see no difference.

Workers are spawned (fork+exec of `python -m bootstrapd.transport.tftp_worker`) at start. One that dies
ends its transfers as Refused `worker_lost` and is started again; one that keeps dying within seconds of
its start is given up (its share stays in the loop). At most PER_WORKER transfers per worker; beyond
that, or when a hand-off fails, a transfer simply stays in the main loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bootstrapd
from bootstrapd.tftp.options import Negotiated
from bootstrapd.tftp.session import Closed, End, Progress, Timing
from bootstrapd.transport.files_cache import Key

PER_WORKER = 256  # transfers one worker holds; more would only queue behind the same core
QUICK_DEATH = 5.0  # seconds: a worker dying this soon after its start counts towards giving up
MAX_QUICK_DEATHS = 3
RECV_REPORT = 1 << 16

Report = dict[str, Any]


def job_header(peer: tuple[str, int], negotiated: Negotiated, timing: Timing, key: Key,
               progress: Progress) -> Report:
    """What a worker needs to go on with a transfer (tftp_worker.session_from reads it back)."""
    return {"peer": list(peer), "blksize": negotiated.blksize, "windowsize": negotiated.windowsize,
            "timeout": negotiated.timeout, "oack": [list(o) for o in negotiated.oack],
            "timing": [timing.timeout, timing.retries, timing.max_wait], "key": list(key),
            "progress": list(dataclasses.astuple(progress))}


def closed_of(report: Report) -> Closed:
    """How a worker's transfer ended, from its report."""
    try:
        end = End(report["end"])
    except ValueError:
        end = End.ABORTED
    return Closed(end, int(report["error"]), str(report["detail"] or ""))


def default_workers() -> int:
    """CPUs this process may run on minus the one the event loop keeps, but two on two CPUs (the loop is
    idle while big files go out, and one worker leaves the second core unused), none on one CPU."""
    cpus = len(os.sched_getaffinity(0))
    return 0 if cpus < 2 else max(2, cpus - 1)


class Slot:
    __slots__ = ("deaths", "index", "jobs", "proc", "sock", "started")

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.sock: socket.socket | None = None
        self.jobs: dict[int, Any] = {}  # job id -> the server's Transfer
        self.started = 0.0
        self.deaths = 0  # quick deaths in a row


class Workers:
    def __init__(self, count: int, on_report: Callable[[Any, Report], None], on_lost: Callable[[Any], None],
                 on_restart: Callable[[], None], log: Any, command: list[str] | None = None) -> None:
        self.slots = [Slot(i) for i in range(count)]
        self.command = command or [sys.executable, "-m", "bootstrapd.transport.tftp_worker"]
        self.on_report, self.on_lost, self.on_restart, self.log = on_report, on_lost, on_restart, log
        self.loop: asyncio.AbstractEventLoop | None = None
        self._next_id = 0

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        for slot in self.slots:
            self._spawn(slot)

    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.slots if s.proc is not None and s.sock is not None]

    def _spawn(self, slot: Slot) -> None:
        assert self.loop is not None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # The package's own directory first on the path, whatever the daemon's working directory.
        src = str(Path(bootstrapd.__file__).resolve().parents[1])
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (src, os.environ.get("PYTHONPATH")) if p))
        try:
            slot.proc = subprocess.Popen(
                [*self.command, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, env=env)
        except OSError as exc:
            ours.close()
            self.log.error("tftp.worker_failed", worker=slot.index, error=str(exc))
            return
        finally:
            theirs.close()
        ours.setblocking(False)
        slot.sock, slot.started = ours, time.monotonic()
        self.loop.add_reader(ours.fileno(), self._readable, slot)
        self.log.info("tftp.worker_started", worker=slot.index, pid=slot.proc.pid)

    def offer(self, transfer: Any, header: Report, fds: list[int]) -> bool:
        """Hand a started transfer to the least busy worker; False when none can take it (it stays here)."""
        live = [s for s in self.slots if s.sock is not None and len(s.jobs) < PER_WORKER]
        if not live:
            return False
        slot = min(live, key=lambda s: len(s.jobs))
        self._next_id += 1
        header = dict(header, id=self._next_id)
        assert slot.sock is not None
        try:
            socket.send_fds(slot.sock, [json.dumps(header).encode()], fds)
        except OSError:
            return False  # the socket's buffer is full or the worker just died: serve it here
        slot.jobs[self._next_id] = transfer
        return True

    def _readable(self, slot: Slot) -> None:
        for _ in range(64):
            if slot.sock is None:
                return
            try:
                msg = slot.sock.recv(RECV_REPORT)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg = b""
            if not msg:
                return self._lost(slot)
            try:
                report = json.loads(msg)
                transfer = slot.jobs.pop(int(report["id"]))
            except (ValueError, KeyError, TypeError):
                self.log.error("tftp.worker_report_bad", worker=slot.index, report=msg[:200].decode("latin-1"))
                continue
            self.on_report(transfer, report)

    def _lost(self, slot: Slot) -> None:
        """The worker died (or closed its end): its transfers end here, and it is started again."""
        code = self._close(slot, wait=1.0)
        jobs, slot.jobs = slot.jobs, {}
        self.log.error("tftp.worker_lost", worker=slot.index, returncode=code, transfers=len(jobs))
        for transfer in jobs.values():
            self.on_lost(transfer)
        quick = time.monotonic() - slot.started < QUICK_DEATH
        slot.deaths = slot.deaths + 1 if quick else 0
        if slot.deaths >= MAX_QUICK_DEATHS:
            self.log.error("tftp.worker_given_up", worker=slot.index, deaths=slot.deaths)
            return
        self.on_restart()
        self._spawn(slot)

    def _close(self, slot: Slot, wait: float) -> int | None:
        if slot.sock is not None:
            if self.loop is not None:
                self.loop.remove_reader(slot.sock.fileno())
            slot.sock.close()  # the worker sees EOF and exits
            slot.sock = None
        proc, slot.proc = slot.proc, None
        if proc is None:
            return None
        try:
            return proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                return proc.wait(1.0)
        return None

    def stop(self) -> None:
        """Stop every worker (the server ends the transfers they held as shut down)."""
        for slot in self.slots:
            slot.jobs = {}
            if slot.sock is not None:
                assert self.loop is not None
                self.loop.remove_reader(slot.sock.fileno())
                slot.sock.close()  # all of them see EOF at once, then each is waited for
                slot.sock = None
        for slot in self.slots:
            self._close(slot, wait=2.0)
