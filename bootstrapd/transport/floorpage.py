"""The HTTP side of `metrics.listen`: Prometheus exposition, the live floor page and the sign-off report.

    GET /metrics        what prometheus_client's own server answers (text or OpenMetrics by Accept, gzip,
                        `name[]` filters)
    GET /               the floor page (bootstrapd/floorpage/: static HTML, JS and CSS; no external resource)
    GET /report.json    the report as the provider renders it
    GET /report.csv     the same, as a spreadsheet download
    GET /sites.html     every site's summary from the central database (sites.js polls /sites.json)
    GET /sites.json     `bootstrapd report --all-sites --json` without the device rows (the CLI has them),
                        built in a worker thread (it reads the central database) at most every SITES_TTL
                        seconds; 404 without `central:`, 503 while the database cannot be read
    GET /events         Server-Sent Events: `report` (the whole report, compact) whenever it changed, else
                        `tick` ({"generated_at"}) once a second so the page can count time in stage

Read-only: any method but GET and HEAD is 405 on every path. The report is built at most once a second
however many pages and downloads ask (one cached rendering), in a worker thread from a snapshot the
provider takes on the event loop (a floor of thousands takes a tenth of a second to build, which DNS, TFTP
and syslog must not wait for), the event streams are capped in number, in
lifetime and in how long a write may wait for a slow reader, and every response carries a
Content-Security-Policy that admits only this origin's own files.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import parse_qs

import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

T = TypeVar("T")
MAX_CLIENTS = 16  # concurrent /events streams; the next one gets 503 (a page retries by itself)
STREAM_LIFETIME = 3600.0  # seconds; then the stream ends and EventSource reconnects (frees stuck peers)
WRITE_TIMEOUT = 10.0  # seconds a stream write may wait for the reader before the stream is dropped
TICK = 1.0  # seconds between events on a stream, and the age at which the cached report is rebuilt
BUSY = 10  # a report that takes t seconds to build is rebuilt at most every BUSY * t seconds
RETRY_MS = 2000  # EventSource reconnect delay the server asks for
SITES_TTL = 5.0  # seconds a /sites.json rendering is served before the central database is read again
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; base-uri 'none'; form-action 'none'; "
                               "frame-ancestors 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
READ_METHODS = frozenset({"GET", "HEAD"})
ASSETS = {  # path -> (file in bootstrapd/floorpage, content type)
    "/": ("index.html", "text/html"),
    "/floor.js": ("floor.js", "text/javascript"),
    "/floor.css": ("floor.css", "text/css"),
    "/sites.html": ("sites.html", "text/html"),
    "/sites.js": ("sites.js", "text/javascript"),
}


Job = Callable[[], str]


class ReportProvider(Protocol):
    """The one seam to the funnel: the current report as JSON (report_json's shape) and as CSV. Each is
    called on the event loop and returns the build, run in a worker thread: the provider takes what it needs
    from live state there (cheaply, immutable values), and the build reads only that."""

    def json(self) -> Job: ...

    def csv(self) -> Job: ...


class PlaceholderReport:
    """A report with no devices, in report_json's shape, until the funnel's report is connected."""

    def __init__(self, site: Callable[[], str], wall: Callable[[], float] = time.time) -> None:
        self._site, self._wall = site, wall

    def json(self) -> Job:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._wall()))
        summary: dict[str, Any] = {"expected": None, "seen": 0, "done": 0, "in_progress": 0, "stalled": 0,
                                   "stalled_by_stage": {}, "failed": 0, "missing": 0, "unexpected": None,
                                   "by_stage": {}}
        text = json.dumps({"site": self._site(), "generated_at": at, "summary": summary, "devices": []}, indent=2)
        return lambda: text

    def csv(self) -> Job:
        return lambda: "mac,serial,model,address,stage,state\n"


@dataclass(frozen=True)
class Rendering:
    """One build of the report's JSON, shared by every request within a tick of it."""

    json: str
    event: bytes  # the SSE `report` event: the document on one line
    tick: bytes  # the SSE `tick` event: its generated_at
    fingerprint: str  # of the document without what changes every second by itself


# RFC 8259 section 7: a JSON string never holds a raw line break, so each one (and the indentation after it)
# lies between tokens and can go: the document on one line without parsing it (5000 phones: ~3 MB a second).
LINE_BREAKS = re.compile(r"[\r\n][\t\n\r ]*")
GENERATED_AT = re.compile(r'"generated_at":\s*("[^"\\]*"|null)')
# what the page derives from `since` and the tick's generated_at; a quote inside a string is escaped (\"),
# so these match keys only
VOLATILE = re.compile(r'"(?:generated_at|in_stage_s)":\s*(?:"[^"\\]*"|-?[0-9.eE+]+|null)')


def sse(event: str, data: str) -> bytes:
    """One Server-Sent Event; `data` has no line break."""
    return f"event: {event}\ndata: {data}\n\n".encode()


def render(text: str) -> Rendering:
    """The SSE forms of a report: whole when its content changed, else only its time."""
    line = LINE_BREAKS.sub("", text)
    stamp = GENERATED_AT.search(line)
    fingerprint = hashlib.blake2b(VOLATILE.sub("", line).encode(), digest_size=16).hexdigest()
    tick = '{"generated_at": ' + (stamp.group(1) if stamp else "null") + "}"
    return Rendering(text, sse("report", line), sse("tick", tick), fingerprint)


def _text(text: str) -> str:
    return text


class Cached(Generic[T]):
    """A provider's output, rebuilt when older than a tick or BUSY times its last build, whichever is longer:
    however many readers, and however big the floor, the report takes at most 1/BUSY of a core. `snapshot`
    runs on the loop and returns the build, which runs in a worker thread; one build at a time, shared by
    every reader waiting for it."""

    def __init__(self, snapshot: Callable[[], Callable[[], T]], tick: float, clock: Callable[[], float]) -> None:
        self._snapshot, self._tick, self._clock = snapshot, tick, clock
        self._value: T | None = None
        self._expires = 0.0
        self._lock = asyncio.Lock()

    async def get(self) -> T:
        if self._value is not None and self._clock() < self._expires:
            return self._value
        async with self._lock:
            now = self._clock()
            if self._value is None or now >= self._expires:
                self._value = await asyncio.to_thread(self._snapshot())
                took = self._clock() - now
                self._expires = now + max(self._tick, BUSY * took)
            return self._value


def metrics_response(registry: CollectorRegistry, request: web.Request) -> web.Response:
    """Exactly what prometheus_client's start_http_server answers for the same request."""
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    params = parse_qs(request.query_string)
    body = encoder(registry.restricted_registry(params["name[]"]) if "name[]" in params else registry)
    headers = {"Content-Type": content_type}
    if gzip_accepted(request.headers.get("Accept-Encoding", "")):
        body = gzip.compress(body)
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=body, headers=headers)


def attachment_name(name: str) -> str:
    """A download file name with nothing a header or a file system could trip on."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)[:100] or "report.csv"


class FloorPage:
    """The aiohttp server on metrics.listen; `start`, then `stop` (which also ends the event streams)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, report: ReportProvider,
                 log: Any | None = None, *, download_name: str = "bootstrapd-report.csv",
                 max_clients: int = MAX_CLIENTS, tick: float = TICK, write_timeout: float = WRITE_TIMEOUT,
                 clock: Callable[[], float] = time.monotonic, sites: Callable[[], str] | None = None) -> None:
        """`sites`: builds /sites.json (blocking: it runs in a worker thread); None: no central database."""
        self._host, self._port = host, port
        self._sites = sites
        self._sites_cache: tuple[float, str] | None = None
        self._sites_lock = asyncio.Lock()
        self._registry = registry
        self._log = log if log is not None else structlog.get_logger("bootstrapd.floorpage").bind()
        self._download = attachment_name(download_name)
        self._max_clients, self._tick, self._clock = max_clients, tick, clock
        self._write_timeout = write_timeout
        self._assets = {path: (resources.files("bootstrapd").joinpath("floorpage", name).read_bytes(), ctype)
                        for path, (name, ctype) in ASSETS.items()}
        self._rendering = Cached(lambda: self._provide(report.json, render), tick, clock)
        self._csv_text: Cached[str] = Cached(lambda: self._provide(report.csv, _text), tick, clock)
        self._streams = 0  # open /events streams
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    async def start(self) -> None:
        app = web.Application(middlewares=[self._guard], client_max_size=1024)
        app.router.add_get("/metrics", self._metrics)
        for path in ASSETS:
            app.router.add_get(path, self._asset)
        app.router.add_get("/report.json", self._json)
        app.router.add_get("/report.csv", self._csv)
        app.router.add_get("/events", self._events)
        app.router.add_get("/sites.json", self._sites_json)
        app.on_response_prepare.append(self._secure)
        # keepalive_timeout: idle keep-alive connections do not pile up; access_log: the canonical events below
        runner = web.AppRunner(app, access_log=None, handle_signals=False, keepalive_timeout=15,
                               shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, backlog=64, reuse_address=True)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        host, port = runner.addresses[0][:2]
        self.address = (host, port)
        self._log.info("floorpage.listening", address=f"{self.address[0]}:{self.address[1]}")

    @property
    def clients(self) -> int:
        """Open /events streams."""
        return self._streams

    async def stop(self) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- middleware and signals ------------------------------------------------------------------------
    @web.middleware
    async def _guard(self, request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        """Read-only: nothing but GET and HEAD, on any path (known or not)."""
        if request.method not in READ_METHODS:
            raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS))
        return await handler(request)

    @staticmethod
    async def _secure(request: web.Request, response: web.StreamResponse) -> None:
        response.headers.update(SECURITY_HEADERS)
        response.headers["Server"] = "bootstrapd"

    # -- handlers --------------------------------------------------------------------------------------
    async def _metrics(self, request: web.Request) -> web.Response:
        return metrics_response(self._registry, request)

    async def _asset(self, request: web.Request) -> web.Response:
        body, ctype = self._assets[request.path]
        return web.Response(body=body, content_type=ctype, charset="utf-8", headers={"Cache-Control": "no-cache"})

    async def _json(self, request: web.Request) -> web.Response:
        rendering = await self._provided(self._rendering)
        return web.Response(text=rendering.json, content_type="application/json", headers={"Cache-Control": "no-store"})

    async def _csv(self, request: web.Request) -> web.Response:
        text = await self._provided(self._csv_text)
        return web.Response(text=text, content_type="text/csv", headers={
            "Cache-Control": "no-store", "Content-Disposition": f'attachment; filename="{self._download}"'})

    async def _sites_json(self, request: web.Request) -> web.Response:
        if self._sites is None:
            raise web.HTTPNotFound(text="no central database in this site file (central:)\n")
        async with self._sites_lock:  # one build at a time, shared by everyone waiting for it
            cached = self._sites_cache
            if cached is None or self._clock() >= cached[0]:
                started = self._clock()
                try:
                    text = await asyncio.to_thread(self._sites)
                except Exception as e:  # the central database away: say so, keep serving the rest
                    self._log.warning("floorpage.sites_failed", error=f"{type(e).__name__}: {e}")
                    raise web.HTTPServiceUnavailable(text=f"{e}\n", headers={"Retry-After": "5"}) from e
                took = self._clock() - started  # a big rollout's build holds the GIL: rebuilt less often
                cached = self._sites_cache = (self._clock() + max(SITES_TTL, BUSY * took), text)
        return web.Response(text=cached[1], content_type="application/json", headers={"Cache-Control": "no-store"})

    @staticmethod
    def _provide(snapshot: Callable[[], Job], then: Callable[[str], T]) -> Callable[[], T]:
        """On the loop: the provider's snapshot; the returned build (thread) makes its text and then `then`."""
        job = snapshot()
        return lambda: then(job())

    async def _provided(self, cached: Cached[T]) -> T:
        """The cached output; the provider's failure (snapshot or build) is a 503 and one log event."""
        try:
            return await cached.get()
        except Exception as e:  # the provider is the funnel's code: report it, keep serving the rest
            self._log.error("floorpage.report_failed", error=f"{type(e).__name__}: {e}")
            raise web.HTTPServiceUnavailable(text="report unavailable\n", headers={"Retry-After": "2"}) from e

    async def _events(self, request: web.Request) -> web.StreamResponse:
        if request.method == "HEAD":
            return web.Response(content_type="text/event-stream", headers={"Cache-Control": "no-store"})
        if self._streams >= self._max_clients:
            self._log.warning("floorpage.events_refused", clients=self._streams, peer=request.remote)
            raise web.HTTPServiceUnavailable(text="too many live pages\n", headers={"Retry-After": "5"})
        self._streams += 1
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await self._stream(response)
        except (ConnectionError, TimeoutError, web.HTTPException) as e:
            self._log.debug("floorpage.events_dropped", peer=request.remote, reason=type(e).__name__)
        finally:
            self._streams -= 1
        return response

    async def _stream(self, response: web.StreamResponse) -> None:
        """`report` when the content changed since this stream last sent it, else `tick`; until stop,
        STREAM_LIFETIME, or a reader that stops reading."""
        ends = self._clock() + STREAM_LIFETIME
        sent: str | None = None
        await asyncio.wait_for(response.write(f"retry: {RETRY_MS}\n\n".encode()), self._write_timeout)
        while not self._closing.is_set() and self._clock() < ends:
            r = await self._provided(self._rendering)
            await asyncio.wait_for(response.write(r.event if r.fingerprint != sent else r.tick), self._write_timeout)
            sent = r.fingerprint
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), self._tick)
