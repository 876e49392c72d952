"""The sink's admission rules: staging subnets only, bounded size, a token bucket per source, a bounded table."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

from bootstrapd.syslog import MAX_DATAGRAM, Admission, DropReason

NETS = [IPv4Network("198.18.0.0/23"), IPv4Network("198.18.2.0/24")]
PHONE = IPv4Address("198.18.0.120")


def test_foreign_sources_are_refused_and_get_no_bucket() -> None:
    a = Admission(NETS, rate=10)
    for addr in ("198.18.3.1", "10.0.0.1", "198.18.2.255"):
        expected = None if addr == "198.18.2.255" else DropReason.FOREIGN_SOURCE
        assert a.admit(0.0, IPv4Address(addr), 100) is expected
    assert len(a) == 1


def test_size_bounds() -> None:
    a = Admission(NETS, rate=10)
    assert a.admit(0.0, PHONE, MAX_DATAGRAM) is None
    assert a.admit(0.0, PHONE, MAX_DATAGRAM + 1) is DropReason.OVERSIZED
    assert a.admit(0.0, PHONE, 0) is DropReason.EMPTY


def test_rate_limit_per_source_refills_over_time() -> None:
    a = Admission(NETS, rate=100)
    results = [a.admit(0.0, PHONE, 10) for _ in range(150)]
    assert results.count(None) == 100  # a full bucket is one second's worth
    assert results.count(DropReason.RATE_LIMITED) == 50
    assert a.admit(0.0, IPv4Address("198.18.0.121"), 10) is None  # another phone has its own bucket
    assert a.admit(0.005, PHONE, 10) is DropReason.RATE_LIMITED  # half a token
    assert a.admit(0.01, PHONE, 10) is None  # one token after 10 ms at 100/s
    assert [a.admit(10.0, PHONE, 10) for _ in range(100)] == [None] * 100  # refilled, capped at the burst
    assert a.admit(10.0, PHONE, 10) is DropReason.RATE_LIMITED


def test_clock_stepping_back_refills_nothing() -> None:
    a = Admission(NETS, rate=1)
    assert a.admit(100.0, PHONE, 10) is None
    assert a.admit(50.0, PHONE, 10) is DropReason.RATE_LIMITED


def test_table_is_bounded_least_recent_first() -> None:
    a = Admission(NETS, rate=1, max_sources=3)
    first, *others = (IPv4Address(f"198.18.0.{i}") for i in range(10, 14))
    assert a.admit(0.0, first, 10) is None
    assert a.admit(0.0, first, 10) is DropReason.RATE_LIMITED  # its bucket is empty
    for addr in others:
        assert a.admit(0.0, addr, 10) is None
    assert len(a) == 3
    assert a.admit(0.0, first, 10) is None  # forgotten, so it came back with a full bucket


def test_reconfigure_changes_subnets_and_rate() -> None:
    a = Admission(NETS, rate=1)
    a.reconfigure([IPv4Network("198.18.2.0/24")], rate=5)
    assert a.admit(0.0, PHONE, 10) is DropReason.FOREIGN_SOURCE
    relayed = IPv4Address("198.18.2.50")
    assert [a.admit(0.0, relayed, 10) for _ in range(6)].count(None) == 5
