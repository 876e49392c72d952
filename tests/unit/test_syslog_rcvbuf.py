"""The sink's receive buffer: beyond net.core.rmem_max with CAP_NET_ADMIN (SO_RCVBUFFORCE), capped there
without it (SO_RCVBUF), and never an error either way."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from bootstrapd.transport.syslog import receive_buffer

ROOT = Path(__file__).resolve().parents[2]


def rmem_max() -> int:
    return int(Path("/proc/sys/net/core/rmem_max").read_text())


def test_with_cap_net_admin_the_buffer_goes_beyond_rmem_max() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (CAP_NET_ADMIN)")
    want = rmem_max() + (8 << 20)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        got, forced = receive_buffer(s, want)
    assert forced and got == 2 * want  # the kernel doubles the value for its bookkeeping (socket(7))


def test_without_cap_net_admin_it_falls_back_to_rmem_max() -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to drop CAP_NET_ADMIN")
    code = ("import socket; from bootstrapd.transport.syslog import receive_buffer; "
            f"print(*receive_buffer(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), {rmem_max() + (8 << 20)}))")
    r = subprocess.run(["setpriv", "--bounding-set=-net_admin", "--inh-caps=-net_admin", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=30, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr
    got, forced = r.stdout.split()
    assert (int(got), forced) == (2 * rmem_max(), "False")
