"""RFC 2782 target selection of the simulated phones: priority first, then weighted random, all targets once."""

from __future__ import annotations

import collections
import math
import random

import pytest

from bootstrapd.sim.srv import SrvTarget, rfc2782_order

PROV1 = SrvTarget(10, 60, 443, "prov1.staging.example.net")
PROV2 = SrvTarget(10, 20, 443, "prov2.staging.example.net")


def first_choices(records: list[SrvTarget], trials: int, seed: int) -> collections.Counter[str]:
    rng = random.Random(seed)
    return collections.Counter(rfc2782_order(records, rng)[0].target for _ in range(trials))


def within_binomial(count: int, trials: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(count - trials * p) <= sigmas * math.sqrt(trials * p * (1 - p))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_weights_60_20_split_500_selections_3_to_1(seed: int) -> None:
    counts = first_choices([PROV1, PROV2], 500, seed)
    assert counts[PROV1.target] + counts[PROV2.target] == 500
    assert within_binomial(counts[PROV1.target], 500, 60 / 80), counts


def test_the_split_does_not_depend_on_record_order() -> None:
    counts = first_choices([PROV2, PROV1], 500, 4)
    assert within_binomial(counts[PROV1.target], 500, 60 / 80), counts


def test_weight_zero_is_rarely_first() -> None:
    zero, heavy = SrvTarget(10, 0, 443, "zero"), SrvTarget(10, 100, 443, "heavy")
    counts = first_choices([heavy, zero], 2000, 5)
    # RFC 2782: a number in [0, 100] picks the zero-weight record (listed first) only when it is 0.
    assert within_binomial(counts["zero"], 2000, 1 / 101), counts


def test_equal_zero_weights_are_chosen_evenly() -> None:
    a, b = SrvTarget(10, 0, 80, "a"), SrvTarget(10, 0, 80, "b")
    counts = first_choices([a, b], 500, 6)
    assert within_binomial(counts["a"], 500, 0.5), counts


def test_lower_priority_always_first_and_every_target_once() -> None:
    backup = SrvTarget(20, 0, 443, "backup")
    rng = random.Random(7)
    for _ in range(200):
        order = rfc2782_order([backup, PROV2, PROV1], rng)
        assert sorted(t.target for t in order) == sorted(["backup", PROV1.target, PROV2.target])
        assert order[-1] == backup  # priority 20 only after both priority-10 targets failed


def test_dot_target_means_no_service() -> None:
    assert rfc2782_order([SrvTarget(0, 0, 0, ".")], random.Random(0)) == []
    assert rfc2782_order([], random.Random(0)) == []
