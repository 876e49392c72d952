"""A daemon site with `files:` for the file-service benches: the repo's example templates, an inventory of
`rows` generated phones (each with a key), the profiles of tests/integration/test_files_daemon.py, and
`root` as the file root. bench/http and bench/tftp start the real daemon (`python -m bootstrapd run`) on it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from tests.integration.daemon import site_config

CONFIG = Path(__file__).resolve().parents[2] / "config"
SERVER = "198.18.0.1"
MAC_BASE = 0x00562B100000  # inventory MACs: MAC_BASE + i


def inventory_mac(i: int) -> str:
    """The i-th inventory MAC, 12 lower-case hex digits (the form a phone's User-Agent carries)."""
    return f"{MAC_BASE + i:012x}"


def write_inventory(path: Path, rows: int) -> None:
    lines = ["mac,serial,key,label"]
    for i in range(rows):
        mac = inventory_mac(i)
        lines.append(f"{':'.join(mac[j:j + 2] for j in range(0, 12, 2))},FCH{i:08d},{i:016x}{mac[-8:]},desk {i}")
    path.write_text("\n".join(lines) + "\n")


def daemon_site(work: Path, root: Path, rows: int = 1000, log_level: str = "info") -> dict[str, Any]:
    shutil.copytree(CONFIG / "templates", work / "templates", dirs_exist_ok=True)
    write_inventory(work / "inventory.csv", rows)
    files = {
        "root": str(root),
        "tftp": {"port": 69},
        "http": {"port": 80},
        "inventory": str(work / "inventory.csv"),
        "variables": {"remote_profile_rule": "https://prov.example.net/$MA.xml",
                      "device_profile_rule": f"tftp://{SERVER}/$MA.cfg", "syslog_server": SERVER,
                      "ntp_server": SERVER, "firmware_server": f"http://{SERVER}"},
        "profiles": [
            {"names": ["$PN.cfg", "$PSN.xml"], "template": str(work / "templates/bootstrap.xml.j2")},
            {"names": ["$MA.cfg", "Cisco/$MA.cfg"], "template": str(work / "templates/device.xml.j2"),
             "devices": "inventory", "encrypt": "aes-256-cbc"},
        ],
    }
    return site_config(files=files, logging={"format": "json", "level": log_level})
