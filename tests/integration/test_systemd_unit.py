"""The unit a package installs passes systemd's own checks and its sandbox rates OK or better."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "bootstrapd.service"


def analyze(*args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing (Debian package systemd)")
    return subprocess.run(["systemd-analyze", *args], capture_output=True, text=True, timeout=60)


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    # verify checks that ExecStart binaries exist: point them at a stand-in where a package would install.
    exe = tmp_path / "bootstrapd"
    exe.write_text("#!/bin/sh\nexit 0\n")
    exe.chmod(0o755)
    unit = tmp_path / "bootstrapd.service"
    unit.write_text(UNIT.read_text().replace("/usr/bin/bootstrapd", str(exe)))
    r = analyze("verify", str(unit))
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_unit_sandbox_rates_ok_or_better() -> None:
    r = analyze("security", "--offline=true", str(UNIT))
    m = re.search(r"Overall exposure level for bootstrapd.service: ([0-9.]+) (\w+)", r.stdout)
    assert m, r.stdout + r.stderr
    assert m.group(2) in ("SAFE", "OK"), m.group(0)
    assert float(m.group(1)) <= 2.0


def test_unit_contract() -> None:
    text = UNIT.read_text()
    for line in ("Type=notify", "ExecStartPre=/usr/bin/bootstrapd check /etc/bootstrapd/site.yaml",
                 "ExecReload=/bin/kill -HUP $MAINPID", "Restart=on-failure", "StateDirectory=bootstrapd",
                 "User=bootstrapd", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_NET_RAW"):
        assert line in text.splitlines()
