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
import threading
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


def _fast(name: str, restype: Any = c_int) -> Any:
    """`name` from a libc handle without use_errno: ctypes' saving of errno around every call costs
    about a third of a small round's call overhead, and only a failed recvmmsg needs errno."""
    if _LIBC is None:
        return None
    function = getattr(ctypes.CDLL(None), name)
    function.restype = restype
    return function


_LIBC = _libc()
_RECVMMSG, _SENDMMSG = _fast("recvmmsg"), _fast("sendmmsg")
_ERRNO_LOCATION = _fast("__errno_location", POINTER(c_int))


def _errno_cell() -> c_int:
    """This thread's errno as a ctypes int at its address, which stays fixed for the thread's life: reading
    `.value` then costs a fraction of calling __errno_location after every empty read (once per wakeup)."""
    return c_int.from_address(ctypes.addressof(_ERRNO_LOCATION().contents))

# Field positions in the header arrays, read and written through integer views (memoryview indexing
# costs a fraction of a ctypes attribute access).
_U32, _PTR = ctypes.sizeof(c_uint32), ctypes.sizeof(c_void_p)


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
        self._naddr = [nbase + i * _NAME_LEN for i in range(batch)]
        for i in range(batch):
            self._riov[i].iov_base, self._riov[i].iov_len = rbase + i * slot, slot
            self._siov[i].iov_base = sbase + i * slot
            _point(self._rmsgs[i].msg_hdr, self._naddr[i], self._riov, i)
            _point(self._smsgs[i].msg_hdr, 0, self._siov, i)
        self._rview, self._sview = _bytes(self._rbuf), _bytes(self._sbuf)
        self._nview = _bytes(self._names)
        self._r32, self._s32 = _bytes(self._rmsgs).cast("I"), _bytes(self._smsgs).cast("I")
        self._sptr, self._siovptr = _bytes(self._smsgs).cast("P"), _bytes(self._siov).cast("P")
        # Per slot: where its message length, name length, name pointer and iov_len sit in those views.
        self._len_at = _index(batch, _Mmsghdr, _Mmsghdr.msg_len.offset, _U32)
        self._namelen_at = _index(batch, _Mmsghdr, _Msghdr.msg_namelen.offset, _U32)
        self._name_at = _index(batch, _Mmsghdr, _Msghdr.msg_name.offset, _PTR)
        self._iovlen_at = _index(batch, _Iovec, _Iovec.iov_len.offset, _PTR)
        self._queued = 0
        self._failed = 0
        self._filled = 0
        # An AF_INET socket's senders all have 16-byte addresses: what the kernel leaves is still enough.
        self._reset_names = sock.family != socket.AF_INET
        self._errno_thread, self._errno = 0, c_int()  # the errno cell of the thread that last saw a failure

    def recv(self) -> int:
        """Read up to `batch` datagrams without blocking; 0 when none is waiting."""
        if self._reset_names:  # the kernel shrank these to the sender's address size
            r32, namelen_at = self._r32, self._namelen_at
            for i in range(self._filled):
                r32[namelen_at[i]] = _NAME_LEN
        n: int = _RECVMMSG(self._fd, self._rmsgs, self.batch, socket.MSG_DONTWAIT, None)
        self._filled = max(n, 0)
        if n < 0:
            if self._errno_thread != threading.get_ident():  # first failure in this thread: find its errno
                self._errno_thread, self._errno = threading.get_ident(), _errno_cell()
            err = self._errno.value  # read right after the failed call: nothing in between sets errno
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        return n

    def peer(self, i: int) -> tuple[str, int]:
        """Slot i's sender (for logs)."""
        start = i * _NAME_LEN
        raw = bytes(self._nview[start : start + self._r32[self._namelen_at[i]]])
        family = int.from_bytes(raw[:2], sys.byteorder)
        if family == socket.AF_INET6:
            return socket.inet_ntop(socket.AF_INET6, raw[8:24]), int.from_bytes(raw[2:4], "big")
        return socket.inet_ntoa(raw[4:8]), int.from_bytes(raw[2:4], "big")

    def reply(self, i: int, data: bytes) -> None:
        """Queue `data` for slot i's sender; an answer too big for a slot goes out at once."""
        j, size = self._queued, len(data)
        if size > self.slot:
            try:
                self.sock.sendto(data, self.peer(i))
            except OSError:
                self._failed += 1
            return
        self._sview[j * self.slot : j * self.slot + size] = data
        self._siovptr[self._iovlen_at[j]] = size
        self._sptr[self._name_at[j]] = self._naddr[i]
        self._s32[self._namelen_at[j]] = self._r32[self._namelen_at[i]]
        self._queued = j + 1

    def exchange(self, respond: Callable[[bytes], tuple[bytes | None, T]]) -> tuple[list[T], int, int]:
        """One round: read a batch, answer each datagram with `respond`, send the answers together.

        Returns the outcomes in slot order (`peer(i)` stays valid until the next round), how many answers
        were queued and how many of those could not be sent. The loop inlines `reply`.
        """
        n = self.recv()
        if not n:
            return [], 0, 0
        outcomes: list[T] = []
        slot, rview, sview, r32, s32 = self.slot, self._rview, self._sview, self._r32, self._s32
        len_at, namelen_at, name_at, iovlen_at = self._len_at, self._namelen_at, self._name_at, self._iovlen_at
        sptr, siovptr, naddr = self._sptr, self._siovptr, self._naddr
        append = outcomes.append
        answered = 0
        j = self._queued
        for i in range(n):
            start = i * slot
            answer, outcome = respond(bytes(rview[start : start + r32[len_at[i]]]))
            append(outcome)
            if answer is None:
                continue
            answered += 1
            size = len(answer)
            if size > slot:  # sent at once, by itself: the queue is untouched
                self.reply(i, answer)
                continue
            start = j * slot
            sview[start : start + size] = answer
            siovptr[iovlen_at[j]] = size
            sptr[name_at[j]] = naddr[i]
            s32[namelen_at[j]] = r32[namelen_at[i]]
            j += 1
        self._queued = j
        return outcomes, answered, self.flush()

    def flush(self) -> int:
        """Send every queued answer; returns how many could not be sent (full buffer, unreachable)."""
        failed, total = self._failed, self._queued
        self._queued = self._failed = 0
        if not total:
            return failed
        sent = _SENDMMSG(self._fd, self._smsgs, total, socket.MSG_DONTWAIT)
        if sent == total:
            return failed
        k, size = 0, ctypes.sizeof(_Mmsghdr)
        while k < total:
            if sent <= 0:  # the message at k failed: skip it, keep the rest
                failed += 1
                k += 1
            else:
                k += sent
            if k < total:
                sent = _SENDMMSG(self._fd, ctypes.byref(self._smsgs, k * size), total - k, socket.MSG_DONTWAIT)
        return failed


def _bytes(obj: Any) -> memoryview:
    return memoryview(obj).cast("B")


def _index(batch: int, struct: Any, offset: int, width: int) -> list[int]:
    """Positions of a field of each of `batch` consecutive `struct`s in a view of `width`-byte items."""
    size = ctypes.sizeof(struct)
    assert size % width == 0 and offset % width == 0
    return [(i * size + offset) // width for i in range(batch)]


def _point(hdr: _Msghdr, name: int, iovs: Any, i: int) -> None:
    hdr.msg_name = name
    hdr.msg_namelen = _NAME_LEN
    hdr.msg_iov = ctypes.cast(ctypes.byref(iovs, i * ctypes.sizeof(_Iovec)), POINTER(_Iovec))
    hdr.msg_iovlen = 1
