"""A DeviceState as JSON text and back, for the tracker's table (the `funnel` column)."""

from __future__ import annotations

import json
import operator
from typing import Any

from bootstrapd.floor.funnel import STAGES, DeviceState, DiscoveryPath, Stage, Upgrade, clip

_TEXT = ("upgrade_url", "upgrade_error", "address", "model", "firmware", "profile", "resync_url", "resync_error")
_TIMES = ("upgrade_since", "profile_at")
# One encoder, called without JSONEncoder.encode's per-call set-up: json.dumps with `separators` built a
# JSONEncoder for every row, and JSONEncoder.encode builds its C encoder again for every call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))
_C_ENCODER = getattr(json.encoder, "c_make_encoder", None)
_ENCODE = (_C_ENCODER(None, _ENCODER.default, json.encoder.encode_basestring_ascii, None, ":", ",", False, False,
                      True) if _C_ENCODER is not None else None)
_LABELS = {s: s.label for s in Stage}
_OPTIONAL = (*_TEXT, *_TIMES)
_GET_OPTIONAL = operator.attrgetter(*_OPTIONAL)  # (Stage.label is a property over Enum.name, a Python call each)


def dumps(state: DeviceState) -> str:
    """The state as compact JSON: a field that is None (or no conflicts) is left out, and `loads` reads it
    back as None. A leased phone's row is half the size (190 bytes): fewer SQLite pages, less to encode."""
    stage, upgrade, path, timeline = state.stage, state.upgrade, state.path, state.timeline
    out: dict[str, Any] = {"first_seen": state.first_seen, "since": state.since,
                           "timeline": timeline if type(timeline) is dict else dict(timeline)}
    if stage is not None:
        out["stage"] = _LABELS[stage]
    if upgrade is not None:
        out["upgrade"] = upgrade._value_
    if path is not None:
        out["path"] = path._value_
    if state.conflicts:
        out["conflicts"] = state.conflicts
    for name, value in zip(_OPTIONAL, _GET_OPTIONAL(state), strict=True):
        if value is not None:
            out[name] = value
    if _ENCODE is None:
        return _ENCODER.encode(out)
    return "".join(_ENCODE(out, 0))


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
