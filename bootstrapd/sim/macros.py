"""Profile-rule macro expansion: `$NAME`, `$(NAME)`, `$$` (mpp-bootstrap.md section 4).

`$NAME` takes the longest known macro name at that point, so `$MAC` is the colon form and `$MA.cfg` the
bare hex; an unknown `$NAME` stays as written (a phone would request it literally, and the provisioning
server's miss log then shows it).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping


@functools.lru_cache(maxsize=64)
def _names(names: tuple[str, ...]) -> re.Pattern[str]:
    """The longest of `names` at a position (an alternation tries them in order: longest first)."""
    return re.compile("|".join(re.escape(n) for n in sorted(names, key=len, reverse=True)) or "(?!)")


def expand(template: str, values: Mapping[str, str]) -> str:
    """`template` with every known macro replaced by its value. Jumps from `$` to `$` (a boot storm expands
    six syslog templates and a few rules per phone; a character loop was a tenth of the simulator's CPU)."""
    if "$" not in template:
        return template
    names = _names(tuple(values))
    out: list[str] = []
    i, end = 0, len(template)
    while (j := template.find("$", i)) >= 0 and j + 1 < end:
        out.append(template[i:j])
        if template[j + 1] == "$":
            out.append("$")
            i = j + 2
        elif template[j + 1] == "(" and (close := template.find(")", j + 2)) >= 0:
            name = template[j + 2:close]
            out.append(values.get(name, f"$({name})"))
            i = close + 1
        else:
            known = names.match(template, j + 1)
            out.append(values[known.group()] if known is not None else "$")
            i = known.end() if known is not None else j + 1
    out.append(template[i:])
    return "".join(out)


def resync_values(scheme: str, servip: str, port: int | None, path: str, err: str = "") -> dict[str, str]:
    """The macros of the `Log_*` templates (mpp-bootstrap.md section 9): where the phone resyncs from, why it
    failed. `$PORT` is the number even when it is the scheme's default (Cisco's own sample drops it)."""
    return {"SCHEME": scheme, "SERVIP": servip, "PORT": "" if port is None else str(port), "PATH": path,
            "ERR": err}
