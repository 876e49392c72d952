"""A phone after its first profile, against the lab provisioning server and a syslog socket on 127.0.0.1:
it decrypts, follows Profile_Rule to the remote profile (which points at itself: resynced), retries a 404
after the error delay, fails visibly with a wrong key, upgrades, and logs each step to syslog."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from bootstrapd.sim.discovery import ProfileUrl
from bootstrapd.sim.fetch import Fetcher, tls_context
from bootstrapd.sim.phone import Phone
from bootstrapd.sim.provfiles import Bootstrap, Catalog, remote_profile
from bootstrapd.sim.provserver import ProvServer
from bootstrapd.sim.resolver import ResolveError
from bootstrapd.sim.resync import Resync, Resyncer, ResyncSettings, ResyncState, open_profile
from bootstrapd.syslog import Kind, parse

PHONE = Phone("00:56:2b:04:36:15", "CP-8841-3PCC")
IP = "127.0.0.1"
FAST = ResyncSettings(retries=2, retry_delay=0.05)


def resolve(host: str) -> str:
    raise ResolveError(f"{host}: no DNS in this test")


@pytest.fixture
def syslog() -> Iterator[socket.socket]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    try:
        yield s
    finally:
        s.close()


def lines(s: socket.socket) -> list[bytes]:
    out = []
    while True:
        try:
            data, sender = s.recvfrom(2048)
        except TimeoutError:
            return out
        assert sender[0] == IP
        out.append(data)


class Floor:
    def __init__(self, syslog: socket.socket, **bootstrap: Any) -> None:
        self.syslog = syslog
        self.port = 0
        self.bootstrap = bootstrap
        self.server: ProvServer | None = None

    def start(self) -> Floor:
        # The rule names the server's own port, known only once it listens: bind first, then configure.
        with socket.socket() as probe:
            probe.bind((IP, 0))
            self.port = probe.getsockname()[1]
        b = {"syslog_server": f"{IP}:{self.syslog.getsockname()[1]}",
             "profile_rule": f"http://{IP}:{self.port}/remote/$MA.xml", **self.bootstrap}
        b = json.loads(json.dumps(b).replace(":PORT/", f":{self.port}/"))
        self.server = ProvServer([IP], http_port=self.port, bootstrap=Bootstrap.from_json(b)).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def boot(self, phone: Phone = PHONE, settings: ResyncSettings = FAST,
             first_key: str | None = None) -> tuple[Resync, list[bytes]]:
        fetcher = Fetcher(phone, IP, resolve, tls_context(None), timeout=2.0)
        first = ProfileUrl("http", IP, self.port, "/CP-8841-3PCC.cfg", key=first_key)
        fetched = fetcher.fetch(first)
        assert fetched.ok, fetched.outcome
        params = open_profile(fetched, first, phone, None)
        events: list[dict[str, Any]] = []
        result = Resyncer(phone, IP, fetcher, None, settings, events.append).run(first, params)
        assert all(json.dumps(e) for e in events)
        self.events = events
        return result, lines(self.syslog)

    def requests(self) -> list[tuple[str, int]]:
        assert self.server is not None
        return [(e["path"], e["status"]) for e in self.server.events]


@pytest.fixture
def floor(syslog: socket.socket, request: pytest.FixtureRequest) -> Iterator[Floor]:
    f = Floor(syslog, **getattr(request, "param", {})).start()
    try:
        yield f
    finally:
        f.stop()


REMOTE = f"http://{IP}:{{port}}/remote/00562b043615.xml"


def kinds(received: list[bytes]) -> list[tuple[Kind, str | None, str | None]]:
    msgs = [parse(d) for d in received]
    assert all(m.mac == PHONE.mac for m in msgs)
    return [(m.kind, m.url, m.error) for m in msgs]


@pytest.mark.parametrize("floor", [{"key": "first-key", "remote_key": "remote key",
                                    "profile_rule": '--key "remote key" http://127.0.0.1:PORT/remote/$MA.xml'}],
                         indirect=True)
def test_encrypted_chain_ends_at_the_self_pointing_remote_profile(floor: Floor) -> None:
    result, received = floor.boot(first_key="first-key")
    remote = REMOTE.format(port=floor.port)
    assert (result.state, result.hops, result.retries, result.url) == (ResyncState.DONE, 1, 0, remote)
    servip = f"http://{IP}:{floor.port}/remote/00562b043615.xml"
    assert kinds(received) == [(Kind.RESYNC_REQUESTED, servip, None), (Kind.RESYNC_SUCCEEDED, servip, None)]
    assert received[0].startswith(b"<134>")  # this phone's firmware writes an RFC 3164 header
    assert b" bootstrapd 00562b043615 CP-8841-3PCC -- Requesting resync " in received[0]
    assert floor.requests() == [("/CP-8841-3PCC.cfg", 200), ("/remote/00562b043615.xml", 200)]
    assert [e["event"] for e in floor.events] == ["resync_requested", "resync_succeeded"]
    assert result.syslog_sent == 2 and result.syslog_server == f"{IP}:{floor.syslog.getsockname()[1]}"


@pytest.mark.parametrize("floor", [{"remote_key": "k2", "our_templates": False, "gzip": True,
                                    "profile_rule": "--key k2 http://127.0.0.1:PORT/remote/$MA.xml"}], indirect=True)
def test_wrong_key_fails_visibly_and_is_not_retried(floor: Floor) -> None:
    phone = Phone(PHONE.mac, PHONE.model, wrong_key=True, syslog_header="bare")
    result, received = floor.boot(phone)
    assert (result.state, result.reason, result.retries) == (ResyncState.FAILED, "class C: decryption failed", 0)
    assert received[-1] == b"CP-8841-3PCC 00:56:2b:04:36:15 -- Resync failed: decryption failed"  # defaults, bare
    assert [k for k, _, _ in kinds(received)] == [Kind.RESYNC_REQUESTED, Kind.RESYNC_FAILED]


def test_a_404_is_retried_after_the_error_delay(floor: Floor) -> None:
    phone = Phone(PHONE.mac, PHONE.model, fail_resync=True)
    result, received = floor.boot(phone)
    assert (result.state, result.hops, result.retries) == (ResyncState.DONE, 1, 1)
    assert [(k, e) for k, _, e in kinds(received)] == [
        (Kind.RESYNC_REQUESTED, None), (Kind.RESYNC_FAILED, "404 file not found"),
        (Kind.RESYNC_REQUESTED, None), (Kind.RESYNC_SUCCEEDED, None)]
    assert floor.requests()[1:] == [("/remote/00562b043615.xml", 404), ("/remote/00562b043615.xml", 200)]
    failed = [e for e in floor.events if e["event"] == "resync_failed"]
    assert failed == [{"event": "resync_failed", "mac": PHONE.mac, "url": REMOTE.format(port=floor.port),
                       "reason": "class B: 404 file not found", "retry_in": 0.05}]


@pytest.mark.parametrize("floor", [{"profile_rule": "http://127.0.0.1:PORT/nothing/$MA.xml", "retry_delay": 0.01}],
                         indirect=True)
def test_retries_run_out(floor: Floor) -> None:
    result, received = floor.boot(settings=ResyncSettings(retries=2))  # the profile's delay applies
    assert (result.state, result.retries, result.reason) == (ResyncState.FAILED, 2, "class B: 404 file not found")
    assert [k for k, _, _ in kinds(received)].count(Kind.RESYNC_FAILED) == 3
    assert len(floor.requests()) == 4


@pytest.mark.parametrize("floor", [{"remote_ikm": "shared ikm"}], indirect=True)
def test_aes128gcm_content_encoding(floor: Floor) -> None:
    result, _ = floor.boot()
    assert result.state is ResyncState.DONE
    wrong, _ = floor.boot(Phone(PHONE.mac, PHONE.model, wrong_key=True))
    assert (wrong.state, wrong.reason) == (ResyncState.FAILED, "class C: decryption failed")


@pytest.mark.parametrize("floor", [{"remote_key": "k2"}], indirect=True)
def test_encrypted_profile_without_a_key(floor: Floor) -> None:
    result, _ = floor.boot()
    assert (result.state, result.reason) == (ResyncState.FAILED,
                                             "class C: encrypted profile and no --key in the profile rule")


def test_silent_phone_never_comes_back(floor: Floor) -> None:
    result, received = floor.boot(Phone(PHONE.mac, PHONE.model, silent=True))
    assert (result.state, received, floor.events) == (ResyncState.SILENT, [], [])
    assert floor.requests() == [("/CP-8841-3PCC.cfg", 200)]


@pytest.mark.parametrize("floor", [{"upgrade_rule": "http://127.0.0.1:PORT/sip88xx.12-0-1MPP-1234.loads"}],
                         indirect=True)
def test_upgrade_rule(floor: Floor) -> None:
    result, received = floor.boot()
    assert (result.state, result.upgrade) == (ResyncState.DONE, "done")
    assert [k for k, _, _ in kinds(received)][-2:] == [Kind.UPGRADE_REQUESTED, Kind.UPGRADE_SUCCEEDED]
    assert floor.requests()[-1] == ("/sip88xx.12-0-1MPP-1234.loads", 200)


@pytest.mark.parametrize("floor", [{"profile_rule": None}], indirect=True)
def test_no_new_profile_rule_no_resync(floor: Floor) -> None:
    result, received = floor.boot()
    assert (result.state, result.hops, received) == (ResyncState.NONE, 0, [])


@pytest.mark.parametrize("floor", [{"profile_rule": "--post http://127.0.0.1:PORT/remote/$MA.xml"}], indirect=True)
def test_post_rule(floor: Floor) -> None:
    result, _ = floor.boot()
    assert result.state is ResyncState.DONE
    assert floor.server is not None and [e["method"] for e in floor.server.events] == ["GET", "POST"]


@pytest.mark.parametrize("floor", [{"extra": {"Profile_Rule_B": "http://127.0.0.1:PORT/Cisco/$MA.cfg",
                                              "Profile_Rule_C": "http://127.0.0.1:PORT/missing.cfg"}}], indirect=True)
def test_rules_b_to_d_run_once_after_the_chain(floor: Floor) -> None:
    result, received = floor.boot()
    assert (result.state, result.reason) == (ResyncState.FAILED, "Profile_Rule_C: class B: 404 file not found")
    assert [p for p, _ in floor.requests()] == ["/CP-8841-3PCC.cfg", "/remote/00562b043615.xml",
                                                "/Cisco/00562b043615.cfg", "/missing.cfg"]  # C is not retried
    assert [k for k, _, _ in kinds(received)] == [*[Kind.RESYNC_REQUESTED, Kind.RESYNC_SUCCEEDED] * 2,
                                                  Kind.RESYNC_REQUESTED, Kind.RESYNC_FAILED]


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary")
@pytest.mark.parametrize("md", ["sha256", "md5"])
def test_the_remote_profile_is_what_openssl_decrypts(md: str) -> None:
    """The lab remote encrypts per-phone profiles in process now; the format is still `openssl enc`'s."""
    catalog = Catalog(Bootstrap(remote_key="r3mote", md=md))
    answer = catalog.other("/remote/00562b043615.xml", "http://198.18.0.11/remote/00562b043615.xml", http=True)
    assert answer is not None and answer.kind == "remote"
    plain = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", md, "-k", "r3mote"], input=answer.body,
                           capture_output=True, timeout=30, check=True).stdout
    assert plain == remote_profile("--key r3mote http://198.18.0.11/remote/00562b043615.xml",
                                   "/remote/00562b043615.xml")
    again = catalog.other("/remote/00562b043615.xml", "http://198.18.0.11/remote/00562b043615.xml", http=True)
    assert again is not None and again.body[8:16] != answer.body[8:16]  # a fresh salt per answer, as openssl
