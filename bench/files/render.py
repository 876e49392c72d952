"""Profiles resolved per second by the file service's core (no sockets; runs anywhere).

    PYTHONPATH=. python bench/files/render.py [config/site.example.yaml]

Uncached rows give every request a new client address, so each one renders its template again (the cache
keys on every device variable, the address included); cached rows repeat one device (encryption still runs
per request, with a fresh salt).
"""

from __future__ import annotations

import sys
import timeit
from collections.abc import Callable
from ipaddress import IPv4Address

from bootstrapd.config import load_site
from bootstrapd.files.outcome import FileRequest, Protocol
from bootstrapd.files.resolve import FileResolver

UA = "Cisco-CP-7841-3PCC/12.0.1 (00562b043616)"


def rate(label: str, fn: Callable[[], object], n: int) -> None:
    t = min(timeit.repeat(fn, number=n, repeat=3))
    print(f"{label:58} {n / t:>9,.0f}/s {t / n * 1e6:>7.1f} us")


def main(site_file: str) -> None:
    files = load_site(site_file).files
    assert files is not None, "the site has no files: section"
    r = FileResolver.from_config(files, lambda a: None)
    addresses = iter([IPv4Address(int(IPv4Address("198.18.0.0")) + i) for i in range(100_000)])
    one = IPv4Address("198.18.0.5")
    rate("bootstrap profile, uncached", lambda: r.resolve(
        FileRequest("/CP-7841-3PCC.cfg", Protocol.HTTP, next(addresses), UA)), 5000)
    rate("per-MAC profile, gzip + aes-256-cbc, uncached", lambda: r.resolve(
        FileRequest("/00562b043616.cfg", Protocol.HTTP, next(addresses))), 5000)
    rate("bootstrap profile, cached", lambda: r.resolve(FileRequest("/CP-7841-3PCC.cfg", Protocol.HTTP, one, UA)),
         20000)
    rate("per-MAC profile, gzip + aes-256-cbc, cached", lambda: r.resolve(
        FileRequest("/00562b043616.cfg", Protocol.HTTP, one)), 20000)
    rate("static file (jail lookup)", lambda: r.resolve(FileRequest("/README.txt", Protocol.TFTP, one)), 20000)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "config/site.example.yaml")
