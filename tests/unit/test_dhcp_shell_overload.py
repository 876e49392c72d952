"""The DHCP shell under overload: a burst answers REQUESTs before DISCOVERs, and a DISCOVER that waited
longer than STALE_DISCOVER_S in the receive queue is dropped with reason `stale` (its client has retried)."""

from __future__ import annotations

import time
from pathlib import Path

import structlog
from fake_client import FakeClient, Wire, make_site

from bootstrapd.dhcp.codec import MessageType, build
from bootstrapd.dhcp.engine import Reply, Silent
from bootstrapd.dhcp.store_memory import MemoryLeaseStore
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.dhcp import STALE_DISCOVER_S, DhcpServer

SOURCE = ("0.0.0.0", 68)


def test_requests_go_first_and_stale_discovers_are_dropped(tmp_path: Path) -> None:
    site = make_site(tmp_path)
    metrics = Metrics()
    sent: list[Reply | Silent] = []
    server = DhcpServer(site, MemoryLeaseStore(), metrics, structlog.get_logger(), on_outcome=sent.append)
    # Client messages built by the fake client (its own wire is not used to answer them).
    offline = Wire(site)
    late, fresh, selecting = (FakeClient(offline, mac=f"00:56:2b:00:00:0{i}") for i in (1, 2, 3))
    now = time.perf_counter()
    server._process([(build(selecting.message(MessageType.DISCOVER)), "stg0", SOURCE, True, now)])
    offer = sent.pop()
    assert isinstance(offer, Reply) and offer.msg_type is MessageType.OFFER
    request = selecting.message(MessageType.REQUEST, requested=offer.address, server_id=offer.message.server_id)

    server._process([
        (build(late.message(MessageType.DISCOVER)), "stg0", SOURCE, True, now - STALE_DISCOVER_S - 0.5),
        (build(fresh.message(MessageType.DISCOVER)), "stg0", SOURCE, True, now),
        (build(request), "stg0", SOURCE, True, now),
    ])  # fmt: skip

    assert [(r.msg_type, r.message.chaddr) for r in sent if isinstance(r, Reply)] == [
        (MessageType.ACK, selecting.chaddr),
        (MessageType.OFFER, fresh.chaddr),
    ]
    assert metrics.registry.get_sample_value("bootstrapd_dhcp_drops_total", {"reason": "stale"}) == 1
