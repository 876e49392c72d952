"""The HTTP server on metrics.listen, on loopback with a real client: /metrics byte-for-byte as
prometheus_client's own server answers, the report downloads, the event stream, and read-only-ness."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from bootstrapd.transport.floorpage import FloorPage, PlaceholderReport
from tests.integration.floor_report import TestReport

TICK = 0.2
CSP = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; object-src 'none'"


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    Counter("bootstrapd_test_packets", "packets", ["type"], registry=reg).labels(type="discover").inc(3)
    Gauge("bootstrapd_test_pool_size", "pool", registry=reg).set(407)
    Histogram("bootstrapd_test_exchange_seconds", "latency", registry=reg).observe(0.002)
    return reg


Scenario = Callable[[FloorPage, aiohttp.ClientSession, str], Awaitable[None]]


def serve(scenario: Scenario, report: Any = None, reg: CollectorRegistry | None = None, **kwargs: Any) -> None:
    async def main() -> None:
        page = FloorPage("127.0.0.1", 0, reg or registry(), report or TestReport(), tick=TICK,
                         download_name="lab floor/../x.csv", **kwargs)
        await page.start()
        try:
            assert page.address is not None
            async with aiohttp.ClientSession(auto_decompress=False) as http:
                await scenario(page, http, f"http://127.0.0.1:{page.address[1]}")
        finally:
            await page.stop()

    asyncio.run(asyncio.wait_for(main(), 30))


async def events(http: aiohttp.ClientSession, url: str) -> AsyncGenerator[tuple[str, str], None]:
    """(event, data) from /events, as EventSource parses them."""
    async with http.get(url + "/events") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"
        name, data = "message", list[str]()
        while line := (await r.content.readline()).decode():
            line = line.rstrip("\n")
            if line == "":
                if data:
                    yield name, "\n".join(data)
                name, data = "message", list[str]()
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data.append(line.removeprefix("data: "))


@pytest.mark.parametrize("accept", ["", "application/openmetrics-text; version=1.0.0; charset=utf-8",
                                    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"])
def test_metrics_are_what_prometheus_client_serves(accept: str) -> None:
    reg = registry()
    server, thread = start_http_server(0, "127.0.0.1", registry=reg)  # today's exposition, as the oracle
    try:
        async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
            oracle = f"http://127.0.0.1:{server.server_port}"
            for query in ("", "?name[]=bootstrapd_test_pool_size"):
                for encoding in ("identity", "gzip"):
                    headers = {"Accept": accept, "Accept-Encoding": encoding}
                    async with http.get(oracle + "/metrics" + query, headers=headers) as want, \
                            http.get(url + "/metrics" + query, headers=headers) as got:
                        assert got.status == want.status == 200
                        for header in ("Content-Type", "Content-Encoding"):
                            assert got.headers.get(header) == want.headers.get(header)
                        body, expected = await got.read(), await want.read()
                        if encoding == "gzip":
                            import gzip
                            body, expected = gzip.decompress(body), gzip.decompress(expected)
                        assert body == expected
                        assert (b"bootstrapd_test_packets_total" in body) == (query == "")

        serve(scenario, reg=reg)
    finally:
        server.shutdown()
        thread.join(5)


def test_report_downloads_and_security_headers() -> None:
    report = TestReport()

    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        async with http.get(url + "/report.json") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "application/json; charset=utf-8"
            assert r.headers["Cache-Control"] == "no-store" and r.headers["Content-Security-Policy"] == CSP
            assert json.loads(await r.text()) == report.doc
        async with http.get(url + "/report.csv") as r:
            assert r.status == 200 and r.headers["Content-Type"] == "text/csv; charset=utf-8"
            assert r.headers["Content-Disposition"] == 'attachment; filename="lab_floor_.._x.csv"'
            assert await r.text() == report.csv()()
        for path, ctype in [("/", "text/html"), ("/floor.js", "text/javascript"), ("/floor.css", "text/css")]:
            async with http.get(url + path) as r:
                assert r.status == 200 and r.headers["Content-Type"] == f"{ctype}; charset=utf-8", path
                assert r.headers["Content-Security-Policy"] == CSP
                assert r.headers["X-Content-Type-Options"] == "nosniff"
        async with http.get(url + "/") as r:
            html = await r.text()
        assert "http" not in html.replace("http-equiv", "")  # nothing from outside this origin
        assert "<script src=\"/floor.js\"" in html and "<script>" not in html  # no inline script (CSP)

    serve(scenario, report)


def test_read_only_every_other_method_is_405_unknown_path_404() -> None:
    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        for path in ("/", "/metrics", "/report.json", "/report.csv", "/events", "/nope"):
            for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
                async with http.request(method, url + path, data=b"x=1") as r:
                    assert r.status == 405, (method, path)
                    assert r.headers["Allow"] == "GET,HEAD"
                    assert r.headers["Content-Security-Policy"] == CSP
        for path in ("/nope", "/report.xml", "/../etc/passwd", "/floorpage/index.html"):
            async with http.get(url + path) as r:
                assert r.status == 404, path
                assert r.headers["Content-Security-Policy"] == CSP
        async with http.head(url + "/events") as r:  # no endless stream for a HEAD
            assert r.status == 200 and r.headers["Content-Type"] == "text/event-stream"

    serve(scenario)


def test_event_stream_sends_report_when_changed_else_ticks() -> None:
    report = TestReport()

    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        stream = events(http, url)
        name, data = await anext(stream)
        assert name == "report" and json.loads(data) == report.doc and "\n" not in data
        doc = report.edit()  # only time passes: the page hears a tick and counts time in stage itself
        doc["generated_at"] = "2026-12-01T10:06:00Z"
        doc["devices"][0]["in_stage_s"] = 360
        report.doc = doc
        while (event := await anext(stream)) != ("tick", '{"generated_at": "2026-12-01T10:06:00Z"}'):
            assert event[0] == "tick", event
        doc = report.edit()
        doc["devices"][1]["state"] = "done"
        report.doc = doc
        while (event := await anext(stream))[0] == "tick":
            pass
        assert event[0] == "report" and json.loads(event[1]) == doc
        await stream.aclose()

    serve(scenario, report)


def test_report_built_at_most_once_a_tick_for_many_readers() -> None:
    report = TestReport()

    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        async def read(n: int) -> None:
            stream = events(http, url)
            for _ in range(n):
                await anext(stream)
            await stream.aclose()

        started = time.monotonic()
        await asyncio.gather(*(read(4) for _ in range(4)),
                             *(http.get(url + "/report.json") for _ in range(20)))
        elapsed = time.monotonic() - started
        assert report.calls <= elapsed / TICK + 2, (report.calls, elapsed)

    serve(scenario, report)


def test_event_streams_are_capped_and_end_at_stop() -> None:
    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        streams = [events(http, url) for _ in range(2)]
        for s in streams:
            assert (await anext(s))[0] == "report"
        async with http.get(url + "/events") as r:
            assert r.status == 503 and r.headers["Retry-After"] == "5"
        async with http.get(url + "/metrics") as r:  # the rest keeps serving
            assert r.status == 200
        started = time.monotonic()
        await page.stop()  # open streams end promptly, not after a shutdown timeout
        assert time.monotonic() - started < 1.5
        for s in streams:
            with pytest.raises((StopAsyncIteration, aiohttp.ClientError)):
                while True:
                    await anext(s)

    serve(scenario, max_clients=2)


def test_a_failing_provider_is_503_and_metrics_keep_serving() -> None:
    report = TestReport()
    report.fail = True

    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        for path in ("/report.json", "/report.csv"):
            async with http.get(url + path) as r:
                assert r.status == 503 and r.headers["Retry-After"] == "2"
        async with http.get(url + "/metrics") as r:
            assert r.status == 200
        report.fail = False
        await asyncio.sleep(TICK)
        async with http.get(url + "/report.json") as r:
            assert r.status == 200

    serve(scenario, report)


def test_placeholder_report_has_the_report_shape() -> None:
    doc = json.loads(PlaceholderReport(lambda: "lab", wall=lambda: 1_764_583_200.0).json()())
    assert doc == {"site": "lab", "generated_at": "2025-12-01T10:00:00Z", "devices": [], "summary": {
        "expected": None, "seen": 0, "done": 0, "in_progress": 0, "stalled": 0, "stalled_by_stage": {},
        "failed": 0, "missing": 0, "unexpected": None, "by_stage": {}}}


class Growing:
    """A big report that changes every time it is built: every event on a stream is a whole report."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = [{"mac": f"00:56:2b:00:{i >> 8:02x}:{i & 255:02x}", "model": "x" * 200} for i in range(2000)]

    def json(self) -> Callable[[], str]:
        self.calls += 1
        site, rows = str(self.calls), self.rows
        return lambda: json.dumps({"generated_at": None, "site": site, "devices": rows})

    def csv(self) -> Callable[[], str]:
        return lambda: ""


def test_a_reader_that_stops_reading_is_dropped() -> None:
    async def scenario(page: FloorPage, http: aiohttp.ClientSession, url: str) -> None:
        assert page.address is not None
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(page.address)
        sock.sendall(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")  # and never read
        try:
            started = time.monotonic()
            while page.clients == 0:
                await asyncio.sleep(0.05)
            while page.clients == 1:  # the write that cannot complete times out; the slot is free again
                assert time.monotonic() - started < 20
                await asyncio.sleep(0.05)
            name, data = await anext(stream := events(http, url))
            assert name == "report" and len(data) > 400_000
            await stream.aclose()
        finally:
            sock.close()

    serve(scenario, Growing(), max_clients=1, write_timeout=0.5)
