"""Threshold strings: parsing, evaluation with messages, and run verdicts (pass/fail/invalid)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from conductor_perf.measure.thresholds import Threshold, evaluate_all, parse_thresholds, verdict

SUMMARY = {
    "count": 1000,
    "requests": 1000,
    "errors": 3,
    "error_percent": 0.3,
    "rate": 612.3,
    "min": 0.2,
    "p50": 4.0,
    "p90": 30.0,
    "p95": 42.0,
    "p99": 250.0,
    "p99.9": 800.0,
    "max": 1500.0,
    "mean": 4.2,
    "late": 0,
    "dropped": 5,
    "planned": 1000,
    "late_percent": 0.0,
    "dropped_percent": 0.5,
}


@pytest.mark.parametrize(
    ("text", "figure", "op", "target", "unit"),
    [
        ("p95 < 50 ms", "p95", "<", 50, "ms"),
        ("p99 <= 200ms", "p99", "<=", 200, "ms"),
        ("rate > 500/s", "rate", ">", 500, "/s"),
        ("errors < 1 %", "errors", "<", 1, "%"),
        ("mean < 5 ms", "mean", "<", 5, "ms"),
        ("max < 1 s", "max", "<", 1, "s"),
        ("count >= 1000", "count", ">=", 1000, ""),
        ("p(95)<50ms", "p95", "<", 50, "ms"),
        ("P99.9 < 1.5 s", "p99.9", "<", 1.5, "s"),
        ("median < 800 us", "p50", "<", 800, "us"),
        ("avg<5ms", "mean", "<", 5, "ms"),
        ("rate >= 1_000 req/s", "rate", ">=", 1000, "req/s"),
        ("rate > 2e3 msg/s", "rate", ">", 2000, "msg/s"),
        ("errors == 0", "errors", "==", 0, ""),
        ("dropped < 1 %", "dropped", "<", 1, "%"),
        ("late = 0", "late", "=", 0, ""),
    ],
)
def test_parse(text, figure, op, target, unit):
    t = Threshold.parse(text)
    assert (t.figure, t.op, t.target, t.unit) == (figure, op, target, unit)


@pytest.mark.parametrize(
    ("text", "ok", "message"),
    [
        ("p95 < 50 ms", True, "p95 42 ms (target < 50 ms): PASS"),
        ("p99 <= 200ms", False, "p99 250 ms (target <= 200 ms): FAIL"),
        ("rate > 500/s", True, "rate 612.3/s (target > 500/s): PASS"),
        ("errors < 1 %", True, "errors 0.3 % (target < 1 %): PASS"),
        ("errors == 0", False, "errors 3 (target == 0): FAIL"),
        ("mean < 5 ms", True, "mean 4.20 ms (target < 5 ms): PASS"),
        ("max < 1 s", False, "max 1.50 s (target < 1 s): FAIL"),
        ("count >= 1000", True, "requests 1000 (target >= 1000): PASS"),
        ("p50 <= 4000 us", True, "p50 4000 us (target <= 4000 us): PASS"),
        ("p50 < 4000 us", False, "p50 4000 us (target < 4000 us): FAIL"),
        ("rate > 30000/min", True, "rate 36738/min (target > 30000/min): PASS"),
        ("dropped < 1 %", True, "dropped 0.5 % (target < 1 %): PASS"),
    ],
)
def test_evaluate_names_figure_target_and_unit(text, ok, message):
    got_ok, got_msg = Threshold.parse(text).evaluate(SUMMARY)
    assert (got_ok, got_msg) == (ok, message)


def test_missing_latency_figure_fails_as_no_samples():
    ok, msg = Threshold.parse("p95 < 50 ms").evaluate({"count": 0, "p95": None})
    assert not ok
    assert "no samples" in msg and "< 50 ms" in msg


def test_error_percent_is_derived_when_only_counts_are_given():
    ok, msg = Threshold.parse("errors < 1 %").evaluate({"count": 200, "errors": 4})
    assert not ok
    assert msg == "errors 2 % (target < 1 %): FAIL"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("p95 50 ms", "cannot parse"),
        ("p95 < 50", "needs a unit"),
        ("p95 < 50 parsecs", "needs a unit"),
        ("latency < 3 ms", "unknown figure"),
        ("rate > 5 ms", "rate unit"),
        ("errors < 1 ms", "'%' or no unit"),
        ("count > 5 ms", "count takes no unit"),
        ("p75 < 3 ms", "not reported"),
        ("p101 < 3 ms", "out of range"),
        ("", "cannot parse"),
        ("p95 < fast", "cannot parse"),
        ("p95 <> 3 ms", "cannot parse"),
    ],
)
def test_bad_syntax_raises_clear_value_error(text, reason):
    with pytest.raises(ValueError, match=reason):
        Threshold.parse(text)


def test_parse_thresholds_accepts_strings_lists_and_objects():
    t = Threshold.parse("p95 < 50 ms")
    assert len(parse_thresholds("p95 < 50 ms; rate > 500/s\nerrors < 1 %")) == 3
    assert parse_thresholds([t, "max < 1 s"])[0] is t
    assert [ok for ok, _ in evaluate_all(SUMMARY, ["p95 < 50 ms", "p99 < 100 ms"])] == [True, False]


@dataclass
class FakeResult:
    """Stands in for LoadResult: summary() plus the self-check fields."""

    figures: dict = field(default_factory=lambda: dict(SUMMARY))
    saturated: bool = False
    saturation_reason: str = ""

    def summary(self) -> dict:
        return self.figures


def test_verdict_pass():
    status, msg = verdict(FakeResult(), ["p95 < 50 ms", "errors < 1 %"])
    assert status == "pass"
    assert "p95 42 ms" in msg and "errors 0.3 %" in msg


def test_verdict_fail_lists_missed_targets_first():
    status, msg = verdict(FakeResult(), ["p95 < 50 ms", "p99 < 100 ms"])
    assert status == "fail"
    assert msg.startswith("target missed: p99 250 ms (target < 100 ms): FAIL")


def test_verdict_invalid_when_generator_saturated_is_distinct_from_target_missed():
    r = FakeResult(saturated=True, saturation_reason="load generator used 99 % of a CPU core (budget 90 %)")
    status, msg = verdict(r, ["p99 < 100 ms"])
    assert status == "invalid"
    assert msg.startswith(
        "measurement invalid: load generator saturated (load generator used 99 % of a CPU core"
    )
    assert "not judged" in msg


def test_verdict_on_plain_summary_dict():
    assert verdict(SUMMARY, "rate > 500/s")[0] == "pass"
