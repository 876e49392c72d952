"""The inventory: one CSV row per expected device, as scanned off the boxes (site-yaml.md `files.inventory`).

Column `mac` is required (any of the site file's MAC spellings); `serial` and `key` (the profile encryption
key) are optional; every other column becomes a template variable, so its header must be an identifier.
Problems are located diagnostics (`inventory.csv:LINE: files.inventory: message`); a bad row is left out and
the rest of the file still read, so `check` reports every problem at once.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from bootstrapd.config.types import ValueProblem, parse_mac
from bootstrapd.config.yamlnodes import Diagnostic

RESERVED = frozenset({"device"})  # the template's own variable
MAX_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class Row:
    mac: str  # canonical 00:56:2b:04:36:15
    line: int  # where the row starts in the CSV file
    serial: str = ""
    key: str = ""
    columns: Mapping[str, str] = field(default_factory=dict)  # every column but mac, by header


@dataclass(frozen=True)
class Inventory:
    file: str
    rows: tuple[Row, ...] = ()
    by_mac: Mapping[str, Row] = field(default_factory=dict)
    columns: tuple[str, ...] = ()  # the header but `mac`: the variables an unknown device gets empty

    def get(self, mac: str | None) -> Row | None:
        return self.by_mac.get(mac) if mac else None


def parse_inventory(text: str, file: str, path: str = "files.inventory") -> tuple[Inventory, list[Diagnostic]]:
    """Rows of the CSV `text`, and every problem found, each with its line."""
    diags: list[Diagnostic] = []

    def error(line: int, message: str) -> None:
        diags.append(Diagnostic(file, line, path, message))

    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        error(1, "the inventory is empty: a header row with a `mac` column is required")
        return Inventory(file), diags
    except csv.Error as e:
        error(1, f"not CSV: {e}")
        return Inventory(file), diags
    if "mac" not in header:
        error(1, f"no `mac` column in the header ({', '.join(header) or 'empty'})")
        return Inventory(file), diags
    for h in header:
        if not h.isidentifier() or h in RESERVED:
            error(1, f"column {h!r} cannot be a template variable (use letters, digits and _; not 'device')")
    if len(set(header)) != len(header):
        error(1, "duplicate column names in the header")
    rows: list[Row] = []
    by_mac: dict[str, Row] = {}
    start = reader.line_num + 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1
            if not any(c.strip() for c in cells):
                continue
            if len(rows) >= MAX_ROWS:
                error(line, f"more than {MAX_ROWS} rows; the rest is ignored")
                break
            row = _row(header, cells, line, error)
            if row is None:
                continue
            first = by_mac.get(row.mac)
            if first is not None:
                error(line, f"duplicate MAC {row.mac} (first at line {first.line})")
                continue
            by_mac[row.mac] = row
            rows.append(row)
    except csv.Error as e:
        error(reader.line_num, f"not CSV: {e}")
    columns = tuple(h for h in header if h != "mac")
    return Inventory(file, tuple(rows), by_mac, columns), diags


def _row(header: list[str], cells: list[str], line: int, error: Callable[[int, str], None]) -> Row | None:
    if len(cells) != len(header):
        error(line, f"{len(cells)} cells where the header has {len(header)}")
        return None
    values = {h: c.strip() for h, c in zip(header, cells, strict=True)}
    try:
        mac = parse_mac(values["mac"])
    except ValueProblem as e:
        error(line, str(e))
        return None
    columns = {h: v for h, v in values.items() if h != "mac"}
    return Row(mac, line, values.get("serial", ""), values.get("key", ""), columns)


def read_inventory(file: str, path: str = "files.inventory") -> tuple[Inventory, list[Diagnostic]]:
    """`parse_inventory` of a file; an unreadable file is one diagnostic."""
    try:
        with open(file, encoding="utf-8", newline="") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        return Inventory(file), [Diagnostic(file, 1, path, f"cannot read the inventory: {e}")]
    return parse_inventory(text, file, path)

