"""Regression gate: rank test, effect size, gates, run comparison, A/A noise floor and the compare CLI.

All samples are synthetic and seeded: nothing here depends on how fast the machine is.
"""

from __future__ import annotations

import json
import math
import random
import re

import pytest

from conductor_perf import history, regression, report_cli, stats
from conductor_perf.records import MetricRecord, RunResults
from conductor_perf.regression import Gate, compare, effect_size, mann_whitney_u, noise_floor, parse_gate


def gauss(mean: float, rel_sd: float, n: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    return [rng.gauss(mean, mean * rel_sd) for _ in range(n)]


# -- Mann-Whitney U ---------------------------------------------------------------------------------


def test_exact_p_for_fully_separated_samples():
    u, p = mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10])[:2]
    assert u == 0
    assert p == pytest.approx(2 / math.comb(10, 5))  # 0.0079, the smallest possible for 5+5
    u2, p2 = mann_whitney_u([6, 7, 8, 9, 10], [1, 2, 3, 4, 5])[:2]
    assert u2 == 25 and p2 == pytest.approx(p)


def test_exact_p_matches_a_hand_computed_case():
    # a = [1, 4], b = [2, 3, 5]: U_a = 0 + 2 = 2; U over C(5,2)=10 arrangements: counts 1,1,2,2,2,1,1
    res = mann_whitney_u([1, 4], [2, 3, 5])
    assert res.u == 2 and res.method == "exact"
    assert res.p == pytest.approx(2 * (1 + 1 + 2) / 10)


def test_u_distribution_is_symmetric_and_complete():
    for n, m in ((1, 1), (3, 4), (7, 5), (10, 10)):
        d = stats._u_distribution(n, m)
        assert sum(d) == math.comb(n + m, n)
        assert d == d[::-1]


def test_normal_approximation_with_ties_matches_the_textbook_formula():
    res = mann_whitney_u([1, 2, 2, 3, 4, 5, 9], [2, 3, 3, 6, 7, 8, 10, 11])
    assert res.method == "normal"
    assert res.u == 15
    assert res.p == pytest.approx(0.14511, abs=1e-4)  # scipy.stats.mannwhitneyu(..., method="asymptotic")


def test_identical_and_empty_samples():
    assert mann_whitney_u([3, 3, 3], [3, 3, 3]).p == 1.0
    assert mann_whitney_u([1, 2, 3], [1, 2, 3]).p == 1.0
    assert mann_whitney_u([], [1, 2]).p == 1.0


def test_large_samples_use_the_normal_approximation_quickly():
    a, b = gauss(100, 0.1, 400, 1), gauss(105, 0.1, 400, 2)
    res = mann_whitney_u(a, b)
    assert res.method == "normal" and 0 <= res.p < 0.01


def test_min_attainable_p():
    assert regression.min_attainable_p(3, 3) == pytest.approx(0.1)
    assert regression.min_attainable_p(4, 4) == pytest.approx(2 / 70)
    assert regression.min_attainable_p(1, 30) > 0.05  # one baseline value can never be significant


# -- effect size ------------------------------------------------------------------------------------


def test_effect_size_on_shifted_equal_and_reversed_samples():
    base = [10.0, 11, 12, 13, 14]
    up = [x + 10 for x in base]
    e = effect_size(base, up)
    assert e.cliffs_delta == 1.0
    assert e.hodges_lehmann == pytest.approx(10.0)
    assert e.delta_pct == pytest.approx(10 / 12 * 100)
    assert effect_size(up, base).cliffs_delta == -1.0
    same = effect_size(base, base)
    assert same.cliffs_delta == 0.0 and same.delta_pct == 0.0 and same.hodges_lehmann == 0.0


def test_effect_size_handles_zero_baseline_and_empty():
    assert effect_size([0, 0], [0, 0]).delta_pct == 0.0
    assert effect_size([0, 0], [1, 1]).delta_pct is None
    assert effect_size([], [1]).cliffs_delta is None


# -- compare ----------------------------------------------------------------------------------------


def test_equal_distributions_are_the_same():
    c = compare(gauss(10, 0.03, 10, 1), gauss(10, 0.03, 10, 2), higher_is_better=False, unit="ms")
    assert c.verdict == "same" and c.reason == "ok"
    assert c.p is not None and c.p > 0.05


def test_latency_clearly_up_is_a_regression_and_down_an_improvement():
    base, slow = gauss(10, 0.02, 10, 1), gauss(12, 0.02, 10, 2)
    c = compare(base, slow, higher_is_better=False, unit="ms")
    assert c.verdict == "regression" and c.p < 0.001 and c.delta_pct == pytest.approx(20, abs=3)
    assert "regression" in c.message and "ms" in c.message
    assert compare(slow, base, higher_is_better=False).verdict == "improvement"


def test_throughput_clearly_down_is_a_regression_and_up_an_improvement():
    base, low = gauss(1000, 0.02, 8, 3), gauss(850, 0.02, 8, 4)
    assert compare(base, low, higher_is_better=True).verdict == "regression"
    assert compare(low, base, higher_is_better=True).verdict == "improvement"


def test_noisy_overlapping_samples_are_the_same_even_with_a_large_median_change():
    # 8 % apart in the medians but 30 % noise: not significant
    base = [100, 140, 70, 120, 90, 60, 130, 105]
    cur = [108, 150, 75, 128, 95, 66, 139, 115]
    c = compare(base, cur, higher_is_better=False)
    assert c.verdict == "same" and c.p > 0.05
    assert "not significant" in c.message


def test_significant_but_tiny_change_is_the_same():
    base = [100.0 + i * 0.01 for i in range(10)]
    cur = [101.0 + i * 0.01 for i in range(10)]  # +1 %, perfectly separated
    c = compare(base, cur, higher_is_better=False, min_effect=0.05)
    assert c.p < 0.001 and c.verdict == "same"
    assert "below median:5%" in c.message
    assert compare(base, cur, higher_is_better=False, min_effect=0.005).verdict == "regression"


def test_single_values_or_too_few_samples_cannot_be_significant():
    one = compare([10.0], [50.0], higher_is_better=False)
    assert one.verdict == "same" and one.reason == "insufficient samples" and one.p is None
    three = compare([1, 2, 3], [10, 11, 12], higher_is_better=False)
    assert three.reason == "insufficient samples"
    assert compare([1, 2, 3, 4], [10, 11, 12, 13], higher_is_better=False).verdict == "regression"


def test_unknown_direction_never_fails_the_gate():
    c = compare(gauss(10, 0.01, 8, 1), gauss(20, 0.01, 8, 2), higher_is_better=None)
    assert c.verdict == "same" and c.reason == "direction unknown"


def test_gates_and_noise_floor_raise_the_bar():
    base, cur = gauss(100, 0.01, 10, 5), gauss(108, 0.01, 10, 6)  # +8 %
    assert compare(base, cur, higher_is_better=False, gate="median:5%").verdict == "regression"
    assert compare(base, cur, higher_is_better=False, gate="mean:10%").verdict == "same"
    assert compare(base, cur, higher_is_better=False, gate="mean:5").verdict == "regression"  # absolute ms
    assert compare(base, cur, higher_is_better=False, gate="max:20").verdict == "same"
    assert compare(base, cur, higher_is_better=False, noise=0.10).verdict == "same"
    assert compare(base, cur, higher_is_better=False, noise=0.10).threshold == "median:10%"


def test_aa_false_alarm_rate_stays_below_alpha():
    alarms = 0
    for seed in range(200):
        a, b = gauss(50, 0.10, 10, 2 * seed), gauss(50, 0.10, 10, 2 * seed + 1)
        alarms += compare(a, b, higher_is_better=False, min_effect=0.0).verdict != "same"
    assert alarms / 200 <= 0.08  # ≈ alpha for pure noise, with room for chance


@pytest.mark.parametrize(
    ("spec", "gate"),
    [
        ("mean:5%", Gate("mean", 0.05, True)),
        ("min:0.001", Gate("min", 0.001, False)),
        ("5%", Gate("median", 0.05, True)),
        ("MAX:2.5%", Gate("max", 0.025, True)),
    ],
)
def test_parse_gate(spec, gate):
    assert parse_gate(spec) == gate
    assert parse_gate(str(gate)) == gate


@pytest.mark.parametrize("bad", ["", "mean", "p95:5%", "mean:-5%", "mean:five"])
def test_parse_gate_rejects_nonsense(bad):
    with pytest.raises(ValueError):
        parse_gate(bad)


def test_gate_change_is_relative_or_absolute():
    assert Gate("mean", 0.05).change([10, 10], [11, 11]) == pytest.approx(0.1)
    assert Gate("mean", 0.5, relative=False).change([10, 10], [11, 11]) == pytest.approx(1.0)


# -- runs -------------------------------------------------------------------------------------------


def run_with(run_id: str, **metrics: tuple[str, str, list[float]]) -> RunResults:
    run = RunResults(run_id=run_id)
    for name, (unit, target, samples) in metrics.items():
        run.add(
            MetricRecord(
                "Suite",
                name,
                name,
                unit,
                sorted(samples)[len(samples) // 2],
                target=target or None,
                samples=samples if len(samples) > 1 else None,
            )
        )
    return run


def test_compare_runs_matches_by_key_and_uses_direction_from_target():
    base = run_with(
        "b",
        throughput=("msg/s", "> 1000 msg/s", gauss(1500, 0.02, 8, 1)),
        latency=("ms", "< 50 ms", gauss(20, 0.02, 8, 2)),
        single=("ms", "", [5.0]),
        gone=("ms", "", [1.0, 2.0]),
    )
    cur = run_with(
        "c",
        throughput=("msg/s", "> 1000 msg/s", gauss(1200, 0.02, 8, 3)),  # -20 %: regression
        latency=("ms", "< 50 ms", gauss(15, 0.02, 8, 4)),  # -25 % latency: improvement
        single=("ms", "", [9.0]),
        new=("ms", "", [1.0, 2.0]),
    )
    comps = {c.key[1]: c for c in regression.compare_runs(base, cur)}
    assert comps["throughput"].verdict == "regression"
    assert comps["latency"].verdict == "improvement"
    assert comps["single"].reason == "insufficient samples"
    assert comps["new"].reason == "no baseline"
    assert comps["gone"].reason == "not in current run"
    assert [c.key[1] for c in regression.regressions(comps.values())] == ["throughput"]
    table = regression.format_comparisons(list(comps.values()))
    assert "Suite / throughput / throughput" in table and "regression" in table


def test_noise_floor_of_an_aa_pair():
    a = [100, 102, 98, 101, 99]
    b = [101, 103, 99, 102, 100]
    nf = noise_floor(a, b)
    assert nf.median_delta_pct == pytest.approx(1.0)
    assert nf.mad_pct_a == pytest.approx(1.0) and nf.mad_pct_b == pytest.approx(1 / 101 * 100)
    assert nf.floor_pct == pytest.approx(1.0)
    assert nf.suggested_min_effect == pytest.approx(0.01)
    assert nf.p > 0.05
    with pytest.raises(ValueError):
        noise_floor([], [1])


def test_noise_floor_runs_skips_single_values():
    a = run_with("a", x=("ms", "", [1.0, 1.1, 0.9]), y=("ms", "", [3.0]))
    b = run_with("b", x=("ms", "", [1.0, 1.2, 1.0]), y=("ms", "", [3.0]))
    assert list(regression.noise_floor_runs(a, b)) == [("Suite", "x", "x")]


def test_comparability_warnings_name_what_differs():
    a, b = run_with("a"), run_with("b")
    assert regression.comparability_warnings(a, b) == []
    a.machine, b.machine = {"hostname": "x", "logical_cores": 2}, {"hostname": "y", "logical_cores": 2}
    a.tools, b.tools = {"aiohttp": "3.14.5"}, {"aiohttp": "3.15.0"}
    b.sut["version"] = "0.77"
    b.commit = {"sha": "abc", "dirty": True}
    warnings = regression.comparability_warnings(a, b)
    assert warnings == [
        "machine hostname differs: x vs y",
        "aiohttp version differs: 3.14.5 vs 3.15.0",
        "SUT version differs: None vs 0.77",
        "current run has uncommitted changes",
    ]


# -- CLI compare ------------------------------------------------------------------------------------


@pytest.fixture
def runs(tmp_path):
    base = run_with("20261127-100000-1", latency=("ms", "< 50 ms", gauss(20, 0.02, 8, 1)))
    same = run_with("20261127-110000-2", latency=("ms", "< 50 ms", gauss(20, 0.02, 8, 2)))
    slow = run_with("20261127-120000-3", latency=("ms", "< 50 ms", gauss(26, 0.02, 8, 3)))
    for r in (base, same, slow):
        r.write(tmp_path / r.run_id)
    history.append_history(tmp_path / "history.jsonl", base)
    return tmp_path, base, same, slow


def test_cli_compare_exit_0_when_same_and_1_on_regression(runs, capsys):
    d, base, same, slow = runs
    assert report_cli.main(["compare", str(d / same.run_id), "--baseline", str(d / base.run_id)]) == 0
    out = capsys.readouterr().out
    assert "0 regression(s)" in out
    assert report_cli.main(["compare", str(d / slow.run_id / "metrics.json"), "--baseline", base.run_id]) == 1
    out = capsys.readouterr().out
    assert "regression" in out and re.search(r"\+3\d\.\d%", out)


def test_cli_compare_defaults_to_latest_passing_from_history(runs, capsys):
    d, base, _, slow = runs
    assert report_cli.main(["compare", slow.run_id, "--results-dir", str(d), "--format", "json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == base.run_id and data["regressions"] == 1
    assert data["comparisons"][0]["verdict"] == "regression"


def test_cli_compare_gate_options_and_markdown(runs, capsys):
    d, base, _, slow = runs
    args = ["compare", str(d / slow.run_id), "--baseline", str(d / base.run_id)]
    assert report_cli.main([*args, "--min-effect", "40%"]) == 0
    assert report_cli.main([*args, "--gate", "median:50%"]) == 0
    assert report_cli.main([*args, "--noise", "0.5"]) == 0
    capsys.readouterr()
    assert report_cli.main([*args, "--format", "markdown"]) == 1
    assert "| Suite |" in capsys.readouterr().out


def test_cli_compare_usage_errors_exit_2(runs, capsys):
    d, base, _, slow = runs
    assert report_cli.main(["compare", str(d / slow.run_id), "--baseline", str(d / "nope")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        report_cli.main(["compare", str(d / slow.run_id), "--gate", "fast"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "bad gate" in err and err.count("\n") == 1


def test_cli_noise_prints_the_floor(runs, capsys):
    d, base, same, _ = runs
    assert report_cli.main(["noise", str(d / base.run_id), str(d / same.run_id)]) == 0
    assert "A/A noise floor" in capsys.readouterr().out
