"""A DeviceState as JSON text and back, for the tracker's table (the `funnel` column)."""

from __future__ import annotations

import json
from typing import Any

from bootstrapd.floor.funnel import STAGES, DeviceState, DiscoveryPath, Upgrade, clip

_TEXT = ("upgrade_url", "upgrade_error", "address", "model", "firmware", "profile", "resync_url", "resync_error")
_TIMES = ("upgrade_since", "profile_at")
# One encoder: json.dumps with `separators` builds a JSONEncoder for every call (a row per device per second).
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def dumps(state: DeviceState) -> str:
    out: dict[str, Any] = {
        "first_seen": state.first_seen, "since": state.since,
        "stage": state.stage.label if state.stage is not None else None,
        "timeline": dict(state.timeline),
        "upgrade": state.upgrade.value if state.upgrade is not None else None,
        "path": state.path.value if state.path is not None else None,
        "conflicts": list(state.conflicts),
    }
    for name in (*_TEXT, *_TIMES):
        out[name] = getattr(state, name)
    return _ENCODER.encode(out)


def loads(mac: str, text: str) -> DeviceState:
    """The state written by `dumps`; ValueError when it is not (a damaged row)."""
    try:
        raw = json.loads(text)
        stage, upgrade, path = raw.get("stage"), raw.get("upgrade"), raw.get("path")
        extra: dict[str, Any] = {n: _text(raw.get(n)) for n in _TEXT}
        extra.update({n: float(raw[n]) if raw.get(n) is not None else None for n in _TIMES})
        return DeviceState(
            mac, float(raw["first_seen"]),
            stage=STAGES[stage] if stage is not None else None,
            since=float(raw["since"]),
            timeline={str(k): float(v) for k, v in dict(raw.get("timeline") or {}).items()},
            upgrade=Upgrade(upgrade) if upgrade is not None else None,
            path=DiscoveryPath(path) if path is not None else None,
            conflicts=tuple(str(c) for c in raw.get("conflicts") or ()),
            **extra,
        )
    except (KeyError, TypeError, AttributeError, ValueError) as e:
        raise ValueError(f"not a device state: {e}") from e


def _text(value: Any) -> str | None:
    return clip(str(value)) if value is not None else None
