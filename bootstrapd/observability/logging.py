"""structlog set-up: JSON for journald, console on a TTY (design.md convention 11)."""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from bootstrapd.config.model import LogFormat, LogLevel


def configure(fmt: LogFormat = LogFormat.AUTO, level: LogLevel = LogLevel.INFO, stream: Any = None) -> None:
    stream = stream or sys.stderr
    console = fmt is LogFormat.CONSOLE or (fmt is LogFormat.AUTO and stream.isatty())
    renderer: Any = structlog.dev.ConsoleRenderer() if console else structlog.processors.JSONRenderer()
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


def get_logger(**bind: Any) -> Any:
    return structlog.get_logger("bootstrapd").bind(**bind)
