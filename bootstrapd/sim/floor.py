"""A whole staging floor in a lab: bootstrapd, the provisioning server and a namespace full of phones.

    server   stg0 198.18.0.1/23 (bootstrapd: DHCP + DNS), 198.18.0.10 (prov1), 198.18.0.11 (prov2)
    phones   eth0 on stg0: `bootstrapd simulate` sends as every phone from here

Used by the demo, the end-to-end tests and the boot-storm bench. Closing the Lab tears everything down.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bootstrapd.lab.daemon import Daemon
from bootstrapd.lab.netns import Host, Lab
from bootstrapd.sim.cli import load_reports
from bootstrapd.sim.provserver import make_certificate
from bootstrapd.sim.report import PhoneReport

PROV_ADDRESSES = ("198.18.0.10", "198.18.0.11")  # prov1 and prov2 of the example site
SERVER_ADDRESS = "198.18.0.1"
TFTP_ADDRESSES = (SERVER_ADDRESS, *PROV_ADDRESSES)  # the classic floor runs TFTP on the DHCP box too
OnEvent = Callable[[dict[str, Any]], None]


class Floor:
    def __init__(self, lab: Lab, workdir: Path, domain: str = "staging.example.net", prefixlen: int = 23) -> None:
        """`prefixlen` of the staging LAN 198.18.0.0 (23: the example site's; a boot storm needs a bigger one)."""
        self.lab = lab
        self.workdir = workdir
        self.server: Host = lab.host("server")
        stg0 = lab.segment("stg0", self.server, f"{SERVER_ADDRESS}/{prefixlen}")
        self.phones: Host = lab.host("phones")
        lab.attach(self.phones, stg0, "eth0")
        for addr in PROV_ADDRESSES:
            self.server.add_address("stg0", f"{addr}/{prefixlen}")
        self.cert: tuple[str, str] | None = None
        if shutil.which("openssl"):
            self.cert = make_certificate(workdir, domain, PROV_ADDRESSES)
        self.daemon: Daemon | None = None
        self.prov: subprocess.Popen[Any] | None = None
        self.prov_log = workdir / "provserver.log"

    def start_daemon(self, site: dict[str, Any]) -> Daemon:
        """bootstrapd with `site` (a mapping; `extends` may name a file); replaces a running one."""
        if self.daemon is not None:
            self.daemon.stop()
        site = {**site, "state_dir": str(self.workdir / f"state{os.urandom(3).hex()}"),
                "logging": {"format": "json", "level": "info"}}
        self.daemon = Daemon(self.server, self.workdir, site).start()
        return self.daemon

    def start_prov(self, binds: Sequence[str] = PROV_ADDRESSES, *, https: bool = True,
                   tftp: Sequence[str] = TFTP_ADDRESSES, auth: str | None = None,
                   bootstrap: dict[str, Any] | None = None) -> None:
        """The provisioning server: HTTP (80) and HTTPS (443, the lab certificate) on `binds`, TFTP on `tftp`;
        `bootstrap` (sim/provfiles.Bootstrap's fields) turns its first profiles into a bootstrap profile."""
        self.stop_prov()
        argv = [sys.executable, "-m", "bootstrapd.sim.provserver", "--log", str(self.prov_log)]
        if bootstrap is not None:
            argv += ["--bootstrap", json.dumps(bootstrap)]
        for b in binds:
            argv += ["--bind", b]
        if https and self.cert:
            argv += ["--https", ",".join(self.cert)]
        for t in tftp:
            argv += ["--tftp", t]
        if auth:
            argv += ["--auth", auth]
        offset = self.prov_log.stat().st_size if self.prov_log.exists() else 0
        self.prov = self.server.popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 15
        while not any(e["event"] == "prov.ready" for e in self.prov_events(offset)):
            if self.prov.poll() is not None or time.monotonic() > deadline:
                err = self.prov.stderr.read().decode() if self.prov.stderr else ""
                raise RuntimeError(f"provisioning server did not start: {err}")
            time.sleep(0.05)
        self._prov_offset = offset

    def stop_prov(self) -> None:
        if self.prov is not None and self.prov.poll() is None:
            self.prov.terminate()
            self.prov.wait(5)
        self.prov = None

    def prov_events(self, offset: int | None = None) -> list[dict[str, Any]]:
        """The provisioning server's JSON lines (since it was last started)."""
        if not self.prov_log.exists():
            return []
        with open(self.prov_log) as f:
            f.seek(getattr(self, "_prov_offset", 0) if offset is None else offset)
            return [json.loads(line) for line in f.read().splitlines() if line.startswith("{")]

    def listen_syslog(self, address: str = PROV_ADDRESSES[0], port: int = 514) -> SyslogListener:
        """A UDP socket on the server host that records every datagram (a stand-in syslog server)."""
        return SyslogListener(self.server, self.workdir / f"syslog-{address}-{port}.jsonl", address, port)

    def simulate(self, phones: int, *args: str, on_event: OnEvent | None = None,
                 timeout: float = 60.0) -> list[PhoneReport]:
        """Run `bootstrapd simulate --json` in the phones' namespace; the per-phone reports."""
        argv = [sys.executable, "-m", "bootstrapd", "simulate", "--json", "-n", str(phones),
                "--timeout", str(timeout), *args]
        if self.cert and "--ca" not in args:
            argv += ["--ca", self.cert[0]]
        errors = self.workdir / "simulate.err"
        with open(errors, "w") as err:
            proc = self.phones.popen(argv, stdout=subprocess.PIPE, stderr=err, text=True)
        watchdog = threading.Timer(timeout + 30, proc.kill)  # the simulator ends itself; this is a backstop
        watchdog.start()
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                lines.append(line)
                if on_event is not None and line.startswith("{"):
                    on_event(json.loads(line))
            proc.wait(10)
        finally:
            watchdog.cancel()
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"simulate exited {proc.returncode}: {errors.read_text()[-3000:]}")
        return load_reports(lines)


_LISTENER = """
import json, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
out = open(sys.argv[3], "a", buffering=1)
out.write(json.dumps({"ready": True}) + "\\n")
while True:
    data, peer = s.recvfrom(65535)
    out.write(json.dumps({"from": peer[0], "port": peer[1], "data": data.decode("utf-8", "replace")}) + "\\n")
"""


class SyslogListener:
    """A process in `host` that appends one JSON line per datagram received on address:port to `path`."""

    def __init__(self, host: Host, path: Path, address: str, port: int) -> None:
        self.path = path
        self.proc = host.popen([sys.executable, "-c", _LISTENER, address, str(port), str(path)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while not (path.exists() and path.read_text()):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"syslog listener did not start on {address}:{port}")
            time.sleep(0.02)

    def datagrams(self) -> list[dict[str, Any]]:
        """Every datagram so far: {"from": address, "port": source port, "data": text}."""
        return [d for d in (json.loads(line) for line in self.path.read_text().splitlines()) if "data" in d]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
