"""Crash safety of the real daemon: every acknowledged lease survives SIGKILL, and no leased address goes
to a second client after the restart (issue 3: a lease is durable before its ACK is sent)."""

from __future__ import annotations

import signal
from pathlib import Path

from bootstrapd.lab import StagingLan
from tests.integration.daemon import Daemon, site_config
from tests.integration.dhcp_client import RawClient, first_by_chaddr, mac, packet

PHONES = 200
SERVER = "198.18.0.1"


def restart(daemon: Daemon) -> None:
    """Start again on the same state_dir, with a fresh log (start() waits for the log's service.ready)."""
    daemon.log_path.rename(daemon.log_path.with_name("before-kill.log"))
    daemon.start()


def test_acknowledged_leases_survive_sigkill(lan: StagingLan, client: RawClient, tmp_path: Path) -> None:
    daemon = Daemon(lan.server, tmp_path, site_config()).start()
    phones = [mac(n) for n in range(PHONES)]
    acks = client.dora(phones)
    assert len(acks) == PHONES
    leased = {p: acks[p].yiaddr for p in phones}
    assert len(set(leased.values())) == PHONES

    daemon.kill()  # right after the last ACK arrived: no clean shutdown, no final flush
    assert daemon.proc is not None and daemon.proc.returncode == -signal.SIGKILL
    restart(daemon)

    # New devices, each asking for one of the leased addresses, are offered none of them.
    newcomers = [mac(PHONES + n) for n in range(PHONES)]
    offers = first_by_chaddr(client.exchange(
        [packet("discover", n, requested=leased[p]) for n, p in zip(newcomers, phones, strict=True)], timeout=5.0,
    ), "offer")
    assert len(offers) == PHONES  # 407 addresses in the pool: 200 leased + 200 offered fit
    assert not {o.yiaddr for o in offers.values()} & set(leased.values())

    # Every phone renews to its address: half rebooted (INIT-REBOOT, broadcast), half RENEWING (unicast
    # from its address; the client namespace answers ARP for those addresses so the ACK can reach it).
    rebooting, renewing = phones[: PHONES // 2], phones[PHONES // 2 :]
    script = "".join(f"addr add {leased[p]}/23 dev eth0\n" for p in renewing)
    lan.clients[0].run(["ip", "-batch", "-"], input=script)
    server_mac = lan.server.mac("stg0")
    requests = [packet("request", p, requested=leased[p]) for p in rebooting] + [
        packet("request", p, ciaddr=leased[p], ip_src=leased[p], ip_dst=SERVER, eth_dst=server_mac) for p in renewing
    ]
    answers = client.exchange(requests, timeout=5.0)
    renewed = first_by_chaddr(answers, "ack")
    assert [a for a in answers if a.type != "ack"] == []
    assert {p: a.yiaddr for p, a in renewed.items()} == leased
    assert all(renewed[p].ip_dst == leased[p] for p in renewing)  # unicast to ciaddr (RFC 2131 4.1)

    # And a device arriving later still gets none of them.
    late = mac(2 * PHONES)
    offer = first_by_chaddr(client.exchange([packet("discover", late)]), "offer")[late]
    assert offer.yiaddr not in set(leased.values())
