"""What a phone sends to its `Syslog_Server` about a resync or an upgrade (mpp-bootstrap.md section 9).

The six `Log_*` parameters are templates with phone macros plus `$SCHEME $SERVIP $PORT $PATH $ERR`; a
profile may set them, else the firmware's defaults apply. A datagram carries the expanded line bare or
behind an RFC 3164 header (`<PRI>Mmm dd hh:mm:ss HOSTNAME TAG: `), depending on the phone: time is a
parameter here, the shell passes the clock.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Mapping

from bootstrapd.sim.macros import expand, resync_values
from bootstrapd.sim.phone import Phone

_URL = "$SCHEME://$SERVIP:$PORT$PATH"
DEFAULT_TEMPLATES: dict[str, str] = {  # the firmware's values when a profile sets none
    "Log_Request_Msg": f"$PN $MAC -- Requesting resync {_URL}",
    "Log_Success_Msg": f"$PN $MAC -- Successful resync {_URL}",
    "Log_Failure_Msg": "$PN $MAC -- Resync failed: $ERR",
    "Log_Upgrade_Request_Msg": f"$PN $MAC -- Requesting upgrade {_URL}",
    "Log_Upgrade_Success_Msg": f"$PN $MAC -- Successful upgrade {_URL} -- $ERR",
    "Log_Upgrade_Failure_Msg": "$PN $MAC -- Upgrade failed: $ERR",
}
# The form bootstrapd's bootstrap template sets (bootstrapd.syslog.OUR_TEMPLATES says the same; the
# simulator keeps its own copy so that a change on either side shows up as a failing test, not a silent match).
OUR_TEMPLATES: dict[str, str] = {
    "Log_Request_Msg": f"bootstrapd $MA $PN -- Requesting resync {_URL}",
    "Log_Success_Msg": f"bootstrapd $MA $PN -- Successful resync {_URL} -- $ERR",
    "Log_Failure_Msg": "bootstrapd $MA $PN -- Resync failed: $ERR",
    "Log_Upgrade_Request_Msg": f"bootstrapd $MA $PN -- Requesting upgrade {_URL}",
    "Log_Upgrade_Success_Msg": f"bootstrapd $MA $PN -- Successful upgrade {_URL} -- $ERR",
    "Log_Upgrade_Failure_Msg": "bootstrapd $MA $PN -- Upgrade failed: $ERR",
}
SYSLOG_PORT = 514
PRI = 16 * 8 + 6  # RFC 3164 section 4.1.1: facility local0 (16), severity informational (6)
MAX_LINE = 1024  # RFC 3164 section 4.1: a datagram is at most 1024 bytes


class Event(enum.Enum):
    """Which template a line comes from."""

    RESYNC_REQUEST = "Log_Request_Msg"
    RESYNC_SUCCESS = "Log_Success_Msg"
    RESYNC_FAILURE = "Log_Failure_Msg"
    UPGRADE_REQUEST = "Log_Upgrade_Request_Msg"
    UPGRADE_SUCCESS = "Log_Upgrade_Success_Msg"
    UPGRADE_FAILURE = "Log_Upgrade_Failure_Msg"


class Header(enum.Enum):
    RFC3164 = "rfc3164"
    BARE = "bare"


def log_line(event: Event, params: Mapping[str, str], phone: Phone, ip: str, *, scheme: str = "", servip: str = "",
             port: int | None = None, path: str = "", err: str = "") -> str:
    """The expanded line for `event`, from the profile's template (or the default when unset or empty)."""
    template = params.get(event.value) or DEFAULT_TEMPLATES[event.value]
    values = {**phone.macros(ip), **resync_values(scheme, servip, port, path, err)}
    return expand(template, values)


def datagram(line: str, header: Header, hostname: str, now: float) -> bytes:
    """One syslog datagram: the bare line, or `<134>Mmm dd hh:mm:ss HOSTNAME TAG: line` (local time)."""
    if header is Header.RFC3164:
        t = time.localtime(now)
        stamp = f"{time.strftime('%b', t)} {t.tm_mday:2d} {time.strftime('%H:%M:%S', t)}"  # day space-padded
        line = f"<{PRI}>{stamp} {hostname} prov: {line}"
    return line.encode("utf-8", errors="replace")[:MAX_LINE]


def syslog_target(value: str) -> tuple[str, int] | None:
    """`Syslog_Server` as (host, port): `host` or `host:port` (default 514); None when unset or malformed."""
    host, _, port = value.strip().partition(":")
    if not host or any(c.isspace() for c in host):
        return None
    if not port:
        return host, SYSLOG_PORT
    return (host, int(port)) if port.isdigit() and 0 < int(port) < 65536 else None
