"""The values that cross between the file service's core and its shells (design.md, "The file service").

A shell builds a `FileRequest`, asks the resolver, and gets one of `Rendered` (a profile made for this
device), `Static` (a regular file inside the root, already jailed) or `Miss` (why not). When the transfer
ends the shell has one `Fetched` or `Refused` value, which it logs (`files.fetch`), counts, and hands to
the device tracker, exactly as the DHCP shell does with its outcomes.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from ipaddress import IPv4Address


class Protocol(enum.Enum):
    TFTP = "tftp"
    HTTP = "http"
    HTTPS = "https"


class IdentifiedBy(enum.Enum):
    """Where the device's MAC came from, strongest first."""

    PATH = "path"  # the requested name holds a MAC ($MA.cfg, Cisco/$MA.cfg)
    USER_AGENT = "user_agent"  # Cisco-CP-7832-3PCC/11.0.1 (00562b043615)
    LEASE = "lease"  # the source address's current lease
    NONE = "none"  # nobody we know


class MissReason(enum.Enum):
    """Why a request got no file; the value is the log field and the metric label (a closed set)."""

    NOT_FOUND = "not_found"  # no profile pattern and no static file of that name
    BAD_NAME = "bad_name"  # control characters, empty, too long, not decodable
    TRAVERSAL = "traversal"  # `..`/`.` components, an absolute escape, a symlink leaving the root
    NOT_REGULAR = "not_regular"  # a directory, FIFO, device node
    NOT_IN_INVENTORY = "not_in_inventory"  # a `devices: inventory` profile asked for by an unknown device
    UNREADABLE = "unreadable"  # the file exists but cannot be opened (permissions)
    RENDER_FAILED = "render_failed"  # a bug: `check` passed but rendering failed; counted, never a crash


@dataclass(frozen=True, slots=True)
class FileRequest:
    name: str  # TFTP file name or the HTTP path, percent-decoded, as asked
    protocol: Protocol
    client: IPv4Address
    user_agent: str | None = None  # HTTP only


@dataclass(frozen=True, slots=True)
class Device:
    """The device behind a request, as far as it could be told."""

    mac: str | None  # 00:56:2b:04:36:15, or None when unidentified
    identified_by: IdentifiedBy
    model: str | None = None  # CP-7841-3PCC: from the name ($PN/$PSN), else the User-Agent, else option 60
    firmware: str | None = None  # from the User-Agent
    # Every disagreement between the sources (path MAC vs User-Agent MAC vs lease MAC), e.g.
    # ("path=00:56:2b:04:36:15", "lease=00:56:2b:00:00:01"); the shell records and counts them.
    conflicts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes  # final bytes on the wire (after gzip and encryption)
    profile: str  # the template it was rendered from, relative to the site file
    device: Device
    content_type: str = "application/xml"
    content_encoding: str | None = None  # "aes128gcm" for RFC 8188 (HTTP header); None otherwise


@dataclass(frozen=True, slots=True)
class Static:
    path: str  # the real path, inside the root, a regular file at resolution time
    size: int
    device: Device


@dataclass(frozen=True, slots=True)
class Miss:
    reason: MissReason
    device: Device
    detail: str = ""


Resolution = Rendered | Static | Miss


@dataclass(frozen=True, slots=True)
class Fetched:
    """A transfer that ended with the whole file sent (TFTP: last ACK received; HTTP: response written)."""

    request: FileRequest
    resolution: Rendered | Static
    status: int  # HTTP status (200); TFTP: 0
    bytes_sent: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Refused:
    """A transfer that did not deliver a whole file: a miss, a protocol error, a timeout, a limit."""

    request: FileRequest | None  # None when the request could not even be parsed
    reason: str  # a MissReason value, or the shell's own: timeout, aborted, session_limit, ...
    status: int  # HTTP status (404, 401, 405, ...); TFTP: the ERROR code sent (0-8), -1 when none
    device: Device | None = None
    bytes_sent: int = 0
    seconds: float = 0.0


FetchOutcome = Fetched | Refused
