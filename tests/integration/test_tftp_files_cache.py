"""The shared open files behind TFTP transfers (transport/files_cache.py), on a real file system."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bootstrapd.tftp.session import SourceChanged
from bootstrapd.transport.files_cache import SNAPSHOT_MAX, FileCache


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_one_descriptor_for_concurrent_transfers_closed_after_the_last(tmp_path: Path) -> None:
    path = tmp_path / "fw.loads"
    data = os.urandom(SNAPSHOT_MAX + 10)
    path.write_bytes(data)
    cache, before = FileCache(), open_fds()
    a, b = cache.acquire(str(path)), cache.acquire(str(path))
    assert a is b and a.users == 2 and open_fds() == before + 1
    assert a.read(SNAPSHOT_MAX, 100) == data[SNAPSHOT_MAX:SNAPSHOT_MAX + 100]
    a.release()
    assert open_fds() == before + 1
    b.release()
    assert open_fds() == before and cache.files == {}


def test_rename_gives_new_transfers_the_new_file_and_old_ones_the_old(tmp_path: Path) -> None:
    path = tmp_path / "fw.loads"
    old, new = os.urandom(SNAPSHOT_MAX + 1), os.urandom(SNAPSHOT_MAX + 2)
    path.write_bytes(old)
    cache = FileCache()
    first = cache.acquire(str(path))
    (tmp_path / "tmp").write_bytes(new)
    os.replace(tmp_path / "tmp", path)
    second = cache.acquire(str(path))
    assert first is not second
    assert first.read(0, first.size) == old and second.read(0, second.size) == new
    first.release()
    second.release()


def test_small_files_are_snapshots_without_a_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "SEP001122334455.cnf.xml"
    path.write_bytes(b"<x/>" * 100)
    cache, before = FileCache(), open_fds()
    shared = cache.acquire(str(path))
    assert shared.fd == -1 and open_fds() == before
    path.write_bytes(b"rewritten in place")
    assert shared.read(0, 8) == b"<x/><x/>"
    shared.release()


def test_in_place_rewrite_of_a_big_file_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "fw.loads"
    path.write_bytes(os.urandom(SNAPSHOT_MAX + 1))
    shared = FileCache().acquire(str(path))
    with open(path, "ab") as f:
        f.write(b"more")
    with pytest.raises(SourceChanged):
        shared.read(0, 512)
    shared.release()


def test_a_fifo_or_symlink_swapped_in_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    os.symlink("/etc/hostname", tmp_path / "link")
    cache = FileCache()
    for name in ("fifo", "link"):
        with pytest.raises(OSError):
            cache.acquire(str(tmp_path / name))
    assert cache.files == {}
