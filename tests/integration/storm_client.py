"""A storm of phones fetching at once, run inside a lab namespace: N TFTP (the simulator's RFC 1350
client, octet, 512-byte blocks) and N HTTP/1.1 GETs (a connection each), one thread each, released
together; prints one JSON object: how many of each finished, the errors, and the sha256 digests of what
they got.

    python -m tests.integration.storm_client SERVER TFTP_NAME HTTP_PATH N
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from bootstrapd.sim.fetch import tftp_get

TIMEOUT = 20.0


def main(server: str, name: str, path: str, n: int) -> None:
    start = threading.Barrier(2 * n)

    def by_tftp() -> bytes:
        start.wait()
        return tftp_get(server, 69, name, "0.0.0.0", timeout=TIMEOUT / 4, tries=4)

    def by_http() -> bytes:
        start.wait()
        conn = http.client.HTTPConnection(server, 80, timeout=TIMEOUT)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}")
            return body
        finally:
            conn.close()

    with ThreadPoolExecutor(2 * n) as pool:
        futures = [("tftp", pool.submit(by_tftp)) for _ in range(n)] + [("http", pool.submit(by_http))
                                                                       for _ in range(n)]
        ok = {"tftp": 0, "http": 0}
        errors: list[str] = []
        digests: dict[str, set[str]] = {"tftp": set(), "http": set()}
        for kind, f in futures:
            try:
                body = f.result()
            except Exception as e:
                errors.append(f"{kind}: {e!r}")
                continue
            ok[kind] += 1
            digests[kind].add(hashlib.sha256(body).hexdigest())
    print(json.dumps({"tftp_ok": ok["tftp"], "http_ok": ok["http"], "errors": errors,
                      "digests": {k: sorted(v) for k, v in digests.items()}}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
