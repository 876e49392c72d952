"""Fetching a profile the way a phone does: HTTP(S) with its User-Agent and status handling, or TFTP.

Every socket is bound to the phone's leased address. Host names go through the phone's own resolver
(the option-6 servers), never the namespace's resolv.conf.
"""

from __future__ import annotations

import base64
import http.client
import ipaddress
import socket
import ssl
import struct
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urljoin

from bootstrapd.sim.discovery import ProfileUrl, parse_rule
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.resolver import ResolveError
from bootstrapd.sim.verdict import Action, judge

MAX_PROFILE = 1 << 20  # bytes; a profile is a few kB
MAX_FIRMWARE = 256 << 20  # bytes read (and thrown away) of a firmware load
TFTP_BLOCK = 512


@dataclass(frozen=True)
class Fetched:
    """The end of one fetch (after redirects and authentication retries)."""

    ok: bool
    url: str  # the last URL requested
    outcome: str  # "200", "class B: 404 file not found", "connection refused", ...
    size: int = 0
    statuses: tuple[int, ...] = ()
    unreachable: bool = False  # no conversation with the server at all (refused, timeout, TLS failure)
    body: bytes = b""  # the profile as received (empty for a discarded firmware load)
    encoding: str | None = None  # the HTTP Content-Encoding (`aes128gcm`), lower case


@dataclass(frozen=True)
class _Response:
    status: int
    location: str | None
    body: bytes
    encoding: str | None
    size: int


class _Connection(http.client.HTTPConnection):
    """HTTP(S) to a known address with `host` as Host header and TLS server name, from the phone's address."""

    def __init__(self, url: ProfileUrl, address: str, source_ip: str, timeout: float,
                 tls: ssl.SSLContext | None) -> None:
        super().__init__(url.host, url.port, timeout=timeout, source_address=(source_ip, 0))
        self.default_port = 443 if tls else 80  # so that Host carries no default port
        self._address = address
        self._source = (source_ip, 0)
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout, self._source)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_hostname=self.host)
        self.sock = sock


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """Verify against `ca_file` (the lab's certificate) with host-name checks; without one, trust anything."""
    if ca_file:
        return ssl.create_default_context(cafile=ca_file)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class Fetcher:
    def __init__(self, phone: Phone, source_ip: str, resolve: Callable[[str], str], tls: ssl.SSLContext,
                 timeout: float = 3.0) -> None:
        self.phone = phone
        self.source_ip = source_ip
        self.resolve = resolve
        self.tls = tls
        self.timeout = timeout
        self.headers: dict[str, str] = {}  # sent with every HTTP request besides the phone's own

    def fetch(self, url: ProfileUrl, address: str | None = None, *, keep: bool = True) -> Fetched:
        """GET the profile at `url` (connecting to `address` when given, else to url.host resolved);
        `keep=False` reads a firmware load and throws it away."""
        try:
            address = address or _literal(url.host) or self.resolve(url.host)
        except ResolveError as e:
            return Fetched(False, str(url), f"cannot resolve {url.host}: {e}", unreachable=True)
        if url.scheme == "tftp":
            return self._tftp(url, address, keep)
        return self._http(url, address, keep)

    def _http(self, url: ProfileUrl, address: str, keep: bool) -> Fetched:
        statuses: list[int] = []
        auth_retries = redirects = 0
        authorization: str | None = None
        while True:
            try:
                resp = self._get(url, address, authorization, keep)
                status, location = resp.status, resp.location
            except (OSError, http.client.HTTPException) as e:
                reason = _describe(e)
                return Fetched(False, str(url), reason, statuses=tuple(statuses), unreachable=not statuses)
            statuses.append(status)
            has_credentials = url.username is not None
            verdict = judge(status, auth_retries=auth_retries, redirects=redirects,
                            has_credentials=has_credentials, location=location)
            if verdict.action is Action.DONE:
                return Fetched(True, str(url), verdict.reason, resp.size, tuple(statuses), body=resp.body,
                               encoding=resp.encoding)
            if verdict.action is Action.FOLLOW:
                target = parse_rule(urljoin(str(url), location or ""), self.phone, self.source_ip)
                if target is None or target.scheme == "tftp":
                    return Fetched(False, str(url), f"class C: {status} to unusable {location}", 0, tuple(statuses))
                redirects += 1
                url, authorization = target, None
                try:
                    address = self.resolve(url.host)
                except ResolveError as e:
                    return Fetched(False, str(url), f"cannot resolve {url.host}: {e}", 0, tuple(statuses))
                continue
            if verdict.action is Action.AUTHENTICATE:
                auth_retries += 1
                token = base64.b64encode(f"{url.username}:{url.password or ''}".encode()).decode()
                authorization = f"Basic {token}"
                continue
            return Fetched(False, str(url), f"{verdict.action.value}: {verdict.reason}", 0, tuple(statuses))

    def _get(self, url: ProfileUrl, address: str, authorization: str | None,
             keep: bool) -> _Response:
        """One request; with keep=False the body is counted, not kept."""
        conn = _Connection(url, address, self.source_ip, self.timeout, self.tls if url.scheme == "https" else None)
        try:
            headers = {"User-Agent": self.phone.user_agent, "Accept": "*/*", **self.headers}
            if authorization:
                headers["Authorization"] = authorization
            payload = None
            if url.post:  # mpp-bootstrap.md section 6: POST with the phone's status in the body
                payload = f"mac={self.phone.ma}&ip={self.source_ip}&swver={self.phone.firmware}".encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request("POST" if url.post else "GET", url.path, body=payload, headers=headers)
            resp = conn.getresponse()
            encoding = (resp.getheader("Content-Encoding") or "").strip().lower() or None
            body = resp.read(MAX_PROFILE) if keep else b""
            size = len(body) if keep else _drain(resp)
            return _Response(resp.status, resp.getheader("Location"), body, encoding, size)
        finally:
            conn.close()

    def _tftp(self, url: ProfileUrl, address: str, keep: bool) -> Fetched:
        try:
            limit = MAX_PROFILE if keep else MAX_FIRMWARE
            data = tftp_get(address, url.port, url.path.lstrip("/"), self.source_ip, self.timeout, limit=limit)
        except TftpError as e:
            kind = "class B" if e.code == 1 else "class C"
            return Fetched(False, str(url), f"{kind}: TFTP error {e.code} {e.message}")
        except OSError as e:
            return Fetched(False, str(url), f"TFTP: {_describe(e)}", unreachable=True)
        return Fetched(True, str(url), "TFTP", len(data), body=data if keep else b"")


def _literal(host: str) -> str | None:
    """An IPv4 literal needs no DNS (a phone without option 6 still fetches from tftp://198.18.0.10/...)."""
    try:
        return str(ipaddress.IPv4Address(host))
    except ValueError:
        return None


def _drain(resp: http.client.HTTPResponse) -> int:
    size = 0
    while size < MAX_FIRMWARE and (chunk := resp.read(65536)):
        size += len(chunk)
    return size


def _describe(e: BaseException) -> str:
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, TimeoutError):
        return "timed out"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS: {e.verify_message}"
    return f"{type(e).__name__}: {e}"


class TftpError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"TFTP error {code}: {message}")
        self.code = code
        self.message = message


def tftp_get(address: str, port: int, filename: str, source_ip: str, timeout: float = 2.0,
             tries: int = 3, limit: int = MAX_PROFILE) -> bytes:
    """RFC 1350 read request in octet mode; raises TftpError (server's ERROR) or TimeoutError."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source_ip, 0))
        s.settimeout(timeout)
        packet = struct.pack("!H", 1) + filename.encode() + b"\0octet\0"
        dest: tuple[str, int] = (address, port)
        peer: tuple[str, int] | None = None  # the server's transfer ID, fixed by its first DATA
        data, block = bytearray(), 1
        while True:
            for attempt in range(tries):
                s.sendto(packet, peer or dest)
                try:
                    chunk, sender = _tftp_receive(s, address, peer, block)
                    break
                except TimeoutError:
                    if attempt == tries - 1:
                        raise
            peer = sender
            data += chunk
            packet = struct.pack("!HH", 4, block)
            if len(chunk) < TFTP_BLOCK or len(data) > limit:
                s.sendto(packet, peer)  # the final ACK
                return bytes(data)
            block = (block + 1) & 0xFFFF


def _tftp_receive(s: socket.socket, address: str, peer: tuple[str, int] | None,
                  block: int) -> tuple[bytes, tuple[str, int]]:
    while True:
        msg, sender = s.recvfrom(4 + TFTP_BLOCK)
        if sender[0] != address or (peer is not None and sender != peer) or len(msg) < 4:
            continue
        opcode, number = struct.unpack("!HH", msg[:4])
        if opcode == 5:
            raise TftpError(number, msg[4:].split(b"\0")[0].decode(errors="replace"))
        if opcode == 3 and number == block:
            return msg[4:], sender
