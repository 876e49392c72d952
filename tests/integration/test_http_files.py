"""The HTTP/HTTPS file service (HttpFileServer in tests/integration/http_harness.py) against curl and raw
sockets from other lab hosts: the server host serves 198.18.0.1, clients are 198.18.0.200-.202."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Host, Lab, staging_lan, stop_process
from tests.labreq import require_lab

pytestmark = pytest.mark.lab

SERVER = "198.18.0.1"
PROFILE = b'<flat-profile><Profile_Rule ua="na">http://198.18.0.1/$MA.cfg</Profile_Rule></flat-profile>\n'
ENCRYPTED = bytes(range(256)) * 3  # stands in for an RFC 8188 body
BIG = 100 * 1024 * 1024


@dataclass
class Harness:
    host: Host
    proc: subprocess.Popen[Any]
    workdir: Path
    ports: dict[str, int]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> list[dict[str, Any]]:
        lines = (self.workdir / "log").read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def fetches(self) -> list[dict[str, Any]]:
        return [e for e in self.log() if e.get("event") == "files.fetch"]

    def metrics(self) -> str:
        path = self.workdir / "metrics"
        before = path.stat().st_mtime_ns if path.exists() else 0
        os.kill(self.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if path.exists() and path.stat().st_mtime_ns != before:
                return path.read_text()
            time.sleep(0.02)
        raise AssertionError("harness wrote no metrics")

    def metric(self, name: str, **labels: str) -> float:
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        for line in self.metrics().splitlines():
            m = re.fullmatch(rf"{name}(?:\{{(.*)\}})? (\S+)", line)
            if m and ",".join(sorted((m.group(1) or "").split(","))) == want:
                return float(m.group(2))
        return 0.0

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


def start_harness(host: Host, workdir: Path, root: Path, *args: str) -> Harness:
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / "ready"
    argv = [sys.executable, "-m", "tests.integration.http_harness", "--address", SERVER, "--root", str(root),
            "--ready", str(ready), "--metrics", str(workdir / "metrics"), *args]
    log = open(workdir / "log", "w")  # noqa: SIM115 - the child owns it
    proc = host.popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=Path(__file__).parents[2],
                      env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    log.close()
    deadline = time.monotonic() + 20
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc)
            raise AssertionError("harness did not start:\n" + (workdir / "log").read_text())
        time.sleep(0.05)
    return Harness(host, proc, workdir, json.loads(ready.read_text())["ports"])


@dataclass
class HttpLab:
    main: Harness  # http 80, https 443, head_timeout 3 s
    auth: Harness  # http 8081 with Basic auth
    capped: Harness  # http 8082, at most 100 connections, idle_timeout 4 s
    phone: Host
    attacker: Host
    third: Host
    root: Path
    cert: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HttpLab]:
    require_lab()
    for tool in ("curl", "openssl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed")
    tmp = tmp_path_factory.mktemp("http")
    root, cert, key = tmp / "root", tmp / "cert.pem", tmp / "key.pem"
    make_tree(root, tmp)
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={SERVER}", "-addext", f"subjectAltName=IP:{SERVER}", "-keyout", str(key),
                    "-out", str(cert)], check=True, capture_output=True)
    rendered = ["--rendered", f"SEP00562b043615.cfg={tmp / 'profile.xml'}",
                "--rendered", f"Cisco/00562b043615.aes={tmp / 'profile.aes'}"]
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        main = start_harness(lan.server, tmp / "main", root, "--http-port", "80", "--https-port", "443",
                             "--cert", str(cert), "--key", str(key), "--limit", "head_timeout=3",
                             "--limit", "tick=0.25", *rendered)
        auth = start_harness(lan.server, tmp / "auth", root, "--http-port", "8081", "--auth", "phone:s3cret",
                             *rendered)
        capped = start_harness(lan.server, tmp / "capped", root, "--http-port", "8082",
                               "--limit", "max_connections=100", "--limit", "idle_timeout=4",
                               "--limit", "tick=0.25")
        yield HttpLab(main, auth, capped, lan.static_client("198.18.0.200/23", name="phone"),
                      lan.static_client("198.18.0.201/23", name="attacker"),
                      lan.static_client("198.18.0.202/23", name="third"), root, cert)
    finally:
        lab.close()


def make_tree(root: Path, tmp: Path) -> None:
    (root / "firmware").mkdir(parents=True)
    (root / "dir").mkdir()
    (root / "a.txt").write_bytes(b"hello phone\n")
    (root / "firmware" / "sip78xx.12-0-1MPP-1234.loads").write_bytes(os.urandom(300_000))
    with open(root / "firmware" / "big.bin", "wb") as fh:
        fh.truncate(BIG)  # sparse: no disk, no page cache to speak of
    (tmp / "outside.txt").write_bytes(b"SECRET\n")
    (tmp / "profile.xml").write_bytes(PROFILE)
    (tmp / "profile.aes").write_bytes(ENCRYPTED)


def curl(host: Host, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(["ip", "netns", "exec", host.netns, "curl", "-sS", "--max-time", "20", *args],
                          capture_output=True, timeout=60)
    if check:
        assert proc.returncode == 0, proc.stderr.decode()
    return proc


def headers(raw: bytes) -> dict[str, str]:
    """Response headers from `curl -D -` (the last response), Date dropped (it may tick)."""
    block = raw.replace(b"\r\n", b"\n").strip().split(b"\n\n")[-1].decode()
    lines = block.splitlines()
    out = {"status": lines[0]}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        if k.lower() != "date":
            out[k.lower()] = v.strip()
    return out


def raw(host: Host, port: int, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = host.run([sys.executable, "-m", "tests.integration.http_raw", "exchange", SERVER, str(port)],
                    input=json.dumps(cases), timeout=60, cwd=Path(__file__).parents[2])
    return list(json.loads(proc.stdout))


NAMES = ["a.txt", "firmware/sip78xx.12-0-1MPP-1234.loads", "SEP00562b043615.cfg", "Cisco/00562b043615.aes"]


def test_http_and_https_serve_the_same_bytes(env: HttpLab) -> None:
    expected = [(env.root / "a.txt").read_bytes(),
                (env.root / "firmware" / "sip78xx.12-0-1MPP-1234.loads").read_bytes(), PROFILE, ENCRYPTED]
    for name, want in zip(NAMES, expected, strict=True):
        plain = curl(env.phone, f"http://{SERVER}/{name}").stdout
        tls = curl(env.phone, "--cacert", str(env.cert), f"https://{SERVER}/{name}").stdout
        assert plain == tls == want, name
    aes = headers(curl(env.phone, "-D", "-", "-o", "/dev/null", f"http://{SERVER}/{NAMES[3]}").stdout)
    assert aes["content-encoding"] == "aes128gcm" and aes["content-length"] == str(len(ENCRYPTED))
    assert headers(curl(env.phone, "-D", "-", "-o", "/dev/null", f"http://{SERVER}/{NAMES[2]}").stdout)[
        "content-type"] == "application/xml"
    ok = [e for e in env.main.fetches() if e["result"] == "ok" and e["requested"].lstrip("/") in NAMES]
    assert {e["protocol"] for e in ok} == {"http", "https"}
    assert all(e["client"] == "198.18.0.200" and e["user_agent"].startswith("curl/") for e in ok)
    assert env.main.metric("bootstrapd_files_fetches_total", protocol="https", result="ok") >= 4
    assert env.main.metric("bootstrapd_files_bytes_sent_total", protocol="https") >= sum(map(len, expected))


@pytest.mark.parametrize("name", NAMES)
def test_head_has_the_headers_of_get(env: HttpLab, name: str) -> None:
    get = curl(env.phone, "-D", "-", "-o", "/dev/null", f"http://{SERVER}/{name}").stdout
    head = curl(env.phone, "-I", f"http://{SERVER}/{name}").stdout
    assert headers(head) == headers(get)
    assert "content-length" in headers(get) and "transfer-encoding" not in headers(get)


def test_post_is_logged_and_answered_like_get(env: HttpLab) -> None:
    status = "Status: provisioned; serial=FCH1234ABCD"
    out = curl(env.phone, "--data-binary", status, f"http://{SERVER}/SEP00562b043615.cfg").stdout
    assert out == PROFILE
    posts = [e for e in env.main.log() if e.get("event") == "files.post"]
    assert posts[-1]["body"] == status and posts[-1]["bytes"] == len(status)
    over = subprocess.run(["ip", "netns", "exec", env.phone.netns, "curl", "-sS", "-o", "/dev/null", "-w",
                           "%{http_code}", "--data-binary", "@-", f"http://{SERVER}/a.txt"],
                          input=b"x" * (64 * 1024 + 1), capture_output=True, timeout=30)
    assert over.stdout == b"413"
    assert env.main.metric("bootstrapd_http_limit_closes_total", limit="body") >= 1
    assert env.main.metric("bootstrapd_files_fetches_total", protocol="http", result="body_too_large") >= 1
    head = f"POST /a.txt HTTP/1.1\r\nHost: {SERVER}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
    (waiting,) = raw(env.phone, 80, [{"data": head, "timeout": 1}])
    assert waiting["response"] == "HTTP/1.1 100 Continue\r\n\r\n" and not waiting["closed"]


def test_other_methods_get_405_with_allow(env: HttpLab) -> None:
    for method in ("PUT", "DELETE", "OPTIONS", "PATCH"):
        h = headers(curl(env.phone, "-X", method, "-D", "-", "-o", "/dev/null", f"http://{SERVER}/a.txt").stdout)
        assert h["status"].startswith("HTTP/1.1 405") and h["allow"] == "GET, HEAD, POST"


def test_miss_is_404_and_a_directory_is_never_redirected(env: HttpLab) -> None:
    for path in ("nothere.cfg", "dir", "dir/", "firmware", "SEP00562B043615.xml"):
        h = headers(curl(env.phone, "-D", "-", "-o", "/dev/null", f"http://{SERVER}/{path}").stdout)
        assert h["status"].startswith("HTTP/1.1 404") and "location" not in h, path
    reasons = {e["requested"]: e["result"] for e in env.main.fetches()}
    assert reasons["/nothere.cfg"] == "not_found" and reasons["/dir"] == "not_regular"


def test_basic_auth_401_then_200(env: HttpLab) -> None:
    url = f"http://{SERVER}:8081/SEP00562b043615.cfg"
    h = headers(curl(env.phone, "-D", "-", "-o", "/dev/null", url).stdout)
    assert h["status"].startswith("HTTP/1.1 401") and h["www-authenticate"].startswith('Basic realm="bootstrapd"')
    assert headers(curl(env.phone, "-u", "phone:wrong", "-D", "-", "-o", "/dev/null", url).stdout)[
        "status"].startswith("HTTP/1.1 401")
    assert curl(env.phone, "-u", "phone:s3cret", url).stdout == PROFILE
    assert curl(env.phone, "--anyauth", "-u", "phone:s3cret", url).stdout == PROFILE  # 401, then credentials
    assert env.auth.metric("bootstrapd_files_fetches_total", protocol="http", result="unauthorized") >= 3


@pytest.mark.parametrize("version", ["1.0", "1.1"])
def test_keep_alive(env: HttpLab, version: str) -> None:
    conn = "Connection: keep-alive\r\n" if version == "1.0" else ""
    req = f"GET /a.txt HTTP/{version}\r\nHost: {SERVER}\r\n{conn}\r\n"
    (out,) = raw(env.phone, 80, [{"data": req + req.replace("GET", "HEAD") + req, "timeout": 2}])
    responses = out["response"].split(f"HTTP/{version} 200 OK")
    assert len(responses) == 4, out  # three answers on one connection
    assert all("Content-Length: 12" in r for r in responses[1:])
    assert out["response"].count("hello phone") == 2
    assert not out["closed"]  # still open after three requests (then the idle timeout closes it)
    verbose = curl(env.phone, "-v", "-o", "/dev/null", "-o", "/dev/null", *(("-0", "-H", "Connection: keep-alive")
                   if version == "1.0" else ()), f"http://{SERVER}/a.txt", f"http://{SERVER}/SEP00562b043615.cfg")
    assert b"Re-using existing connection" in verbose.stderr


HOSTILE = [
    # (raw request, expected status, expected result in files.fetch)
    ("GET /%2e%2e%2f%2e%2e%2foutside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "traversal"),
    ("GET /firmware/%2e%2e/%2e%2e/outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "traversal"),
    ("GET /..%5c..%5coutside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "traversal"),
    ("GET /%252e%252e/outside.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "not_found"),  # decoded once only
    ("GET /a.txt%00.cfg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "bad_name"),
    ("GET /%ff%fe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 404, "bad_name"),
    ("GET http://evil/../../outside.txt HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n", 404, "traversal"),
    ("GET http://evil/a.txt?x=/../.. HTTP/1.1\r\nHost: evil\r\nConnection: close\r\n\r\n", 200, "ok"),  # query ignored
    ("GET /" + "a" * 16384 + " HTTP/1.1\r\nHost: x\r\n\r\n", 414, "request_line"),
    ("GET /a.txt HTTP/1.1\r\n" + "".join(f"X-H{i}: v\r\n" for i in range(200)) + "\r\n", 431, "header_count"),
    ("GET /a.txt HTTP/1.1\r\nX-Big: " + "v" * 9000 + "\r\n\r\n", 431, "header_size"),
    ("BREW /pot HTCPCP/1.0\r\n\r\n", 400, "bad_request"),
]


def test_hostile_requests(env: HttpLab) -> None:
    before = len(env.main.fetches())
    results = raw(env.attacker, 80, [{"data": req, "timeout": 2} for req, _, _ in HOSTILE])
    for (req, status, _), res in zip(HOSTILE, results, strict=True):
        first = res["response"].split("\r\n", 1)[0]
        assert re.match(rf"HTTP/1\.[01] {status} ", first), (req[:80], first)
        assert "SECRET" not in res["response"] and "Location" not in res["response"]
        assert res["closed"], req[:80]  # limits close; the rest asked for it
    got = [e["result"] for e in env.main.fetches()[before:]]
    assert got == [result for _, _, result in HOSTILE]
    outcomes = [e for e in env.main.log() if e.get("event") == "harness.outcome"][before:]
    assert [(o["kind"], o["status"]) for o in outcomes] == [
        ("Fetched" if status == 200 else "Refused", status) for _, status, _ in HOSTILE]  # one on_fetch each
    for limit in ("request_line", "header_count", "header_size"):
        assert env.main.metric("bootstrapd_http_limit_closes_total", limit=limit) >= 1
    assert env.main.metric("bootstrapd_files_fetches_total", protocol="http", result="traversal") >= 4


def test_slow_client_is_closed_at_the_head_deadline(env: HttpLab) -> None:
    proc = env.attacker.run([sys.executable, "-m", "tests.integration.http_raw", "trickle", SERVER, "80", "1",
                             "20"], timeout=60, cwd=Path(__file__).parents[2])
    res = json.loads(proc.stdout)
    assert res["closed"] and 2.5 <= res["seconds"] <= 10, res  # head_timeout=3 s, swept every 0.25 s
    assert env.main.metric("bootstrapd_http_limit_closes_total", limit="head_timeout") >= 1


def test_idle_connections_are_closed_by_limits_while_a_phone_is_served(env: HttpLab) -> None:
    idle = env.attacker.popen([sys.executable, "-m", "tests.integration.http_raw", "idle", SERVER, "8082",
                               "1000", "30"], stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parents[2])
    try:
        assert idle.stdout is not None
        assert json.loads(idle.stdout.readline()) == {"open": 1000}
        served = [curl(env.phone, f"http://{SERVER}:8082/a.txt").stdout for _ in range(5)]
        assert served == [b"hello phone\n"] * 5
        result = json.loads(idle.stdout.readline())
    finally:
        stop_process(idle)
    assert result["closed"] == 1000, result  # each one closed by the server
    evicted = env.capped.metric("bootstrapd_http_limit_closes_total", limit="connections")
    timed_out = env.capped.metric("bootstrapd_http_limit_closes_total", limit="idle")
    assert evicted >= 900 and evicted + timed_out >= 1000
    assert env.capped.metric("bootstrapd_http_connections") <= 100


def test_large_file_streams_to_20_clients_with_low_rss_and_no_fd_leak(env: HttpLab) -> None:
    fds = env.main.fds()
    clients = []
    for i in range(20):  # every fourth over TLS (no sendfile there: bounded read/write chunks)
        url = ["--cacert", str(env.cert), f"https://{SERVER}/firmware/big.bin"] if i % 4 == 0 else [
            f"http://{SERVER}/firmware/big.bin"]
        clients.append(subprocess.Popen(
            ["ip", "netns", "exec", (env.phone, env.third)[i % 2].netns, "curl", "-sS", "--max-time", "120",
             "-o", "/dev/null", "-w", "%{http_code} %{size_download}", *url], stdout=subprocess.PIPE, text=True))
    peak = 0
    try:
        while any(c.poll() is None for c in clients):
            peak = max(peak, env.main.status("VmRSS"))
            time.sleep(0.1)
        outs = [c.communicate()[0] for c in clients]
    finally:
        for c in clients:
            stop_process(c)
    assert outs == [f"200 {BIG}"] * 20, outs
    assert peak < 200 * 1024, f"VmRSS peaked at {peak} kB"
    deadline = time.monotonic() + 10
    while env.main.fds() > fds and time.monotonic() < deadline:
        time.sleep(0.1)  # closed connections are reaped as the event loop gets to them
    assert env.main.fds() <= fds


def test_a_client_leaving_mid_download_is_recorded_as_aborted(env: HttpLab) -> None:
    before = len(env.main.fetches())
    cut = curl(env.phone, "--max-time", "1", "--limit-rate", "4M", "-o", "/dev/null",
               f"http://{SERVER}/firmware/big.bin", check=False)
    assert cut.returncode == 28  # curl's own timeout: it hung up
    deadline = time.monotonic() + 15
    while not (new := [e for e in env.main.fetches()[before:] if e["requested"] == "/firmware/big.bin"]):
        assert time.monotonic() < deadline, "no files.fetch for the cut download"
        time.sleep(0.1)
    assert new[0]["result"] == "aborted" and 0 < new[0]["bytes"] < BIG, new
