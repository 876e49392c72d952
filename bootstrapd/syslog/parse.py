"""One syslog datagram -> a `SyslogMessage`: what a phone said about its resync or upgrade, and which phone.

The phones' lines come from templates (mpp-bootstrap.md section 9). The defaults, in any dash variant:
    $PN $MAC -- Requesting resync $SCHEME://$SERVIP:$PORT$PATH
    $PN $MAC -- Successful resync $SCHEME://$SERVIP:$PORT$PATH [-- $ERR]
    $PN $MAC -- Resync failed: $ERR
    ... -- Requesting upgrade ..., ... -- Successful upgrade ... -- $ERR, ... -- Upgrade failed: $ERR
and the one exact form our bootstrap profile sets (`OUR_TEMPLATES`), which leads with a marker and `$MA`
so that it is recognised without guessing. `parse` never raises: a line it does not understand is
`Kind.OTHER` with its sanitised text.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from bootstrapd.syslog.header import decode, parse_header, sanitise, strip_host_tag

MAX_INPUT = 8192  # bytes looked at; the sink reads less, this bounds the core on its own
MAX_TEXT = 1024  # characters of `text`
MAX_FIELD = 512  # characters of url and error
MAX_MODEL = 64

MARKER = "bootstrapd"  # first word of our own template lines


class Kind(enum.Enum):
    """What the line reports (the phone's Log_* templates, one per event)."""

    RESYNC_REQUESTED = "resync_requested"  # Log_Request_Msg
    RESYNC_SUCCEEDED = "resync_succeeded"  # Log_Success_Msg
    RESYNC_FAILED = "resync_failed"  # Log_Failure_Msg
    UPGRADE_REQUESTED = "upgrade_requested"  # Log_Upgrade_Request_Msg
    UPGRADE_SUCCEEDED = "upgrade_succeeded"  # Log_Upgrade_Success_Msg
    UPGRADE_FAILED = "upgrade_failed"  # Log_Upgrade_Failure_Msg
    OTHER = "other"  # anything else the phone logs


@dataclass(frozen=True, slots=True)
class SyslogMessage:
    kind: Kind
    mac: str | None  # 00:56:2b:04:36:15, from the line (or a MAC-shaped Syslog Identifier)
    model: str | None  # $PN, e.g. CP-7841-3PCC
    url: str | None  # the resync/upgrade URL
    error: str | None  # $ERR of a failure, or the trailing "-- $ERR" of a success line when not empty
    text: str  # the message, sanitised: printable, bounded
    facility: int | None  # from PRI when valid (RFC 5424 section 6.2.1), else None
    severity: int | None


_URL_TAIL = "$SCHEME://$SERVIP:$PORT$PATH"
# The phone parameters our bootstrap profile sets, and their values. `$MA` (12 lowercase hex digits) names
# the device, then `$PN`; the rest mirrors the defaults so a human reads it the same way.
OUR_TEMPLATES: dict[str, str] = {
    "Log_Request_Msg": f"{MARKER} $MA $PN -- Requesting resync {_URL_TAIL}",
    "Log_Success_Msg": f"{MARKER} $MA $PN -- Successful resync {_URL_TAIL} -- $ERR",
    "Log_Failure_Msg": f"{MARKER} $MA $PN -- Resync failed: $ERR",
    "Log_Upgrade_Request_Msg": f"{MARKER} $MA $PN -- Requesting upgrade {_URL_TAIL}",
    "Log_Upgrade_Success_Msg": f"{MARKER} $MA $PN -- Successful upgrade {_URL_TAIL} -- $ERR",
    "Log_Upgrade_Failure_Msg": f"{MARKER} $MA $PN -- Upgrade failed: $ERR",
}

_EVENTS = {
    "requesting resync": Kind.RESYNC_REQUESTED,
    "successful resync": Kind.RESYNC_SUCCEEDED,
    "resync failed": Kind.RESYNC_FAILED,
    "requesting upgrade": Kind.UPGRADE_REQUESTED,
    "successful upgrade": Kind.UPGRADE_SUCCEEDED,
    "upgrade failed": Kind.UPGRADE_FAILED,
}
# The event words as the firmware's default templates and ours spell them, looked up as matched before any
# normalising (which costs more than the rest of finding the event).
_SPELLINGS = {spelt: kind for words, kind in _EVENTS.items()
              for spelt in (words.capitalize(), words.capitalize() + ":")}

_HEX = "[0-9A-Fa-f]"
# Colon or dash separated, bare ($MA, $MAU) or Cisco dotted.
_MAC = rf"(?:{_HEX}{{2}}[:-]){{5}}{_HEX}{{2}}|{_HEX}{{12}}|{_HEX}{{4}}\.{_HEX}{{4}}\.{_HEX}{{4}}"
_PN = r"[A-Za-z0-9][\w.+/()-]{0,63}"
# "--", "–-", "—", "–", a lone "-"; U+FFFD where a non-UTF-8 dash (cp1252 0x96) was replaced.
_DASH = "[-\u2010-\u2015\u2212\ufffd]{1,3}"
_EVENT = "|".join(e.replace(" ", r"\s+") for e in _EVENTS)
# The event words are found first (a search for literals); the phone's name for itself is then matched in
# a bounded window just before them, anchored at their start, so no pattern scans the whole datagram with
# backtracking groups (a hostile 2 KiB line costs about what a real one does).
_EVENT_WORDS = re.compile(rf"(?<!\w)(?:{_EVENT})\b:?", re.IGNORECASE)
_WINDOW = 256  # characters before the event words: room for $PN (64), $MAC and any separators
_OURS = re.compile(rf"(?<!\S){MARKER} (?P<mac>{_HEX}{{12}}) (?P<pn>{_PN}) -- \Z", re.IGNORECASE)
_DEFAULT = re.compile(
    rf"(?:(?<![\w.+/()-])(?P<pn>{_PN})\s+)?(?<![\w:.-])(?P<mac>{_MAC})(?![\w:.])\s*{_DASH}\s*\Z",
)
_LEADING_MAC = re.compile(rf"(?:(?P<pn>{_PN})\s+)?(?P<mac>{_MAC})(?![\w:.])")
_SEPARATOR = re.compile(rf"\s*{_DASH}\s*")


_MAC_SEPARATORS = str.maketrans("", "", ":.-")
_HEX12 = re.compile(r"[0-9a-f]{12}")


def normalise_mac(token: str) -> str | None:
    """00:56:2b:04:36:15 from any accepted spelling, None when it is not 12 hex digits."""
    d = token.translate(_MAC_SEPARATORS).lower()  # on every message: no generator, no per-call regex lookup
    if not _HEX12.fullmatch(d):
        return None
    return f"{d[0:2]}:{d[2:4]}:{d[4:6]}:{d[6:8]}:{d[8:10]}:{d[10:12]}"


def parse(datagram: bytes) -> SyslogMessage:
    """Parse one datagram; never raises (whatever the bytes, the result is a message)."""
    header = parse_header(decode(datagram[:MAX_INPUT]))
    rest = header.rest
    event = _find_event(rest)
    if event is None:
        return _other(strip_host_tag(rest) if header.tagged else rest, header.facility, header.severity)
    kind = _kind(event.group())
    url, error = _details(kind, rest[event.end():])
    base = max(0, event.start() - _WINDOW)
    before = rest[base:event.start()]
    who = _OURS.search(before) or _DEFAULT.search(before)
    mac = model = None
    start = event.start()
    if who is not None:
        mac, model = normalise_mac(who.group("mac")), who.group("pn")
        start = base + (who.start() if who.re is _OURS else who.start("pn") if model else who.start("mac"))
    return SyslogMessage(
        kind=kind,
        mac=mac,
        model=_model(model),
        url=url,
        error=error,
        text=sanitise(rest[start:], MAX_TEXT),
        facility=header.facility,
        severity=header.severity,
    )


def _find_event(rest: str) -> re.Match[str] | None:
    """The first event words; the regex runs only from the first place they may be (most lines have none)."""
    low = rest.lower()
    resync, upgrade = low.find("resync"), low.find("upgrade")
    first = resync if upgrade < 0 or 0 <= resync < upgrade else upgrade
    if first < 0:
        return None
    # "Requesting " and the like come first; lower() keeps offsets only for ASCII (one letter may become two).
    return _EVENT_WORDS.search(rest, max(0, first - 64) if rest.isascii() else 0)


def _kind(words: str) -> Kind:
    kind = _SPELLINGS.get(words)
    return kind if kind is not None else _EVENTS[" ".join(words.rstrip(":").lower().split())]


def _model(pn: str | None) -> str | None:
    return (sanitise(pn, MAX_MODEL) or None) if pn else None


def _details(kind: Kind, rest: str) -> tuple[str | None, str | None]:
    """(url, error) from what follows the event words."""
    # Identity tests: `kind in {...}` would run Enum.__hash__, which is Python code.
    success = kind is Kind.RESYNC_SUCCEEDED or kind is Kind.UPGRADE_SUCCEEDED
    if success or kind is Kind.RESYNC_REQUESTED or kind is Kind.UPGRADE_REQUESTED:
        parts = rest.split(None, 1)
        if not parts:
            return None, None
        url = sanitise(parts[0], MAX_FIELD) or None
        error = None
        if success and len(parts) > 1:
            sep = _SEPARATOR.match(parts[1])
            if sep:
                error = sanitise(parts[1][sep.end():], MAX_FIELD) or None
        return url, error
    return None, sanitise(rest, MAX_FIELD) or None


def _other(rest: str, facility: int | None, severity: int | None) -> SyslogMessage:
    """A line that is not a resync/upgrade report; it may still name its phone (`$PN $MAC ...`, or a
    MAC-shaped Syslog Identifier in front of the message)."""
    mac = model = None
    lead = _LEADING_MAC.match(rest)
    if lead:
        mac = normalise_mac(lead.group("mac"))
        model = _model(lead.group("pn"))
    return SyslogMessage(Kind.OTHER, mac, model, None, None, sanitise(rest, MAX_TEXT), facility, severity)
