"""A daemon site with `files:` for the file-service benches: the repo's example templates, an inventory of
`rows` generated phones (each with a key), the profiles of tests/integration/test_files_daemon.py, and
`root` as the file root. bench/http and bench/tftp start the real daemon (`python -m bootstrapd run`) on it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.daemon import files_section, site_config

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
    write_inventory(work / "inventory.csv", rows)
    files = files_section(work, root, work / "inventory.csv", SERVER)
    return site_config(files=files, logging={"format": "json", "level": log_level})
