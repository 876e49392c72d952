"""500 clients at once against a TFTP shell capped at 200 sessions: every client gets its file (retrying
when told the server is busy), the cap holds, and no descriptor is left behind."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

from bootstrapd.lab import Lab, staging_lan
from tests.integration.tftp_client import in_netns, storm_fetch
from tests.integration.tftp_fixtures import SERVER, Harness, client_host

CLIENTS = 500
CAP = 200


def test_500_client_storm(lab: Lab, tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    files = {f"SEP{i:012x}.cnf.xml": os.urandom(4096 + i) for i in range(10)}
    for name, data in files.items():
        (root / name).write_bytes(data)
    lan = staging_lan(lab, clients=0)
    client = client_host(lan)
    harness = Harness(lan.server, root, tmp_path, 69, "--max-sessions", str(CAP), "--timeout", "0.5",
                      "--max-wait", "5")
    with in_netns(client):
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(CLIENTS)]
    try:
        for s in socks:
            s.setblocking(False)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 16)
            s.bind(("0.0.0.0", 0))
        fds_before = harness.fd_count()
        names = list(files)

        async def storm() -> list[bytes]:
            return await asyncio.gather(*(storm_fetch(s, (SERVER, 69), names[i % len(names)])
                                          for i, s in enumerate(socks)))

        start = time.monotonic()
        got = asyncio.run(storm())
        elapsed = time.monotonic() - start
    finally:
        for s in socks:
            s.close()
    assert all(data == files[names[i % len(names)]] for i, data in enumerate(got))
    deadline = time.monotonic() + 10
    while (m := harness.metrics())["bootstrapd_tftp_sessions"] != 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    peak = harness.events("harness.metrics")[-1]["peak"]
    assert 0 < peak <= CAP
    assert m['bootstrapd_files_fetches_total{protocol="tftp",result="ok"}'] >= CLIENTS
    assert harness.fd_count() == fds_before
    assert elapsed < 60
    busy = m.get('bootstrapd_files_fetches_total{protocol="tftp",result="session_limit"}', 0)
    print(f"storm: {CLIENTS} clients in {elapsed:.2f}s, peak sessions {peak}, busy refusals {busy}")
    harness.stop()
