"""Replies that wait on ARP do not starve the others (issue 10 item 1).

Two relay agents are down: their giaddrs are routed via gateways on stg0 that no host owns, so each reply
to giaddr:67 waits ~3 s in the kernel for an ARP answer that never comes. They are fed relayed DISCOVERs
at 100/s each. Meanwhile a phone on stg0 does 20 broadcast DORAs with ONE transmission per message, and a
relay that is up gets DISCOVERs at 10/s: every one of them must be answered, and the replies the dead
relays could not get are counted drops, not replies sent.
"""

from __future__ import annotations

import re
import sys
import time
from pathlib import Path

from bootstrapd.lab import StagingLan
from tests.integration.daemon import SITE, Daemon, site_config
from tests.integration.dhcp_client import RawClient, first_by_chaddr, mac, packet
from tests.integration.relay_flood import RelayFlood
from tests.integration.test_dhcp_scapy import METRICS, SERVER

DEAD_RELAYS = {"198.18.4.1": "198.18.0.3", "198.18.5.1": "198.18.0.4"}  # giaddr: its (absent) next hop
HEALTHY_RELAY = "198.18.0.30"  # a host on stg0 acting as a relay that is up (giaddr in 198.18.0.0/23)
PHONES = 20
WARM_UP_S = 1.5  # at 200/s the old shared send buffer (~208 KiB) was full after ~0.8 s
PACE_S = 0.25  # one DORA this often: the 20 span more than one 3 s ARP cycle of the dead relays


def flood_site() -> dict[str, object]:
    dead = [{"prefix": f"{giaddr.rsplit('.', 1)[0]}.0/24", "router": giaddr,
             "pools": [f"{giaddr.rsplit('.', 1)[0]}.100-{giaddr.rsplit('.', 1)[0]}.200"]} for giaddr in DEAD_RELAYS]
    return site_config(dhcp__subnets=[*SITE["dhcp"]["subnets"], *dead], metrics={"listen": METRICS})


def counters(lan: StagingLan) -> dict[str, float]:
    """bootstrapd_dhcp_* counter samples as {'name{labels}': value}."""
    code = f"import urllib.request; print(urllib.request.urlopen('http://{METRICS}/metrics').read().decode())"
    text = lan.server.run([sys.executable, "-c", code], timeout=10).stdout
    return {m[1]: float(m[2]) for m in re.finditer(r"^bootstrapd_dhcp_(\S+_total\{\S*\}) (\S+)$", text, re.M)}


def test_unreachable_relays_do_not_starve_broadcast_or_healthy_replies(lan: StagingLan, client: RawClient,
                                                                       tmp_path: Path) -> None:
    for giaddr, gateway in DEAD_RELAYS.items():
        lan.server.add_route(f"{giaddr}/32", gateway)
    relays = lan.add_client(f"{HEALTHY_RELAY}/23", name="relays")
    daemon = Daemon(lan.server, tmp_path, flood_site()).start()
    flood = RelayFlood(relays, SERVER, dead=list(DEAD_RELAYS), healthy=HEALTHY_RELAY)
    try:
        start = time.monotonic() + WARM_UP_S
        offered = acked = 0
        for n in range(PHONES):  # one DISCOVER, one REQUEST: a lost reply is not retried
            time.sleep(max(0.0, start + n * PACE_S - time.monotonic()))
            phone = mac(500 + n)
            offers = first_by_chaddr(client.exchange([packet("discover", phone, broadcast=True)], 1.0), "offer")
            if phone not in offers:
                continue
            offered += 1
            offer = offers[phone]
            request = packet("request", phone, xid=offer.xid, requested=offer.yiaddr, server_id=offer.server_id,
                             broadcast=True)
            acked += phone in first_by_chaddr(client.exchange([request], 1.0), "ack")
    finally:
        counts = flood.stop()
    c = counters(lan)
    lost = {r: c.get(f'drops_total{{reason="{r}"}}', 0.0)
            for r in ("destination_unreachable", "send_queue_full", "send_failed")}
    print(f"phones offered {offered}/{PHONES} acked {acked}/{PHONES}; relay flood {counts}; replies not sent {lost}")
    assert (offered, acked) == (PHONES, PHONES), (counts, lost)
    assert counts["offers_healthy"] == counts["sent_healthy"] > 0, (counts, lost)
    # The dead relays' replies are counted drops, not replies sent: every DISCOVER was answered one way.
    assert lost["destination_unreachable"] > counts["sent_dead"] / 2, (counts, lost)
    answered = c['replies_sent_total{type="offer"}'] + sum(lost.values()) + c.get('drops_total{reason="stale"}', 0)
    assert answered == c['packets_received_total{type="discover"}'], c
    held = {e["to"] for e in daemon.events() if e.get("event") == "dhcp.destination_unreachable"}
    assert held == set(DEAD_RELAYS)
