"""Run the real daemon (`python -m bootstrapd run`) inside a lab host; used by the tests and the demo."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from bootstrapd.lab.netns import Host


class Daemon:
    """bootstrapd in a lab host; logs (JSON lines) go to a file the test can read."""

    python_args: tuple[str, ...] = ("-m", "bootstrapd")  # a test may run the daemon through a hook of its own

    def __init__(self, host: Host, workdir: Path, site: dict[str, Any]) -> None:
        self.host = host
        self.workdir = workdir
        self.site_path = workdir / "site.yaml"
        self.log_path = workdir / "bootstrapd.log"
        site = dict(site, state_dir=str(workdir / "state"))
        self.write_site(site)
        self.proc: subprocess.Popen[Any] | None = None
        self._offset = 0

    def write_site(self, site: dict[str, Any]) -> None:
        site.setdefault("state_dir", str(self.workdir / "state"))
        self.site_path.write_text(yaml.safe_dump(site, sort_keys=False))

    def start(self, timeout: float = 15.0) -> Daemon:
        # Events are read from here on, so a restart waits for its own `service.ready`.
        self._offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        log = open(self.log_path, "a")  # noqa: SIM115 - the child owns it
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self.proc = self.host.popen([sys.executable, *self.python_args, "run", "-c", str(self.site_path)],
                                    stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()
        self.wait_for("service.ready", timeout)
        return self

    def events(self) -> list[dict[str, Any]]:
        out = []
        with open(self.log_path) as f:
            f.seek(self._offset)
            text = f.read()
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out

    def wait_for(self, event: str, timeout: float = 10.0, count: int = 1) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            found = [e for e in self.events() if e.get("event") == event]
            if len(found) >= count:
                return found
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {event!r} within {timeout}s:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
