"""The site the DHCP/DNS integration tests start from, the file service's section, and the daemon runner."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bootstrapd.lab.daemon import Daemon

__all__ = ["SITE", "Daemon", "files_section", "site_config"]

CONFIG = Path(__file__).resolve().parents[2] / "config"

SITE: dict[str, Any] = {
    "site": "lab",
    "listen": {"interfaces": ["stg0"], "address": "198.18.0.1"},
    "domain": "staging.test",
    "dhcp": {
        "lease_time": "1h",
        "unknown_devices": "lease",
        "rogue_check_wait": 0,  # no other-server probe at start (tests/integration/test_rogue.py covers it)
        "options": {"dns_servers": ["198.18.0.1"], "ntp_servers": ["198.18.0.1"]},
        "subnets": [
            {"prefix": "198.18.0.0/23", "pools": ["198.18.0.100-198.18.1.250"], "router": "198.18.0.1"},
            {"prefix": "198.18.2.0/24", "pools": ["198.18.2.100-198.18.2.200"], "router": "198.18.2.1"},
        ],
        "classes": [
            {
                "name": "mpp",
                "match": {"vendor_class": ["CP-*-3PCC"]},
                "options": {
                    "tftp_server": "198.18.0.1",
                    "cisco_tftp_servers": ["198.18.0.1", "198.18.0.2"],
                    "provisioning_server": "http://198.18.0.10",
                    "provisioning_url": "http://prov1.staging.test/$PSN.xml",
                },
            }
        ],
    },
    "dns": {
        "records": [{"name": "prov1", "type": "A", "value": "198.18.0.10"}],
        "srv": [{"service": "_ciscoprov-http._tcp", "targets": [{"target": "prov1", "port": 80}]}],
    },
    "logging": {"format": "json", "level": "debug"},
}


def site_config(**overrides: Any) -> dict[str, Any]:
    """A deep copy of SITE with top-level keys (or `dhcp__key` for keys under dhcp) replaced."""
    site: dict[str, Any] = json.loads(json.dumps(SITE))
    for key, value in overrides.items():
        if "__" in key:
            outer, inner = key.split("__", 1)
            site[outer][inner] = value
        else:
            site[key] = value
    return site




def files_section(work: Path, root: Path, inventory: Path, server: str = "198.18.0.1") -> dict[str, Any]:
    """`files:` for the file-service tests and benches: the example's templates (copied into `work`),
    TFTP on 69 and HTTP on 80, the example's two profiles (the bootstrap profile for any device, the
    per-MAC one AES-256-CBC encrypted for inventory devices)."""
    shutil.copytree(CONFIG / "templates", work / "templates", dirs_exist_ok=True)
    return {
        "root": str(root),
        "tftp": {"port": 69},
        "http": {"port": 80},
        "inventory": str(inventory),
        "variables": {"remote_profile_rule": "https://prov.example.net/$MA.xml",
                      "device_profile_rule": f"tftp://{server}/$MA.cfg", "syslog_server": server,
                      "ntp_server": server, "firmware_server": f"http://{server}"},
        "profiles": [
            {"names": ["$PN.cfg", "$PSN.xml"], "template": str(work / "templates/bootstrap.xml.j2")},
            {"names": ["$MA.cfg", "Cisco/$MA.cfg"], "template": str(work / "templates/device.xml.j2"),
             "devices": "inventory", "encrypt": "aes-256-cbc"},
        ],
    }
