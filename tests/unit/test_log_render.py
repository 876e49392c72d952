"""The daemon's JSON log renderer writes what structlog's JSONRenderer writes, for every kind of value."""

from __future__ import annotations

import structlog

from bootstrapd.observability.logging import render_json


class Opaque:
    def __repr__(self) -> str:
        return "<opaque>"


def test_render_json_matches_structlog() -> None:
    reference = structlog.processors.JSONRenderer()
    for event in ({"event": "syslog.message", "source": "198.18.1.5", "mac": None, "severity": 6},
                  {"event": "x", "text": "é \n \x1b \u2028 \"quoted\"", "n": 1.5, "big": 10**20, "ok": True},
                  {"event": "x", "nested": {"a": [1, None, {"b": "c"}]}, "obj": Opaque(), "t": (1, 2)},
                  {"event": "x", "nan": float("nan"), "inf": float("-inf")}):
        assert render_json(None, "info", dict(event)) == reference(None, "info", dict(event))
