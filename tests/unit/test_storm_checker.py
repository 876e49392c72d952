"""The duplicate-address checker of the storm test (tests/integration/storm.py): it must find what it is for."""

from tests.integration.storm import duplicates, holdings

X, Y = "198.18.0.100", "198.18.0.101"


def test_renewals_extend_a_holding_and_a_release_or_nak_ends_it() -> None:
    events = [
        ["ack", "c1", X, 0.0, 0.1, 30], ["ack", "c1", X, 15.0, 15.1, 30],  # a renewal: one holding to 45
        ["ack", "c2", Y, 1.0, 1.1, 30], ["release", "c2", Y, 5.0],
        ["ack", "c3", Y, 6.0, 6.2, 30], ["nak", "c3", 20.0],
    ]  # fmt: skip
    assert sorted(holdings(events)) == [("c1", X, 0.1, 45.0), ("c2", Y, 1.1, 5.0), ("c3", Y, 6.2, 20.0)]
    assert duplicates(events) == []


def test_two_clients_on_one_address_at_once_are_found_and_back_to_back_are_not() -> None:
    back_to_back = [["ack", "c1", X, 0.0, 0.1, 30], ["ack", "c2", X, 29.0, 30.2, 30]]
    assert duplicates(back_to_back) == []  # c1's lease ran from its REQUEST at 0: over at 30
    overlapping = [["ack", "c1", X, 0.0, 0.1, 30], ["ack", "c2", X, 10.0, 10.1, 30]]
    assert duplicates(overlapping) == [(("c1", X, 0.1, 30.0), ("c2", X, 10.1, 40.0))]
    moved = [["ack", "c1", X, 0.0, 0.1, 30], ["ack", "c1", Y, 5.0, 5.1, 30], ["ack", "c2", X, 6.0, 6.1, 30]]
    assert duplicates(moved) == []  # c1 took another address: it let X go
