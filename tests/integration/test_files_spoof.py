"""A hostile client on the staging LAN floods the real daemon's HTTP file service with made-up devices
(a new User-Agent MAC, per-MAC name or firmware per request): every request is answered, the render cache
stays inside `files.render_cache` (its gauge, and evictions counted on /metrics), and the inventory phone
still gets its own bootstrap and encrypted per-device profiles afterwards. bench/files/spoof.py measures
the daemon's memory under 50,000 of them."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from bootstrapd.lab import Host, Lab, staging_lan
from tests.integration.daemon import Daemon, files_section, site_config
from tests.labreq import require_lab

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
SERVER = "198.18.0.1"
METRICS = f"{SERVER}:9267"
MAC, KEY = "00:56:2b:04:36:15", "7d1f0c9e5b2a4e83a6f1c2d3"  # config/inventory.csv's first row
BUDGET = 64 << 10  # bytes: ~30 bootstrap profiles of the example templates
FLOODS = {"ua": 3000, "path": 1000, "firmware": 1000}  # requests, each naming a device not named before


def metric(text: str, name: str) -> float:
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    assert m, f"{name} missing from /metrics"
    return float(m.group(1))


def test_spoofed_devices_stay_inside_the_render_cache_budget(tmp_path: Path) -> None:
    require_lab()
    with Lab() as lab:
        lan = staging_lan(lab, clients=0)
        client = lan.static_client("198.18.0.120/23", name="spoofer")
        shutil.copy(REPO / "config" / "inventory.csv", tmp_path / "inventory.csv")
        (tmp_path / "root").mkdir()
        files = dict(files_section(tmp_path, tmp_path / "root", tmp_path / "inventory.csv"), render_cache=BUDGET)
        daemon = Daemon(lan.server, tmp_path, site_config(files=files, metrics={"listen": METRICS},
                                                         logging={"format": "json", "level": "info"}))
        daemon.start(timeout=30)
        try:
            start = 0
            for mode, count in FLOODS.items():
                out = client.run([sys.executable, "-m", "tests.integration.http_spoof", SERVER, "80", "--mode", mode,
                                  "--count", str(count), "--start", str(start)], timeout=120, cwd=REPO,
                                 env={**os.environ, "PYTHONPATH": str(REPO)})
                start += count
                got = json.loads(out.stdout)
                assert got["statuses"] == ({"404": count} if mode == "path" else {"200": count}), got
            text = client.run(["curl", "-sS", f"http://{METRICS}/metrics"]).stdout
            cached = metric(text, "bootstrapd_files_render_cache_bytes")
            entries = metric(text, "bootstrapd_files_render_cache_entries")
            evictions = metric(text, "bootstrapd_files_render_cache_evictions_total")
            assert 0 < cached <= BUDGET and 10 <= entries <= 64
            renders = FLOODS["ua"] + FLOODS["firmware"]  # each a new cache key; `path` ones are misses
            assert evictions == renders - entries
            check_phone(client, tmp_path)
            text = client.run(["curl", "-sS", f"http://{METRICS}/metrics"]).stdout
            assert metric(text, "bootstrapd_files_render_cache_bytes") <= BUDGET
        finally:
            assert daemon.stop() == 0


def check_phone(client: Host, work: Path) -> None:
    """The inventory phone's bootstrap profile (with its --key) and its per-device profile (decrypting
    with its key) over HTTP, as a phone asks for them."""
    ua = f"Cisco-CP-7841-3PCC/12.0.1 ({MAC.replace(':', '')})"
    out = work / "got"
    for _ in range(2):  # the second is a cache hit
        client.run(["curl", "-sSf", "-A", ua, "-o", str(out), f"http://{SERVER}/CP-7841-3PCC.cfg"])
        rule = ET.fromstring(out.read_bytes()).findtext("Profile_Rule") or ""
        assert rule.startswith(f"--key {KEY} "), rule
    client.run(["curl", "-sSf", "-A", ua, "-o", str(out),
                f"http://{SERVER}/{MAC.replace(':', '')}.cfg"])
    plain = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-k", KEY],
                           input=out.read_bytes(), capture_output=True, check=True).stdout
    assert ET.fromstring(plain).findtext("Station_Name") == "SEP00562B043615"
