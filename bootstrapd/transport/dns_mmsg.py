"""Batched UDP I/O for the DNS server: recvmmsg(2) and sendmmsg(2) through ctypes (Linux).

Why: measured on loopback, a Python server spends most of each query in two system calls, and sendto
alone (which also wakes the client) costs several times the whole prepared-answer lookup. Reading up to
`batch` datagrams with one recvmmsg and answering them with one sendmmsg put bootstrapd on par with NSD
(bench/dns/README.md). Python's socket module has no binding for these calls, hence ctypes; where they
are missing, `available()` is False and the server falls back to recvfrom/sendto.

Buffers are allocated once. `exchange` reads up to `batch` datagrams into slots, answers each through a
callback and sends the answers with one call. One instance per socket, used from one thread.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys
from collections.abc import Callable
from ctypes import POINTER, Structure, c_int, c_size_t, c_uint, c_uint32, c_void_p
from typing import Any, TypeVar

T = TypeVar("T")
_NAME_LEN = 28  # sizeof(struct sockaddr_in6): room for either family


class _Iovec(Structure):
    _fields_ = (("iov_base", c_void_p), ("iov_len", c_size_t))


class _Msghdr(Structure):
    _fields_ = (
        ("msg_name", c_void_p),
        ("msg_namelen", c_uint32),
        ("msg_iov", POINTER(_Iovec)),
        ("msg_iovlen", c_size_t),
        ("msg_control", c_void_p),
        ("msg_controllen", c_size_t),
        ("msg_flags", c_int),
    )


class _Mmsghdr(Structure):
    _fields_ = (("msg_hdr", _Msghdr), ("msg_len", c_uint))


def _libc() -> Any:
    if not sys.platform.startswith("linux") or os.environ.get("BOOTSTRAPD_DNS_NO_MMSG"):
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.recvmmsg.restype = c_int
        libc.sendmmsg.restype = c_int
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc()


def available() -> bool:
    """True when recvmmsg/sendmmsg can be used (Linux, unless BOOTSTRAPD_DNS_NO_MMSG is set)."""
    return _LIBC is not None


class BatchSocket:
    def __init__(self, sock: socket.socket, batch: int = 64, slot: int = 4096) -> None:
        if _LIBC is None:
            raise OSError(errno.ENOSYS, "recvmmsg/sendmmsg unavailable")
        self.sock, self.batch, self.slot = sock, batch, slot
        self._fd = sock.fileno()
        self._rbuf = ctypes.create_string_buffer(batch * slot)
        self._sbuf = ctypes.create_string_buffer(batch * slot)
        self._names = ctypes.create_string_buffer(batch * _NAME_LEN)
        self._rmsgs = (_Mmsghdr * batch)()
        self._smsgs = (_Mmsghdr * batch)()
        self._riov = (_Iovec * batch)()
        self._siov = (_Iovec * batch)()
        rbase, sbase = ctypes.addressof(self._rbuf), ctypes.addressof(self._sbuf)
        nbase = ctypes.addressof(self._names)
        self._raddr = [rbase + i * slot for i in range(batch)]
        self._saddr = [sbase + i * slot for i in range(batch)]
        self._naddr = [nbase + i * _NAME_LEN for i in range(batch)]
        for i in range(batch):
            self._riov[i].iov_base, self._riov[i].iov_len = self._raddr[i], slot
            self._siov[i].iov_base = self._saddr[i]
            _point(self._rmsgs[i].msg_hdr, self._naddr[i], self._riov, i)
            _point(self._smsgs[i].msg_hdr, 0, self._siov, i)
        self._rmsg = [self._rmsgs[i] for i in range(batch)]
        self._rhdr = [m.msg_hdr for m in self._rmsg]
        self._shdr = [self._smsgs[i].msg_hdr for i in range(batch)]
        self._siovs = [self._siov[i] for i in range(batch)]
        self._queued = 0
        self._failed = 0
        self._filled = 0
        self._string_at, self._memmove = ctypes.string_at, ctypes.memmove

    def recv(self) -> int:
        """Read up to `batch` datagrams without blocking; 0 when none is waiting."""
        for hdr in self._rhdr[: self._filled]:  # the kernel shrank these to the sender's address size
            hdr.msg_namelen = _NAME_LEN
        n: int = _LIBC.recvmmsg(self._fd, self._rmsgs, self.batch, socket.MSG_DONTWAIT, None)
        self._filled = max(n, 0)
        if n < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        return n

    def peer(self, i: int) -> tuple[str, int]:
        """Slot i's sender (for logs)."""
        raw = self._string_at(self._naddr[i], self._rhdr[i].msg_namelen)
        family = int.from_bytes(raw[:2], sys.byteorder)
        if family == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")
        return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")

    def reply(self, i: int, data: bytes) -> None:
        """Queue `data` for slot i's sender; an answer too big for a slot goes out at once."""
        j = self._queued
        if len(data) > self.slot:
            try:
                self.sock.sendto(data, self.peer(i))
            except OSError:
                self._failed += 1
            return
        self._memmove(self._saddr[j], data, len(data))
        self._siovs[j].iov_len = len(data)
        hdr = self._shdr[j]
        hdr.msg_name = self._naddr[i]
        hdr.msg_namelen = self._rhdr[i].msg_namelen
        self._queued = j + 1

    def exchange(self, respond: Callable[[bytes], tuple[bytes | None, T]]) -> tuple[list[T], int, int]:
        """One round: read a batch, answer each datagram with `respond`, send the answers together.

        Returns the outcomes in slot order (`peer(i)` stays valid until the next round), how many answers
        were queued and how many of those could not be sent. The loop inlines `message` and `reply`.
        """
        n = self.recv()
        if not n:
            return [], 0, 0
        outcomes = []
        string_at, memmove, slot = self._string_at, self._memmove, self.slot
        raddr, rmsg, rhdr, naddr = self._raddr, self._rmsg, self._rhdr, self._naddr
        saddr, siovs, shdr = self._saddr, self._siovs, self._shdr
        answered = 0
        for i in range(n):
            answer, outcome = respond(string_at(raddr[i], rmsg[i].msg_len))
            outcomes.append(outcome)
            if answer is None:
                continue
            answered += 1
            size = len(answer)
            if size > slot:
                self.reply(i, answer)
                continue
            j = self._queued
            memmove(saddr[j], answer, size)
            siovs[j].iov_len = size
            hdr = shdr[j]
            hdr.msg_name = naddr[i]
            hdr.msg_namelen = rhdr[i].msg_namelen
            self._queued = j + 1
        return outcomes, answered, self.flush()

    def flush(self) -> int:
        """Send every queued answer; returns how many could not be sent (full buffer, unreachable)."""
        failed, k, total = self._failed, 0, self._queued
        self._queued = self._failed = 0
        size = ctypes.sizeof(_Mmsghdr)
        while k < total:
            sent = _LIBC.sendmmsg(self._fd, ctypes.byref(self._smsgs, k * size), total - k, socket.MSG_DONTWAIT)
            if sent <= 0:  # the message at k failed: skip it, keep the rest
                failed += 1
                k += 1
            else:
                k += sent
        return failed


def _point(hdr: _Msghdr, name: int, iovs: Any, i: int) -> None:
    hdr.msg_name = name
    hdr.msg_namelen = _NAME_LEN
    hdr.msg_iov = ctypes.cast(ctypes.byref(iovs, i * ctypes.sizeof(_Iovec)), POINTER(_Iovec))
    hdr.msg_iovlen = 1
