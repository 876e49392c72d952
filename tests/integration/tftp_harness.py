"""Run the TFTP shell alone (until the daemon wires it in): `python -m tests.integration.tftp_harness`.

Serves `--root` through a small test resolver (jail.lookup plus a dict of rendered names), logs JSON lines
(`tftp.started`, `files.fetch`) to stdout, writes the metrics exposition to `--metrics` on SIGUSR1 (then
logs `harness.metrics`), stops on SIGTERM. Used by tests/integration/test_tftp_*.py and bench/tftp.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

import structlog
from prometheus_client import generate_latest

from bootstrapd.files import jail
from bootstrapd.files.outcome import Device, FileRequest, IdentifiedBy, Miss, Rendered, Static
from bootstrapd.observability.metrics import Metrics
from bootstrapd.tftp.session import Timing
from bootstrapd.transport.tftp import TftpServer
from bootstrapd.transport.tftp_workers import default_workers

NOBODY = Device(None, IdentifiedBy.NONE)


def make_resolver(root: str, rendered: dict[str, bytes]):  # type: ignore[no-untyped-def]
    """The test resolver: a rendered name (case-insensitive) first, then a static file in the jail."""
    real_root = os.path.realpath(root)
    lowered = {k.lower(): v for k, v in rendered.items()}

    def resolve(request: FileRequest) -> Rendered | Static | Miss:
        body = lowered.get(request.name.lstrip("/").lower())
        if body is not None:
            return Rendered(body, f"rendered:{request.name}", NOBODY)
        found = jail.lookup(real_root, request.name)
        if isinstance(found, jail.Refusal):
            return Miss(found.reason, NOBODY, found.detail)
        return Static(found.path, found.size, NOBODY)

    return resolve


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--address", required=True)
    p.add_argument("--port", type=int, default=69)
    p.add_argument("--metrics", default="")
    p.add_argument("--rendered", action="append", default=[], help="NAME=TEXT")
    p.add_argument("--max-sessions", type=int, default=1000)
    p.add_argument("--blksize-max", type=int, default=1468)
    p.add_argument("--windowsize-max", type=int, default=64)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--retries", type=int, default=5)
    p.add_argument("--max-wait", type=float, default=30.0)
    p.add_argument("--workers", type=int, default=-1, help="transfer worker processes; -1: the default")
    p.add_argument("--quiet", action="store_true", help="log only warnings (benchmarks)")
    return p.parse_args(argv)


async def _main(args: argparse.Namespace) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        wrapper_class=structlog.make_filtering_bound_logger(30 if args.quiet else 20),
    )
    log = structlog.get_logger("bootstrapd.tftp")
    metrics = Metrics()
    rendered = dict(item.split("=", 1) for item in args.rendered)
    resolve = make_resolver(args.root, {k: v.encode() for k, v in rendered.items()})
    server = TftpServer(args.address, args.port, resolve, lambda outcome: None, metrics, log,
                        max_sessions=args.max_sessions, blksize_max=args.blksize_max,
                        windowsize_max=args.windowsize_max,
                        timing=Timing(args.timeout, args.retries, args.max_wait),
                        workers=default_workers() if args.workers < 0 else args.workers)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def dump() -> None:
        if args.metrics:
            with open(args.metrics + ".tmp", "wb") as f:
                f.write(generate_latest(metrics.registry))
            os.replace(args.metrics + ".tmp", args.metrics)
        log.warning("harness.metrics", sessions=len(server.transfers), peak=server.peak_sessions,
                    cached=len(server.cache.files), workers=server.workers.pids() if server.workers else [])

    loop.add_signal_handler(signal.SIGUSR1, dump)
    await server.start()
    log.warning("harness.ready", address=args.address, port=server.port, pid=os.getpid())
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(_main(_args(sys.argv[1:])))
