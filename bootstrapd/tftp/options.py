"""Option negotiation (RFC 2347, 2348 blksize, 2349 timeout/tsize, 7440 windowsize) as one pure function.

`negotiate(client_options, limits, size)` -> `Negotiated`: the values the session uses and the OACK's
options, which are only those the client asked for and we accept (RFC 2347: "the server ... includes in
the OACK only the options it accepts"). The choices where the RFCs leave room, documented once here:

- An option we do not know is ignored (RFC 2347 section "Option Acknowledgment").
- A value that is not a decimal number or is outside the RFC's range is ignored: the option is left out of
  the OACK and its default applies. blksize outside 8..65464 (RFC 2348: "valid values range between 8
  and 65464"): `0`, `7`, `-1`, `abc`, `65465`, `999999`; timeout outside 1..255 (RFC 2349); windowsize
  outside 1..65535 (RFC 7440). Leaving an option out is the RFC's own way of declining it, and the client
  then falls back to RFC 1350 behaviour, which every client supports; ERROR 8 would end the transfer of a
  file we could have sent.
- An option named twice is ambiguous and ignored altogether (neither value is used).
- blksize in range is clamped to our `blksize_max` and to the interface MTU minus 32 (20 IP + 8 UDP +
  4 TFTP header, so no DATA is fragmented); RFC 2348 allows answering a smaller value.
- windowsize in range is capped to `windowsize_max` (RFC 7440 allows a smaller value).
- timeout is accepted as sent (RFC 2349: the OACK value must match the request).
- tsize in a read request is answered with the file's real size (RFC 2349; clients send 0).
- ERROR 8 (RFC 2347) is sent only when there is no acceptable transfer at all; with the rules above that
  never happens for a read request, so `negotiate` never refuses. The shell answers write requests with
  ERROR 2 before negotiating.
"""

from __future__ import annotations

from dataclasses import dataclass

BLKSIZE_MIN, BLKSIZE_MAX_RFC = 8, 65464  # RFC 2348
TIMEOUT_MIN, TIMEOUT_MAX = 1, 255  # RFC 2349
WINDOW_MIN, WINDOW_MAX_RFC = 1, 65535  # RFC 7440
DEFAULT_BLKSIZE = 512  # RFC 1350
HEADERS = 20 + 8 + 4  # IPv4 + UDP + TFTP DATA header
KNOWN = ("blksize", "tsize", "timeout", "windowsize")


@dataclass(frozen=True, slots=True)
class Limits:
    blksize_max: int = 1468  # 1500-byte Ethernet MTU minus HEADERS
    windowsize_max: int = 64
    mtu: int = 1500  # of the interface the request came in on


@dataclass(frozen=True, slots=True)
class Negotiated:
    blksize: int = DEFAULT_BLKSIZE
    windowsize: int = 1
    timeout: int | None = None  # seconds the client asked for (RFC 2349), None: our own default
    oack: tuple[tuple[str, str], ...] = ()  # empty: no OACK, the transfer starts with DATA 1


def _number(value: str, low: int, high: int) -> int | None:
    """A decimal integer in [low, high], else None (`-1`, `+5`, ` 5`, `abc`, `1e3` are not numbers)."""
    if not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    n = int(value)
    return n if low <= n <= high else None


def negotiate(options: tuple[tuple[str, str], ...], limits: Limits, size: int) -> Negotiated:
    """The session's parameters and the OACK for a read request of a `size`-byte file."""
    counts: dict[str, int] = {}
    for name, _ in options:
        counts[name] = counts.get(name, 0) + 1
    asked = {name: value for name, value in options if counts[name] == 1 and name in KNOWN}
    blksize, windowsize, timeout = DEFAULT_BLKSIZE, 1, None
    oack: list[tuple[str, str]] = []
    for name, value in options:  # the OACK keeps the client's order
        if name not in asked:
            continue
        if name == "blksize" and (n := _number(value, BLKSIZE_MIN, BLKSIZE_MAX_RFC)) is not None:
            blksize = max(BLKSIZE_MIN, min(n, limits.blksize_max, limits.mtu - HEADERS))
            oack.append((name, str(blksize)))
        elif name == "windowsize" and (n := _number(value, WINDOW_MIN, WINDOW_MAX_RFC)) is not None:
            windowsize = max(1, min(n, limits.windowsize_max))
            oack.append((name, str(windowsize)))
        elif name == "timeout" and (n := _number(value, TIMEOUT_MIN, TIMEOUT_MAX)) is not None:
            timeout = n
            oack.append((name, str(n)))
        elif name == "tsize" and _number(value, 0, 2**63) is not None:
            oack.append((name, str(size)))
    return Negotiated(blksize, windowsize, timeout, tuple(oack))
