"""The site the DHCP/DNS integration tests start from, and the daemon runner."""

from __future__ import annotations

import json
from typing import Any

from bootstrapd.lab.daemon import Daemon

__all__ = ["SITE", "Daemon", "site_config"]

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


