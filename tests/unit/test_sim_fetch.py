"""Profile fetch as a phone does it, against real servers on 127.0.0.1: HTTP status handling
(mpp-bootstrap.md section 6), the User-Agent, TFTP, and the lab provisioning server's file names."""

from __future__ import annotations

import base64
import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from bootstrapd.sim.discovery import ProfileUrl
from bootstrapd.sim.fetch import Fetcher, tftp_get, tls_context
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.provserver import ProvServer, profile_for
from bootstrapd.sim.resolver import ResolveError
from bootstrapd.sim.verdict import MAX_AUTH_RETRIES

PHONE = Phone("00:56:2b:04:36:15", "CP-7832-3PCC", firmware="11.0.1")
CREDENTIALS = ("alice", "s3cret")
GOOD_AUTH = "Basic " + base64.b64encode(b"alice:s3cret").decode()


@dataclass
class Seen:
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (path, User-Agent, Authorization)


def scripted_server(seen: Seen) -> http.server.ThreadingHTTPServer:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            auth = self.headers.get("Authorization", "")
            seen.requests.append((self.path, self.headers.get("User-Agent", ""), auth))
            port = self.server.server_address[1]
            routes: dict[str, tuple[int, dict[str, str]]] = {
                "/ok": (200, {}),
                "/moved": (301, {"Location": "/ok"}),
                "/found": (302, {"Location": f"http://other.test:{port}/ok"}),
                "/loop": (302, {"Location": "/loop"}),
                "/see-other": (303, {"Location": "/ok"}),
                "/auth": (200 if auth == GOOD_AUTH else 401, {"WWW-Authenticate": 'Basic realm="p"'}),
                "/never": (401, {"WWW-Authenticate": 'Basic realm="p"'}),
                "/forbidden": (403, {}),
                "/error": (500, {}),
            }
            status, headers = routes.get(self.path, (404, {}))
            body = b"<flat-profile/>\n" if status == 200 else b""
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)


@pytest.fixture
def server() -> Iterator[tuple[int, Seen]]:
    seen = Seen()
    srv = scripted_server(seen)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield srv.server_address[1], seen
    finally:
        srv.shutdown()
        srv.server_close()


def resolve(host: str) -> str:
    if host in ("127.0.0.1", "other.test"):
        return "127.0.0.1"
    raise ResolveError(f"{host}: NXDOMAIN")


def fetch(port: int, path: str, credentials: tuple[str, str] | None = None):
    user, pwd = credentials or (None, None)
    fetcher = Fetcher(PHONE, "127.0.0.1", resolve, tls_context(None), timeout=3.0)
    return fetcher.fetch(ProfileUrl("http", "127.0.0.1", port, path, user, pwd))


def test_200_with_the_phones_user_agent(server: tuple[int, Seen]) -> None:
    port, seen = server
    got = fetch(port, "/ok")
    assert got.ok and got.statuses == (200,) and got.size == len(b"<flat-profile/>\n")
    assert seen.requests == [("/ok", "Cisco-CP-7832-3PCC/11.0.1 (00562b043615)", "")]


@pytest.mark.parametrize(("path", "statuses"), [("/moved", (301, 200)), ("/found", (302, 200))])
def test_301_and_302_are_followed(server: tuple[int, Seen], path: str, statuses: tuple[int, ...]) -> None:
    port, seen = server
    got = fetch(port, path)
    assert got.ok and got.statuses == statuses and got.url.endswith("/ok")
    assert [r[0] for r in seen.requests] == [path, "/ok"]


def test_redirect_loop_ends_in_class_c(server: tuple[int, Seen]) -> None:
    got = fetch(server[0], "/loop")
    assert not got.ok and got.outcome.startswith("class C") and len(got.statuses) == 6


def test_401_is_answered_with_credentials(server: tuple[int, Seen]) -> None:
    port, seen = server
    got = fetch(port, "/auth", CREDENTIALS)
    assert got.ok and got.statuses == (401, 200)
    assert [r[2] for r in seen.requests] == ["", GOOD_AUTH]


def test_401_retried_at_most_twice_then_class_c(server: tuple[int, Seen]) -> None:
    port, seen = server
    got = fetch(port, "/never", CREDENTIALS)
    assert not got.ok and got.outcome.startswith("class C")
    assert len(seen.requests) == 1 + MAX_AUTH_RETRIES == 3


def test_401_without_credentials_is_class_c_at_once(server: tuple[int, Seen]) -> None:
    port, seen = server
    got = fetch(port, "/auth")
    assert not got.ok and got.outcome.startswith("class C") and len(seen.requests) == 1


@pytest.mark.parametrize(("path", "outcome"), [
    ("/missing", "class B: 404 file not found"),
    ("/forbidden", "class C: 403"),
    ("/error", "class C: 500"),
    ("/see-other", "class C: 303"),  # only 301 and 302 are followed
])
def test_failure_classes(server: tuple[int, Seen], path: str, outcome: str) -> None:
    port, seen = server
    got = fetch(port, path)
    assert (got.ok, got.outcome, len(seen.requests), got.unreachable) == (False, outcome, 1, False)


def test_refused_connection_is_unreachable() -> None:
    srv = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens there now
    got = fetch(port, "/ok")
    assert not got.ok and got.unreachable and got.outcome == "connection refused"


def test_unresolvable_host_is_unreachable() -> None:
    fetcher = Fetcher(PHONE, "127.0.0.1", resolve, tls_context(None))
    got = fetcher.fetch(ProfileUrl("http", "prov9.staging.test", 80, "/x.xml"))
    assert not got.ok and got.unreachable and "NXDOMAIN" in got.outcome


@pytest.mark.parametrize("path", [
    "/7832-3PCC.xml", "7832-3PCC.xml", "/CP-7832-3PCC.xml", "CP-7832-3PCC.xml", "/CP-7832-3PCC.cfg",
    "CP-7832-3PCC.cfg", "/00562b043615.cfg", "/Cisco/00562b043615.cfg", "Cisco/00562B043615.cfg",
])
def test_provserver_answers_every_documented_name(path: str) -> None:
    assert profile_for(path) is not None


@pytest.mark.parametrize("path", ["/", "/7832.xml", "/CP-7832-3PCC", "/Cisco/0056.cfg", "/$PSN.xml"])
def test_provserver_misses(path: str) -> None:
    assert profile_for(path) is None


@pytest.fixture
def provserver() -> Iterator[ProvServer]:
    srv = ProvServer(["127.0.0.1"], http_port=0, tftp_binds=["127.0.0.1"], tftp_port=0).start()
    try:
        yield srv
    finally:
        srv.stop()


def test_tftp_fetch_and_the_provservers_log(provserver: ProvServer) -> None:
    http_port = provserver.servers[0].server_address[1]  # type: ignore[attr-defined]
    tftp_port = provserver.servers[1].server_address[1]  # type: ignore[attr-defined]
    assert tftp_get("127.0.0.1", tftp_port, "CP-6841-3PCC.cfg", "127.0.0.1") == profile_for("CP-6841-3PCC.cfg")
    assert fetch(http_port, "/8841-3PCC.xml").ok
    got = fetch(http_port, "/8841.xml")
    assert got.outcome == "class B: 404 file not found"
    events = [(e["event"], e["proto"], e["path"], e["ua"]) for e in provserver.events]
    assert events == [("prov.hit", "tftp", "CP-6841-3PCC.cfg", ""),
                      ("prov.hit", "http", "/8841-3PCC.xml", PHONE.user_agent),
                      ("prov.miss", "http", "/8841.xml", PHONE.user_agent)]


def test_tftp_file_not_found_is_class_b(provserver: ProvServer) -> None:
    tftp_port = provserver.servers[1].server_address[1]  # type: ignore[attr-defined]
    fetcher = Fetcher(PHONE, "127.0.0.1", resolve, tls_context(None))
    got = fetcher.fetch(ProfileUrl("tftp", "127.0.0.1", tftp_port, "/nothing.cfg"))
    assert not got.ok and got.outcome == "class B: TFTP error 1 File not found"


def test_provserver_requires_basic_auth_when_asked() -> None:
    srv = ProvServer(["127.0.0.1"], http_port=0, credentials="alice:s3cret").start()
    try:
        port = srv.servers[0].server_address[1]  # type: ignore[attr-defined]
        assert fetch(port, "/7832-3PCC.xml", CREDENTIALS).statuses == (401, 200)
        assert fetch(port, "/7832-3PCC.xml").outcome == "class C: 401 and the phone has no credentials"
    finally:
        srv.stop()
