"""The HTTP file service's connections: aiohttp's protocol with our limits, and the tracker that enforces them.

aiohttp parses (llhttp) and bounds the request line, header sizes and header count; what it does not do is a
deadline for the whole request head (a client trickling one byte every few seconds keeps resetting nothing
in aiohttp), a cap on connections, and counting why a connection was closed. `Tracker` keeps one entry per
connection, in the order they last finished a request, so the longest-idle one is at the front:
- a new connection beyond `max_connections` evicts the longest-idle connection that is not serving a
  request (an idle keep-alive, or a client still trickling its head); when every connection is serving,
  the new one is closed instead. 1,000 idle sockets therefore never keep a phone out.
- a sweep every `tick` seconds closes connections idle longer than `idle_timeout` and connections whose
  request head has not been completely received within `head_timeout` of its first byte.
aiohttp's own keep-alive timer stays as a backstop (twice our idle timeout) and never fires first.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from aiohttp.web_protocol import RequestHandler


class Limit(enum.Enum):
    """Why a connection was closed by us; the value is the `limit` label of bootstrapd_http_limit_closes_total."""

    CONNECTIONS = "connections"  # the cap: evicted (longest idle) or refused on arrival
    IDLE = "idle"  # keep-alive idle longer than idle_timeout
    HEAD_TIMEOUT = "head_timeout"  # request head not complete within head_timeout of its first byte
    REQUEST_LINE = "request_line"  # request line longer than max_line_size (414)
    HEADER_SIZE = "header_size"  # one header longer than max_field_size (431)
    HEADER_COUNT = "header_count"  # more than max_headers headers (431)
    BODY = "body"  # a POST body larger than max_body or slower than body_timeout (413/408)


@dataclass(frozen=True, slots=True)
class Limits:
    max_line_size: int = 4096  # request line; Cisco URLs are short (aiohttp default 8190)
    max_field_size: int = 8190  # one header line
    max_headers: int = 64  # header count (aiohttp default 128); phones send under 10
    max_body: int = 64 * 1024  # POST status bodies
    body_timeout: float = 10.0  # seconds to receive a POST body
    head_timeout: float = 10.0  # seconds from a request's first byte to its complete head
    idle_timeout: float = 15.0  # keep-alive idle (also before the first request)
    max_connections: int = 512
    tick: float = 0.5  # sweep period


@dataclass(eq=False, slots=True)
class Conn:
    protocol: HttpProtocol
    transport: asyncio.Transport
    idle_since: float
    head_started: float | None = None
    busy: bool = False


CloseHook = Callable[[Limit], None]


class Tracker:
    def __init__(self, limits: Limits, on_close: CloseHook, on_count: Callable[[int], None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._on_close = on_close
        self._on_count = on_count
        self._conns: dict[HttpProtocol, Conn] = {}  # insertion order = order of last request end
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._conns)

    def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    def opened(self, protocol: HttpProtocol, transport: asyncio.Transport) -> None:
        self._conns[protocol] = Conn(protocol, transport, self.clock())
        if len(self._conns) > self.limits.max_connections:
            victim = next((c for c in self._conns.values() if not c.busy and c.protocol is not protocol), None)
            self._close((victim or self._conns[protocol]).protocol, Limit.CONNECTIONS)
        self._on_count(len(self._conns))

    def closed(self, protocol: HttpProtocol) -> None:
        if self._conns.pop(protocol, None) is not None:
            self._on_count(len(self._conns))

    def data(self, protocol: HttpProtocol) -> None:
        conn = self._conns.get(protocol)
        if conn is not None and not conn.busy and conn.head_started is None:
            conn.head_started = self.clock()

    def request_started(self, protocol: HttpProtocol) -> None:
        conn = self._conns.get(protocol)
        if conn is not None:
            conn.busy = True

    def request_ended(self, protocol: HttpProtocol) -> None:
        conn = self._conns.pop(protocol, None)
        if conn is not None:
            conn.busy, conn.head_started, conn.idle_since = False, None, self.clock()
            self._conns[protocol] = conn  # to the back: most recently active

    def limit_hit(self, limit: Limit) -> None:
        """A limit enforced elsewhere (the parser, the body reader) closed a connection."""
        self._on_close(limit)

    def _close(self, protocol: HttpProtocol, limit: Limit) -> None:
        self._on_close(limit)
        self._conns.pop(protocol, None)
        protocol.force_close()

    def sweep(self) -> None:
        now, lim = self.clock(), self.limits
        expired: list[tuple[HttpProtocol, Limit]] = []
        for proto, conn in self._conns.items():
            if conn.busy:
                continue
            if conn.head_started is not None:
                if now - conn.head_started > lim.head_timeout:
                    expired.append((proto, Limit.HEAD_TIMEOUT))
            elif now - conn.idle_since > lim.idle_timeout:
                expired.append((proto, Limit.IDLE))
        for proto, limit in expired:
            self._close(proto, limit)
        if expired:
            self._on_count(len(self._conns))

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.limits.tick)
            self.sweep()


ParseErrorHook = Callable[["HttpProtocol", int, str], None]


def classify_parse_error(exc: BaseException | None, limits: Limits) -> tuple[int, str, Limit | None]:
    """(status, reason, limit) for a request aiohttp's parser rejected."""
    if isinstance(exc, LineTooLong):
        if len(exc.args) > 1 and exc.args[1] == limits.max_line_size:
            return 414, Limit.REQUEST_LINE.value, Limit.REQUEST_LINE
        return 431, Limit.HEADER_SIZE.value, Limit.HEADER_SIZE
    if isinstance(exc, BadHttpMessage) and "Too many headers" in str(exc):
        return 431, Limit.HEADER_COUNT.value, Limit.HEADER_COUNT
    return 400, "bad_request", None


class HttpProtocol(RequestHandler):
    """aiohttp's per-connection protocol, reporting to the tracker and answering parse errors our way."""

    tracker: Tracker
    on_parse_error: ParseErrorHook
    client: IPv4Address | None = None  # the peer, parsed at its first request

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.transport is not None:
            self.tracker.opened(self, self.transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.tracker.closed(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if data:
            self.tracker.data(self)
        super().data_received(data)

    def handle_error(self, request: Any, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if status == 500:  # a bug in our handler, not a bad request: aiohttp's answer, logged by the hook
            self.on_parse_error(self, 500, "internal_error")
            resp: web.StreamResponse = web.Response(status=500, text="500\n", headers={"Server": "bootstrapd"})
        else:
            code, reason, limit = classify_parse_error(exc, self.tracker.limits)
            if limit is not None:
                self.tracker.limit_hit(limit)
            self.on_parse_error(self, code, reason)
            resp = web.Response(status=code, text=f"{code}\n", headers={"Server": "bootstrapd"})
        resp.force_close()
        return resp

    def log_exception(self, *args: Any, **kw: Any) -> None:
        """Silenced: every error is one `files.fetch` event of ours, not an aiohttp traceback."""


class HttpServer(web.Server):
    """aiohttp's low-level server (no router: no trailing-slash redirects), making our protocol."""

    def __init__(self, handler: Any, tracker: Tracker, on_parse_error: ParseErrorHook, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self.tracker = tracker
        self.on_parse_error = on_parse_error

    def __call__(self) -> RequestHandler:
        proto = HttpProtocol(self, loop=self._loop, **self._kwargs)
        proto.tracker = self.tracker
        proto.on_parse_error = self.on_parse_error
        return proto
