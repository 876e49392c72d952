"""Syslog headers, leniently: PRI, then an RFC 5424 header, an RFC 3164 timestamp (or a variant), or none.

Phones differ by firmware and setting (mpp-bootstrap.md section 9): RFC 3164, RFC 5424, a bare message, or
Cisco ATAs' time since reset instead of a timestamp. Nothing here trusts the sender: every value is bounded
and sanitised, and nothing raises. We use the receive time and the source address, never the header's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_PRI = 191  # RFC 5424 section 6.2.1: facility 0..23 * 8 + severity 0..7
BOM = "\ufeff"  # RFC 5424 section 6.4: MSG may start with a UTF-8 BOM
REPLACEMENT = "\ufffd"

# RFC 3164 section 4.1.1 / RFC 5424 section 6.2.1: "<" 1-3 digits ">".
_PRI = re.compile(r"<(\d{1,3})>")
# RFC 5424 section 6: VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID SP, each maybe "-".
_RFC5424 = re.compile(r"[1-9]\d{0,2} (\S{1,64}) (\S{1,255}) (\S{1,48}) (\S{1,128}) (\S{1,32})(?: |$)")
# Timestamps seen in front of messages: RFC 3164 "Mmm dd hh:mm:ss" (IOS-style "*", fraction, year and a
# trailing colon tolerated), ISO 8601 (rsyslog without a version), and an ATA's time since reset
# ("[3d ]hh:mm:ss" or seconds with a fraction).
_TIMESTAMP = re.compile(
    r"[*.]?(?:"
    r"[A-Z][a-z]{2} {1,2}\d{1,2}(?: \d{4})? \d{1,2}:\d{2}:\d{2}(?:\.\d{1,9})?(?: [A-Z]{3,4})?"
    r"|\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2})?"
    r"|(?:\d{1,5}d ?)?\d{1,5}:\d{2}:\d{2}(?:\.\d{1,9})?"
    r"|\d{1,10}\.\d{1,9}"
    r"):? +"
)
# RFC 3164 section 4.1.3: HOSTNAME SP TAG[pid]: (a tag is alphanumeric, at most 32 characters).
_HOST_TAG = re.compile(r"[^\s:]{1,255} [\w./-]{1,32}(?:\[\w{1,16}\])?: ")
# RFC 5424 section 6.3: SD-ELEMENTs; inside a quoted PARAM-VALUE, `\"`, `\\` and `\]` are escapes.
# Each alternative starts with a different character, so a failed match costs one pass.
_SD = re.compile(r'(?:\[(?:[^"\]]|"(?:[^"\\]|\\.)*")*\])+', re.DOTALL)
# ANSI/VT100 escape sequences (CSI, OSC, two-character escapes): removed whole, so no parameter bytes remain.
_ANSI = re.compile(r"\x1b(?:\[[0-?]{0,32}[ -/]{0,8}[@-~]?|\][^\x07\x1b]{0,256}(?:\x07|\x1b\\)?|[@-Z\\-_]?)")
_CONTROLS = {c: REPLACEMENT for c in (*range(0x20), *range(0x7F, 0xA0))} | {0x09: " "}


@dataclass(frozen=True, slots=True)
class Header:
    facility: int | None
    severity: int | None
    rest: str  # what follows the header: the message, possibly after a 3164 HOSTNAME TAG:
    tagged: bool = False  # an RFC 3164 timestamp came first, so `rest` may start with HOSTNAME TAG:


def sanitise(value: str, limit: int) -> str:
    """Printable text of at most `limit` characters: escape sequences removed, tabs as spaces, every other
    non-printable character (controls, newlines, NUL, bidi overrides, surrogates) as U+FFFD, so a value
    can neither forge a log line nor a CSV row nor reorder a terminal's display."""
    if value.isprintable():  # a phone's line, nearly always: no escape, no control, nothing to replace
        return value[:limit].strip()
    value = _ANSI.sub("", value[: limit * 4])[:limit].translate(_CONTROLS)  # the common case at C speed
    if not value.isprintable():  # the rest of Unicode's non-printables: format, separators, surrogates
        value = "".join(c if c.isprintable() else REPLACEMENT for c in value)
    return value.strip()


def decode(datagram: bytes) -> str:
    """UTF-8 (RFC 5424 section 6.4); invalid bytes become U+FFFD instead of failing the message."""
    return datagram.decode("utf-8", errors="replace")


def parse_header(text: str) -> Header:
    """Split `text` (a decoded datagram) into PRI and the part after any header it recognises."""
    facility = severity = None
    pri = _PRI.match(text)
    if pri and int(pri.group(1)) <= MAX_PRI:
        value = int(pri.group(1))
        facility, severity = value >> 3, value & 7
        text = text[pri.end():]
        v5424 = _RFC5424.match(text)
        if v5424:
            return Header(facility, severity, _strip_bom(_skip_structured_data(text[v5424.end():])))
    # Without a valid PRI the whole datagram is the message (RFC 3164 section 4.3.3), minus a timestamp.
    stamp = _TIMESTAMP.match(text)
    if stamp:
        text = text[stamp.end():]
    return Header(facility, severity, _strip_bom(text), tagged=stamp is not None)


def strip_host_tag(rest: str) -> str:
    """The RFC 3164 MSG after `HOSTNAME TAG[pid]: `, when that is what `rest` starts with."""
    m = _HOST_TAG.match(rest)
    return rest[m.end():] if m else rest


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith(BOM) else text


def _skip_structured_data(text: str) -> str:
    """RFC 5424 section 6.3: "-" or one or more [SD-ID PARAM="value"...] elements, values escaping `"`, `\\`
    and `]` with a backslash. Returns the MSG after it; malformed SD leaves the text as the message."""
    if text.startswith("-"):
        return text[2:] if text.startswith("- ") else text[1:]
    sd = _SD.match(text)
    if sd is None:
        return text
    return text[sd.end() + 1:] if text.startswith(" ", sd.end()) else text[sd.end():]
