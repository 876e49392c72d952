"""The daemon's own threads, named for the kernel too, so that `top -H`, `ps -L` and /proc/PID/task show
which one spends the CPU (Python 3.11 names a thread only for itself; every one reads "python" there)."""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

_PR_SET_NAME = 15  # prctl(2): the calling thread's name, 15 bytes and a NUL
_libc: ctypes.CDLL | None = None


def name_os_thread(name: str | None = None) -> None:
    """Give the calling thread's kernel name `name` (default: its threading name), cut to 15 bytes."""
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        raw = (name or threading.current_thread().name).encode("ascii", "replace")[:15]
        _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(raw), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux, no libc: the name is only cosmetic
        return
