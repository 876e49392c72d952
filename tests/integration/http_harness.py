"""Runs HttpFileServer alone in a process (inside a lab host), until the daemon wires it in.

    python -m tests.integration.http_harness --address 198.18.0.1 --root DIR --ready FILE [--http-port N]
        [--https-port N --cert PEM --key PEM] [--auth user:pass] [--rendered NAME=FILE ...]
        [--limit key=value ...] [--metrics FILE]

The resolver is the test one: names given with --rendered are `Rendered` from that file's bytes (a name
ending in `.aes` gets `Content-Encoding: aes128gcm`), everything else goes through the jail. Logs are
structlog JSON lines on stdout (each `on_fetch` call is a `harness.outcome` line); SIGUSR1 writes the Prometheus exposition to --metrics (then renames it, so a
reader never sees half); the ready file (JSON: pid, ports) appears once the ports listen.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
from collections.abc import Callable

from prometheus_client import generate_latest

from bootstrapd.files import jail
from bootstrapd.files.outcome import Device, Fetched, FileRequest, IdentifiedBy, Miss, Refused, Rendered, Static
from bootstrapd.observability.logging import configure, get_logger
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.http import HttpFileServer, tls_context
from bootstrapd.transport.http_conn import Limits

NOBODY = Device(None, IdentifiedBy.NONE)


def test_resolver(root: str, rendered: dict[str, bytes]) -> Callable[[FileRequest], Rendered | Static | Miss]:
    """Rendered names from a dict (looked up without leading slashes), the rest from the jail."""
    root_real = os.path.realpath(root)

    def resolve(req: FileRequest) -> Rendered | Static | Miss:
        key = req.name.lstrip("/")
        if key in rendered:
            enc = "aes128gcm" if key.endswith(".aes") else None
            ctype = "application/octet-stream" if enc else "application/xml"
            return Rendered(rendered[key], f"templates/{key}.j2", NOBODY, ctype, enc)
        found = jail.lookup(root_real, req.name)
        if isinstance(found, jail.Refusal):
            return Miss(found.reason, NOBODY, found.detail)
        return Static(found.path, found.size, NOBODY)

    return resolve


def parse_limits(items: list[str]) -> Limits:
    fields = {f.name: f.type for f in dataclasses.fields(Limits)}
    values: dict[str, int | float] = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in fields:
            raise SystemExit(f"unknown limit {key!r}; known: {', '.join(fields)}")
        values[key] = int(value) if fields[key] in (int, "int") else float(value)
    return Limits(**values)  # type: ignore[arg-type]


def arguments(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="http_harness")
    p.add_argument("--address", required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--http-port", type=int)
    p.add_argument("--https-port", type=int)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--auth")
    p.add_argument("--rendered", action="append", default=[])
    p.add_argument("--limit", action="append", default=[])
    p.add_argument("--metrics")
    return p.parse_args(argv)


async def serve(args: argparse.Namespace) -> None:
    rendered = {}
    for item in args.rendered:
        name, _, path = item.partition("=")
        with open(path, "rb") as fh:
            rendered[name] = fh.read()
    metrics = Metrics()
    server = HttpFileServer(
        args.address, test_resolver(args.root, rendered), on_fetch, metrics, get_logger(),
        http_port=args.http_port, https_port=args.https_port,
        ssl_context=tls_context(args.cert, args.key) if args.https_port is not None else None,
        auth=tuple(args.auth.split(":", 1)) if args.auth else None, limits=parse_limits(args.limit))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    if args.metrics:
        loop.add_signal_handler(signal.SIGUSR1, write_metrics, args.metrics, metrics)
    await server.start()
    ports = {p.value: port for p, port in server.bound.items()}
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as fh:
        json.dump({"pid": os.getpid(), "ports": ports}, fh)
    os.replace(tmp, args.ready)
    await stop.wait()
    await server.stop()


def on_fetch(outcome: Fetched | Refused) -> None:
    """What the device tracker will get: logged so that tests can match it against `files.fetch`."""
    get_logger().info("harness.outcome", kind=type(outcome).__name__, status=outcome.status,
                      bytes=outcome.bytes_sent, name=outcome.request.name if outcome.request else None)


def write_metrics(path: str, metrics: Metrics) -> None:
    with open(path + ".tmp", "wb") as fh:
        fh.write(generate_latest(metrics.registry))
    os.replace(path + ".tmp", path)


def main(argv: list[str] | None = None) -> None:
    configure(stream=sys.stdout)
    asyncio.run(serve(arguments(sys.argv[1:] if argv is None else argv)))


if __name__ == "__main__":
    main()
