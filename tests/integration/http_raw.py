"""Raw-socket HTTP clients for the hostile cases curl cannot send, run inside a lab host:

    python -m tests.integration.http_raw exchange HOST PORT < cases.json   # [{"data": str, "timeout": s}]
    python -m tests.integration.http_raw trickle HOST PORT INTERVAL LIMIT   # one byte per INTERVAL s
    python -m tests.integration.http_raw idle HOST PORT COUNT WAIT          # COUNT idle connections

Each prints one JSON document on stdout. Request bytes are latin-1 strings (any byte value survives JSON).
`exchange` sends each case on its own connection and returns everything read until the server closes or
the timeout passes; `idle` prints `{"open": n}` once connected, then, after all are closed by the server
or WAIT passes, how many were closed and when.
"""

from __future__ import annotations

import contextlib
import json
import resource
import selectors
import socket
import sys
import time


def read_all(sock: socket.socket, timeout: float) -> tuple[bytes, bool]:
    """Bytes until EOF or `timeout`; (data, closed by the server)."""
    sock.settimeout(timeout)
    data = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(data), True
            data += chunk
    except TimeoutError:
        return bytes(data), False
    except ConnectionResetError:
        return bytes(data), True
    return bytes(data), False


def exchange(host: str, port: int, cases: list[dict[str, object]]) -> list[dict[str, object]]:
    out = []
    for case in cases:
        with socket.create_connection((host, port), timeout=5) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(str(case["data"]).encode("latin-1"))
            data, closed = read_all(sock, float(case.get("timeout", 3.0)))  # type: ignore[arg-type]
        out.append({"response": data.decode("latin-1"), "closed": closed})
    return out


def trickle(host: str, port: int, interval: float, limit: float) -> dict[str, object]:
    """Send `GET /` one byte per interval (never finishing the head); how long until the server closed."""
    payload = b"GET /a-long-name-that-never-ends-" + b"x" * 200
    start = time.monotonic()
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.settimeout(interval)
        for i, byte in enumerate(payload):
            if time.monotonic() - start > limit:
                return {"closed": False, "sent": i, "seconds": time.monotonic() - start}
            try:
                sock.send(bytes([byte]))
                if sock.recv(65536) == b"":
                    return {"closed": True, "sent": i + 1, "seconds": time.monotonic() - start}
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                return {"closed": True, "sent": i, "seconds": time.monotonic() - start}
    return {"closed": False, "sent": len(payload), "seconds": time.monotonic() - start}


def idle(host: str, port: int, count: int, wait: float) -> dict[str, object]:
    resource.setrlimit(resource.RLIMIT_NOFILE, (count + 256, count + 256))
    sel = selectors.DefaultSelector()
    start = time.monotonic()
    socks = []
    for _ in range(count):
        s = socket.create_connection((host, port), timeout=5)
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ)
        socks.append(s)
    print(json.dumps({"open": count}), flush=True)
    closed: dict[int, float] = {}
    deadline = start + wait
    while len(closed) < count and time.monotonic() < deadline:
        for key, _ in sel.select(timeout=0.2):
            s = key.fileobj
            assert isinstance(s, socket.socket)
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                closed[s.fileno()] = time.monotonic() - start
                sel.unregister(s)
    for s in socks:
        s.close()
    times = sorted(closed.values())
    return {"open": count, "closed": len(closed), "last_close": times[-1] if times else None}


def main(argv: list[str]) -> None:
    mode, host, port = argv[0], argv[1], int(argv[2])
    if mode == "exchange":
        result: object = exchange(host, port, json.load(sys.stdin))
    elif mode == "trickle":
        result = trickle(host, port, float(argv[3]), float(argv[4]))
    elif mode == "idle":
        result = idle(host, port, int(argv[3]), float(argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
