"""The file service inside the real daemon (`bootstrapd run` with `files:`): every client a phone or a
technician uses gets the same profile for each of the names a factory-fresh phone asks for, rendered from
the template for that phone; per-device profiles decrypt with `openssl enc -d` and the row's key; every
fetch is one `files.fetch` event, a count on /metrics and the device's `profile_fetched` stage."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.lab import Host, Lab, staging_lan
from tests.integration.daemon import Daemon, files_section, site_config
from tests.labreq import require_lab

CONFIG = Path(__file__).resolve().parents[2] / "config"
SERVER = "198.18.0.1"
METRICS = "198.18.0.1:9267"
MAC, KEY = "00:56:2b:04:36:15", "7d1f0c9e5b2a4e83a6f1c2d3"  # config/inventory.csv's first row
UA = "Cisco-CP-7841-3PCC/12.0.1 (00562b043615)"
FIRST_NAMES = ("CP-6841-3PCC.cfg", "/CP-6841-3PCC.cfg", "6841-3PCC.xml", "/cp-6841-3pcc.CFG")

pytestmark = pytest.mark.lab


@dataclass
class FilesLab:
    daemon: Daemon
    phone: Host  # 198.18.0.120: a static address, no lease
    work: Path


def files_site(work: Path) -> dict[str, Any]:
    shutil.copytree(CONFIG / "tls", work / "tls")
    shutil.copy(CONFIG / "inventory.csv", work / "inventory.csv")
    (work / "root" / "firmware").mkdir(parents=True)
    (work / "root" / "firmware" / "sip78xx.loads").write_bytes(os.urandom(300_000))
    files = files_section(work, work / "root", work / "inventory.csv")
    files["https"] = {"port": 443, "cert": str(work / "tls/floor.crt"), "key": str(work / "tls/floor.key")}
    return site_config(files=files, metrics={"listen": METRICS}, logging={"format": "json", "level": "info"})


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FilesLab]:
    require_lab()
    lab = Lab()
    try:
        lan = staging_lan(lab, clients=0)
        work = tmp_path_factory.mktemp("files-daemon")
        daemon = Daemon(lan.server, work, files_site(work)).start()
        daemon.wait_for("files.listening")
        yield FilesLab(daemon, lan.static_client("198.18.0.120/23", name="phone"), work)
        assert daemon.stop() == 0
    finally:
        lab.close()


def fetch(host: Host, argv: list[str], out: Path) -> bytes:
    out.unlink(missing_ok=True)
    host.run(argv, timeout=30)
    return out.read_bytes()


def clients(name: str, out: Path) -> dict[str, list[str]]:
    """Every real client, fetching `name` into `out`."""
    bare = name.lstrip("/")
    return {
        "curl tftp": ["curl", "-sSf", "-o", str(out), f"tftp://{SERVER}/{bare}"],
        "curl tftp blksize": ["curl", "-sSf", "--tftp-blksize", "1024", "-o", str(out), f"tftp://{SERVER}/{bare}"],
        "curl tftp no options": ["curl", "-sSf", "--tftp-no-options", "-o", str(out), f"tftp://{SERVER}/{bare}"],
        "tftp-hpa": ["tftp", SERVER, "-m", "binary", "-c", "get", name, str(out)],
        "atftp": ["atftp", "-g", "-r", name, "-l", str(out), SERVER],
        "busybox tftp": ["busybox", "tftp", "-g", "-r", name, "-l", str(out), SERVER],
        "curl http": ["curl", "-sSf", "-o", str(out), f"http://{SERVER}/{bare}"],
        "curl https": ["curl", "-sSf", "--cacert", str(CONFIG / "tls/floor.crt"), "-o", str(out),
                       f"https://{SERVER}/{bare}"],
    }


def test_every_client_gets_the_same_first_profile_for_every_name(env: FilesLab) -> None:
    out = env.work / "out.xml"
    seen: dict[str, bytes] = {}
    for name in FIRST_NAMES:
        for client, argv in clients(name, out).items():
            seen[f"{client} {name}"] = fetch(env.phone, argv, out)
    bodies = set(seen.values())
    assert len(bodies) == 1, {k: len(v) for k, v in seen.items()}
    profile = ET.fromstring(bodies.pop())
    assert profile.tag == "flat-profile"
    assert profile.findtext("Profile_Rule") == "https://prov.example.net/$MA.xml"  # unknown device: no --key
    assert profile.findtext("Syslog_Server") == SERVER
    assert profile.findtext("Log_Request_Msg", "").startswith("bootstrapd $MA $PN -- Requesting resync")


def test_a_per_device_profile_decrypts_with_openssl_and_the_rows_key_only(env: FilesLab) -> None:
    out = env.work / "sealed"
    plain: set[bytes] = set()
    for name in (f"{MAC.replace(':', '')}.cfg", f"Cisco/{MAC.replace(':', '').upper()}.cfg"):
        for client in ("curl tftp", "tftp-hpa", "curl http"):
            sealed = fetch(env.phone, clients(name, out)[client], out)
            assert sealed.startswith(b"Salted__")
            clear = decrypt(sealed, KEY)
            plain.add(clear)
            # A wrong key passes CBC's padding check 1 time in 256 (random salt): it must not yield the profile.
            wrong = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-k", "not-the-key"],
                                   input=sealed, capture_output=True)
            assert wrong.returncode != 0 or wrong.stdout != clear
    assert len(plain) == 1
    profile = ET.fromstring(plain.pop())
    assert profile.findtext("Station_Name") == "SEP00562B043615"
    assert profile.findtext("Profile_Rule") == "https://prov.example.net/$MA.xml"  # on to the provider


def decrypt(data: bytes, key: str) -> bytes:
    proc = subprocess.run(["openssl", "enc", "-d", "-aes-256-cbc", "-md", "sha256", "-k", key],
                          input=data, capture_output=True, check=True)
    return proc.stdout


def test_a_device_not_in_the_inventory_a_miss_and_traversal_get_nothing(env: FilesLab) -> None:
    out = env.work / "none"
    for name in ("00562b999999.cfg", "nope.cfg", "../../etc/passwd"):
        for client in ("curl tftp", "curl http"):
            with pytest.raises(subprocess.CalledProcessError):
                fetch(env.phone, clients(name, out)[client], out)
    assert metric(env, "bootstrapd_files_fetches_total", protocol="tftp", result="not_in_inventory") >= 1
    assert metric(env, "bootstrapd_files_fetches_total", protocol="http", result="not_found") >= 1


def test_firmware_streams_whole_and_every_fetch_is_one_event_and_a_stage(env: FilesLab) -> None:
    out = env.work / "fw"
    want = (env.work / "root/firmware/sip78xx.loads").read_bytes()
    assert fetch(env.phone, ["curl", "-sSf", "-A", UA, "-o", str(out),
                             f"http://{SERVER}/firmware/sip78xx.loads"], out) == want
    assert fetch(env.phone, clients("firmware/sip78xx.loads", out)["curl tftp blksize"], out) == want
    first = fetch(env.phone, ["curl", "-sSf", "-A", UA, "-o", str(out), f"http://{SERVER}/CP-7841-3PCC.cfg"], out)
    # identified by its User-Agent, an inventory phone is sent on to its own encrypted profile with its key
    assert ET.fromstring(first).findtext("Profile_Rule") == f"--key {KEY} tftp://{SERVER}/$MA.cfg"
    events = env.daemon.wait_for("files.fetch", count=3)
    ua_fetch = [e for e in events if e.get("requested", "").endswith("CP-7841-3PCC.cfg") and e.get("mac") == MAC]
    assert ua_fetch and ua_fetch[-1]["identified_by"] == "user_agent"
    deadline = time.monotonic() + 10
    while True:  # the tracker writes once a second
        row = next((d for d in devices(env) if d.get("mac") == MAC), None)
        if (row is not None and row.get("stage") == "profile_fetched") or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert row is not None and row["stage"] == "profile_fetched", row


def devices(env: FilesLab) -> list[dict[str, Any]]:
    proc = subprocess.run([sys.executable, "-m", "bootstrapd", "devices", "-c", str(env.daemon.site_path), "--json"],
                          capture_output=True, text=True, check=True)
    return list(json.loads(proc.stdout))


def metric(env: FilesLab, name: str, **labels: str) -> float:
    text = env.phone.run(["curl", "-sS", f"http://{METRICS}/metrics"]).stdout
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(name + "{"):
            series, value = line.rsplit(" ", 1)
            got = ",".join(sorted(series[len(name) + 1:-1].split(",")))
            if got == want:
                return float(value)
    return 0.0


def test_a_storm_of_500_phones_over_tftp_and_http_at_once(env: FilesLab) -> None:
    """250 TFTP and 250 HTTP fetches of the firmware load started together: every one completes with the
    file's bytes, nothing is refused, and the daemon holds no more descriptors afterwards than before."""
    assert env.daemon.proc is not None
    fds = f"/proc/{env.daemon.proc.pid}/fd"
    before = len(os.listdir(fds))
    proc = env.phone.run([sys.executable, "-m", "tests.integration.storm_client", SERVER,
                          "firmware/sip78xx.loads", "/firmware/sip78xx.loads", "250"], timeout=120)
    got = json.loads(proc.stdout)
    want = hashlib.sha256((env.work / "root/firmware/sip78xx.loads").read_bytes()).hexdigest()
    assert got["errors"] == [] and got["tftp_ok"] == 250 and got["http_ok"] == 250, got["errors"][:5]
    assert got["digests"] == {"tftp": [want], "http": [want]}
    assert metric(env, "bootstrapd_files_fetches_total", protocol="tftp", result="session_limit") == 0
    deadline = time.monotonic() + 10
    while len(os.listdir(fds)) > before and time.monotonic() < deadline:  # transfers' last ACKs, closes
        time.sleep(0.2)
    assert len(os.listdir(fds)) <= before
    assert metric(env, "bootstrapd_tftp_sessions") == 0
