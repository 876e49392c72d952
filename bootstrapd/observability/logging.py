"""structlog set-up: JSON for journald, console on a TTY (design.md convention 11)."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import structlog

from bootstrapd.config.model import LogFormat, LogLevel


def configure(fmt: LogFormat = LogFormat.AUTO, level: LogLevel = LogLevel.INFO, stream: Any = None) -> None:
    stream = stream or sys.stderr
    console = fmt is LogFormat.CONSOLE or (fmt is LogFormat.AUTO and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else render_json
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.value.upper())),
        # One write per line (print() writes the line and its newline apart): the DHCP worker processes share
        # the stream, and whole lines up to PIPE_BUF never interleave.
        logger_factory=structlog.WriteLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


# json.dumps builds its C encoder again for every call; one built once renders the same text in half the time
# (a syslog flood logs one event per accepted line). No circular-reference check: events hold flat values.
_c_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_ENCODE: Any = (_c_encoder(None, repr, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True)
                if _c_encoder is not None else None)


def render_json(_logger: Any, _name: str, event_dict: dict[str, Any]) -> str:
    """structlog.processors.JSONRenderer's output (json.dumps, `repr` for what JSON cannot hold), cheaper."""
    if _ENCODE is None:
        return json.dumps(event_dict, default=repr)
    return "".join(_ENCODE(event_dict, 0))


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("bootstrapd").bind(**bind)
