"""The HTTP and HTTPS file service: aiohttp's low-level server on one or two ports, our handler and limits.

aiohttp (not our own parser, design.md "The file service") does HTTP/1.0 and 1.1, keep-alive, and bounds
the request line and headers; `http_conn` adds the head deadline, idle timeout and connection cap, and
`http_handler` is the handler. Both ports share one tracker, so the connection cap covers both.
A TCP user timeout drops a client that stops reading (ACKs nothing, or keeps a zero window) in the middle of
a firmware download, which no timer of ours sees while sendfile runs.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from typing import Any

from bootstrapd.files.outcome import Protocol, Refused
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.http_conn import HttpProtocol, HttpServer, Limit, Limits, Tracker
from bootstrapd.transport.http_handler import FetchHook, FileHandler, Recorder, Resolver

TCP_USER_TIMEOUT_MS = 60_000  # unacknowledged data (or a zero window) for this long closes the connection
BACKLOG = 1024
LINGERING_TIME = 2.0  # seconds aiohttp keeps reading an unread body after answering


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context from PEM files: TLS 1.2+ (MPP firmware 11.x speaks 1.2), the library's ciphers."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx


class HttpFileServer:
    def __init__(self, address: str, resolve: Resolver, on_fetch: FetchHook, metrics: Metrics, log: Any, *,
                 http_port: int | None, https_port: int | None = None, ssl_context: ssl.SSLContext | None = None,
                 auth: tuple[str, str] | None = None, limits: Limits | None = None) -> None:
        if https_port is not None and ssl_context is None:
            raise ValueError("https_port needs an ssl_context")
        self.address = address
        self.resolve = resolve
        self.on_fetch = on_fetch
        self.metrics = metrics
        self.log = log
        self.ports = {Protocol.HTTP: http_port, Protocol.HTTPS: https_port}
        self.ssl_context = ssl_context
        self.auth = auth
        self.limits = limits or Limits()
        self.tracker = Tracker(self.limits, self._limit_closed, metrics.http_connections.set)
        self.recorder = Recorder(metrics, log, on_fetch)
        self._servers: list[tuple[Protocol, HttpServer, asyncio.Server]] = []

    @property
    def bound(self) -> dict[Protocol, int]:
        """The ports actually listening (port 0 asks the kernel for one)."""
        return {protocol: srv.sockets[0].getsockname()[1] for protocol, _, srv in self._servers}

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tracker.start()
        try:
            for protocol, port in self.ports.items():
                if port is None:
                    continue
                handler = FileHandler(protocol, self.resolve, self.recorder, self.tracker, self.limits, self.auth)
                server = HttpServer(handler, self.tracker, functools.partial(self._parse_error, protocol),
                                    **self._aiohttp_options())
                tls: dict[str, Any] = {}
                if protocol is Protocol.HTTPS:
                    tls = {"ssl": self.ssl_context, "ssl_handshake_timeout": self.limits.head_timeout}
                srv = await loop.create_server(server, sock=self._listen(port), **tls)
                self._servers.append((protocol, server, srv))
                self.log.info("files.http_listening", protocol=protocol.value, address=self.address,
                              port=srv.sockets[0].getsockname()[1])
        except BaseException:
            await self.stop()
            raise

    def _aiohttp_options(self) -> dict[str, Any]:
        lim = self.limits
        return {"max_line_size": lim.max_line_size, "max_field_size": lim.max_field_size,
                "max_headers": lim.max_headers, "keepalive_timeout": 2 * lim.idle_timeout,
                "lingering_time": LINGERING_TIME, "access_log": None, "auto_decompress": False}

    def _listen(self, port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, TCP_USER_TIMEOUT_MS)
            sock.bind((self.address, port))
            sock.listen(BACKLOG)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def stop(self) -> None:
        for _, server, srv in self._servers:
            srv.close()
            server.pre_shutdown()
        for _, server, srv in self._servers:
            await srv.wait_closed()
            await server.shutdown(1.0)
        self._servers.clear()
        await self.tracker.stop()

    def _limit_closed(self, limit: Limit) -> None:
        self.metrics.http_limit_closes.labels(limit.value).inc()

    def _parse_error(self, protocol: Protocol, proto: HttpProtocol, status: int, reason: str) -> None:
        """A request aiohttp's parser refused (no FileRequest could be built): counted and logged."""
        self.recorder(Refused(None, reason, status), protocol=protocol)
