"""The namespace lab builds working links and always leaves the machine as it found it."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from bootstrapd.lab import Host, Lab, StagingLan, list_namespaces, staging_lan

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[2]
OTHER_RUN = re.compile(r"^bsd[0-9a-f]{6}-")  # labs of concurrent test runs on this machine


def ping(host: Host, dst: str) -> int:
    return host.run(["ping", "-c1", "-W1", "-n", dst], check=False).returncode


def host_links() -> set[tuple[int, str]]:
    return {(link["ifindex"], link["ifname"]) for link in json.loads(subprocess.run(
        ["ip", "-j", "link"], check=True, capture_output=True, text=True).stdout)}


def foreign_namespaces(lab_prefix: str) -> set[str]:
    """Namespaces that are neither ours nor another run's lab (those come and go concurrently)."""
    return {ns for ns in list_namespaces() if not OTHER_RUN.match(ns) or ns.startswith(f"{lab_prefix}-")}


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_static_hosts_ping_and_close_restores_host_state(lab: Lab) -> None:
    links_before, netns_before = host_links(), foreign_namespaces(lab.prefix)
    server, c1, c2 = lab.host("server"), lab.host("client1"), lab.host("client2")
    stg0 = lab.segment("stg0", server, "198.18.0.1/23")
    lab.attach(c1, stg0, addr="198.18.0.11/23")
    lab.attach(c2, stg0, addr="198.18.0.12/23")
    assert ping(server, "198.18.0.11") == 0
    assert ping(c1, "198.18.0.12") == 0
    assert sorted(ns for ns in list_namespaces() if ns.startswith(f"{lab.prefix}-")) == [
        f"{lab.prefix}-client1", f"{lab.prefix}-client2", f"{lab.prefix}-server"]
    assert host_links() == links_before  # nothing of the lab is visible in the host namespace
    lab.close()
    lab.close()  # idempotent
    assert foreign_namespaces(lab.prefix) == netns_before
    assert host_links() == links_before


def test_point_to_point_link(lab: Lab) -> None:
    a, b = lab.host("a"), lab.host("b")
    lab.link(a, b, "up0", "down0", "198.18.4.1/30", "198.18.4.2/30")
    assert ping(a, "198.18.4.2") == 0
    assert b.addresses("down0") == ["198.18.4.2/30"]


def test_exception_inside_with_still_tears_everything_down(lab_support: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab() as lab:
        prefix = lab.prefix
        host = lab.host("server")
        tracked = host.popen(["sleep", "60"])
        # A daemon that forked away from anything we hold a PID for.
        orphan = int(host.run(["sh", "-c", "sleep 60 >/dev/null 2>&1 & echo $!"]).stdout)
        assert alive(orphan)
        raise RuntimeError("boom")
    assert not [ns for ns in list_namespaces() if ns.startswith(f"{prefix}-")]
    assert tracked.poll() is not None
    assert not alive(orphan)


def test_addresses_outside_lab_net_are_refused(lab: Lab) -> None:
    server, client = lab.host("server"), lab.host("client")
    for bad in ["10.0.0.1/24", "192.168.1.1/24", "198.20.0.1/24", "198.18.0.1/14", "2001:db8::1/64"]:
        with pytest.raises(ValueError, match="outside"):
            lab.segment("stg0", server, bad)
        with pytest.raises(ValueError, match="outside"):
            client.add_address("lo", bad)
    stg0 = lab.segment("stg0", server, "198.18.0.1/23")
    with pytest.raises(ValueError, match="outside"):
        lab.attach(client, stg0, addr="172.16.0.2/24")
    with pytest.raises(ValueError, match="outside"):
        client.add_route("198.18.2.0/24", via="10.0.0.1")
    with pytest.raises(ValueError, match="outside"):
        client.add_route("8.8.8.0/24", via="198.18.0.1")
    # Refused before anything was created: the client still has only loopback.
    assert [link["ifname"] for link in json.loads(client.ip("-j", "link").stdout)] == ["lo"]


def test_staging_lan_clients_are_distinct_dhcp_clients(staging: StagingLan) -> None:
    assert staging.server.addresses("stg0") == ["198.18.0.1/23"]
    assert len(staging.clients) == 2
    assert [c.addresses("eth0") for c in staging.clients] == [[], []]
    assert len({c.mac("eth0") for c in staging.clients}) == 2
    static = staging.static_client("198.18.0.200/23")
    assert ping(static, "198.18.0.1") == 0


def test_relay_client_reaches_server_through_relay(lab: Lab) -> None:
    lan = staging_lan(lab, clients=0, relay=True)
    assert [c.addresses("eth0") for c in lan.relay_clients] == [[]]
    rclient = lan.add_relay_client("198.18.2.50/24")
    assert ping(rclient, "198.18.0.1") == 0
    assert ping(lan.server, "198.18.2.50") == 0


GUARDED_TEST = """
    import time
    def test_hold(lab):
        lab.host("server").popen(["sleep", "60"])
        open({ready!r}, "w").write(lab.prefix)
        time.sleep(30)
"""


def test_sigterm_to_pytest_still_tears_down(lab_support: None, tmp_path: Path) -> None:
    ready = tmp_path / "prefix"
    (tmp_path / "test_hold.py").write_text(textwrap.dedent(GUARDED_TEST.format(ready=str(ready))))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join((str(REPO / "tests"), str(REPO)))}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "conftest", "-p", "no:cacheprovider",
         f"--rootdir={tmp_path}", str(tmp_path)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 20
        while not ready.exists() or not ready.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=20)[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    prefix = ready.read_text()
    assert "KeyboardInterrupt" in output
    assert not [ns for ns in list_namespaces() if ns.startswith(f"{prefix}-")], output


def test_atexit_closes_a_lab_nobody_closed(lab_support: None) -> None:
    script = "from bootstrapd.lab import Lab\nlab = Lab()\nlab.host('server')\nprint(lab.prefix)\n"
    prefix = subprocess.run([sys.executable, "-c", script], check=True, capture_output=True,
                            text=True, timeout=30).stdout.strip()
    assert prefix.startswith("bsd")
    assert not [ns for ns in list_namespaces() if ns.startswith(f"{prefix}-")]
