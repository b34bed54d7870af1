"""The A/B comparison model: rounds -> figures with ratio, interval and verdict; compare.json/md/svg.

Runs are built in code from seeded samples; nothing is measured or timed.
"""

from __future__ import annotations

import json
import math
import random

import pytest

from conductor_perf import comparison as cmp
from conductor_perf.comparison import Round, abba_order, compare_rounds
from conductor_perf.records import MetricRecord, RunResults

EMBEDDED = {"kind": "embedded", "version": "0.76.0-reference"}


def run(values: dict[str, float], *, sut=EMBEDDED, profile="quick", extra=()) -> RunResults:
    """One round's results: a rate, a p95 latency, an error percentage and a lost-message count."""
    r = RunResults(run_id="r", sut=dict(sut), profile=profile)
    r.add(MetricRecord("Api", "Health", "health rate", "req/s", values["rate"], target="> 500 req/s"))
    r.add(MetricRecord("Api", "Health", "health errors", "%", values.get("errors", 0.0), target="< 1 %"))
    r.add(MetricRecord("Api", "Health", "health latency p95", "ms", values["p95"], target="< 50 ms"))
    r.add(MetricRecord("Bus", "Posting", "posted messages lost", "messages", values.get("lost", 0.0),
                       target="== 0 messages"))  # fmt: skip
    r.add(MetricRecord("Api", "", "task history", "tasks", 100, target="== 100 tasks"))
    r.add(MetricRecord("Api", "Health", "load average", "", 3.0))  # no direction
    for rec in extra:
        r.add(rec)
    return r


def rounds_of(n: int, a, b) -> list[Round]:
    """``n`` rounds in ABBA order; ``a(i)`` / ``b(i)`` give round i's values (or a RunResults)."""
    out = []
    for position, (number, side) in enumerate(abba_order(n), start=1):
        made = (a if side == "A" else b)(number)
        rnd = Round(number, side, position, f"rounds/{number:02d}-{side}")
        rnd.run = made if isinstance(made, RunResults) else run(made)
        out.append(rnd)
    return out


def draw(seed: int, factor: float = 1.0) -> dict[str, float]:
    rng = random.Random(seed)
    return {"rate": 5000 * factor * math.exp(rng.gauss(0, 0.02)), "p95": 2.0 / factor * math.exp(rng.gauss(0, 0.02))}


def compare(rounds, **kw) -> cmp.Comparison:
    sides = {"a": {"spec": kw.pop("a", "embedded")}, "b": {"spec": kw.pop("b", "embedded:--slowdown-us 10")}}
    return compare_rounds(rounds, compare_id="compare-test", profile="quick", suites=["api"], **sides, **kw)


def by_name(c: cmp.Comparison) -> dict[str, cmp.FigureComparison]:
    return {f.name: f for f in c.figures}


def test_abba_order_alternates_which_side_goes_first():
    assert [f"{n}{s}" for n, s in abba_order(4)] == ["1A", "1B", "2B", "2A", "3A", "3B", "4B", "4A"]


def test_a_slower_b_is_found_in_rate_and_latency_with_direction():
    c = compare(rounds_of(6, lambda i: draw(i), lambda i: draw(100 + i, factor=0.9)))
    f = by_name(c)
    rate, p95 = f["health rate"], f["health latency p95"]
    assert rate.verdict == "slower" and rate.ci_high < 1 and rate.ratio == pytest.approx(0.9, abs=0.03)
    assert p95.verdict == "slower" and p95.ci_low > 1  # a higher latency is slower
    assert rate.detectable is not None and 0 < rate.detectable < 0.1
    assert not c.passed and c.summary()["adverse"] == ["health rate", "health latency p95"]
    faster = compare(rounds_of(6, lambda i: draw(i), lambda i: draw(100 + i, factor=1.1)))
    assert by_name(faster)["health rate"].verdict == "faster" and faster.passed


def test_a_a_comparison_reports_the_false_alarm_rate():
    c = compare(rounds_of(5, lambda i: draw(i), lambda i: draw(50 + i)), b="embedded")
    s = c.summary()
    assert c.mode == "A/A" and s["compared"] == 2  # rate and p95; 0 % errors everywhere is not a comparison
    assert s["false_alarm_rate"] == s["flagged"] / 2
    assert "false-alarm rate" in c.result_line()
    assert s["interval_confidence"] == pytest.approx(1 - 2 * 4 / 252)


def test_counts_that_must_be_zero_are_judged_in_every_round_not_by_ratio():
    b_lost = {3: 2.0}  # round 3 of B lost two messages
    c = compare(rounds_of(5, lambda i: draw(i), lambda i: {**draw(50 + i), "lost": b_lost.get(i, 0.0)}))
    lost = by_name(c)["posted messages lost"]
    assert lost.kind == "absolute" and lost.verdict == "missed by B" and lost.ratio is None
    assert lost.b.count(2.0) == 1 and not c.passed
    assert c.summary()["absolute_missed_by_b"] == ["posted messages lost"]
    assert by_name(c)["task history"].verdict == "met by both"


def test_constant_and_zero_figures():
    c = compare(rounds_of(5, lambda i: draw(i), lambda i: draw(50 + i)))
    errors = by_name(c)["health errors"]
    assert errors.kind == "constant" and errors.verdict == "no detectable change" and "0 % in every round" in errors.note
    worse = compare(rounds_of(5, lambda i: draw(i), lambda i: {**draw(50 + i), "errors": 2.0 + i / 10}))
    errors = by_name(worse)["health errors"]
    assert errors.kind == "difference" and errors.verdict == "worse" and errors.ratio is None
    assert "no ratio" in errors.note
    assert by_name(c)["load average"].kind == "not compared"


def test_a_failed_round_is_reported_and_its_values_left_out():
    rounds = rounds_of(5, lambda i: draw(i), lambda i: draw(50 + i))
    crashed = next(r for r in rounds if (r.number, r.side) == (2, "B"))
    crashed.fail("its SUT died during the round: conductor binary exited with code -9")
    crashed.run.metrics[0].value = 1.0  # a garbage figure that must not be averaged in
    c = compare(rounds)
    rate = by_name(c)["health rate"]
    assert len(rate.a) == 5 and len(rate.b) == 4 and 1.0 not in rate.b
    assert not c.passed and c.failed_rounds == [crashed]
    assert "round 2 B: its SUT died" in c.summary()["failed_rounds"][0]
    assert "Failed round" in c.markdown() and "**failed**" in c.markdown()


def test_a_round_of_another_profile_or_build_is_not_averaged_in():
    rounds = rounds_of(5, lambda i: draw(i), lambda i: draw(50 + i))
    rounds[2].run.profile = "default"
    other = {"kind": "binary", "version": "0.76.0", "binary_sha256": "ab" * 32}
    rounds[4].run = run(draw(9), sut=other)
    c = compare(rounds)
    reasons = {r.name: r.reason for r in c.failed_rounds}
    assert "not quick" in reasons[rounds[2].name]
    assert "its SUT was binary conductor 0.76.0" in reasons[rounds[4].name]


def test_a_figure_a_round_did_not_record_has_fewer_values():
    def b(i):
        r = run(draw(50 + i))
        if i == 2:  # the test failed an earlier step: its last figure is missing
            r.metrics = [m for m in r.metrics if m.metric != "health latency p95"]
        return r

    c = compare(rounds_of(5, lambda i: draw(i), b))
    assert not c.failed_rounds
    p95 = by_name(c)["health latency p95"]
    assert (len(p95.a), len(p95.b)) == (5, 4)


def test_a_metric_recorded_twice_in_one_test_is_numbered():
    twice = [MetricRecord("Api", "Health", "health errors", "%", 0.0, target="< 1 %")]
    c = compare(rounds_of(4, lambda i: run(draw(i), extra=twice), lambda i: run(draw(9 + i), extra=twice)))
    assert {"health errors", "health errors (2)"} <= set(by_name(c))


def test_compare_json_md_chart_and_summary(tmp_path):
    c = compare(rounds_of(5, lambda i: draw(i), lambda i: draw(100 + i, factor=0.9)))
    path = c.write(tmp_path)
    data = json.loads(path.read_text())
    rate = next(f for f in data["figures"] if f["name"] == "health rate")
    for key in ("name", "unit", "a", "b", "ratio", "ci_low", "ci_high", "verdict", "detectable"):
        assert key in rate
    assert rate["unit"] == "req/s" and len(rate["a"]) == 5 and rate["verdict"] == "slower"
    assert data["order"] == ["1A", "1B", "2B", "2A", "3A", "3B", "4B", "4A", "5A", "5B"]
    assert data["summary"]["mode"] == "A/B" and data["summary"]["adverse"]
    md = (tmp_path / "compare.md").read_text()
    assert "| Api | health rate | req/s |" in md and "**slower**" in md
    svg = (tmp_path / "compare.svg").read_text()
    assert 'data-label="health rate"' in svg and 'data-verdict="slower"' in svg
    assert "load average" not in svg  # only figures with a ratio are drawn
    page = (tmp_path / "summary.html").read_text()
    assert "<svg" in page and "health rate" in page and "compare.json" in page
    assert cmp.load_comparison(tmp_path)["compare_id"] == "compare-test"


def test_loading_a_folder_without_comparison_is_one_line(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        cmp.load_comparison(tmp_path)
    (tmp_path / "compare.json").write_text("{}")
    with pytest.raises(ValueError, match="not a comparison"):
        cmp.load_comparison(tmp_path)


def test_the_ratio_chart_draws_each_interval_around_one():
    from conductor_perf.charts import ratio_chart

    svg = ratio_chart([{"label": "rate <a&b>", "ratio": 0.9, "low": 0.85, "high": 0.95, "verdict": "slower"},
                       {"label": "p95", "ratio": 1.0, "low": 0.02, "high": 40.0, "verdict": "no detectable change"},
                       {"label": "few rounds", "ratio": 1.2, "low": None, "high": None, "verdict": "no detectable change"},
                       {"label": "zero", "ratio": None, "low": None, "high": None, "verdict": "better"}], "B / A")  # fmt: skip
    assert svg.count('<g class="ratio"') == 4 and 'data-label="rate &lt;a&amp;b&gt;"' in svg
    assert svg.count('class="interval"') == 2  # rows without an interval draw only their point
    assert svg.count('class="beyond"') == 2  # 0.02 and 40 are past the axis (0.1 to 10): arrows
    assert "0.900 [0.850, 0.950]" in svg and "1.200, no interval" in svg and "no ratio" in svg
    assert "#D55E00" in svg and "1.0: no change" in svg
    assert "no data" in ratio_chart([], "empty")
