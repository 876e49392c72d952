"""Open files shared by all concurrent transfers of them (dnsmasq's rule), for the TFTP shell.

A file is keyed by (device, inode, mtime, size): a transfer that starts after the file was replaced gets
the new one, transfers under way keep theirs. What a client receives is always one version, whole:
- Replacement by rename (how deployments should update files): the old inode stays open until its last
  transfer ends, so old clients finish on the old bytes.
- Small files (up to SNAPSHOT_MAX) are read into memory once at open and the descriptor closed: an
  in-place rewrite after that cannot reach a transfer. A rewrite racing the snapshot itself is caught by
  comparing fstat before and after the read (then read once more, or refused).
- Big files are read with `os.pread` per window, and every window first checks fstat's size and mtime
  against the key: an in-place rewrite fails the transfer (`SourceChanged`, ERROR 0) instead of mixing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from bootstrapd.files.jail import open_regular
from bootstrapd.tftp.session import SourceChanged

SNAPSHOT_MAX = 1 << 20  # bytes; profiles and small firmware parts live in memory while in use
READ_AHEAD = 64 << 10  # bytes a big file's transfer reads at once

Key = tuple[int, int, int, int]


def _key(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


@dataclass(eq=False)
class SharedFile:
    key: Key
    size: int
    fd: int = -1  # -1 for a snapshot
    data: bytes | None = None
    users: int = 0
    _cache: FileCache | None = field(default=None, repr=False)

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset:offset + length]
        st = os.fstat(self.fd)
        if (st.st_mtime_ns, st.st_size) != (self.key[2], self.key[3]):
            raise SourceChanged(f"rewritten in place (size {self.size} -> {st.st_size})")
        want = max(0, min(length, self.size - offset))
        chunk = os.pread(self.fd, want, offset)
        if len(chunk) != want:
            raise SourceChanged("shorter than at open")
        return chunk

    def release(self) -> None:
        if self._cache is not None:
            self._cache.release(self)


class Reader:
    """One transfer's view of a big shared file: reads ahead READ_AHEAD bytes at a time, so the fstat check
    and the pread happen once per chunk instead of once per block."""

    __slots__ = ("_buf", "_start", "shared")

    def __init__(self, shared: SharedFile) -> None:
        self.shared = shared
        self._buf = b""
        self._start = 0

    @property
    def size(self) -> int:
        return self.shared.size

    def read(self, offset: int, length: int) -> bytes:
        rel = offset - self._start
        if rel < 0 or rel + length > len(self._buf):
            if offset >= self.shared.size:
                return b""
            self._buf = self.shared.read(offset, max(length, READ_AHEAD))
            self._start, rel = offset, 0
        return self._buf[rel:rel + length]


class BytesSource:
    """A rendered profile or a netascii translation: bytes already in memory."""

    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    @property
    def size(self) -> int:
        return len(self.data)

    def read(self, offset: int, length: int) -> bytes:
        return self.data[offset:offset + length]


class FileCache:
    def __init__(self) -> None:
        self.files: dict[Key, SharedFile] = {}

    def acquire(self, path: str) -> SharedFile:
        """The shared file for `path` (jailed by the resolver); OSError when it cannot be opened."""
        try:
            shared = self.files.get(_key(os.stat(path)))
        except OSError:
            shared = None
        if shared is None:
            fresh = self._open(path)
            shared = self.files.setdefault(fresh.key, fresh)
            if shared is not fresh and fresh.fd >= 0:  # opened twice between stat and open: keep one
                os.close(fresh.fd)
        shared.users += 1
        return shared

    def _open(self, path: str) -> SharedFile:
        fd = open_regular(path)  # re-checks: a regular file, reached without a symlink
        try:
            st = os.fstat(fd)
            if st.st_size > SNAPSHOT_MAX:
                return SharedFile(_key(st), st.st_size, fd=fd, _cache=self)
            for _ in range(2):
                data = os.pread(fd, st.st_size + 1, 0)
                after = os.fstat(fd)
                if _key(after) == _key(st) and len(data) == st.st_size:
                    break
                st = after
            else:
                raise OSError(f"{path}: changing while being read")
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return SharedFile(_key(st), st.st_size, data=data, _cache=self)

    def release(self, shared: SharedFile) -> None:
        shared.users -= 1
        if shared.users > 0:
            return
        if self.files.get(shared.key) is shared:
            del self.files[shared.key]
        if shared.fd >= 0:
            os.close(shared.fd)
            shared.fd = -1

    def close(self) -> None:
        for shared in list(self.files.values()):
            if shared.fd >= 0:
                os.close(shared.fd)
                shared.fd = -1
        self.files.clear()
