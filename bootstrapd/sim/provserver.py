"""A small provisioning server for the lab: HTTP, HTTPS and TFTP serving MPP profiles, logging every miss.

    python -m bootstrapd.sim.provserver --bind 198.18.0.10 --bind 198.18.0.11 [--https CERT,KEY] [--tftp ADDR]

File names follow mpp-bootstrap.md section 4's policy, with or without a leading `/`: per model
`<model>-3PCC.xml` (= `$PSN.xml`), `CP-<model>-3PCC.xml`, `CP-<model>-3PCC.cfg` (= `$PN.cfg`), and per
phone `<mac>.cfg` or `Cisco/<mac>.cfg` (`$MA`, 12 hex digits). Profiles are generated, not read from
disk. Besides, `/remote/<name>` is a remote provider's profile and `*.loads` a firmware stub; with
`--bootstrap JSON` the first profiles become a bootstrap profile (sim/provfiles.py). A request carrying
the simulator's `X-Bootstrapd-Sim-Quirk: fail-once` is answered 404 the first time (per client and path).
One JSON line per request (`prov.hit` / `prov.miss`, with path, client and User-Agent) goes to stdout or `--log`.
"""

from __future__ import annotations

import argparse
import base64
import http.server
import json
import re
import socket
import socketserver
import ssl
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

from bootstrapd.sim.provfiles import Bootstrap, Catalog
from bootstrapd.sim.resync import QUIRK_HEADER

_MODEL_FILE = re.compile(r"^/?(?:CP-)?(\d{4}[A-Z]?)-3PCC\.xml$|^/?CP-(\d{4}[A-Z]?)-3PCC\.cfg$", re.IGNORECASE)
_MAC_FILE = re.compile(r"^/?(?:Cisco/)?([0-9A-Fa-f]{12})\.cfg$")
Log = Callable[[dict[str, Any]], None]


def profile_for(path: str) -> bytes | None:
    """The profile served at `path`, or None (a miss)."""
    path = path.split("?", 1)[0]
    if m := _MODEL_FILE.match(path):
        model = f"CP-{(m.group(1) or m.group(2)).upper()}-3PCC"
        return (f'<flat-profile>\n  <!-- default profile for {model}, bootstrapd lab -->\n'
                f'  <Resync_Periodic ua="na">3600</Resync_Periodic>\n'
                f'  <Profile_Rule_B ua="na">/Cisco/$MA.cfg</Profile_Rule_B>\n</flat-profile>\n').encode()
    if m := _MAC_FILE.match(path):
        mac = m.group(1).upper()
        return (f'<flat-profile>\n  <Station_Name ua="na">SEP{mac}</Station_Name>\n'
                f'  <Display_Name_1_ ua="na">staging {mac[-4:]}</Display_Name_1_>\n</flat-profile>\n').encode()
    return None


def _where(server: socketserver.BaseServer) -> str:
    address: Any = server.server_address  # (host, port) for AF_INET
    return f"{address[0]}:{address[1]}"


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "bootstrapd-provserver/1"
    protocol_version = "HTTP/1.0"
    log: Log
    credentials: str | None  # "user:password" required as HTTP Basic, else open
    catalog: Catalog
    failed_once: set[tuple[str, str]]  # (client, path) already answered 404 for a fail-once request

    def do_GET(self) -> None:
        host = self.headers.get("Host") or _where(self.server)
        answer = self.catalog.other(self.path, f"{self.proto}://{host}{self.path}", http=True)
        body = answer.body if answer else self.catalog.first(profile_for(self.path))
        status = 200 if body is not None else 404
        if body is not None and self.credentials and not self._authorized():
            status, body = 401, None
        if body is not None and self.headers.get(QUIRK_HEADER) == "fail-once":
            seen = (self.client_address[0], self.path)
            if seen not in self.failed_once:  # not thread-safe in theory; one phone asks one path at a time
                self.failed_once.add(seen)
                status, body = 404, None
        self.log({"event": "prov.hit" if status == 200 else "prov.miss", "proto": self.proto, "status": status,
                  "server": _where(self.server), "client": self.client_address[0], "method": self.command,
                  "path": self.path, "ua": self.headers.get("User-Agent", ""),
                  "kind": answer.kind if answer else "profile"})
        self.send_response(status)
        if status == 401:
            self.send_header("WWW-Authenticate", 'Basic realm="provisioning"')
        payload = body if body is not None else f"{status}\n".encode()
        self.send_header("Content-Type", "text/xml" if body is not None else "text/plain")
        if status == 200 and answer is not None and answer.encoding:
            self.send_header("Content-Encoding", answer.encoding)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self) -> None:
        """A `--post` profile rule: the phone's status in the body (read and ignored), then as GET."""
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(min(max(length, 0), 65536))
        self.do_GET()

    @property
    def proto(self) -> str:
        return "https" if isinstance(self.connection, ssl.SSLSocket) else "http"

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        assert self.credentials is not None
        return header == "Basic " + base64.b64encode(self.credentials.encode()).decode()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # one JSON line per request instead


class _HttpServer(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # a boot storm opens hundreds of connections at once
    daemon_threads = True


class _TlsServer(_HttpServer):
    def __init__(self, address: tuple[str, int], handler: type[_Handler], context: ssl.SSLContext) -> None:
        super().__init__(address, handler)
        self.context = context

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        sock.settimeout(5.0)  # the handshake happens in the request thread, never in the accept loop
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()
        except (OSError, ssl.SSLError):
            return
        super().finish_request(request, client_address)


class _TftpServer(socketserver.ThreadingUDPServer):
    daemon_threads = True
    log: Log
    catalog: Catalog


class _TftpHandler(socketserver.BaseRequestHandler):
    """RFC 1350 read requests: one DATA block per ACK from a fresh port (the transfer ID)."""

    server: _TftpServer

    def handle(self) -> None:
        data, _ = self.request
        if len(data) < 4 or struct.unpack("!H", data[:2])[0] != 1:
            return
        filename = data[2:].split(b"\0")[0].decode(errors="replace")
        catalog = self.server.catalog
        answer = catalog.other(filename, f"tftp://{_where(self.server)}/{filename.lstrip('/')}", http=False)
        body = answer.body if answer else catalog.first(profile_for(filename))
        self.server.log({"event": "prov.hit" if body is not None else "prov.miss", "proto": "tftp",
                         "status": 200 if body is not None else 404,
                         "server": _where(self.server),
                         "client": self.client_address[0], "path": filename, "ua": ""})
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((self.server.server_address[0], 0))
            s.settimeout(1.0)
            if body is None:
                s.sendto(struct.pack("!HH", 5, 1) + b"File not found\0", self.client_address)
                return
            _send_blocks(s, body, self.client_address)


def _send_blocks(s: socket.socket, body: bytes, peer: tuple[str, int]) -> None:
    for block, offset in enumerate(range(0, len(body) + 1, 512), start=1):
        packet = struct.pack("!HH", 3, block & 0xFFFF) + body[offset:offset + 512]
        for _ in range(3):
            s.sendto(packet, peer)
            try:
                ack, sender = s.recvfrom(516)
            except TimeoutError:
                continue
            if sender == peer and ack[:4] == struct.pack("!HH", 4, block & 0xFFFF):
                break
        else:
            return


class ProvServer:
    """HTTP (and HTTPS with a certificate) on each of `binds`, TFTP on each of `tftp_binds`; all listen
    once the constructor returns, start() serves."""

    def __init__(self, binds: Sequence[str], http_port: int = 80, https_port: int = 443,
                 cert: tuple[str, str] | None = None, tftp_binds: Sequence[str] = (), tftp_port: int = 69,
                 credentials: str | None = None, log: Log | None = None, bootstrap: Bootstrap | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._sink = log
        catalog = Catalog(bootstrap)
        handler = type("Handler", (_Handler,), {"log": staticmethod(self._log), "credentials": credentials,
                                                "catalog": catalog, "failed_once": set()})
        self.servers: list[socketserver.BaseServer] = []
        for addr in binds:
            self.servers.append(_HttpServer((addr, http_port), handler))
            if cert is not None:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(*cert)
                self.servers.append(_TlsServer((addr, https_port), handler, ctx))
        for addr in tftp_binds:
            tftp = _TftpServer((addr, tftp_port), _TftpHandler)
            tftp.log = self._log
            tftp.catalog = catalog
            self.servers.append(tftp)
        self._threads: list[threading.Thread] = []

    def _log(self, event: dict[str, Any]) -> None:
        with self._lock:
            self.events.append(event)
            if self._sink is not None:
                self._sink(event)

    def start(self) -> ProvServer:
        for srv in self.servers:
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        for srv in self.servers:
            srv.shutdown()
            srv.server_close()


def make_certificate(directory: Path, domain: str, addresses: Sequence[str] = ()) -> tuple[str, str]:
    """A self-signed certificate for `domain` and `*.domain` (phones check it names their DHCP domain)."""
    cert, key = directory / "prov.crt", directory / "prov.key"
    san = ",".join([f"DNS:{domain}", f"DNS:*.{domain}", *(f"IP:{a}" for a in addresses)])
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-days", "2", "-subj", f"/CN={domain}", "-addext", f"subjectAltName={san}",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True, timeout=30)
    return str(cert), str(key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bootstrapd.sim.provserver", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bind", action="append", required=True, help="address to serve on (repeatable)")
    p.add_argument("--http-port", type=int, default=80)
    p.add_argument("--https", metavar="CERT,KEY", help="also serve HTTPS with this certificate and key")
    p.add_argument("--https-port", type=int, default=443)
    p.add_argument("--tftp", action="append", default=[], metavar="ADDR", help="serve TFTP on ADDR (repeatable)")
    p.add_argument("--tftp-port", type=int, default=69)
    p.add_argument("--auth", metavar="USER:PASSWORD", help="require HTTP Basic authentication")
    p.add_argument("--log", type=Path, help="JSON lines go here instead of stdout")
    p.add_argument("--bootstrap", metavar="JSON", help="serve a bootstrap profile instead of the default ones: "
                   "a JSON object of bootstrapd.sim.provfiles.Bootstrap's fields")
    args = p.parse_args(argv)
    bootstrap = Bootstrap.from_json(json.loads(args.bootstrap)) if args.bootstrap else None
    out: IO[str] = open(args.log, "a", buffering=1) if args.log else sys.stdout  # noqa: SIM115

    def log(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    cert: tuple[str, str] | None = None
    if args.https:
        cert_file, _, key_file = args.https.partition(",")
        cert = (cert_file, key_file)
    server = ProvServer(args.bind, args.http_port, args.https_port, cert, args.tftp, args.tftp_port, args.auth,
                        log, bootstrap).start()
    log({"event": "prov.ready", "binds": args.bind})
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
