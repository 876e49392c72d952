"""Profile names written in the phone's own macros (mpp-bootstrap.md sections 4 and 10), compiled to regexes.

A profile's `names: ["$PN.cfg", "$PSN.xml", "Cisco/$MA.cfg"]` says which requested names it answers, in the
same spelling as the profile rules that make phones ask for them. Matching is case-insensitive and the
leading `/` optional on both sides. A match yields what the macros captured:

- `$PN` and `$PSN` capture the product: `CP-7841-3PCC` or `7841-3PCC`. Cisco's own examples disagree on
  which macro carries the `CP-` prefix, so both accept it optional: `$PN.cfg` + `$PSN.xml` answer all of
  `7841-3PCC.xml`, `CP-7841-3PCC.xml` and `CP-7841-3PCC.cfg` (the policy of section 4).
- `$MA`/`$MAU` capture 12 hex digits, `$MAC` the colon form; the captured MAC is returned canonical.
- `$NAME` takes the longest known name (`$MAC` before `$MA`), `$(NAME)` is explicit, `$$` is a literal `$`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bootstrapd.config.types import parse_mac
from bootstrapd.errors import BootstrapdError

_MODEL = r"[0-9][0-9A-Za-z]{1,9}"  # 7841, 8845, 6871, 8832NR
_HEX12 = r"[0-9A-Fa-f]{12}"
_COLON = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
_PRODUCT = rf"(?:CP-)?(?P<GROUP>{_MODEL})-3PCC"

# macro -> (capture kind, regex whose named group GROUP is renamed per occurrence)
MACROS: dict[str, tuple[str, str]] = {
    "PN": ("model", _PRODUCT),
    "PSN": ("model", _PRODUCT),
    "MA": ("mac", rf"(?P<GROUP>{_HEX12})"),
    "MAU": ("mac", rf"(?P<GROUP>{_HEX12})"),
    "MAC": ("mac", rf"(?P<GROUP>{_COLON})"),
}
_BY_LENGTH = sorted(MACROS, key=len, reverse=True)


class PatternError(BootstrapdError, ValueError):
    """A `names` entry that cannot be compiled (unknown macro, empty)."""


@dataclass(frozen=True, slots=True)
class NameMatch:
    model: str | None  # the bare model (7841), when the pattern has $PN/$PSN
    mac: str | None  # canonical 00:56:2b:04:36:15, when the pattern has $MA/$MAU/$MAC

    @property
    def pn(self) -> str | None:
        return f"CP-{self.model}-3PCC" if self.model else None


@dataclass(frozen=True, slots=True)
class NamePattern:
    text: str  # as written in the site file
    regex: re.Pattern[str]
    kinds: tuple[tuple[str, str], ...]  # (group name, "model" | "mac")

    def match(self, name: str) -> NameMatch | None:
        m = self.regex.fullmatch(name.lstrip("/"))
        if m is None:
            return None
        values: dict[str, str] = {}
        for group, kind in self.kinds:
            value = m.group(group)
            if kind == "mac":
                value = parse_mac(value)  # the regex admits only MACs
            elif kind == "model":
                value = value.upper()
            if values.setdefault(kind, value) != value:
                return None  # `$MA/$MAC.cfg` with two different MACs is nobody's name
        return NameMatch(values.get("model"), values.get("mac"))


def compile_name(text: str) -> NamePattern:
    """One `names` entry as a pattern; PatternError says why it cannot be one."""
    body = text.lstrip("/")
    if not body:
        raise PatternError(f"empty name pattern {text!r}")
    parts: list[str] = []
    kinds: list[tuple[str, str]] = []
    i = 0
    while i < len(body):
        if body[i] != "$":
            j = body.find("$", i)
            j = len(body) if j < 0 else j
            parts.append(re.escape(body[i:j]))
            i = j
            continue
        macro, i = _macro_at(body, i, text)
        if macro is None:
            parts.append(re.escape("$"))
            continue
        kind, rx = MACROS[macro]
        group = f"g{len(kinds)}"
        kinds.append((group, kind))
        parts.append(rx.replace("(?P<GROUP>", f"(?P<{group}>"))
    return NamePattern(text, re.compile("".join(parts), re.IGNORECASE), tuple(kinds))


def _macro_at(body: str, i: int, text: str) -> tuple[str | None, int]:
    """The macro starting at body[i] == '$' and the index after it; None for `$$` (a literal `$`)."""
    rest = body[i + 1 :]
    if rest.startswith("$"):
        return None, i + 2
    if rest.startswith("("):
        end = rest.find(")")
        name = rest[1:end] if end > 0 else ""
        if name not in MACROS:
            raise PatternError(f"unknown macro $({name}) in {text!r} (known: {', '.join(MACROS)})")
        return name, i + end + 2
    longest = next((n for n in _BY_LENGTH if rest.startswith(n)), None)
    if longest is None:
        word = re.match(r"[A-Za-z_]*", rest)
        shown = word.group(0) if word else ""
        raise PatternError(f"unknown macro ${shown} in {text!r} (known: {', '.join(MACROS)}; `$$` is a literal $)")
    return longest, i + 1 + len(longest)
