"""`bootstrapd leases` and `bootstrapd devices`: rows from the databases, as a table, JSON or CSV.

Both read while the daemon runs (SQLite WAL readers do not block the writer). Values are strings or
None; times are ISO 8601 in UTC. The table escapes what a hostile client could put in option 12 or 60
(control characters, escape sequences); JSON and CSV carry the values as sent.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from bootstrapd.dhcp.leases import Lease, effective_state
from bootstrapd.observability.devices import Device
from bootstrapd.observability.metrics import model_label

Row = dict[str, str | None]

LEASE_COLUMNS = (
    "address", "mac", "client_id", "state", "subnet", "expires", "hostname", "vendor_class", "device_class",
)
DEVICE_COLUMNS = (
    "mac", "address", "class", "model", "vendor_class", "hostname", "first_seen", "last_seen", "stage",
)
FORMATS = ("table", "json", "csv")


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def lease_rows(leases: Iterable[Lease], now: float) -> list[Row]:
    """One row per lease record, in address order; `state` as of `now` (a lapsed lease shows expired)."""
    rows = []
    for lease in sorted(leases, key=lambda x: x.address):
        rows.append({
            "address": str(lease.address),
            "mac": lease.chaddr.hex(":") or None,
            "client_id": lease.client_id.hex(":") or None,
            "state": effective_state(lease, now).value,
            "subnet": lease.subnet,
            "expires": iso(lease.expires),
            "hostname": lease.hostname,
            "vendor_class": lease.vendor_class,
            "device_class": lease.device_class,
        })
    return rows


def device_rows(devices: Iterable[Device]) -> list[Row]:
    """One row per device, first seen first. `model` is a recognised Cisco MPP model from option 60."""
    rows = []
    for d in sorted(devices, key=lambda x: (x.first_seen, x.chaddr)):
        model = model_label(d.vendor_class)
        rows.append({
            "mac": d.mac,
            "address": str(d.address) if d.address is not None else None,
            "class": d.device_class,
            "model": model if model != "other" else None,
            "vendor_class": d.vendor_class,
            "hostname": d.hostname,
            "first_seen": iso(d.first_seen),
            "last_seen": iso(d.last_seen),
            "stage": d.stage.label if d.stage is not None else None,
        })
    return rows


def render(rows: Sequence[Row], columns: Sequence[str], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
        writer.writeheader()
        writer.writerows({k: "" if v is None else v for k, v in row.items()} for row in rows)
        return out.getvalue()
    return _table(rows, columns)


def _printable(value: str | None) -> str:
    if value is None or value == "":
        return "-"
    if value.isprintable() and " " not in value:
        return value
    return value.encode("unicode_escape").decode("ascii").replace(" ", "\\x20")


def _table(rows: Sequence[Row], columns: Sequence[str]) -> str:
    cells = [[_printable(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines) + "\n"
