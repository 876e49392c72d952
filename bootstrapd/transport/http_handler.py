"""The HTTP file service's request handler: one request in, one response and one outcome out.

- GET and HEAD answer the same headers (HEAD without the body). POST is how a phone's profile rule with
  `--post` fetches: its body (the phone's status, at most `max_body` bytes) is logged as one `files.post`
  event and the request is then answered exactly like a GET of the same path. Other methods: 405 + Allow.
- The path is percent-decoded once, by us, from the raw target (query dropped; absolute-form targets give
  their path); bytes that are not UTF-8 are a bad name. Every miss, traversal included, is a plain 404:
  no redirect ever (firmware before 11.1(2) mishandles them) and nothing learnt about the file system;
  the reason is in the log and in the `result` label.
- Every response carries Content-Length (never chunked). Rendered bodies come from memory; static files
  are opened with `jail.open_regular` and streamed with `loop.sendfile` (sendfile(2) on HTTP, bounded
  read/write chunks on TLS), never read whole.
- Optional Basic authentication: 401 with WWW-Authenticate, credentials compared in constant time.
- Every request ends in exactly one outcome handed to `on_fetch` (and one `files.fetch` event): `Fetched`
  for a 200 (a HEAD too, with bytes_sent 0), `Refused` otherwise, also when the client leaves mid-response
  (`aborted`, with the bytes sendfile got out). The name in `FileRequest` is the decoded path with its
  leading slash (`/Cisco/SEP....cfg`); the jail and the resolver ignore leading slashes.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import hmac
import ipaddress
import os
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from aiohttp import hdrs, web
from aiohttp.web_protocol import RequestPayloadError

from bootstrapd.files import jail
from bootstrapd.files.outcome import (
    Device,
    Fetched,
    FileRequest,
    Miss,
    MissReason,
    Protocol,
    Refused,
    Rendered,
    Static,
)
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.http_conn import HttpProtocol, Limit, Limits, Tracker

Resolver = Callable[[FileRequest], Rendered | Static | Miss]
FetchHook = Callable[[Fetched | Refused], None]

ALLOW = "GET, HEAD, POST"
SERVER = "bootstrapd"  # not aiohttp's default, which names the Python and aiohttp versions
POST_LOG_CHARS = 1024  # of a status body, in the `files.post` event
_NO_CLIENT = ipaddress.IPv4Address(0)


class HttpRefusal(enum.Enum):
    """The shell's own refusal reasons (beside MissReason); values are log fields and `result` labels."""

    METHOD_NOT_ALLOWED = "method_not_allowed"  # 405 (RFC 9110 15.5.6)
    UNAUTHORIZED = "unauthorized"  # 401 (RFC 9110 15.5.2, RFC 7617)
    BODY_TOO_LARGE = "body_too_large"  # 413 (RFC 9110 15.5.14)
    BODY_TIMEOUT = "body_timeout"  # 408 (RFC 9110 15.5.9)
    ABORTED = "aborted"  # the client went away during the response
    INTERNAL_ERROR = "internal_error"  # a bug: the resolver raised; 500


class FileHandler:
    """The aiohttp request handler for one port (`protocol` is HTTP or HTTPS)."""

    def __init__(self, protocol: Protocol, resolve: Resolver, recorder: Recorder, tracker: Tracker,
                 limits: Limits, auth: tuple[str, str] | None) -> None:
        self.protocol = protocol
        self.resolve = resolve
        self.recorder = recorder
        self.log = recorder.log
        self.tracker = tracker
        self.limits = limits
        self._credentials = None if auth is None else f"{auth[0]}:{auth[1]}".encode()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        proto = request.protocol
        assert isinstance(proto, HttpProtocol)
        self.tracker.request_started(proto)
        try:
            return await self._serve(request, proto, time.monotonic())
        finally:
            self.tracker.request_ended(proto)

    async def _serve(self, request: web.BaseRequest, proto: HttpProtocol, start: float) -> web.StreamResponse:
        name = decode_path(request.rel_url.raw_path)
        if proto.client is None:  # parsed once per connection: ipaddress takes ~14 us
            proto.client = client_address(request)
        freq = FileRequest(name if name is not None else request.rel_url.raw_path, self.protocol,
                           proto.client, request.headers.get(hdrs.USER_AGENT))
        if request.method not in (hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_POST):
            return await self._refuse(request, freq, start, 405, HttpRefusal.METHOD_NOT_ALLOWED.value,
                                      headers={hdrs.ALLOW: ALLOW})
        if self._credentials is not None and not self._authorized(request):
            return await self._refuse(request, freq, start, 401, HttpRefusal.UNAUTHORIZED.value,
                                      headers={hdrs.WWW_AUTHENTICATE: 'Basic realm="bootstrapd", charset="UTF-8"'})
        if request.method == hdrs.METH_POST:
            refusal = await self._read_post(request, freq)
            if refusal is not None:
                reason, status = refusal
                return await self._refuse(request, freq, start, status, reason, close=True)
        if name is None:
            return await self._refuse(request, freq, start, 404, MissReason.BAD_NAME.value)
        try:
            resolution = self.resolve(freq)
        except Exception as exc:  # a bug in the resolver: counted and answered, never a crash
            self.log.error("files.resolver_error", name=freq.name, error=repr(exc))
            return await self._refuse(request, freq, start, 500, HttpRefusal.INTERNAL_ERROR.value)
        if isinstance(resolution, Miss):
            return await self._refuse(request, freq, start, 404, resolution.reason.value, resolution.device,
                                      detail=resolution.detail)
        if isinstance(resolution, Rendered):
            return await self._send_rendered(request, freq, resolution, start)
        return await self._send_static(request, freq, resolution, start)

    def _authorized(self, request: web.BaseRequest) -> bool:
        assert self._credentials is not None
        scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._credentials)

    async def _read_post(self, request: web.BaseRequest, freq: FileRequest) -> tuple[str, int] | None:
        """Read and log a POST body; (reason, status) when it breaks a limit or the client goes away."""
        if (request.content_length or 0) > self.limits.max_body:
            self.tracker.limit_hit(Limit.BODY)
            return HttpRefusal.BODY_TOO_LARGE.value, 413
        if request.headers.get(hdrs.EXPECT, "").lower() == "100-continue" and request.version >= (1, 1):
            await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")  # else curl waits a second
        body = bytearray()
        try:
            async with asyncio.timeout(self.limits.body_timeout):
                while chunk := await request.content.readany():
                    body += chunk
                    if len(body) > self.limits.max_body:
                        self.tracker.limit_hit(Limit.BODY)
                        return HttpRefusal.BODY_TOO_LARGE.value, 413
        except TimeoutError:
            self.tracker.limit_hit(Limit.BODY)
            return HttpRefusal.BODY_TIMEOUT.value, 408
        except (ConnectionError, web.HTTPException, RequestPayloadError):
            return HttpRefusal.ABORTED.value, 400  # cut short; the 400 will most likely not arrive
        self.log.info("files.post", protocol=self.protocol.value, client=str(freq.client), name=freq.name,
                      user_agent=freq.user_agent, bytes=len(body),
                      body=bytes(body[:POST_LOG_CHARS]).decode("utf-8", "replace"))
        return None

    async def _send_rendered(self, request: web.BaseRequest, freq: FileRequest, r: Rendered,
                             start: float) -> web.StreamResponse:
        headers = {hdrs.SERVER: SERVER, hdrs.CONTENT_TYPE: r.content_type}
        if r.content_encoding is not None:
            headers[hdrs.CONTENT_ENCODING] = r.content_encoding
        resp = web.Response(status=200, body=r.body, headers=headers)  # head and body in one write
        sent = 0 if request.method == hdrs.METH_HEAD else len(r.body)
        try:
            await resp.prepare(request)
            await resp.write_eof()
        except (ConnectionError, asyncio.CancelledError):
            self._finish(Refused(freq, HttpRefusal.ABORTED.value, 200, r.device, 0, time.monotonic() - start),
                         r.profile)
            raise
        self._finish(Fetched(freq, r, 200, sent, time.monotonic() - start), r.profile)
        return resp

    async def _send_static(self, request: web.BaseRequest, freq: FileRequest, s: Static,
                           start: float) -> web.StreamResponse:
        try:
            fd = jail.open_regular(s.path)
        except OSError as exc:
            return await self._refuse(request, freq, start, 404, MissReason.UNREADABLE.value, s.device,
                                      detail=exc.strerror or str(exc))
        with open(fd, "rb", buffering=0) as fobj:
            size = os.fstat(fd).st_size  # what is there now, not at resolution time
            resp = web.StreamResponse(status=200, headers={hdrs.SERVER: SERVER})
            resp.content_type = "application/octet-stream"
            resp.content_length = size
            sent = 0
            try:
                await resp.prepare(request)
                if request.method != hdrs.METH_HEAD and size:
                    transport = request.transport
                    if transport is None:
                        raise ConnectionResetError("connection lost")
                    sent = await asyncio.get_running_loop().sendfile(transport, fobj, 0, size)
                await resp.write_eof()
            except (ConnectionError, OSError, asyncio.CancelledError):
                with contextlib.suppress(OSError):
                    sent = os.lseek(fd, 0, os.SEEK_CUR)  # asyncio leaves the position at what was sent
                self._finish(Refused(freq, HttpRefusal.ABORTED.value, 200, s.device, sent,
                                     time.monotonic() - start), s.path)
                raise
        self._finish(Fetched(freq, s, 200, sent, time.monotonic() - start), s.path)
        return resp

    async def _refuse(self, request: web.BaseRequest, freq: FileRequest, start: float, status: int, reason: str,
                      device: Device | None = None, *, headers: dict[str, str] | None = None,
                      close: bool = False, detail: str = "") -> web.StreamResponse:
        resp = web.Response(status=status, text=f"{status}\n", headers={hdrs.SERVER: SERVER, **(headers or {})})
        if close:
            resp.force_close()
        with contextlib.suppress(ConnectionError):
            await resp.prepare(request)
            await resp.write_eof()
        self._finish(Refused(freq, reason, status, device, 0, time.monotonic() - start), None, detail)
        return resp

    def _finish(self, outcome: Fetched | Refused, resolved: str | None, detail: str = "") -> None:
        self.recorder(outcome, resolved, detail)


class Recorder:
    """The one `files.fetch` event, the counts and the `on_fetch` hand-off of every finished request.
    Labelled counter children are cached: prometheus_client's `labels()` costs more than a dict lookup."""

    def __init__(self, metrics: Metrics, log: Any, on_fetch: FetchHook) -> None:
        self.metrics = metrics
        self.log = log
        self.on_fetch = on_fetch
        self._fetches: dict[tuple[str, str], Any] = {}
        self._bytes: dict[str, Any] = {}

    def __call__(self, outcome: Fetched | Refused, resolved: str | None = None, detail: str = "",
                 protocol: Protocol = Protocol.HTTP) -> None:
        """`protocol` is used when the outcome has no request (the parser refused it)."""
        req = outcome.request
        proto = (req.protocol if req is not None else protocol).value
        device: Device | None
        if isinstance(outcome, Fetched):
            result, device, status = "ok", outcome.resolution.device, outcome.status
        else:
            result, device, status = outcome.reason, outcome.device, outcome.status
        self._count(proto, result, outcome.bytes_sent)
        self.log.info("files.fetch", protocol=proto, client=str(req.client) if req else None,
                      mac=device.mac if device else None,
                      identified_by=device.identified_by.value if device else None,
                      requested=req.name if req else None, user_agent=req.user_agent if req else None,
                      resolved=resolved, result=result, status=status, bytes=outcome.bytes_sent,
                      seconds=round(outcome.seconds, 6), **({"detail": detail} if detail else {}))
        try:
            self.on_fetch(outcome)
        except Exception as exc:  # a bug in the consumer (device tracker) must not fail a served request
            self.log.error("files.on_fetch_error", error=repr(exc))

    def _count(self, proto: str, result: str, sent: int) -> None:
        child = self._fetches.get((proto, result))
        if child is None:
            child = self._fetches[proto, result] = self.metrics.files_fetches.labels(proto, result)
        child.inc()
        if sent:
            child = self._bytes.get(proto)
            if child is None:
                child = self._bytes[proto] = self.metrics.files_bytes_sent.labels(proto)
            child.inc(sent)


def decode_path(raw: str) -> str | None:
    """The request path percent-decoded exactly once; None when the bytes are not UTF-8."""
    try:
        return urllib.parse.unquote_to_bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        return None


def client_address(request: web.BaseRequest) -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(request.remote or "")
    except ValueError:
        return _NO_CLIENT
    if isinstance(addr, ipaddress.IPv6Address):
        return addr.ipv4_mapped or _NO_CLIENT
    return addr
