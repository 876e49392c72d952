"""Running as a service: the systemd notify protocol, SIGHUP reload, and the Prometheus exposition."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.test_dhcp_clients import need, udhcpc

METRICS = "127.0.0.1:9267"


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=3)


def scrape(host: Host) -> str:
    code = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics', timeout=5).read().decode())"
    return host.run([sys.executable, "-c", code], timeout=15).stdout


FETCH = """
import json, sys, urllib.error, urllib.request
request = urllib.request.Request("http://{metrics}" + sys.argv[1], method=sys.argv[2])
try:
    r = urllib.request.urlopen(request, timeout=5)
except urllib.error.HTTPError as e:
    r = e
print(json.dumps([r.status, dict(r.headers), r.read().decode()]))
"""


def fetch(host: Host, path: str, method: str = "GET") -> tuple[int, dict[str, str], str]:
    r = host.run([sys.executable, "-c", FETCH.format(metrics=METRICS), path, method], timeout=15)
    status, headers, body = json.loads(r.stdout)
    return status, headers, body


def sample(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return float(s.value)
    return None


def test_notify_protocol_ready_status_watchdog_and_reload(lan: StagingLan, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(10)
    try:
        daemon = Daemon(lan.server, tmp_path, site_config())
        os.environ["NOTIFY_SOCKET"] = str(path)
        os.environ["WATCHDOG_USEC"] = "400000"  # 0.4 s: pings every 0.2 s
        try:
            daemon.start()
        finally:
            del os.environ["NOTIFY_SOCKET"], os.environ["WATCHDOG_USEC"]
        messages = [sock.recv(4096).decode() for _ in range(3)]
        assert messages[0].startswith("READY=1\nSTATUS=site lab: DHCP on stg0:67, DNS 198.18.0.1:53")
        assert messages[1:] == ["WATCHDOG=1", "WATCHDOG=1"]
        daemon.signal(signal.SIGHUP)
        seen = [sock.recv(4096).decode() for _ in range(6)]
        assert "RELOADING=1" in seen
        daemon.stop()
        rest = []
        sock.settimeout(1)
        while True:
            try:
                rest.append(sock.recv(4096).decode())
            except TimeoutError:
                break
        assert "STOPPING=1" in rest
    finally:
        sock.close()


def test_reload_applies_valid_change_and_rejects_invalid_one(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc")
    site = site_config(metrics={"listen": METRICS})
    daemon = Daemon(lan.server, tmp_path, site).start()
    before = udhcpc(lan.clients[0], tmp_path, "-V", "CP-8841-3PCC")
    assert "timezone" not in before

    site["dhcp"]["options"]["time_offset"] = 3600  # a new option 2 for everyone
    daemon.write_site(site)
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("service.reloaded")
    after = udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC")
    assert after["timezone"] == "3600"

    daemon.site_path.write_text(daemon.site_path.read_text() + "dhcp_typo: 1\n")
    daemon.signal(signal.SIGHUP)
    rejected = daemon.wait_for("service.reload_rejected")[0]
    assert rejected["errors"] == 1
    errors = [e["error"] for e in daemon.events() if e.get("event") == "service.reload_error"]
    assert errors and errors[0].startswith(f"{daemon.site_path}:") and "dhcp_typo: unknown key" in errors[0]
    still = udhcpc(lan.clients[2], tmp_path, "-V", "CP-8841-3PCC")  # the running configuration keeps serving
    assert still["timezone"] == "3600"

    text = scrape(lan.server)
    assert sample(text, "bootstrapd_reloads_total", result="success") == 2  # start + one reload
    assert sample(text, "bootstrapd_reloads_total", result="failure") == 1
    assert sample(text, "bootstrapd_reload_last_failed") == 1


def test_metrics_after_dora_and_srv_query(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc", "dig", "promtool")
    Daemon(lan.server, tmp_path, site_config(metrics={"listen": METRICS})).start()
    env = udhcpc(lan.clients[0], tmp_path, "-V", "CP-8841-3PCC")
    assert env["ip"]
    r = lan.clients[0].run(["dig", "+short", "@198.18.0.1", "_ciscoprov-http._tcp.staging.test", "SRV"])
    assert r.stdout.split() == ["10", "0", "80", "prov1.staging.test."]
    deadline = time.monotonic() + 5  # DNS counters are pushed to Prometheus in batches (FLUSH_INTERVAL)
    while sample(text := scrape(lan.server), "bootstrapd_dns_queries_total", qtype="SRV", transport="udp") is None:
        assert time.monotonic() < deadline, text
        time.sleep(0.2)
    assert sample(text, "bootstrapd_dhcp_packets_received_total", type="discover") == 1
    assert sample(text, "bootstrapd_dhcp_packets_received_total", type="request") == 1
    assert sample(text, "bootstrapd_dhcp_replies_sent_total", type="offer") == 1
    assert sample(text, "bootstrapd_dhcp_replies_sent_total", type="ack") == 1
    assert sample(text, "bootstrapd_dhcp_exchange_seconds_count") == 2
    assert sample(text, "bootstrapd_devices_seen_by_class_total", **{"class": "mpp"}) == 1
    assert sample(text, "bootstrapd_devices_seen_by_model_total", model="CP-8841-3PCC") == 1
    assert sample(text, "bootstrapd_dns_queries_total", qtype="SRV", transport="udp") == 1
    assert sample(text, "bootstrapd_dns_responses_total", rcode="NOERROR") == 1
    assert sample(text, "bootstrapd_dhcp_pool_size", subnet="198.18.0.0/23") == 407  # .0.100-.1.250
    assert sample(text, "bootstrapd_build_info", version="0.1.0") == 1
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


def test_hostile_vendor_class_does_not_create_metric_labels(lan: StagingLan, tmp_path: Path) -> None:
    need("udhcpc")
    Daemon(lan.server, tmp_path, site_config(metrics={"listen": METRICS})).start()
    udhcpc(lan.clients[0], tmp_path, "-V", "CP-9999-3PCC-\u00e9vil-" + "x" * 40)
    udhcpc(lan.clients[1], tmp_path, "-V", "CP-8841-3PCC")
    text = scrape(lan.server)
    models = {s.labels["model"] for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "bootstrapd_devices_seen_by_model_total"}
    assert models == {"other", "CP-8841-3PCC"}


def test_floor_page_and_report_beside_metrics(lan: StagingLan, tmp_path: Path) -> None:
    Daemon(lan.server, tmp_path, site_config(metrics={"listen": METRICS})).start()
    status, headers, body = fetch(lan.server, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Content-Security-Policy"].startswith("default-src 'self'") and '"/floor.js"' in body
    status, headers, body = fetch(lan.server, "/report.json")
    report = json.loads(body)
    assert status == 200 and report["site"] == "lab" and report["devices"] == []  # the placeholder, for now
    status, headers, _ = fetch(lan.server, "/report.csv")
    assert status == 200 and headers["Content-Disposition"] == 'attachment; filename="lab-report.csv"'
    assert fetch(lan.server, "/metrics", "POST")[0] == 405
