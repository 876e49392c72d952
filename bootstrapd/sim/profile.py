"""Reading a fetched profile as a phone does (mpp-bootstrap.md section 6), after any decryption.

XML `<flat-profile>`, optionally inside `<device>`; each child's tag names a parameter and its text is
the value; the last duplicate wins; unknown tags are simply kept (the phone ignores them, we look up only
what we use). A gzip body (magic 1f 8b) is inflated first. A profile is untrusted input: a DTD or an
entity declaration is refused outright (no entity expansion at all), and sizes are bounded.
"""

from __future__ import annotations

import gzip
import xml.etree.ElementTree as ET
import zlib
from collections.abc import Mapping

GZIP_MAGIC = b"\x1f\x8b"
MAX_INFLATED = 1 << 20  # bytes of XML after gunzip; a profile is a few kB
MAX_PARAMETERS = 10_000
MAX_VALUE = 4096  # characters kept of one value


class ProfileError(ValueError):
    """Not a profile the phone can use; the message says why (it ends up in the report)."""


def _inflate(data: bytes) -> bytes:
    d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip framing
    try:
        out = d.decompress(data, MAX_INFLATED + 1)
    except zlib.error as e:
        raise ProfileError(f"bad gzip: {e}") from None
    if len(out) > MAX_INFLATED:
        raise ProfileError(f"gzip inflates to more than {MAX_INFLATED} bytes")
    return out


def parse_profile(data: bytes) -> dict[str, str]:
    """Parameter name -> value of a `<flat-profile>` (gzipped or not)."""
    if data.startswith(GZIP_MAGIC):
        data = _inflate(data)
    try:
        # UTF-8 (ASCII in practice): decoding first means no other encoding can hide a declaration below.
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProfileError(f"not UTF-8 text at byte {e.start}") from None
    if "<!DOCTYPE" in text or "<!ENTITY" in text:
        raise ProfileError("a DTD or entity declaration in the profile (refused)")
    try:
        root = ET.fromstring(text.removeprefix("\ufeff"))
    except ET.ParseError as e:
        raise ProfileError(f"not XML: {e}") from None
    if root.tag == "device":
        found = root.find("flat-profile")
        if found is None:
            raise ProfileError("<device> without a <flat-profile>")
        root = found
    if root.tag != "flat-profile":
        raise ProfileError(f"<{root.tag}> is not a <flat-profile>")
    params: dict[str, str] = {}
    for child in root:
        if not isinstance(child.tag, str):  # comments and processing instructions
            continue
        if len(params) >= MAX_PARAMETERS and child.tag not in params:
            raise ProfileError(f"more than {MAX_PARAMETERS} parameters")
        params[child.tag] = (child.text or "").strip()[:MAX_VALUE]
    return params


def compress(xml: bytes) -> bytes:
    """gzip, as a provisioning server applies it before encryption (used by the lab server and tests)."""
    return gzip.compress(xml, mtime=0)


def number(params: Mapping[str, str], name: str, default: float) -> float:
    """A numeric parameter, or `default` when unset or not a number (a phone keeps its default then)."""
    try:
        value = float(params.get(name, ""))
    except ValueError:
        return default
    return value if value >= 0 else default
