"""DNS integration helpers: the site the daemon serves in the lab, and the DNS server run in-process on a
loopback port (its own event loop in a thread) for tests that need no namespaces."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from structlog.testing import LogCapture

from bootstrapd.config.model import Site
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.dns import DnsServer
from tests.integration.daemon import site_config

T = TypeVar("T")

BIG_TXT = [f"chunk {i:02d} " + "x" * 200 for i in range(6)]  # an RRset of ~1.3 KB: over any UDP limit we use

DNS = {
    "ttl": 300,
    "soa": {"minimum": 60},
    "ns": ["ns1"],
    "records": [
        {"name": "ns1", "type": "A", "value": "198.18.0.1"},
        {"name": "prov1", "type": "A", "value": "198.18.0.10"},
        {"name": "prov2", "type": "A", "value": "198.18.0.11"},
        {"name": "www", "type": "CNAME", "value": "prov1"},
        *({"name": "big", "type": "TXT", "value": text} for text in BIG_TXT),
    ],
    "srv": [
        {"service": "_ciscoprov-https._tls", "targets": [
            {"target": "prov1", "port": 443, "priority": 10, "weight": 0},
            {"target": "prov2", "port": 443, "priority": 20, "weight": 0}]},
        {"service": "_ciscoprov-http._tcp", "targets": [{"target": "prov1", "port": 80, "priority": 10}]},
    ],
    "lease_records": True,
}


def dns_site_config(**overrides: Any) -> dict[str, Any]:
    """The lab daemon's site (tests/integration/daemon.py) with the DNS data above; domain staging.test."""
    return site_config(dns=DNS, **overrides)


def capture_logger(level: int = logging.DEBUG) -> tuple[Any, LogCapture]:
    """A structlog logger filtering at `level` whose events land in the returned LogCapture."""
    capture = LogCapture()
    log = structlog.wrap_logger(
        structlog.PrintLogger(), processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(level)
    )
    return log, capture


class InProcessServer:
    """DnsServer on 127.0.0.1 (a free port, UDP and TCP), driven by an event loop in a thread."""

    def __init__(self, site: Site, log: Any = None, **kw: Any) -> None:
        self.metrics = Metrics()
        if log is None:
            log, _ = capture_logger(logging.INFO)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        kw.setdefault("bind", [("127.0.0.1", 0)])
        self.server = DnsServer(site, self.metrics, log, **kw)
        try:
            self.run(self.server.start)
        except BaseException:
            self.close()
            raise
        self.port = self.server.addresses[0][1]

    def run(self, coro_fn: Callable[[], Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro_fn(), self.loop).result(10)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the server's loop thread (where the DHCP side would call it)."""

        async def inside() -> T:
            return fn(*args)

        result: T = self.run(inside)
        return result

    def stop(self) -> None:
        """Stop serving (flushes metrics); idempotent."""
        if self.server.addresses:
            self.run(self.server.stop)

    def close(self) -> None:
        try:
            self.stop()
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()

    def sample(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(name, labels)
        return 0.0 if value is None else value
