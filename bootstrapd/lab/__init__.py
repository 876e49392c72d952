"""Network-namespace test lab (shell code: runs `ip`; used by integration tests and the demo)."""

from bootstrapd.lab.netns import (
    LAB_NET,
    CommandError,
    Host,
    Lab,
    LabError,
    Port,
    Segment,
    check_address,
    lab_available,
    leftover_namespaces,
    list_namespaces,
    stop_process,
)
from bootstrapd.lab.topology import StagingLan, staging_lan

__all__ = [
    "LAB_NET",
    "CommandError",
    "Host",
    "Lab",
    "LabError",
    "Port",
    "Segment",
    "StagingLan",
    "check_address",
    "lab_available",
    "leftover_namespaces",
    "list_namespaces",
    "staging_lan",
    "stop_process",
]
