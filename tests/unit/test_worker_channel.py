"""The DHCP workers' channel records and the one-scrape metrics merge (real sockets, real registries)."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bootstrapd.dhcp.leases import Lease, LeaseState
from bootstrapd.errors import StoreError
from bootstrapd.observability.metrics import Metrics
from bootstrapd.observability.worker_metrics import MergedRegistry, parse_snapshot, snapshot
from bootstrapd.transport.dhcp_channel import (
    ChannelSender,
    decode_forward,
    decode_lease,
    decode_records,
    encode_forward,
    encode_lease,
    pair,
)
from bootstrapd.transport.dhcp_workers import LeaseMirror, check_store_layout

LEASE = Lease(address=IPv4Address("198.18.0.100"), client_id=b"\x01\x00\x56\x2b\x04\x36\x15",
              chaddr=bytes.fromhex("00562b043615"), state=LeaseState.BOUND, subnet="198.18.0.0/23",
              expires=1_700_003_600.0, first_seen=1_700_000_000.0, updated=1_700_000_000.5,
              hostname="SEP00562B043615", vendor_class="CP-8841-3PCC", device_class="mpp")


def test_lease_and_forward_round_trip() -> None:
    assert decode_lease(encode_lease(LEASE)) == LEASE
    data = b"\x01\x01\x06\x00" + bytes(300)
    assert decode_forward(encode_forward(data, "stg0", ("198.18.0.100", 68), 1.5)) == (
        data, "stg0", ("198.18.0.100", 68), 1.5)


def test_records_are_batched_per_turn_and_dropped_when_the_reader_is_behind() -> None:
    main, worker = pair()
    scheduled: list[object] = []
    dropped: list[int] = []
    sender = ChannelSender(worker, scheduled.append, dropped.append)
    for _ in range(100):
        sender.record(["L", "bound", encode_lease(LEASE)])
    assert len(scheduled) == 1  # one flush for the turn
    sender.flush()
    first = decode_records(main.recv(1 << 16))
    assert len(first) == 64 and decode_lease(first[0][2]) == LEASE
    assert len(decode_records(main.recv(1 << 16))) == 36
    assert not dropped
    worker.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)  # and a main process that stopped reading
    while sender.send_now(["M", [["bootstrapd_dhcp_x", "counter", [["a", {}, 1.0]]] * 50]]):
        pass  # fill the buffer: sending never blocks, the record is counted as dropped
    assert dropped and dropped[-1] == 1
    main.close()
    worker.close()


def scrape(registry: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()  # type: ignore[arg-type]
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_merged_scrape_sums_workers_and_keeps_a_dead_workers_counts() -> None:
    main = Metrics()
    merged = MergedRegistry(main.registry)
    workers = [Metrics(), Metrics()]
    for n, w in enumerate(workers):
        w.dhcp_sent.labels("ack").inc(10 * (n + 1))
        w.dhcp_pool_size.labels(subnet="198.18.0.0/23").set(203 + n)
        w.dhcp_kernel_drops.set(5)  # the host's count, read by both
        w.dhcp_latency.observe(0.002)
        merged.update(n, parse_snapshot(snapshot(w.registry)))
    main.dns_queries.labels("A", "udp").inc(3)
    got = scrape(merged)
    assert got[("bootstrapd_dhcp_replies_sent_total", (("type", "ack"),))] == 30
    assert got[("bootstrapd_dhcp_pool_size", (("subnet", "198.18.0.0/23"),))] == 407
    assert got[("bootstrapd_dhcp_kernel_receive_drops", ())] == 5
    assert got[("bootstrapd_dhcp_exchange_seconds_count", ())] == 2
    assert got[("bootstrapd_dns_queries_total", (("qtype", "A"), ("transport", "udp")))] == 3

    merged.retire(1)  # worker 1 died; its replacement starts from zero
    fresh = Metrics()
    fresh.dhcp_sent.labels("ack").inc(1)
    merged.update(1, parse_snapshot(snapshot(fresh.registry)))
    got = scrape(merged)
    assert got[("bootstrapd_dhcp_replies_sent_total", (("type", "ack"),))] == 31  # never backwards
    assert got[("bootstrapd_dhcp_pool_size", (("subnet", "198.18.0.0/23"),))] == 203  # gauges of the living

    only = scrape(merged.restricted_registry(["bootstrapd_dhcp_replies_sent_total"]))
    assert set(only) == {("bootstrapd_dhcp_replies_sent_total", (("type", "ack"),))}


def test_lease_mirror_follows_bound_and_release_of_the_holder_only() -> None:
    mirror = LeaseMirror()
    mirror.apply("bound", LEASE)
    assert mirror.get_by_address(LEASE.address) == LEASE
    other = replace(LEASE, client_id=b"\x01other", state=LeaseState.RELEASED)
    mirror.apply("release", other)  # a stale event of a previous holder does not remove the current one
    assert mirror.get_by_address(LEASE.address) == LEASE
    mirror.apply("release", replace(LEASE, state=LeaseState.RELEASED))
    assert mirror.get_by_address(LEASE.address) is None and len(mirror) == 0


def test_worker_admits_its_clients_ignores_others_broadcasts_and_forwards_their_unicasts() -> None:
    from bootstrapd.config import check_site
    from bootstrapd.dhcp.shard import Shard, bucket
    from bootstrapd.transport.dhcp_worker import Worker

    site = check_site("config/site.example.yaml").site
    assert site is not None
    socks = [pair() for _ in range(3)]  # channel, inbox 0, inbox 1
    inboxes = [socks[1][1], socks[2][1]]
    worker = Worker("config/site.example.yaml", site, Shard(0, 2), socks[0][0], inboxes[0], [s[0] for s in socks[1:]])
    macs = [bytes((0, 0x56, 0x2B, 0, 0, n)) for n in range(16)]
    ours = next(m for m in macs if bucket(m) % 2 == 0)
    theirs = next(m for m in macs if bucket(m) % 2 == 1)

    def datagram(mac: bytes) -> bytes:
        return bytes((1, 1, 6, 0)) + bytes(24) + mac + bytes(10) + bytes(192) + b"\x63\x82\x53\x63\x35\x01\x03\xff"

    assert worker.admit(datagram(ours), "stg0", ("198.18.0.100", 68), False, 0.0)
    assert not worker.admit(datagram(theirs), "stg0", ("0.0.0.0", 68), True, 0.0)  # worker 1 has its own copy
    before = time.time()
    assert not worker.admit(datagram(theirs), "stg0", ("198.18.0.101", 68), False, 0.5)  # 0.5 s in the kernel
    data, ifname, source, arrival = decode_forward(inboxes[1].recv(4096))
    assert (data, ifname, source) == (datagram(theirs), "stg0", ("198.18.0.101", 68))
    assert before - 0.6 < arrival < time.time() - 0.5  # the owner's queue age counts the detour
    with pytest.raises(BlockingIOError):  # the broadcast was not forwarded
        inboxes[1].recv(4096)
    assert worker.metrics.registry.get_sample_value("bootstrapd_dhcp_forwarded_total") == 1
    for a, b in socks:
        a.close()
        b.close()


def test_store_layout_refuses_another_worker_count_than_the_split(tmp_path: Path) -> None:
    state = str(tmp_path)
    check_store_layout(state, 0)
    check_store_layout(state, 1)  # nothing split yet: leases.sqlite3 serves 0 or 1 worker alike
    check_store_layout(state, 2)
    assert (tmp_path / "leases-workers").read_text() == "2\n"
    check_store_layout(state, 2)
    for other in (0, 1, 3):
        with pytest.raises(StoreError, match=r"dhcp\.workers: 2"):
            check_store_layout(state, other)
