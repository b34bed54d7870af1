"""The Hodges-Lehmann ratio B/A and its interval, on known distributions.

Every sample is drawn from a seeded generator, so every count below is the same on every machine;
nothing is timed.
"""

from __future__ import annotations

import math
import random

import pytest

from conductor_perf import regression, stats
from conductor_perf.stats import ratio_interval, u_critical


def draw(n: int, seed: int, *, median: float = 1000.0, spread: float = 0.03, factor: float = 1.0) -> list[float]:
    """``n`` log-normal values around ``median * factor`` with a relative spread (sigma of the log)."""
    rng = random.Random(seed)
    return [median * factor * math.exp(rng.gauss(0.0, spread)) for _ in range(n)]


def test_critical_values_and_achieved_confidence():
    assert u_critical(5, 5) == (3, pytest.approx(1 - 2 * 4 / 252))  # P(U <= 2) = 4/252
    assert u_critical(4, 4) == (1, pytest.approx(1 - 2 / 70))
    assert u_critical(3, 3) == (0, 0.0)  # 3 + 3 values cannot give a 95 % interval
    k, achieved = u_critical(10, 10)
    assert k == 24 and 0.95 <= achieved < 0.96
    assert u_critical(60, 60)[0] == math.floor(1800 - 1.959964 * math.sqrt(3600 * 121 / 12))  # normal approx.


def test_a_known_ratio_is_estimated_with_an_interval_that_holds_it():
    a = [100.0, 102.0, 98.0, 101.0, 99.0]
    r = ratio_interval(a, [x * 1.25 for x in a])
    assert r.ratio == pytest.approx(1.25) and r.low <= 1.25 <= r.high and r.change == 1
    assert r.scale == "log" and (r.n_a, r.n_b) == (5, 5)
    r = ratio_interval(a, [x * 0.8 for x in a])
    assert r.ratio == pytest.approx(0.8) and r.change == -1 and r.high < 1


@pytest.mark.parametrize("shift_pct", [5, 10, 20])
def test_a_shift_of_k_percent_is_found(shift_pct):
    factor = 1 + shift_pct / 100
    found = covered = 0
    for seed in range(200):
        r = ratio_interval(draw(8, seed, spread=0.02), draw(8, 10_000 + seed, spread=0.02, factor=factor))
        found += r.change == 1
        covered += r.low <= factor <= r.high
    assert found >= 190  # with a 2 % spread, 8 rounds find it in at least 95 % of the runs
    assert covered >= 186  # and the interval holds the true ratio (95.9 % confidence for 8 + 8: 191.8 expected)


@pytest.mark.parametrize("shift_pct", [-10, 10])
def test_five_rounds_per_side_find_a_ten_percent_change_with_a_three_percent_spread(shift_pct):
    factor = 1 + shift_pct / 100
    changes = [ratio_interval(draw(5, s), draw(5, 500 + s, factor=factor)).change for s in range(200)]
    assert changes.count(1 if shift_pct > 0 else -1) >= 190 and changes.count(-1 if shift_pct > 0 else 1) == 0


def test_equal_samples_are_not_told_apart():
    assert ratio_interval([5.0] * 5, [5.0] * 5).change == 0
    r = ratio_interval([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])
    assert r.ratio == pytest.approx(1.0) and r.low < 1 < r.high and r.change == 0


@pytest.mark.parametrize("n", [5, 8])
def test_the_false_alarm_rate_of_equal_distributions_stays_below_one_minus_confidence(n):
    flagged = sum(ratio_interval(draw(n, s), draw(n, 90_000 + s)).change != 0 for s in range(1000))
    assert flagged <= 50  # at most 5 % (the 5 + 5 interval has 96.8 % confidence: 3.2 % expected)


def test_one_disturbed_round_does_not_make_a_change():
    a = draw(5, 1)
    b = draw(5, 2)
    b[3] *= 0.5  # a neighbour took the CPU in one round of B
    assert ratio_interval(a, b).change == 0


def test_detectable_is_the_change_that_just_moves_the_interval_off_one():
    a, b = draw(6, 3), draw(6, 4)
    r = ratio_interval(a, b)
    assert r.change == 0 and 0 < r.detectable < 0.2
    bigger = 1 + r.detectable * 1.001  # B stretched by a bit more than the detectable change
    up = ratio_interval(a, [x * bigger / r.ratio for x in b])
    down = ratio_interval(a, [x / bigger / r.ratio for x in b])
    assert (up.change, down.change) == (1, -1)
    smaller = 1 + r.detectable * 0.9
    assert ratio_interval(a, [x * smaller / r.ratio for x in b]).change == 0


def test_too_few_values_give_no_interval():
    r = ratio_interval([1.0, 1.1, 0.9], [2.0, 2.1, 1.9])
    assert r.ratio == pytest.approx(2.0, rel=0.05) and r.low is None and r.high is None
    assert r.change == 0 and r.detectable is None and r.confidence == 0.0
    assert r.to_dict()["shift_low"] is None  # JSON has no infinity


def test_zero_values_use_the_linear_scale():
    r = ratio_interval([0, 0, 0, 0, 0], [0, 0, 0, 0, 0])
    assert r.scale == "linear" and r.ratio is None and r.change == 0
    r = ratio_interval([0.0] * 5, [2.0, 3.0, 2.5, 4.0, 3.5])  # errors appear in every round of B
    assert r.change == 1 and r.ratio is None
    r = ratio_interval([10.0, 0.0, 10.0, 10.0, 10.0], [10.0, 10.0, 0.0, 10.0, 10.0])
    assert r.scale == "linear" and r.ratio == pytest.approx(1.0) and r.change == 0


def test_bad_input():
    with pytest.raises(ValueError, match="A has 0, B has 2"):
        ratio_interval([], [1, 2])
    assert ratio_interval([1, None, "x", math.inf, 2, 3, 4, 5], [1, 2, 3, 4, 5]).n_a == 5


def test_the_gate_uses_the_same_rank_test():
    assert regression.mann_whitney_u is stats.mann_whitney_u
    assert regression.min_attainable_p is stats.min_attainable_p
