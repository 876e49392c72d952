"""The TFTP shell's tables and helpers: its own refusal reasons, which ERROR a miss gets, interface facts,
and the fields of the `files.fetch` log event."""

from __future__ import annotations

import contextlib
import enum
import socket
from dataclasses import dataclass
from typing import Any

from bootstrapd.files.outcome import Device, Fetched, IdentifiedBy, MissReason, Protocol, Refused, Rendered, Static
from bootstrapd.tftp.packet import ErrorCode
from bootstrapd.tftp.session import Session
from bootstrapd.transport.l2 import interface_address

NO_DEVICE = Device(None, IdentifiedBy.NONE)
IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)


class Reason(enum.Enum):
    """The shell's own refusal reasons (beside MissReason and session End values)."""

    SESSION_LIMIT = "session_limit"  # max_sessions transfers already running; ERROR 0
    WRITE_REFUSED = "write_refused"  # a WRQ; ERROR 2, nothing written
    BAD_MODE = "bad_mode"  # neither netascii nor octet; ERROR 4
    TOO_BIG_FOR_NETASCII = "too_big_for_netascii"  # ERROR 0
    INTERNAL_ERROR = "internal_error"  # a bug in the resolver or here; ERROR 0, counted
    SHUTDOWN = "shutdown"  # the server stopped mid-transfer
    WORKER_LOST = "worker_lost"  # the transfer worker process serving it died (transport/tftp_workers.py)


# Which ERROR a miss gets (tftp-hpa's mapping: no such file 1, everything refused on purpose 2).
MISS_ERROR = {
    MissReason.NOT_FOUND: ErrorCode.FILE_NOT_FOUND,
    MissReason.NOT_IN_INVENTORY: ErrorCode.FILE_NOT_FOUND,
    MissReason.BAD_NAME: ErrorCode.ACCESS_VIOLATION,
    MissReason.TRAVERSAL: ErrorCode.ACCESS_VIOLATION,
    MissReason.NOT_REGULAR: ErrorCode.ACCESS_VIOLATION,
    MissReason.UNREADABLE: ErrorCode.ACCESS_VIOLATION,
    MissReason.RENDER_FAILED: ErrorCode.NOT_DEFINED,
}
MISS_TEXT = {ErrorCode.FILE_NOT_FOUND: "File not found", ErrorCode.ACCESS_VIOLATION: "Access violation",
             ErrorCode.NOT_DEFINED: "Server error"}


@dataclass(frozen=True, slots=True)
class Unavailable:
    """A resolved file that could not be opened after all."""

    reason: str
    code: ErrorCode


def local_address(ancdata: list[tuple[int, int, bytes]]) -> str | None:
    """From IP_PKTINFO (struct in_pktinfo: ifindex, spec_dst, addr): the local address the RRQ reached."""
    for level, kind, data in ancdata:
        if level == socket.IPPROTO_IP and kind == IP_PKTINFO and len(data) >= 12:
            return socket.inet_ntoa(data[4:8])
    return None


def interface_mtu(local: str) -> int:
    """MTU of the interface holding `local` as its primary address (1500 when not found)."""
    for _, name in socket.if_nameindex():
        if str(interface_address(name)) == local:
            with contextlib.suppress(OSError, ValueError), open(f"/sys/class/net/{name}/mtu") as f:
                return int(f.read())
    return 1500


def fetch_fields(outcome: Fetched | Refused, addr: tuple[str, int], session: Session | None,
                 detail: str) -> dict[str, Any]:
    """The `files.fetch` event: protocol, client, device, requested and resolved names, status, bytes, time."""
    if isinstance(outcome, Fetched):
        resolution: Rendered | Static | None = outcome.resolution
        device, status, error_code = outcome.resolution.device, "ok", None
    else:
        resolution, device = None, outcome.device or NO_DEVICE
        status, error_code = outcome.reason, outcome.status
    resolved = (resolution.path if isinstance(resolution, Static)
                else resolution.profile if isinstance(resolution, Rendered) else None)
    return {
        "protocol": Protocol.TFTP.value, "client": f"{addr[0]}:{addr[1]}", "mac": device.mac,
        "identified_by": device.identified_by.value,
        "requested": outcome.request.name if outcome.request else None, "resolved": resolved,
        "result": status, "status": error_code, "bytes": outcome.bytes_sent,
        "seconds": round(outcome.seconds, 6),
        "blksize": session.blksize if session else None, "windowsize": session.windowsize if session else None,
        "retransmits": session.retransmits if session else 0, "detail": detail or None,
    }
