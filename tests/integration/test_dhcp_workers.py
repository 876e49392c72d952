"""`dhcp.workers: 2`: DHCP in two worker processes beside the main one, against the real daemon.

Each client is served by the worker of its RFC 3074 bucket, from that worker's half of the pool; unicast
renewals (which the kernel gives to one of the two sockets only) reach the right worker; a worker killed
with SIGKILL is restarted and its clients renew to their addresses; DNS publishes the leases of both; one
metrics scrape sums both workers."""

from __future__ import annotations

import ipaddress
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bootstrapd.dhcp.shard import bucket
from bootstrapd.lab import Host, Lab, StagingLan, staging_lan
from tests.integration.daemon import Daemon, site_config
from tests.integration.dhcp_client import RawClient, first_by_chaddr, mac, packet
from tests.integration.test_dhcp_clients import UDHCPC_SCRIPT, need
from tests.integration.test_service import sample, scrape

SERVER = "198.18.0.1"
PHONES = 30  # each unicast renewal needs an ARP entry: the table is shared by every namespace on the host
METRICS = "127.0.0.1:9267"  # test_service.scrape's address


@pytest.fixture
def lan(lab: Lab) -> StagingLan:
    return staging_lan(lab, clients=2)


def worker_of(chaddr: str, count: int = 2, client_id: bytes = b"") -> int:
    """The RFC 3074 bucket of option 61 when the client sends one, else of chaddr, mod the workers."""
    return bucket(client_id or bytes.fromhex(chaddr.replace(":", ""))) % count


def start(lan: StagingLan, tmp_path: Path, **dhcp: Any) -> Daemon:
    site = site_config(metrics={"listen": METRICS}, dhcp__workers=2)
    site["dhcp"].update(dhcp)
    daemon = Daemon(lan.server, tmp_path, site).start()
    assert len(daemon.wait_for("dhcp.worker_ready", count=2)) == 2
    return daemon


def worker_pids(daemon: Daemon) -> dict[int, int]:
    """worker index -> pid of its latest start."""
    return {e["worker"]: e["pid"] for e in daemon.events() if e.get("event") == "dhcp.worker_started"}


def renew_unicast(lan: StagingLan, client: RawClient, leased: dict[str, str]) -> dict[str, str]:
    """RENEWING (RFC 2131 4.4.5): unicast from each leased address to the server; yiaddr of every ACK."""
    script = "".join(f"addr replace {a}/23 dev eth0\n" for a in leased.values())
    lan.clients[0].run(["ip", "-batch", "-"], input=script)
    server_mac = lan.server.mac("stg0")
    requests = [packet("request", p, ciaddr=a, ip_src=a, ip_dst=SERVER, eth_dst=server_mac)
                for p, a in leased.items()]
    answers = client.exchange(requests, timeout=5.0)
    assert [a for a in answers if a.type != "ack"] == []
    return {p: a.yiaddr for p, a in first_by_chaddr(answers, "ack").items()}


def metric(host: Host, name: str, **labels: str) -> float | None:
    return sample(scrape(host), name, **labels)


def wait_metric(host: Host, name: str, value: float, **labels: str) -> None:
    """Workers report their counters once a second."""
    deadline = time.monotonic() + 5
    while (got := metric(host, name, **labels)) != value:
        assert time.monotonic() < deadline, f"{name}{labels} = {got}, expected {value}"
        time.sleep(0.2)


def test_two_workers_split_clients_and_pool_renew_release_dns_metrics(
        lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    need("dig")
    daemon = start(lan, tmp_path)
    phones = [mac(n) for n in range(PHONES)]
    acks = client.dora(phones)
    assert len(acks) == PHONES
    leased = {p: acks[p].yiaddr for p in phones}
    assert len(set(leased.values())) == PHONES  # disjoint
    for p, address in leased.items():  # in the half of the pool of the client's worker
        assert int(ipaddress.IPv4Address(address)) % 2 == worker_of(p), (p, address)
    assert {worker_of(p) for p in phones} == {0, 1}

    assert renew_unicast(lan, client, leased) == leased
    # The kernel gave every renewal to one of the two sockets: those of the other worker's clients were
    # passed on (and each renewal was answered once: the ACK count below).
    deadline = time.monotonic() + 5
    while not (metric(lan.server, "bootstrapd_dhcp_forwarded_total") or 0) > 0:
        assert time.monotonic() < deadline
        time.sleep(0.2)

    # DNS (main process) publishes the leases of both workers.
    for p in (next(p for p in phones if worker_of(p) == 0), next(p for p in phones if worker_of(p) == 1)):
        name = "SEP" + p.replace(":", "").upper() + ".staging.test"
        out = lan.clients[0].run(["dig", "+short", f"@{SERVER}", "+time=2", name, "A"]).stdout.split()
        assert out == [leased[p]], (p, out)

    # One scrape sums both workers: 60 OFFERs, 60 + 60 ACKs, the pool's 407 addresses.
    wait_metric(lan.server, "bootstrapd_dhcp_replies_sent_total", 2 * PHONES, type="ack")
    text = scrape(lan.server)
    assert sample(text, "bootstrapd_dhcp_replies_sent_total", type="offer") == PHONES
    assert sample(text, "bootstrapd_dhcp_packets_received_total", type="discover") == PHONES
    assert sample(text, "bootstrapd_dhcp_pool_size", subnet="198.18.0.0/23") == 407
    assert sample(text, "bootstrapd_dhcp_exchange_seconds_count") == 3 * PHONES
    assert sample(text, "bootstrapd_dhcp_workers") == 2

    # RELEASE (unicast, no reply) frees the address and withdraws its DNS record.
    gone = phones[0]
    client.send([packet("release", gone, ciaddr=leased[gone], ip_src=leased[gone], ip_dst=SERVER,
                        eth_dst=lan.server.mac("stg0"))])
    daemon.wait_for("dhcp.release")
    name = "SEP" + gone.replace(":", "").upper() + ".staging.test"
    deadline = time.monotonic() + 5
    while lan.clients[0].run(["dig", "+short", f"@{SERVER}", "+time=2", name, "A"]).stdout.split():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def test_killed_worker_is_restarted_and_its_clients_keep_their_addresses(
        lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    daemon = start(lan, tmp_path)
    phones = [mac(n) for n in range(PHONES)]
    leased = {p: a.yiaddr for p, a in client.dora(phones).items()}
    assert len(leased) == PHONES
    wait_metric(lan.server, "bootstrapd_dhcp_replies_sent_total", PHONES, type="ack")

    victim = worker_pids(daemon)[1]
    lan.server.run(["kill", "-KILL", str(victim)])
    daemon.wait_for("dhcp.worker_died")
    daemon.wait_for("dhcp.worker_ready", count=3)
    assert worker_pids(daemon)[1] != victim
    assert metric(lan.server, "bootstrapd_dhcp_worker_restarts_total") == 1

    assert renew_unicast(lan, client, leased) == leased  # worker 1's clients from its store after the restart
    rebooting = {p: a for p, a in leased.items() if worker_of(p) == 1}
    answers = first_by_chaddr(client.exchange([packet("request", p, requested=a) for p, a in rebooting.items()],
                                              timeout=5.0), "ack")  # INIT-REBOOT: broadcast
    assert {p: a.yiaddr for p, a in answers.items()} == rebooting
    # The killed worker's counts are kept: the sum never goes backwards.
    wait_metric(lan.server, "bootstrapd_dhcp_replies_sent_total", 2 * PHONES + len(rebooting), type="ack")

    pids = list(worker_pids(daemon).values())
    daemon.kill()  # the main process, SIGKILL: its workers follow it (PR_SET_PDEATHSIG)
    deadline = time.monotonic() + 10
    while [p for p in pids if Path(f"/proc/{p}").exists()]:
        assert time.monotonic() < deadline, "workers outlived the main process"
        time.sleep(0.1)


def wait_file(path: Path, timeout: float = 15.0) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"no {path.name}"
        time.sleep(0.1)
    time.sleep(0.1)  # the script has written it whole
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


def test_udhcpc_lease_renew_release_and_reload(lan: StagingLan, tmp_path: Path) -> None:
    """udhcpc in the foreground on two clients: bound, then SIGUSR1 (renew: a unicast REQUEST from its
    address), then SIGUSR2 (RELEASE); SIGHUP to the daemon reaches both workers."""
    need("udhcpc")
    daemon = start(lan, tmp_path)
    procs, addresses = [], []
    for c in lan.clients:
        out = tmp_path / f"env-{c.name}"
        script = tmp_path / f"udhcpc-{c.name}.sh"
        script.write_text(UDHCPC_SCRIPT.format(out=out))
        script.chmod(0o755)
        procs.append(c.popen(["udhcpc", "-i", "eth0", "-f", "-t", "5", "-T", "1", "-V", "CP-8841-3PCC",
                              "-s", str(script)]))
        addresses.append(wait_file(Path(f"{out}.bound"))["ip"])
    assert len(set(addresses)) == 2
    for c, address in zip(lan.clients, addresses, strict=True):  # in its worker's half of the pool
        hw = c.mac("eth0")  # udhcpc sends option 61 = 01 + MAC
        key = b"\x01" + bytes.fromhex(hw.replace(":", ""))
        assert int(ipaddress.IPv4Address(address)) % 2 == worker_of(hw, client_id=key)
    for proc in procs:
        proc.send_signal(signal.SIGUSR1)  # renew
    for c, address in zip(lan.clients, addresses, strict=True):
        assert wait_file(tmp_path / f"env-{c.name}.renew")["ip"] == address
    renewals = [e for e in daemon.events() if e.get("event") == "dhcp.ack" and e.get("msg_type") == "REQUEST"]
    assert len(renewals) == 4  # two SELECTING, two RENEWING: each answered once
    for proc in procs:
        proc.send_signal(signal.SIGUSR2)  # release
    assert len(daemon.wait_for("dhcp.release", count=2)) == 2
    daemon.signal(signal.SIGHUP)  # reaches both workers
    assert len(daemon.wait_for("dhcp.worker_reloaded", count=2)) == 2
    for proc in procs:
        proc.terminate()
        proc.wait(5)
    pids = list(worker_pids(daemon).values())
    assert daemon.stop() == 0
    assert not [p for p in pids if Path(f"/proc/{p}").exists()]  # SIGTERM stopped the workers too


def test_from_one_process_to_two_workers_no_address_is_given_twice(
        lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    """leases.sqlite3 (workers: 0) split at the first start with two workers: a client keeps its address
    when it is in its worker's part, else gets a NAK and a new one; no held address goes to a newcomer."""
    site = site_config()
    daemon = Daemon(lan.server, tmp_path, site).start()
    phones = [mac(n) for n in range(40)]
    leased = {p: a.yiaddr for p, a in client.dora(phones).items()}
    assert daemon.stop() == 0
    site["dhcp"]["workers"] = 2
    daemon.write_site(site)
    daemon.start()
    daemon.wait_for("dhcp.store_split", count=2)
    answers = first_by_chaddr(client.exchange([packet("request", p, requested=a) for p, a in leased.items()],
                                              timeout=5.0), "ack")
    kept = {p: a for p, a in leased.items() if int(ipaddress.IPv4Address(a)) % 2 == worker_of(p)}
    assert {p: a.yiaddr for p, a in answers.items()} == kept  # the others were NAKed (authoritative)
    newcomers = [mac(1000 + n) for n in range(40)]
    fresh = {a.yiaddr for a in client.dora(newcomers).values()}
    assert len(fresh) == 40 and not fresh & set(leased.values())
    out = subprocess.run([sys.executable, "-m", "bootstrapd", "leases", "-c", str(daemon.site_path), "--json"],
                         capture_output=True, text=True, timeout=30, check=True).stdout
    listed = {row["address"] for row in json.loads(out) if row["state"] == "bound"}
    assert set(leased.values()) | fresh <= listed  # `leases` reads both workers' stores


def test_one_worker_uses_leases_sqlite3_and_dns_never_waits_for_it(
        lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    """workers: 1 keeps the store of workers: 0; DNS is served by the main process, so it answers even
    while the DHCP process is stopped (SIGSTOP) in the middle of its work."""
    need("dig")
    site = site_config(dhcp__workers=1)
    daemon = Daemon(lan.server, tmp_path, site).start()
    phones = [mac(n) for n in range(5)]
    leased = {p: a.yiaddr for p, a in client.dora(phones).items()}
    assert len(leased) == 5
    state = tmp_path / "state"
    assert (state / "leases.sqlite3").exists() and not list(state.glob("leases-*.sqlite3"))
    worker = worker_pids(daemon)[0]
    lan.server.run(["kill", "-STOP", str(worker)])
    try:
        assert client.dora([mac(100)], timeout=1.0) == {}  # no DHCP meanwhile
        lan.clients[0].run(["ip", "addr", "replace", f"{leased[phones[0]]}/23", "dev", "eth0"])
        out = lan.clients[0].run(["dig", "+short", f"@{SERVER}", "+time=2", "+tries=1",
                                  "_ciscoprov-http._tcp.staging.test", "SRV"]).stdout.split()
        assert out == ["10", "0", "80", "prov1.staging.test."]
    finally:
        lan.server.run(["kill", "-CONT", str(worker)])
    assert len(client.dora([mac(101)])) == 1
