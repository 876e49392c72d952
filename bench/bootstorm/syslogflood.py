"""A syslog flood: N sources on one interface, each a phone that keeps logging, paced to a total rate.

    ip netns exec NS python bench/bootstorm/syslogflood.py --first 198.18.1.1 --sources 500 \
        --rate 20000 --duration 10 [--server 198.18.0.1] [--port 514]

Run inside a lab namespace whose interface already holds the source addresses (the bench adds them).
Each source is one UDP socket bound to its address, speaking for one made-up phone (a MAC under an OUI the
bench's phones do not use): lines in bootstrapd's template form and the firmware's default form, half behind
an RFC 3164 header, half bare, like a real floor. The sender is paced on the clock (catching up after a
late wake-up rather than bursting a whole second at once) and round-robins the sources, so each sends
rate / sources per second. Prints one JSON line when its sockets are bound ({"ready": true}) and one at the
end: datagrams sent, send errors, the seconds it took and the rate achieved per second of the run.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import random
import socket
import sys
import time

from bootstrapd.sim.phone import MODELS, Phone, make_phones
from bootstrapd.sim.phonelog import DEFAULT_TEMPLATES, OUR_TEMPLATES, Event, Header, datagram, log_line

FLOOD_OUI = "f8:7b:20"  # a Cisco OUI the bench's phones never use: the flood names no real phone
VARIANTS = 8  # distinct lines per source, sent in turn


def lines_for(phone: Phone, ip: str, server: str, rng: random.Random) -> list[bytes]:
    """The datagrams one flooding phone sends in turn: resync and upgrade lines, both template forms."""
    out = []
    events = list(Event)
    for i in range(VARIANTS):
        params = OUR_TEMPLATES if i % 2 == 0 else DEFAULT_TEMPLATES
        event = events[rng.randrange(len(events))]
        line = log_line(event, params, phone, ip, scheme="http", servip=server, port=80,
                        path=f"/remote/{phone.mac.replace(':', '')}.xml", err="")
        header = Header.RFC3164 if i % 4 < 2 else Header.BARE
        out.append(datagram(line, header, f"SEP{phone.mac.replace(':', '').upper()}", time.time()))
    return out


def open_sources(first: str, count: int) -> list[socket.socket]:
    start = ipaddress.IPv4Address(first)
    socks = []
    for i in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((str(start + i), 0))
        socks.append(s)
    return socks


def flood(socks: list[socket.socket], payloads: list[list[bytes]], dest: tuple[str, int], rate: float,
          duration: float) -> dict[str, object]:
    n = len(socks)
    sent = errors = 0
    per_second: list[int] = []
    t0 = time.monotonic()
    end = t0 + duration
    while (now := time.monotonic()) < end:
        due = min(int((now - t0) * rate), int(duration * rate))
        while sent < due:
            i = sent % n
            try:
                socks[i].sendto(payloads[i][(sent // n) % VARIANTS], dest)
            except OSError:  # ENOBUFS and the like: counted, the flood goes on
                errors += 1
            sent += 1
            second = int(time.monotonic() - t0)
            while len(per_second) <= second:
                per_second.append(0)
            per_second[second] += 1
        time.sleep(0.001)
    return {"sent": sent, "errors": errors, "seconds": round(time.monotonic() - t0, 3),
            "per_second": per_second[: int(duration) + 1]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--first", required=True, help="first source address (the next ones follow it)")
    p.add_argument("--sources", type=int, default=500)
    p.add_argument("--rate", type=float, default=20000, help="datagrams per second, all sources together")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--server", default="198.18.0.1")
    p.add_argument("--port", type=int, default=514)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    phones = make_phones(args.sources, args.seed, MODELS, [FLOOD_OUI])
    first = ipaddress.IPv4Address(args.first)
    payloads = [lines_for(ph, str(first + i), args.server, rng) for i, ph in enumerate(phones)]
    socks = open_sources(args.first, args.sources)
    print(json.dumps({"ready": True}), flush=True)
    result = flood(socks, payloads, (args.server, args.port), args.rate, args.duration)
    print(json.dumps(result), flush=True)
    for s in socks:
        s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
