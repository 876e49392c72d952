"""A hostile HTTP client of the file service, run inside a lab host: many requests, each naming another
device (a spoofed User-Agent MAC, a per-MAC file name, a made-up firmware), on a few keep-alive connections.

    python -m tests.integration.http_spoof HOST PORT --mode ua --count 50000 [--connections 8] [--start 0] [--phone MAC]

Modes (every request names a distinct identity, `--start + i`):
- `ua`: GET /CP-7841-3PCC.cfg with `Cisco-CP-7841-3PCC/12.0.1 (0a....)`: the bootstrap profile (any device)
  rendered for a MAC nobody has;
- `path`: GET /0a....cfg: the per-MAC profile of a MAC not in the inventory (a miss, `not_in_inventory`);
- `firmware`: GET /CP-7841-3PCC.cfg with the real phone's MAC and firmware `12.0.<i>`: one inventory
  device, a new render per firmware string.
Prints one JSON document: requests sent, answers by status, seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

MAC_BASE = 0x0A0000000000  # locally administered: no vendor's phone has these
PHONE = "00562b043615"  # config/inventory.csv's first row


def request(mode: str, i: int, host: str, phone: str = PHONE) -> bytes:
    mac = f"{MAC_BASE + i:012x}"
    if mode == "ua":
        path, ua = "/CP-7841-3PCC.cfg", f"Cisco-CP-7841-3PCC/12.0.1 ({mac})"
    elif mode == "path":
        path, ua = f"/{mac}.cfg", f"Cisco-CP-7841-3PCC/12.0.1 ({mac})"
    elif mode == "firmware":
        path, ua = "/CP-7841-3PCC.cfg", f"Cisco-CP-7841-3PCC/12.0.{i} ({phone})"
    else:
        raise ValueError(f"unknown mode {mode!r}")
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {ua}\r\n\r\n".encode()


async def read_response(reader: asyncio.StreamReader) -> int:
    """The status of one response, its body read (every answer carries Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(v) for k, _, v in (h.partition(":") for h in lines[1:]) if k.lower() == "content-length"), 0)
    await reader.readexactly(length)
    return int(lines[0].split()[1])


async def connection(host: str, port: int, mode: str, ids: range, phone: str, statuses: Counter[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        for i in ids:
            writer.write(request(mode, i, host, phone))
            statuses[await read_response(reader)] += 1
    finally:
        writer.close()


async def flood(host: str, port: int, mode: str, count: int, connections: int, start: int,
                phone: str = PHONE) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    t0 = time.monotonic()
    await asyncio.gather(*(connection(host, port, mode, range(start + c, start + count, connections), phone,
                                      statuses) for c in range(connections)))
    return {"mode": mode, "requests": sum(statuses.values()), "statuses": {str(k): v for k, v in statuses.items()},
            "seconds": round(time.monotonic() - t0, 3)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("--mode", choices=("ua", "path", "firmware"), default="ua")
    p.add_argument("--count", type=int, default=50_000)
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--start", type=int, default=0, help="first identity (a second flood can use new ones)")
    p.add_argument("--phone", default=PHONE, help="the inventory MAC of `firmware` mode, 12 hex digits")
    args = p.parse_args(argv)
    result = asyncio.run(flood(args.host, args.port, args.mode, args.count, args.connections, args.start,
                               args.phone))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
