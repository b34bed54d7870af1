"""Leak verdicts: Theil-Sen, Mann-Kendall and the decision rules on synthetic series."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from conductor_perf.measure.leak import leak_verdict, mann_kendall, theil_sen

SEEDS = range(200)


def test_theil_sen_recovers_an_exact_line() -> None:
    xs = [0, 1, 2, 3, 4]
    slope, intercept = theil_sen(xs, [3 + 2 * x for x in xs])
    assert slope == pytest.approx(2.0)
    assert intercept == pytest.approx(3.0)


def test_theil_sen_ignores_a_single_spike() -> None:
    xs = list(range(10))
    ys = [100.0 + 0.5 * x for x in xs]
    ys[4] += 500.0  # one GC / allocator spike
    slope, _ = theil_sen(xs, ys)
    assert slope == pytest.approx(0.5, abs=0.1)


def test_theil_sen_rejects_degenerate_input() -> None:
    with pytest.raises(ValueError):
        theil_sen([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError):
        theil_sen([1, 2], [1])


def _brute_force_p(ys: list[float]) -> float:
    """P(S >= s) over all permutations of ys (exact null distribution, no ties)."""

    def s_of(seq: tuple[float, ...]) -> int:
        return sum((b > a) - (b < a) for a, b in itertools.combinations(seq, 2))

    s = s_of(tuple(ys))
    perms = list(itertools.permutations(ys))
    return sum(1 for p in perms if s_of(p) >= s) / len(perms)


@pytest.mark.parametrize("ys", [[1, 2, 3, 4, 5], [2, 1, 3, 5, 4], [5, 4, 3, 2, 1], [3, 1, 4, 5, 2, 6]])
def test_mann_kendall_exact_p_matches_enumeration(ys: list[float]) -> None:
    result = mann_kendall(ys)
    assert result.exact
    assert result.p_value == pytest.approx(_brute_force_p(ys))


def test_mann_kendall_monotone_series() -> None:
    assert mann_kendall([1, 2, 3, 4]).p_value == pytest.approx(1 / 24)
    assert mann_kendall(list(range(6))).p_value == pytest.approx(1 / math.factorial(6))
    assert mann_kendall(list(range(6, 0, -1))).p_value == pytest.approx(1.0)


def test_mann_kendall_with_ties_uses_the_normal_approximation() -> None:
    rising = mann_kendall([10, 10, 11, 11, 12, 12, 13, 13, 14, 14])
    assert not rising.exact
    assert rising.p_value < 0.001
    assert mann_kendall([7, 7, 7, 7, 7]).p_value == 1.0


def test_flat_series_is_ok() -> None:
    v = leak_verdict([100.0] * 8, baseline=100.0, tolerance_abs=2.0, name="RSS", unit="MiB")
    assert v.verdict == "ok"
    assert not v.leaked
    assert v.slope_per_cycle == 0.0
    assert v.reasons == []


def test_growing_series_is_a_leak_with_figures_in_the_message() -> None:
    ys = [100.0 + 2.0 * i for i in range(8)]
    v = leak_verdict(ys, baseline=100.0, tolerance_abs=5.0, name="RSS", unit="MiB")
    assert v.verdict == "leak"
    assert set(v.reasons) == {"trend", "no-return"}
    assert v.slope_per_cycle == pytest.approx(2.0)
    assert v.total_growth == pytest.approx(14.0)
    assert v.p_value < 0.001
    assert "+2 MiB/cycle" in v.message
    assert "tolerance 5 MiB" in v.message
    assert "baseline 100 MiB" in v.message


def test_noisy_but_flat_series_is_ok() -> None:
    """Noise (sd 5 MiB) larger than any trend: at most 5 % false alarms over 200 seeds."""
    false_alarms = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        ys = [200.0 + rng.gauss(0.0, 5.0) for _ in range(10)]
        false_alarms += leak_verdict(ys, baseline=200.0, tolerance_abs=10.0, unit="MiB").leaked
    assert false_alarms / len(SEEDS) <= 0.05
    rng = random.Random(1)
    one = [200.0 + rng.gauss(0.0, 5.0) for _ in range(10)]
    assert leak_verdict(one, baseline=200.0, tolerance_abs=10.0).verdict == "ok"


def test_noisy_flat_series_without_baseline_alarms_at_most_alpha() -> None:
    false_alarms = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        ys = [50.0 + rng.gauss(0.0, 3.0) for _ in range(12)]
        false_alarms += leak_verdict(ys, tolerance_abs=0.0, alpha=0.05).leaked
    assert false_alarms / len(SEEDS) <= 0.08  # alpha 0.05 plus sampling slack over 200 seeds


def test_small_steady_growth_is_caught() -> None:
    """0.5 MiB per cycle under 0.3 MiB noise: 4.5 MiB over 10 cycles, tolerance 2 MiB."""
    caught = 0
    for seed in SEEDS:
        rng = random.Random(seed)
        ys = [300.0 + 0.5 * i + rng.gauss(0.0, 0.3) for i in range(10)]
        v = leak_verdict(ys, tolerance_abs=2.0, unit="MiB")
        caught += v.leaked and "trend" in v.reasons
    assert caught / len(SEEDS) >= 0.95


def test_tiny_monotonic_drift_below_tolerance_is_ok() -> None:
    ys = [100.0 + 0.01 * i for i in range(10)]  # significant, but 0.09 in total
    v = leak_verdict(ys, tolerance_abs=1.0)
    assert v.p_value < 0.001
    assert v.verdict == "ok"


def test_min_slope_per_cycle_gates_the_trend() -> None:
    ys = [100.0 + 1.0 * i for i in range(10)]
    assert leak_verdict(ys, tolerance_abs=2.0, min_slope_per_cycle=0.5).leaked
    assert not leak_verdict(ys, tolerance_abs=2.0, min_slope_per_cycle=1.5).leaked


def test_level_that_does_not_return_to_baseline_is_a_leak() -> None:
    # one step up after the third cycle, then flat: no trend to speak of at the end, but no return
    ys = [100.0, 100.5, 99.8, 130.0, 130.2, 129.9, 130.1, 130.0]
    v = leak_verdict(ys, baseline=100.0, tolerance_abs=5.0, unit="MiB")
    assert v.verdict == "leak"
    assert "no-return" in v.reasons
    assert v.last_level == pytest.approx(130.0)


def test_level_back_at_baseline_is_ok() -> None:
    ys = [104.0, 101.0, 100.5, 100.2, 100.4, 100.1, 100.3, 100.2]
    v = leak_verdict(ys, baseline=100.0, tolerance_abs=2.0, unit="MiB")
    assert v.verdict == "ok"


def test_relative_tolerance_uses_the_baseline() -> None:
    ys = [1000.0 + 4.0 * i for i in range(8)]  # +28 over the series
    assert not leak_verdict(ys, baseline=1000.0, tolerance_rel=0.05).leaked  # tolerance 50
    v = leak_verdict(ys, baseline=1000.0, tolerance_rel=0.01)  # tolerance 10
    assert v.leaked
    assert v.tolerance == pytest.approx(10.0)


def test_integer_counts_with_ties() -> None:
    threads_flat = [20, 20, 21, 20, 20, 21, 20, 20]
    assert leak_verdict(threads_flat, baseline=20, tolerance_abs=2, name="threads").verdict == "ok"
    threads_growing = [20, 21, 22, 22, 23, 24, 25, 25, 26, 27]
    v = leak_verdict(threads_growing, baseline=20, tolerance_abs=2, name="threads")
    assert v.verdict == "leak"
    assert "threads +" in v.message


def test_custom_positions_give_slope_per_unit() -> None:
    minutes = [0, 5, 10, 15, 20, 25]
    ys = [100.0 + 0.2 * m for m in minutes]
    v = leak_verdict(ys, xs=minutes, tolerance_abs=1.0)
    assert v.slope_per_cycle == pytest.approx(0.2)
    assert v.total_growth == pytest.approx(5.0)
    assert v.leaked


def test_two_samples_can_only_fail_on_baseline() -> None:
    v = leak_verdict([100.0, 150.0], tolerance_abs=1.0)
    assert v.p_value == 1.0
    assert v.verdict == "ok"
    assert leak_verdict([100.0, 150.0], baseline=100.0, tolerance_abs=1.0).leaked
    with pytest.raises(ValueError):
        leak_verdict([1.0])


def test_verdict_serialises() -> None:
    d = leak_verdict([1.0, 2.0, 3.0, 4.0, 5.0, 6.0], tolerance_abs=1.0).to_dict()
    assert d["verdict"] == "leak"
    assert d["n"] == 6
    assert isinstance(d["message"], str)
