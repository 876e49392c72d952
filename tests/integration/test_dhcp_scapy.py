"""RFC 2131 corner cases against the real daemon, with scapy-built packets from a client namespace:
DECLINE, INIT-REBOOT on the wrong network, pool exhaustion, reservations, malformed packets, and renewals
of a relayed client (unicast across the relay; broadcast from the wrong network)."""

from __future__ import annotations

import random
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.dhcp import BOOTP, DHCP

from bootstrapd.lab import Lab, StagingLan, staging_lan
from tests.integration.daemon import SITE, Daemon, site_config
from tests.integration.dhcp_client import Answer, RawClient, mac, packet

SERVER = "198.18.0.1"
SEG1_ADDRESS = "198.18.2.150"  # in the relayed subnet 198.18.2.0/24, not on stg0
METRICS = "127.0.0.1:9267"  # inside the server's namespace
QUIET = 0.5  # seconds to listen for a reply that must not come (the drop log proves the packet was handled)


def pool_site(first: str, last: str, **overrides: Any) -> dict[str, Any]:
    """The test site with stg0's pool cut down to first-last."""
    subnets = [dict(SITE["dhcp"]["subnets"][0], pools=[f"{first}-{last}"]), SITE["dhcp"]["subnets"][1]]
    return site_config(dhcp__subnets=subnets, **overrides)


def wait_event(daemon: Daemon, event: str, timeout: float = 5.0, **match: str) -> dict[str, Any]:
    """The first logged `event` whose fields include `match`."""
    deadline = time.monotonic() + timeout
    while True:
        for e in daemon.events():
            if e.get("event") == event and all(e.get(k) == v for k, v in match.items()):
                return e
        if time.monotonic() > deadline:
            raise AssertionError(f"no {event} {match} within {timeout}s:\n{daemon.log_path.read_text()[-3000:]}")
        time.sleep(0.05)


def only(answers: list[Answer], kind: str) -> Answer:
    assert [a.type for a in answers] == [kind], answers
    return answers[0]


def test_declined_address_is_quarantined(lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    daemon = Daemon(lan.server, tmp_path, pool_site("198.18.0.100", "198.18.0.101")).start()
    a, b = mac(1), mac(2)
    declined = client.dora([a])[a].yiaddr
    client.send([packet("decline", a, requested=declined, server_id=SERVER)])
    assert wait_event(daemon, "dhcp.decline", chaddr=a)["address"] == declined
    # Another client asking for exactly that address is offered the other one ...
    offer = only(client.exchange([packet("discover", b, requested=declined)]), "offer")
    assert offer.yiaddr != declined and offer.yiaddr in ("198.18.0.100", "198.18.0.101")
    # ... and the decliner starting over gets nothing: the declined address is out of the pool.
    assert client.exchange([packet("discover", a)], timeout=QUIET) == []
    wait_event(daemon, "dhcp.drop", chaddr=a, reason="pool_exhausted")


def test_init_reboot_on_the_wrong_network_gets_a_broadcast_nak(lan: StagingLan, client: RawClient,
                                                               tmp_path: Path) -> None:
    daemon = Daemon(lan.server, tmp_path, site_config()).start()
    phone = mac(1)
    # INIT-REBOOT: no server id, ciaddr 0, option 50 from the subnet behind the relay; no broadcast flag.
    nak = only(client.exchange([packet("request", phone, requested=SEG1_ADDRESS)]), "nak")
    assert (nak.eth_dst, nak.ip_dst, nak.dport) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255", 68)
    assert (nak.yiaddr, nak.ciaddr, nak.server_id) == ("0.0.0.0", "0.0.0.0", SERVER)
    assert 51 not in nak.options  # a NAK carries no lease
    wait_event(daemon, "dhcp.nak", chaddr=phone)
    # The client starts over (INIT) and gets an address on the network it is on.
    assert client.dora([phone])[phone].yiaddr.startswith("198.18.0.")


def test_non_authoritative_server_stays_silent_on_the_wrong_network(lan: StagingLan, client: RawClient,
                                                                    tmp_path: Path) -> None:
    daemon = Daemon(lan.server, tmp_path, site_config(dhcp__authoritative=False)).start()
    phone = mac(1)
    assert client.exchange([packet("request", phone, requested=SEG1_ADDRESS)], timeout=QUIET) == []
    wait_event(daemon, "dhcp.drop", chaddr=phone, reason="not_authoritative")


def test_exhausted_pool_drops_discover_until_an_address_is_released(lan: StagingLan, client: RawClient,
                                                                     tmp_path: Path) -> None:
    pool = {"198.18.0.100", "198.18.0.101", "198.18.0.102"}
    daemon = Daemon(lan.server, tmp_path, pool_site("198.18.0.100", "198.18.0.102")).start()
    phones = [mac(n) for n in range(1, 4)]
    acks = client.dora(phones)
    assert {acks[p].yiaddr for p in phones} == pool
    fourth = mac(4)
    assert client.exchange([packet("discover", fourth)], timeout=QUIET) == []
    drop = wait_event(daemon, "dhcp.drop", chaddr=fourth, reason="pool_exhausted")
    assert re.fullmatch(r"0x[0-9a-f]{8}", drop["xid"])
    # A RELEASE (unicast from the client's address) frees one; the next DISCOVER is offered it.
    freed = acks[phones[0]].yiaddr
    client.send([packet("release", phones[0], ciaddr=freed, server_id=SERVER, ip_src=freed, ip_dst=SERVER,
                        eth_dst=lan.server.mac("stg0"))])
    wait_event(daemon, "dhcp.release", chaddr=phones[0])
    assert only(client.exchange([packet("discover", fourth)]), "offer").yiaddr == freed


def test_reservation_wins_over_requests_and_leases(lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    reserved = "198.18.0.50"  # outside the pools, as `bootstrapd check` requires
    phone, intruder = "00:56:2b:04:36:15", mac(1)
    daemon = Daemon(lan.server, tmp_path, site_config()).start()
    dynamic = client.dora([phone])[phone].yiaddr  # before the reservation exists: a pool address
    daemon.write_site(site_config(dhcp__reservations=[{"mac": phone, "address": reserved,
                                                       "hostname": "SEP00562B043615"}]))
    daemon.signal(signal.SIGHUP)
    daemon.wait_for("service.reloaded")
    # The reserved device keeps neither its lease (INIT-REBOOT) nor gets the address it asks for: only its own.
    only(client.exchange([packet("request", phone, requested=dynamic)]), "nak")
    assert only(client.exchange([packet("discover", phone, requested=dynamic)]), "offer").yiaddr == reserved
    only(client.exchange([packet("request", phone, requested=dynamic, server_id=SERVER)]), "nak")
    ack = client.dora([phone])[phone]
    assert ack.yiaddr == reserved
    assert ack.options[12] == b"SEP00562B043615"  # the reservation's hostname
    # Another device asking for the reserved address never gets it, in any client state.
    assert only(client.exchange([packet("discover", intruder, requested=reserved)]), "offer").yiaddr != reserved
    only(client.exchange([packet("request", intruder, requested=reserved)]), "nak")  # INIT-REBOOT
    only(client.exchange([packet("request", intruder, requested=reserved, server_id=SERVER)]), "nak")  # SELECTING


def malformed_payloads() -> list[bytes]:
    """Bytes sent to UDP 67 that are not DHCP messages (each a distinct way to be broken)."""
    valid = bytes(BOOTP(op=1, xid=7, chaddr=bytes.fromhex("02dc00000063")) / DHCP(options=[("message-type", 1), "end"]))
    header = valid[:236]
    return [
        random.Random(67).randbytes(64),  # noise, shorter than a BOOTP header
        random.Random(68).randbytes(548),  # noise of a full DHCP message's length
        valid[:200],  # truncated inside the fixed header
        header + b"\x63\x82\x53\x64" + valid[240:],  # wrong magic cookie
        header + valid[236:240] + b"\x35\x01\x01\x32\x04\xc6\x12",  # option 50 runs past the end
        header + valid[236:240] + b"\x35",  # an option with no length octet
    ]


def drops_metric(lan: StagingLan, reason: str) -> float:
    code = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
    text = lan.server.run([sys.executable, "-c", code], timeout=10).stdout
    found = re.search(rf'^bootstrapd_dhcp_drops_total{{reason="{reason}"}} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


def test_malformed_packets_are_counted_drops_and_serving_goes_on(lan: StagingLan, client: RawClient,
                                                                   tmp_path: Path) -> None:
    daemon = Daemon(lan.server, tmp_path, site_config(metrics={"listen": METRICS})).start()
    garbage = malformed_payloads()
    client.send([packet("raw", mac(n), payload=p.hex()) for n, p in enumerate(garbage)])
    daemon.wait_for("dhcp.drop", count=len(garbage))
    drops = [e for e in daemon.events() if e.get("event") == "dhcp.drop"]
    assert [e["reason"] for e in drops] == ["parse_failed"] * len(garbage)
    assert drops_metric(lan, "parse_failed") == len(garbage)
    # Well-formed and served in the same second: the daemon is alive and answering.
    phones = [mac(100), mac(101)]
    assert set(client.dora(phones)) == set(phones)


@pytest.fixture
def relayed(lab: Lab, tmp_path: Path) -> Iterator[tuple[StagingLan, Daemon, str, str]]:
    """A phone on seg1 with a lease from 198.18.2.0/24 through dhcrelay, its address configured on its eth0
    and its route to stg0 via the relay: (lan, daemon, phone's chaddr, its address)."""
    if shutil.which("dhcrelay") is None:
        pytest.fail("dhcrelay is not installed (scripts/install-deps.sh installs it)")
    lan = staging_lan(lab, clients=1, relay=True, relay_clients=1)
    assert lan.relay is not None
    daemon = Daemon(lan.server, tmp_path, site_config()).start()
    relay = lan.relay.popen(["dhcrelay", "-4", "-d", "-q", "-i", "seg1", "-i", "eth0", SERVER],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    phone_host = lan.relay_clients[0]
    phone = phone_host.mac("eth0")
    with RawClient(phone_host) as raw:
        for _ in range(10):  # until dhcrelay listens
            if acks := raw.dora([phone], timeout=0.5):
                break
        address = acks[phone].yiaddr
    # dhcrelay also relays unicast renewals it sees pass (with giaddr set): from here on, only routing.
    relay.terminate()
    relay.wait(10)
    assert address.startswith("198.18.2.")
    phone_host.add_address("eth0", f"{address}/24")
    phone_host.add_route("198.18.0.0/23", "198.18.2.1")
    yield lan, daemon, phone, address


def test_relayed_client_renews_by_unicast_across_the_relay(relayed: tuple[StagingLan, Daemon, str, str]) -> None:
    lan, _, phone, address = relayed
    assert lan.relay is not None
    # RENEWING: unicast from the client's address to the server, routed by the relay: giaddr is 0 and the
    # packet arrives on stg0, so only ciaddr tells its subnet (RFC 2131 4.3.2, 4.4.5).
    with RawClient(lan.relay_clients[0]) as raw:
        renewal = packet("request", phone, ciaddr=address, ip_src=address, ip_dst=SERVER,
                         eth_dst=lan.relay.mac("seg1"))
        ack = only(raw.exchange([renewal]), "ack")
    assert (ack.yiaddr, ack.ciaddr, ack.ip_dst) == (address, address, address)


def test_rebinding_on_the_wrong_network_gets_a_nak(relayed: tuple[StagingLan, Daemon, str, str]) -> None:
    """RFC 2131 4.3.2 REBINDING: the server SHOULD check ciaddr for correctness. A phone moved from seg1
    onto stg0 broadcasts its REBINDING there (giaddr 0): its seg1 address is wrong on stg0, as the NAK that
    INIT-REBOOT of the same address gets says; it must not have its lease extended."""
    lan, daemon, phone, address = relayed
    with RawClient(lan.clients[0]) as raw:
        answers = raw.exchange([packet("request", phone, ciaddr=address, broadcast=True)], timeout=1.0)
    assert [e for e in daemon.events() if e.get("event") == "dhcp.ack" and e["chaddr"] == phone][1:] == []
    only(answers, "nak")
