"""The PostgreSQL store beyond the contract suite: several writers, one round trip per burst, outages.

Each test runs against a schema of its own on the session's throwaway cluster (tests/conftest.py `pg_dsn`).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

import pytest

if os.environ.get("BOOTSTRAPD_REQUIRE_LAB") != "1":  # CI: a missing driver fails, never skips
    pytest.importorskip("psycopg")

import psycopg
import structlog
from fake_client import FakeClient, Wire, make_site
from test_lease_store_contract import NOW, cid, ip, lease

from bootstrapd.config import check_site
from bootstrapd.dhcp.codec import MessageType, build
from bootstrapd.dhcp.engine import Drop, Reply, Silent
from bootstrapd.dhcp.leases import LeaseState
from bootstrapd.dhcp.store_postgres import PostgresLeaseStore, open_postgres_store
from bootstrapd.dhcp.stores import open_lease_store
from bootstrapd.errors import StoreError
from bootstrapd.observability.metrics import Metrics
from bootstrapd.transport.dhcp import DhcpServer

SOURCE = ("0.0.0.0", 68)


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_the_loser_of_an_offer_race_learns_the_winner(pg_dsn: str) -> None:
    a, b = open_postgres_store(pg_dsn, "a"), open_postgres_store(pg_dsn, "b")
    try:
        a.put(lease(10, 1, LeaseState.OFFERED, expires=NOW + 30))
        assert a.flush() == frozenset()
        b.put(lease(10, 2, LeaseState.OFFERED, expires=NOW + 30))  # b's mirror has not seen a's offer yet
        assert b.flush() == {ip(10)}
        assert b.get_by_address(ip(10)) == lease(10, 1, LeaseState.OFFERED, expires=NOW + 30)
        assert b.get_by_client(cid(2)) is None
        b.put(lease(11, 2, LeaseState.OFFERED, expires=NOW + 30))  # the retransmitted DISCOVER
        assert b.flush() == frozenset()
        a.refresh()
        assert a.get_by_address(ip(11)) == lease(11, 2, LeaseState.OFFERED, expires=NOW + 30)
    finally:
        a.close()
        b.close()


def test_a_renewal_succeeds_only_on_the_version_this_node_read(pg_dsn: str) -> None:
    a, b = open_postgres_store(pg_dsn, "a"), open_postgres_store(pg_dsn, "b")
    try:
        a.put(lease(10, 1))
        a.flush()
        b.refresh()
        b.put(lease(10, 1, LeaseState.RELEASED, updated=NOW + 5))  # the client released via b
        assert b.flush() == frozenset()
        a.put(lease(10, 1, expires=NOW + 7200, updated=NOW + 6))  # a's renewal, decided on the old row
        assert a.flush() == {ip(10)}
        assert a.get_by_address(ip(10)) == lease(10, 1, LeaseState.RELEASED, updated=NOW + 5)
        a.put(lease(10, 1, expires=NOW + 7200, updated=NOW + 7))  # decided on the current row: wins
        assert a.flush() == frozenset()
        b.refresh()
        assert b.get_by_address(ip(10)) == lease(10, 1, expires=NOW + 7200, updated=NOW + 7)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("partners", [True, False])
def test_the_node_not_chosen_leaves_a_partners_offer_alone(tmp_path: Path, pg_dsn: str, partners: bool) -> None:
    # RFC 2131 4.3.2: a REQUEST naming another server makes a server free its own offer. In one shared store
    # the record of the chosen address IS the partner's offer: freeing it would make the partner's ACK lose.
    a_store, b_store = open_postgres_store(pg_dsn, "a"), open_postgres_store(pg_dsn, "b")
    try:
        a = Wire(make_site(tmp_path, {"store": {"partners": ["198.18.0.2"]}}, name="a.yaml"), a_store)
        b_site = {"listen": {"address": "198.18.0.2"}, "store": {"partners": ["198.18.0.1"] if partners else []}}
        b = Wire(make_site(tmp_path, b_site, name="b.yaml"), b_store, local_address=ip(2))
        offer = FakeClient(a).discover()
        assert isinstance(offer, Reply) and a_store.flush() == frozenset()
        b_store.refresh()
        assert isinstance(FakeClient(b).select(offer), Drop)  # other_server
        assert b_store.flush() == frozenset()
        ack = FakeClient(a).select(offer)
        assert isinstance(ack, Reply) and ack.msg_type is MessageType.ACK
        assert a_store.flush() == (frozenset() if partners else {offer.address})
    finally:
        a_store.close()
        b_store.close()


def test_a_burst_is_one_round_trip_and_one_transaction(pg_dsn: str) -> None:
    store = open_postgres_store(pg_dsn, "a")
    try:
        before = store.round_trips
        for n in range(1, 201):
            store.put(lease(n, n, LeaseState.OFFERED if n % 2 else LeaseState.BOUND))
        store.put(lease(5, 5, updated=NOW + 1))  # one address twice in a burst: written once
        assert store.flush() == frozenset()
        assert store.round_trips == before + 1
        with psycopg.connect(pg_dsn) as conn:
            rows, txids = conn.execute("SELECT count(*), count(DISTINCT txid) FROM bootstrapd_leases").fetchone()
        assert (rows, txids) == (200, 1)
        assert store.flush() == frozenset() and store.round_trips == before + 1  # nothing pending: no trip
    finally:
        store.close()


def test_the_pull_sees_commits_that_land_out_of_order(pg_dsn: str) -> None:
    # Another writer's transaction that started first but commits after this node's pull is still seen.
    reader = open_postgres_store(pg_dsn, "reader")
    with psycopg.connect(pg_dsn, autocommit=True) as slow:
        try:
            writers = [open_postgres_store(pg_dsn, n) for n in ("slow", "fast")]
            slow.execute("BEGIN")
            slow.execute("SELECT pg_current_xact_id()")  # its xid is older than fast's
            writers[1].put(lease(20, 2))
            writers[1].flush()
            reader.refresh()
            assert reader.get_by_address(ip(20)) == lease(20, 2)
            slow.execute(
                "INSERT INTO bootstrapd_leases SELECT address + 1, client_id, chaddr, state, subnet, expires,"
                " free_at, first_seen, updated, hostname, vendor_class, device_class, 'slow', 1,"
                " nextval('bootstrapd_lease_version'), pg_current_xact_id() FROM bootstrapd_leases WHERE address = %s",
                (int(ip(20)),),
            )
            slow.execute("COMMIT")
            reader.refresh()
            assert reader.get_by_address(ip(21)) == replace(lease(20, 2), address=ip(21))
        finally:
            for w in writers:
                w.close()
            reader.close()


def refreshed(store: PostgresLeaseStore, timeout: float = 20) -> None:
    """refresh() until the background reconnect has succeeded."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            store.refresh()
            return
        except StoreError:
            assert time.monotonic() < deadline, "no reconnect"
            time.sleep(0.05)


def test_unreachable_database_store_error_then_reconnect(pg_cluster, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    store = open_postgres_store(pg_dsn, "a", clock=clock)
    try:
        store.put(lease(10, 1))
        store.flush()
        pg_cluster.stop()
        try:
            store.put(lease(11, 2))
            with pytest.raises(StoreError, match="write failed"):
                store.flush()
            assert list(store.iter_all()) == [lease(10, 1)]  # the burst is undone: only what is durable
            store.put(lease(11, 2))
            started = time.monotonic()
            with pytest.raises(StoreError, match="unreachable"):
                store.flush()  # the packet path does not try to connect
            with pytest.raises(StoreError, match="reconnecting"):
                store.refresh()  # starts one attempt in the background, returns at once
            assert time.monotonic() - started < 0.5
            assert list(store.iter_all()) == [lease(10, 1)]
            deadline = time.monotonic() + 10
            while store._connector is not None:  # the attempt fails: back-off from then on
                assert time.monotonic() < deadline
                time.sleep(0.02)
            with pytest.raises(StoreError, match="cannot connect"):
                store.refresh()  # within the back-off: no new attempt, the last error is told
            assert store._connector is None
        finally:
            pg_cluster.start()
        clock.t += 60  # the back-off is over
        refreshed(store)  # reconnects and reloads the mirror
        store.put(lease(11, 2))
        assert store.flush() == frozenset()
        reader = open_postgres_store(pg_dsn, "reader", readonly=True)
        assert list(reader.iter_all()) == [lease(10, 1), lease(11, 2)]
        with pytest.raises(StoreError, match="read-only"):
            reader.put(lease(12, 3))
        reader.close()
    finally:
        store.close()


def test_the_shell_stays_silent_on_a_lost_race_and_on_an_outage(
    tmp_path: Path, pg_cluster, pg_dsn: str  # type: ignore[no-untyped-def]
) -> None:
    site = make_site(tmp_path, {"store": {"backend": "postgresql", "dsn": pg_dsn, "node": "a"}})
    other = make_site(tmp_path, {"listen": {"address": "198.18.0.2"}, "store": {
        "backend": "postgresql", "dsn": pg_dsn, "node": "b"}}, name="b.yaml")
    a_store, b_store = open_lease_store(site), open_lease_store(other)
    metrics = Metrics()
    sent: list[Reply | Silent] = []
    a = DhcpServer(site, a_store, Metrics(), structlog.get_logger())
    b = DhcpServer(other, b_store, metrics, structlog.get_logger(), on_outcome=sent.append)
    offline = Wire(site)
    first, second = (FakeClient(offline, mac=f"00:56:2b:00:03:0{i}") for i in (1, 2))
    try:
        a._process([(build(first.message(MessageType.DISCOVER)), "stg0", SOURCE, True, time.perf_counter())])
        b._process([(build(second.message(MessageType.DISCOVER)), "stg0", SOURCE, True, time.perf_counter())])
        assert sent == []  # b offered a's address: its write lost, and nothing left
        assert metrics.registry.get_sample_value("bootstrapd_dhcp_drops_total", {"reason": "lost_race"}) == 1
        b._process([(build(second.message(MessageType.DISCOVER)), "stg0", SOURCE, True, time.perf_counter())])
        offer = sent.pop()
        assert isinstance(offer, Reply) and offer.msg_type is MessageType.OFFER
        assert offer.address == ip(101) and b_store.get_by_address(ip(100)).client_id != offer.lease.client_id

        pg_cluster.stop()
        try:
            b._process([(build(second.message(MessageType.DISCOVER)), "stg0", SOURCE, True, time.perf_counter())])
            assert sent == []  # no reply without a durable lease
            assert metrics.registry.get_sample_value("bootstrapd_dhcp_drops_total", {"reason": "store_failed"}) == 1
        finally:
            pg_cluster.start()
        b_store._retry_at = 0.0  # skip the back-off wait
        deadline = time.monotonic() + 20
        while b._store_down or b_store._conn is None:  # the shell's idle refresh (each second) reconnects
            assert time.monotonic() < deadline
            b._refresh()
            time.sleep(0.05)
        b._process([(build(second.message(MessageType.DISCOVER)), "stg0", SOURCE, True, time.perf_counter())])
        again = sent.pop()
        assert isinstance(again, Reply) and again.address == ip(101)
    finally:
        a_store.close()
        b_store.close()


def test_open_lease_store_reads_the_dsn_file_and_check_requires_it(tmp_path: Path, pg_dsn: str) -> None:
    (tmp_path / "store.dsn").write_text(pg_dsn + "\n# the rest is ignored\n")
    site = make_site(tmp_path, {"store": {"backend": "postgresql", "dsn_file": "store.dsn"}})
    store = open_lease_store(site)
    try:
        assert isinstance(store, PostgresLeaseStore) and store.settings.node == "test-floor"
    finally:
        store.close()
    (tmp_path / "empty.yaml").write_text(
        (tmp_path / "site.yaml").read_text().replace("store.dsn", "missing.dsn"))
    errors = [d.message for d in check_site(str(tmp_path / "empty.yaml")).errors]
    assert errors == [f"cannot read {tmp_path / 'missing.dsn'}: No such file or directory"]


def test_unreachable_at_start_and_foreign_schema_are_store_errors(pg_dsn: str) -> None:
    with pytest.raises(StoreError, match="cannot connect"):
        open_postgres_store("host=/nonexistent port=1 connect_timeout=1", "a")
    with pytest.raises(StoreError, match="no bootstrapd lease store"):
        open_postgres_store(pg_dsn, "a", readonly=True)
    open_postgres_store(pg_dsn, "a").close()
    with psycopg.connect(pg_dsn, autocommit=True) as conn:
        conn.execute("UPDATE bootstrapd_schema SET version = 99")
    with pytest.raises(StoreError, match="schema 99"):
        open_postgres_store(pg_dsn, "a")


def test_other_nodes_changes_are_told_once_as_before_and_after(pg_cluster, pg_dsn: str) -> None:  # type: ignore[no-untyped-def]
    clock = Clock()
    a, b = open_postgres_store(pg_dsn, "a"), open_postgres_store(pg_dsn, "b", clock=clock)
    try:
        assert b.take_remote() == [] and b.up
        a.put(lease(10, 1))
        a.flush()
        b.put(lease(11, 2))
        b.flush()  # the burst's pull brings a's lease; b's own write is no remote change
        assert b.take_remote() == [(None, lease(10, 1))]
        assert b.take_remote() == []
        a.put(replace(lease(10, 1), state=LeaseState.RELEASED, expires=NOW + 1))
        a.flush()
        b.refresh()
        assert b.take_remote() == [(lease(10, 1), replace(lease(10, 1), state=LeaseState.RELEASED, expires=NOW + 1))]
        assert a.take_remote() == [(None, lease(11, 2))]
        pg_cluster.stop()
        try:
            with pytest.raises(StoreError):
                b.refresh()
            assert not b.up
        finally:
            pg_cluster.start()
        a._drop_connection()
        clock.t += 60
        refreshed(a)
        a.delete(ip(11))
        a.flush()
        refreshed(b)
        assert b.up
        # The reconnect reloads the whole mirror; what changed meanwhile (an administrative delete, which a
        # pull cannot see) is told as the difference between the old mirror and the new one.
        assert b.take_remote() == [(lease(11, 2), None)]
    finally:
        a.close()
        b.close()
