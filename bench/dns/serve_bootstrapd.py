"""Serve one site's DNS (only DNS: no DHCP on any interface) on a loopback port until SIGTERM/SIGINT.

    python bench/dns/serve_bootstrapd.py SITE.yaml 127.0.0.1 5301 [--unprepared] [--no-mmsg]

--unprepared builds every reply with dnslib (no prepared answers); --no-mmsg uses recvfrom/sendto.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from bootstrapd import heap
from bootstrapd.config import load_site
from bootstrapd.config.model import LogFormat, LogLevel
from bootstrapd.observability.logging import configure
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.dns import DnsServer


async def main(path: str, host: str, port: int, flags: list[str]) -> None:
    configure(LogFormat.JSON, LogLevel.INFO)  # as the daemon does: dns.query is a debug event
    server = DnsServer(
        load_site(path),
        Metrics(),
        bind=[(host, port)],
        prepared_answers=0 if "--unprepared" in flags else 20_000,
        batch_io=False if "--no-mmsg" in flags else None,
    )
    await server.start()
    heap.settle()  # as the daemon does once its listeners are up
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    await stop.wait()
    await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]))
