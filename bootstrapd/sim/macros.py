"""Profile-rule macro expansion: `$NAME`, `$(NAME)`, `$$` (mpp-bootstrap.md section 4).

`$NAME` takes the longest known macro name at that point, so `$MAC` is the colon form and `$MA.cfg` the
bare hex; an unknown `$NAME` stays as written (a phone would request it literally, and the provisioning
server's miss log then shows it).
"""

from __future__ import annotations

from collections.abc import Mapping


def expand(template: str, values: Mapping[str, str]) -> str:
    """`template` with every known macro replaced by its value."""
    names = sorted(values, key=len, reverse=True)
    out: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch != "$" or i + 1 == len(template):
            out.append(ch)
            i += 1
            continue
        rest = template[i + 1:]
        if rest.startswith("$"):
            out.append("$")
            i += 2
        elif rest.startswith("(") and ")" in rest:
            name = rest[1:rest.index(")")]
            out.append(values.get(name, f"$({name})"))
            i += len(name) + 3
        else:
            known = next((n for n in names if rest.startswith(n)), None)
            out.append(values[known] if known is not None else "$")
            i += 1 + (len(known) if known is not None else 0)
    return "".join(out)


def resync_values(scheme: str, servip: str, port: int | None, path: str, err: str = "") -> dict[str, str]:
    """The macros of the `Log_*` templates (mpp-bootstrap.md section 9): where the phone resyncs from, why it
    failed. `$PORT` is the number even when it is the scheme's default (Cisco's own sample drops it)."""
    return {"SCHEME": scheme, "SERVIP": servip, "PORT": "" if port is None else str(port), "PATH": path,
            "ERR": err}
