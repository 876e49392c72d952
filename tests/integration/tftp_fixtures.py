"""The TFTP lab: a server host running the TFTP shell (tests/integration/tftp_harness.py) on a temp root,
and a client host on the staging LAN."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bootstrapd.lab import Host, StagingLan

SERVER = "198.18.0.1"
CLIENT = "198.18.0.200/23"
REPO = Path(__file__).resolve().parents[2]


class Harness:
    """One TFTP shell process in `host`; its JSON log lines in `workdir/log`."""

    def __init__(self, host: Host, root: Path, workdir: Path, port: int = 69, *extra: str) -> None:
        self.host, self.root, self.port = host, root, port
        self.log_path = workdir / f"tftp-{port}.log"
        self.metrics_path = workdir / f"metrics-{port}.prom"
        log = open(self.log_path, "w")  # noqa: SIM115 - the child owns it
        env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(REPO))
        self.proc = host.popen([sys.executable, "-m", "tests.integration.tftp_harness", "--root", str(root),
                                "--address", SERVER, "--port", str(port), "--metrics", str(self.metrics_path),
                                *extra], stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        log.close()
        self.wait_for("harness.ready", 15)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if name is None or event.get("event") == name:
                out.append(event)
        return out

    def wait_for(self, name: str, timeout: float = 10.0, count: int = 1, **match: Any) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events(name) if all(e.get(k) == v for k, v in match.items())]
            if len(found) >= count:
                return found
            if self.proc.poll() is not None:
                raise AssertionError(f"harness exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {count} x {name} {match} in {timeout}s:\n"
                                     f"{self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def metrics(self) -> dict[str, float]:
        """The exposition as {'name{labels}': value}, fresh (SIGUSR1, then wait for the dump)."""
        before = len(self.events("harness.metrics"))
        self.proc.send_signal(signal.SIGUSR1)
        self.wait_for("harness.metrics", 5, count=before + 1)
        out = {}
        for line in self.metrics_path.read_text().splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def fetches(self, result: str) -> float:
        return self.metrics().get(f'bootstrapd_files_fetches_total{{protocol="tftp",result="{result}"}}', 0.0)

    def fd_count(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)


def client_host(lan: StagingLan) -> Host:
    return lan.static_client(CLIENT, name="asker")
