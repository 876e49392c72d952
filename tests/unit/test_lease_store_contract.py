"""One contract for every LeaseStore backend (design.md convention 5), then SQLite-only behaviour."""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from ipaddress import IPv4Address
from pathlib import Path

import pytest

from bootstrapd.dhcp.leases import ANONYMOUS, Lease, LeaseConflict, LeaseState, LeaseStore, effective_state
from bootstrapd.dhcp.store_memory import MemoryLeaseStore
from bootstrapd.dhcp.store_sqlite import DB_NAME, SqliteLeaseStore, open_readonly, open_store
from bootstrapd.errors import StoreError
from bootstrapd.walcheckpoint import WalCheckpointer

NOW = 1_700_000_000.0
NET = "198.18.0.0/24"
OTHER_NET = "198.18.1.0/24"


def ip(last: int, net: int = 0) -> IPv4Address:
    return IPv4Address(f"198.18.{net}.{last}")


def cid(n: int) -> bytes:
    return b"\x01" + bytes((0, 0x56, 0x2B, 0, 0, n))


def lease(last: int, client: int, state: LeaseState = LeaseState.BOUND, **kw: object) -> Lease:
    fields: dict[str, object] = {
        "address": ip(last),
        "client_id": cid(client),
        "chaddr": cid(client)[1:],
        "state": state,
        "subnet": NET,
        "expires": NOW + 3600,
        "first_seen": NOW,
        "updated": NOW,
        "hostname": f"SEP00562B0000{client:02X}",
        "vendor_class": "Cisco Systems, Inc. IP Phone CP-8841-3PCC",
        "device_class": "mpp",
    }
    fields.update(kw)
    return Lease(**fields)  # type: ignore[arg-type]


@dataclass
class Backend:
    open: Callable[[], LeaseStore]
    # What another process would read from durable storage now; None for a non-durable backend.
    durable_view: Callable[[], list[Lease]] | None


@pytest.fixture(params=["memory", "sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "memory":
        return Backend(MemoryLeaseStore, None)
    if request.param == "postgresql":
        from bootstrapd.dhcp.store_postgres import open_postgres_store

        dsn = request.getfixturevalue("pg_dsn")

        def pg_view() -> list[Lease]:
            reader = open_postgres_store(dsn, "reader", readonly=True)
            try:
                return list(reader.iter_all())
            finally:
                reader.close()

        return Backend(lambda: open_postgres_store(dsn, "node-a"), pg_view)

    def durable_view() -> list[Lease]:
        reader = open_readonly(tmp_path / DB_NAME)
        try:
            return list(reader.iter_all())
        finally:
            reader.close()

    return Backend(lambda: open_store(tmp_path), durable_view)


@pytest.fixture
def store(backend: Backend) -> Iterator[LeaseStore]:
    s = backend.open()
    yield s
    s.close()


def reopen(backend: Backend, store: LeaseStore) -> LeaseStore:
    if not store.durable:
        pytest.skip("backend is not durable")
    store.close()
    return backend.open()


class TestLeaseStoreContract:
    def test_put_then_get_by_address_and_by_client(self, store: LeaseStore) -> None:
        record = lease(10, 1)
        store.put(record)
        assert store.get_by_address(ip(10)) == record
        assert store.get_by_client(cid(1)) == record
        assert store.get_by_address(ip(11)) is None
        assert store.get_by_client(cid(2)) is None

    def test_put_is_an_upsert_keyed_by_address(self, store: LeaseStore) -> None:
        store.put(lease(10, 1, LeaseState.OFFERED, expires=NOW + 30))
        renewed = lease(10, 1, expires=NOW + 7200, updated=NOW + 5, hostname=None)
        store.put(renewed)
        assert list(store.iter_all()) == [renewed]
        assert store.get_by_client(cid(1)) == renewed

    def test_a_client_holds_one_address_its_old_one_becomes_free(self, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        moved = lease(20, 1, LeaseState.OFFERED, updated=NOW + 10)
        store.put(moved)
        assert store.get_by_client(cid(1)) == moved
        old = store.get_by_address(ip(10))
        assert old is not None
        assert (old.client_id, old.state) == (ANONYMOUS, LeaseState.EXPIRED)
        assert old.is_free(NOW + 10)

    def test_a_declined_address_is_quarantined_not_the_clients_lease(self, store: LeaseStore) -> None:
        store.put(lease(10, 1, LeaseState.OFFERED, expires=NOW + 30))
        store.put(lease(10, 1, LeaseState.DECLINED, expires=NOW + 3600, updated=NOW + 1))
        assert store.get_by_client(cid(1)) is None
        declined = store.get_by_address(ip(10))
        assert declined is not None and not declined.is_free(NOW + 3599) and declined.is_free(NOW + 3600)
        with pytest.raises(LeaseConflict):
            store.put(lease(10, 2, LeaseState.OFFERED, updated=NOW + 60))
        # The declining client gets another address; its quarantine record stays.
        store.put(lease(11, 1, LeaseState.OFFERED, updated=NOW + 2))
        assert store.get_by_address(ip(10)) == declined

    def test_an_address_held_by_one_client_is_refused_to_another(self, store: LeaseStore) -> None:
        store.put(lease(10, 1, expires=NOW + 100))
        with pytest.raises(LeaseConflict):
            store.put(lease(10, 2, LeaseState.OFFERED, updated=NOW + 99))
        assert store.get_by_address(ip(10)) == lease(10, 1, expires=NOW + 100)
        taken = lease(10, 2, LeaseState.OFFERED, updated=NOW + 100)
        store.put(taken)  # the first lease ended
        assert store.get_by_address(ip(10)) == taken
        assert store.get_by_client(cid(1)) is None

    def test_released_frees_the_address_at_once(self, store: LeaseStore) -> None:
        store.put(lease(10, 1, expires=NOW + 3600))
        store.put(lease(10, 1, LeaseState.RELEASED, updated=NOW + 5))  # engine kept the old expires
        store.put(lease(10, 2, LeaseState.OFFERED, updated=NOW + 6))
        assert store.get_by_client(cid(2)) is not None

    def test_force_lets_a_reservation_take_its_address(self, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        store.put(lease(10, 2, updated=NOW + 1), force=True)
        assert store.get_by_client(cid(1)) is None
        assert store.get_by_client(cid(2)) == lease(10, 2, updated=NOW + 1)

    def test_expired_oldest_first_orders_free_records_by_free_time(self, store: LeaseStore) -> None:
        store.put(lease(1, 1, expires=NOW + 10))  # held
        store.put(lease(2, 2, expires=NOW - 50))  # lease ran out
        store.put(lease(3, 3, LeaseState.RELEASED, expires=NOW + 999, updated=NOW - 70))
        store.put(lease(4, 4, LeaseState.OFFERED, expires=NOW - 60))  # offer hold ended
        store.put(lease(5, 5, LeaseState.DECLINED, expires=NOW + 5))  # on probation
        store.put(lease(6, 6, LeaseState.DECLINED, expires=NOW - 60))  # probation over; ties by address
        store.put(lease(7, 7, expires=NOW - 500, subnet=OTHER_NET))  # other subnet
        order = [int(lease.address) & 0xFF for lease in store.expired_oldest_first(NET, NOW, 10)]
        assert order == [3, 4, 6, 2]
        assert [int(x.address) & 0xFF for x in store.expired_oldest_first(NET, NOW, 2)] == [3, 4]
        assert store.expired_oldest_first(NET, NOW - 1000, 10) == []

    def test_expired_oldest_first_matches_the_records_through_many_changes(self, store: LeaseStore) -> None:
        rng = random.Random(7)
        for step in range(6000):  # enough long leases rewritten to make an index compact itself
            client, address = rng.randrange(40), rng.randrange(1, 60)
            state = rng.choice(list(LeaseState))
            now = NOW + step
            expires = now + rng.choice((rng.randrange(-50, 50), 86400))
            record = lease(address, client, state, expires=expires, updated=now)
            with contextlib.suppress(LeaseConflict):
                store.put(record)
            if step % 97 == 0:
                store.delete(ip(rng.randrange(1, 60)))
            if step % 250 == 0:
                store.flush()
                probe = now + rng.randrange(-20, 20)
                expected = sorted(
                    (x for x in store.iter_subnet(NET) if x.is_free(probe)),
                    key=lambda x: (x.free_at, int(x.address)),
                )
                assert store.expired_oldest_first(NET, probe, 1000) == expected
                assert store.expired_oldest_first(NET, probe, 3) == expected[:3]

    def test_any_text_a_client_sends_round_trips(self, backend: Backend, store: LeaseStore) -> None:
        # Options 12 and 60 decode as latin-1: NUL and any octet are possible; a reservation's name is any text.
        odd = replace(lease(10, 1), hostname="a\x00b\xff", vendor_class="\x00é", chaddr=b"\x00" * 16)
        named = replace(lease(11, 2), hostname="téléphone-☎", vendor_class=None, device_class=None)
        store.put(odd)
        store.put(named)
        store.flush()
        if backend.durable_view is not None:
            assert backend.durable_view() == [odd, named]
        assert list(store.iter_all()) == [odd, named]

    def test_iteration_is_in_address_order_and_per_subnet(self, store: LeaseStore) -> None:
        for last in (30, 10, 20):
            store.put(lease(last, last))
        store.put(lease(5, 5, subnet=OTHER_NET, address=ip(5, net=1)))
        assert [x.address for x in store.iter_all()] == [ip(10), ip(20), ip(30), ip(5, net=1)]
        assert [x.address for x in store.iter_subnet(NET)] == [ip(10), ip(20), ip(30)]
        assert [x.address for x in store.iter_subnet(OTHER_NET)] == [ip(5, net=1)]

    def test_counts_report_states_as_of_now(self, store: LeaseStore) -> None:
        store.put(lease(1, 1))
        store.put(lease(2, 2, expires=NOW - 1))  # bound but past its end
        store.put(lease(3, 3, LeaseState.OFFERED, expires=NOW + 30))
        store.put(lease(4, 4, LeaseState.DECLINED))
        store.put(lease(5, 5, LeaseState.RELEASED))
        store.put(lease(6, 6, subnet=OTHER_NET))
        counts = store.counts(NET, NOW)
        assert counts == {
            LeaseState.OFFERED: 1,
            LeaseState.BOUND: 1,
            LeaseState.RELEASED: 1,
            LeaseState.EXPIRED: 1,
            LeaseState.DECLINED: 1,
        }
        assert store.counts("198.18.9.0/24", NOW) == dict.fromkeys(LeaseState, 0)

    def test_counts_follow_writes_and_time_as_a_full_count_does(self, store: LeaseStore) -> None:
        """The kept-up counts against a count over every record, through random writes, deletes, renewals
        to the same end, and a clock that moves forward, stands still and once goes back."""
        rng = random.Random(12)
        now = NOW
        for step in range(3000):
            last, client = rng.randrange(2, 60), rng.randrange(40)
            state = rng.choice(list(LeaseState))
            expires = now + rng.choice((-5.0, 0.0, 1.0, 3.0, 10.0, 60.0))
            op = rng.random()
            if op < 0.05:
                store.delete(ip(last))
            else:
                with contextlib.suppress(LeaseConflict):
                    store.put(lease(last, client, state, expires=expires, updated=now), force=op < 0.2)
            if step % 7 == 0:
                now += rng.choice((0.0, 0.5, 2.0))
            at = now - 30 if step == 1500 else now
            if step % 5 == 0 or step == 1500:
                full = dict.fromkeys(LeaseState, 0)
                for record in store.iter_subnet(NET):
                    full[effective_state(record, at)] += 1
                assert store.counts(NET, at) == full, step

    def test_delete_forgets_the_address_and_the_client(self, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        store.delete(ip(10))
        store.delete(ip(11))  # absent: nothing happens
        assert store.get_by_address(ip(10)) is None
        assert store.get_by_client(cid(1)) is None
        assert list(store.iter_all()) == []

    def test_reads_see_writes_before_flush(self, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        store.put(lease(10, 1, expires=NOW + 10))
        assert store.get_by_address(ip(10)) == lease(10, 1, expires=NOW + 10)
        assert store.get_by_client(cid(1)) == lease(10, 1, expires=NOW + 10)

    # Durable backends only (capability flag `durable`).

    def test_flushed_records_survive_reopen(self, backend: Backend, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        store.put(lease(20, 1, updated=NOW + 1))  # leaves an anonymous record at .10
        store.put(lease(30, 2, LeaseState.DECLINED))
        store.flush()
        before = list(store.iter_all())
        again = reopen(backend, store)
        try:
            assert list(again.iter_all()) == before
            assert again.get_by_client(cid(1)) == lease(20, 1, updated=NOW + 1)
            assert again.get_by_client(cid(2)) is None
        finally:
            again.close()

    def test_flush_makes_a_burst_durable_at_once(self, backend: Backend, store: LeaseStore) -> None:
        if backend.durable_view is None:
            pytest.skip("backend is not durable")
        store.put(lease(1, 1))
        store.flush()
        burst = [lease(n, n) for n in range(2, 12)]
        for record in burst:
            store.put(record)
        assert backend.durable_view() == [lease(1, 1)]
        store.flush()
        assert backend.durable_view() == [lease(1, 1), *burst]
        store.flush()  # nothing pending: no-op

    def test_offers_are_held_in_memory_but_never_written(self, backend: Backend, store: LeaseStore) -> None:
        if backend.durable_view is None or store.shared:
            pytest.skip("backend is not durable, or shared (offers are written)")
        store.put(lease(1, 1))
        store.put(lease(2, 2, LeaseState.OFFERED))
        assert store.get_by_address(ip(2)) == lease(2, 2, LeaseState.OFFERED)  # the hold works at once
        store.flush()
        assert backend.durable_view() == [lease(1, 1)]  # a DISCOVER costs no disk write
        store.put(lease(2, 2))  # the REQUEST's ACK
        store.flush()
        assert backend.durable_view() == [lease(1, 1), lease(2, 2)]

    def test_a_shared_store_writes_offers_for_the_other_nodes(self, backend: Backend, store: LeaseStore) -> None:
        if backend.durable_view is None or not store.shared:
            pytest.skip("only a shared store writes offers")
        store.put(lease(2, 2, LeaseState.OFFERED, expires=NOW + 30))
        assert store.flush() == frozenset()
        assert backend.durable_view() == [lease(2, 2, LeaseState.OFFERED, expires=NOW + 30)]

    def test_flush_reports_no_lost_race_without_another_writer(self, store: LeaseStore) -> None:
        for n in range(1, 6):
            store.put(lease(n, n))
        assert store.flush() == frozenset()
        store.refresh()  # nothing from anyone else: the reads stay as they are
        assert [x.client_id for x in store.iter_all()] == [cid(n) for n in range(1, 6)]

    def test_close_flushes(self, backend: Backend, store: LeaseStore) -> None:
        store.put(lease(10, 1))
        again = reopen(backend, store)
        try:
            assert again.get_by_address(ip(10)) == lease(10, 1)
        finally:
            again.close()


class TestSqliteStore:
    def test_a_second_writer_is_refused(self, tmp_path: Path) -> None:
        first = open_store(tmp_path)
        try:
            with pytest.raises(StoreError, match="in use"):
                open_store(tmp_path)
        finally:
            first.close()
        open_store(tmp_path).close()  # the lock went with the first store

    def test_readers_see_flushed_leases_while_the_daemon_writes(self, tmp_path: Path) -> None:
        writer = open_store(tmp_path)
        try:
            writer.put(lease(10, 1))
            writer.flush()
            writer.put(lease(11, 2))  # an open write transaction while the reader opens
            reader = open_readonly(tmp_path / DB_NAME)
            assert list(reader.iter_all()) == [lease(10, 1)]
            with pytest.raises(StoreError, match="read-only"):
                reader.put(lease(12, 3))
            reader.close()
        finally:
            writer.close()

    def test_commit_then_sync_from_another_thread_covers_every_earlier_commit(self, tmp_path: Path) -> None:
        store = open_store(tmp_path)
        try:
            assert store.commit() == 0  # nothing pending
            store.put(lease(10, 1))
            first = store.commit()
            store.put(lease(11, 2))
            second = store.commit()
            assert 0 < first < second
            reader = open_readonly(tmp_path / DB_NAME)  # committed: other processes see it before the sync
            assert [x.address for x in reader.iter_all()] == [ip(10), ip(11)]
            reader.close()
            synced: list[int] = []
            thread = threading.Thread(target=lambda: synced.append(store.sync(first)))  # as the shell's thread
            thread.start()
            thread.join()
            assert synced == [second]  # the one fdatasync made both commits durable
            assert store.sync(second) == second
            store.put(lease(12, 3))
            assert store.flush() == frozenset() and store.commit() == 0  # flush() committed (and synced) it
        finally:
            store.close()

    def test_a_failed_write_leaves_the_durable_state_visible(self, tmp_path: Path) -> None:
        store = open_store(tmp_path, busy_timeout=0.05)
        outsider = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        try:
            store.put(lease(10, 1))
            store.flush()
            outsider.execute("BEGIN IMMEDIATE")  # e.g. an admin's sqlite3 shell holding the write lock
            with pytest.raises(StoreError):
                store.put(lease(20, 2))
            assert list(store.iter_all()) == [lease(10, 1)]
            outsider.execute("ROLLBACK")
            store.put(lease(20, 2))
            store.flush()
            assert [x.address for x in store.iter_all()] == [ip(10), ip(20)]
        finally:
            outsider.close()
            store.close()

    def test_a_failed_write_discards_the_unflushed_burst(self, tmp_path: Path) -> None:
        store = open_store(tmp_path)
        outsider = sqlite3.connect(tmp_path / DB_NAME, isolation_level=None)
        try:
            store.put(lease(10, 1))
            store.flush()
            # The database itself refuses one row, as a full disk would refuse a page.
            outsider.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON leases WHEN NEW.address = {int(ip(30))}"
                " BEGIN SELECT RAISE(ABORT, 'refused'); END"
            )
            store.put(lease(20, 2))
            with pytest.raises(StoreError):
                store.put(lease(30, 3))
            # Nothing of the burst is shown as leased: the shell sends none of its replies.
            assert list(store.iter_all()) == [lease(10, 1)]
            assert store.get_by_client(cid(2)) is None
            outsider.execute("DROP TRIGGER refuse")
            store.put(lease(30, 3))
            store.flush()
            assert [x.address for x in store.iter_all()] == [ip(10), ip(30)]
        finally:
            outsider.close()
            store.close()

    def test_a_store_with_the_old_indexes_keeps_its_leases_and_loses_the_indexes(self, tmp_path: Path) -> None:
        store = open_store(tmp_path)
        store.put(lease(10, 1))
        store.close()
        with sqlite3.connect(tmp_path / DB_NAME) as conn:  # as stores were made before the indexes went
            conn.execute("CREATE INDEX leases_client ON leases (client_id)")
            conn.execute("CREATE INDEX leases_free ON leases (subnet, free_at)")
        conn.close()
        store = open_store(tmp_path)
        try:
            assert list(store.iter_all()) == [lease(10, 1)]
            store.put(lease(11, 2))
            store.flush()
        finally:
            store.close()
        with sqlite3.connect(tmp_path / DB_NAME) as conn:
            assert conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall() == []
            assert conn.execute("SELECT count(*) FROM leases").fetchone() == (2,)
        conn.close()

    def test_a_newer_schema_is_refused(self, tmp_path: Path) -> None:
        open_store(tmp_path).close()
        with sqlite3.connect(tmp_path / DB_NAME) as conn:
            conn.execute("PRAGMA user_version = 99")
        conn.close()
        with pytest.raises(StoreError, match="newer"):
            open_store(tmp_path)
        with pytest.raises(StoreError, match="no lease store"):
            open_readonly(tmp_path / "missing.sqlite3")

    def test_records_round_trip_every_field(self, tmp_path: Path) -> None:
        odd = replace(lease(10, 1), hostname=None, vendor_class=None, device_class=None, chaddr=b"\x01" * 16)
        store = open_store(tmp_path)
        store.put(odd)
        store.close()
        reader = open_readonly(tmp_path / DB_NAME)
        try:
            assert reader.get_by_address(ip(10)) == odd
        finally:
            reader.close()


class TestWalCheckpoints:
    """The daemon's COMMITs never checkpoint (that copy and its fsyncs held the event loop for 100-460 ms);
    the checkpoint thread keeps the WAL bounded instead, and nothing is lost either way."""

    @staticmethod
    def _write(store: SqliteLeaseStore, first: int, count: int) -> None:
        for n in range(first, first + count):
            store.put(lease(n % 250 + 2, n % 200, expires=NOW + n, hostname=f"SEP{n:012X}" + "x" * 200))
            store.commit()

    def test_commits_leave_the_wal_to_the_checkpoint_thread(self, tmp_path: Path) -> None:
        path, wal = tmp_path / DB_NAME, tmp_path / f"{DB_NAME}-wal"
        store = open_store(tmp_path)
        try:
            store.checkpoint_in_background(interval=3600.0)  # the thread waits: only the COMMITs could copy
            db_size = path.stat().st_size
            self._write(store, 0, 1500)
            # SQLite's own checkpoint would have started the WAL over at 1,000 pages (4 MB).
            assert wal.stat().st_size > 1500 * 4096
            assert path.stat().st_size == db_size
            thread = WalCheckpointer(path, interval=0.02)
            try:
                deadline = time.monotonic() + 10
                while thread.checkpoints == 0 and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert thread.checkpoints >= 1 and thread.failures == 0
                assert path.stat().st_size > db_size  # the WAL's pages are in the database now
                wal_size = wal.stat().st_size
                self._write(store, 1500, 500)  # the writer starts the copied WAL over: it does not grow
                assert wal.stat().st_size == wal_size
            finally:
                thread.close()
            self._write(store, 2000, 10)
        finally:
            store.close()
        reopened = open_store(tmp_path)
        try:
            assert len(reopened) == 250
            assert reopened.get_by_address(ip(2 + 2009 % 250)) == lease(
                2 + 2009 % 250, 2009 % 200, expires=NOW + 2009, hostname=f"SEP{2009:012X}" + "x" * 200)
        finally:
            reopened.close()

    def test_the_wal_stays_bounded_under_steady_commits(self, tmp_path: Path) -> None:
        """Under steady writes the thread's copy always misses the latest frames, and the writer starts the WAL
        over only after a complete one: without the tail the owner runs after a COMMIT, the file grew by
        every commit (8 KB each here: 48 MB for these 6,000)."""
        wal = tmp_path / f"{DB_NAME}-wal"
        store = open_store(tmp_path)
        try:
            store.checkpoint_in_background(interval=0.02)
            largest = 0
            for n in range(6000):
                store.put(lease(n % 250 + 2, n % 200, expires=NOW + n, hostname=f"SEP{n:012X}" + "x" * 200))
                store.commit()
                if n % 500 == 0:
                    largest = max(largest, wal.stat().st_size)
            assert max(largest, wal.stat().st_size) < 3000 * 4096  # about TAIL_FRAMES and one interval's writes
            checkpointer = store._checkpointer
            assert checkpointer is not None and checkpointer.tails >= 1 and checkpointer.failures == 0
        finally:
            store.close()
