"""The served root as a jail, on tftp-hpa's rules (tftpd.c `rewrite_access`/`validate_access` with `-s`).

A requested name is refused before the file system is asked when it holds control characters or a `.`/`..`
component (a backslash counts as a separator: Windows clients send `..\\x`). Leading slashes are dropped, so
`/etc/passwd` and `//etc/x` mean paths inside the root. The surviving path is then resolved with every
symlink followed, and refused when the real path leaves the real root (a sibling directory whose name starts
with the root's name is outside it) or is not a regular file (directories, FIFOs, device nodes).

The shell must open the returned real path with `open_regular`, which re-checks the opened file itself, so a
file swapped for a FIFO or a symlink between resolution and open is refused, not followed.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from bootstrapd.files.outcome import MissReason

MAX_NAME = 512  # bytes of a requested name; tftp-hpa's limit is the packet (512), Cisco names are short


@dataclass(frozen=True, slots=True)
class Refusal:
    reason: MissReason
    detail: str


@dataclass(frozen=True, slots=True)
class Found:
    path: str  # real path inside the root
    size: int


def clean_name(name: str) -> str | Refusal:
    """The name as a relative path with `/` separators, or why it is refused outright."""
    if not name or len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        return Refusal(MissReason.BAD_NAME, "empty or too long")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        return Refusal(MissReason.BAD_NAME, "control character")
    parts = [p for p in name.replace("\\", "/").split("/") if p]
    if any(p in (".", "..") for p in parts):
        return Refusal(MissReason.TRAVERSAL, "'.' or '..' component")
    if not parts:
        return Refusal(MissReason.NOT_FOUND, "the root itself")
    return "/".join(parts)


def lookup(root_real: str, name: str) -> Found | Refusal:
    """Resolve `name` under `root_real` (already `os.path.realpath`ed). Reads the file system, opens nothing."""
    rel = clean_name(name)
    if isinstance(rel, Refusal):
        return rel
    real = os.path.realpath(os.path.join(root_real, rel))
    if not inside(root_real, real):
        return Refusal(MissReason.TRAVERSAL, "leaves the root")
    try:
        st = os.stat(real)
    except FileNotFoundError:
        return Refusal(MissReason.NOT_FOUND, "no such file")
    except OSError as e:
        return Refusal(MissReason.UNREADABLE, e.strerror or str(e))
    if not stat.S_ISREG(st.st_mode):
        return Refusal(MissReason.NOT_REGULAR, "not a regular file")
    return Found(real, st.st_size)


def inside(root_real: str, real: str) -> bool:
    return real == root_real or real.startswith(root_real.rstrip(os.sep) + os.sep)


def open_regular(path: str) -> int:
    """Open a resolved path read-only; OSError unless it is (still) a regular file reached without a symlink.
    O_NONBLOCK: opening a FIFO that replaced the file must not block the event loop."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(f"{path}: not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd
