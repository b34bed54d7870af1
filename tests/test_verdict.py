"""The one target grammar: parsing (k6 style and plain), checks with unit conversion, headroom,
direction, formatting, and the keyword path's checks (pass, fail, invalid)."""

from __future__ import annotations

import pytest

from conductor_perf.verdict import (
    Check,
    Target,
    TargetMissed,
    compare,
    fmt,
    format_number,
    format_target,
    parse_target,
    require,
    unit_direction,
    unit_factor,
)

# -- parsing ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value", "unit", "label"),
    [
        ("> 1000 msg/s", ">", 1000, "msg/s", ""),
        ("<=50ms", "<=", 50, "ms", ""),
        ("p95 < 50 ms", "<", 50, "ms", "p95"),
        ("≥ 1,000 req/s", ">=", 1000, "req/s", ""),
        ("< 5 min", "<", 5, "min", ""),
        ("<1e3", "<", 1000, "", ""),
        # k6 style and the figure names of load thresholds
        ("p(95)<50", "<", 50, "", "p(95)"),
        ("p(95)<50ms", "<", 50, "ms", "p(95)"),
        ("rate > 500/s", ">", 500, "/s", "rate"),
        ("errors < 1 %", "<", 1, "%", "errors"),
        ("P99.9 < 1.5 s", "<", 1.5, "s", "P99.9"),
        ("rate >= 1_000 req/s", ">=", 1000, "req/s", "rate"),
        ("rate > 2e3 msg/s", ">", 2000, "msg/s", "rate"),
        ("errors == 0", "==", 0, "", "errors"),
        ("late = 0", "==", 0, "", "late"),
        ("count != 3", "!=", 3, "", "count"),
        ("x => 2 s", ">=", 2, "s", "x"),
        ("≤ 2 MB", "<=", 2, "MB", ""),
    ],
)
def test_parse_target(text, op, value, unit, label):
    t = parse_target(text)
    assert (t.op, t.value, t.unit, t.label) == (op, value, unit, label)


@pytest.mark.parametrize("text", ["fast please", "p95 50 ms", "", "p95 < fast", "p95 <> 3 ms", "< ms"])
def test_text_that_is_not_a_target_parses_to_none(text):
    assert parse_target(text) is None


def test_parse_target_passes_none_and_targets_through():
    t = Target("<", 5, "ms")
    assert parse_target(None) is None
    assert parse_target(t) is t


# -- formatting -------------------------------------------------------------------------------------


def test_target_round_trips_through_format():
    assert format_target(">", 1000, "msg/s") == "> 1000 msg/s"
    assert format_target("=", 0, "messages") == "== 0 messages"
    assert format_target("<", 50, "ms", label="p95") == "p95 < 50 ms"
    assert str(parse_target("p95 < 50 ms")) == "p95 < 50 ms"
    assert str(parse_target("p(95)<50")) == "p(95) < 50"
    with pytest.raises(ValueError, match="unknown operator"):
        format_target("~", 1)


@pytest.mark.parametrize("value", [1000, 0.5, 1.5, 12.345, 0.0123456, 1e-7, 123456.789, 2.0 / 3])
def test_a_target_text_reads_back_as_the_threshold_that_was_checked(value):
    assert parse_target(format_target("<", value, "ms")).value == value


def test_short_numbers_stay_short():
    assert [format_target("<", v) for v in (50.0, 1.5, 0.25, 80, 1e6)] == ["< 50", "< 1.50", "< 0.25", "< 80",
                                                                             "< 1000000"]  # fmt: skip


def test_fmt_for_verdict_messages():
    assert fmt(1000.0) == "1000"
    assert fmt(12.3456) == "12.35"
    assert fmt(0.012345) == "0.0123"
    assert fmt(1234.56) == "1234.6"


def test_format_number_for_tables():
    assert format_number(1234.5, "msg/s") == "1,234 msg/s"
    assert format_number(50.0, "tasks") == "50 tasks"
    assert format_number(31.5, "ms") == "31.50 ms"
    assert format_number(0.0123) == "0.0123"
    assert format_number(None, "ms") == "—"


# -- checks and units -------------------------------------------------------------------------------


def test_target_check_converts_time_units_and_orients_headroom():
    assert parse_target("< 5 min").check(200, "s") is True
    assert parse_target("< 5 min").check(301, "s") is False
    assert parse_target("< 200 ms").check(0.25, "s") is False
    assert parse_target("p95 <= 4000 us").check(4.0, "ms") is True
    assert parse_target("> 1000 msg/s").check(10, "ms") is None  # incompatible units
    assert parse_target("> 1000 msg/s").headroom(1500, "msg/s") == pytest.approx(1.5)
    assert parse_target("< 50 ms").headroom(25, "ms") == pytest.approx(2.0)
    assert parse_target("> 1000 messages/sec").check(1200, "msg/s") is True
    assert parse_target("< 1000").check(999, "threads") is True  # a target without unit fits any unit
    assert parse_target("== 0").headroom(0, "") is None  # equality has no direction
    assert parse_target("< 5 ms").check(None, "ms") is None


def test_rates_convert_between_time_bases_and_a_bare_rate_fits_any_noun():
    assert parse_target("rate > 30000/min").check(612.3, "req/s") is True  # 36,738 per minute
    assert parse_target("rate > 30000/min").check(400, "req/s") is False
    assert parse_target("rate > 500/s").check(612.3, "req/s") is True
    assert parse_target("> 500 rps").check(499, "req/s") is False
    assert parse_target("> 10 msg/s").check(100, "req/s") is None  # different things per second
    assert unit_factor("msg/min", "msg/s") == pytest.approx(1 / 60)
    assert unit_factor("MB", "KiB") == pytest.approx(976.5625)
    assert unit_factor("msg/s", "ms") is None


def test_unit_direction():
    assert [unit_direction(u) for u in ("msg/s", "req/min", "rps", "ms", "MB", "%", "threads", "widgets")] == [
        True, True, True, False, False, False, False, None]  # fmt: skip


def test_a_target_rejects_an_unknown_operator():
    with pytest.raises(ValueError, match="unknown operator"):
        Target("~", 1)


# -- the keyword path -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("p95", 42.0, "<", 50, "ms"), "p95: 42 ms (target < 50 ms): PASS"),
        (("p99", 250.0, "<=", 200, "ms"), "p99: 250 ms (target <= 200 ms): FAIL"),
        (("rate", 612.3, ">", 500, "req/s"), "rate: 612.3 req/s (target > 500 req/s): PASS"),
        (("errors", 0.3, "<", 1, "%"), "errors: 0.3 % (target < 1 %): PASS"),
        (("bus messages lost", 3, "==", 0, "messages"), "bus messages lost: 3 messages (target == 0 messages): FAIL"),
        (("count", 1000, ">=", 1000, ""), "count: 1000 (target >= 1000): PASS"),
        (("mean", 4.2, "<", 5, "ms"), "mean: 4.20 ms (target < 5 ms): PASS"),
    ],
)
def test_compare_message_names_figure_target_and_unit(args, message):
    check = compare(*args)
    assert check.message == message
    assert check.verdict == ("pass" if message.endswith("PASS") else "fail")
    assert parse_target(check.target_text).check(check.value, check.unit) is check.ok


def test_a_miss_with_an_invalid_reason_is_an_invalid_measurement_not_a_miss():
    reason = "load generator saturated (load generator used 99 % of a CPU core (budget 90 %))"
    missed = compare("GET /api/v1/health rate", 400, ">", 500, "req/s", invalid_reason=reason)
    assert (missed.ok, missed.verdict) == (False, "invalid")
    assert missed.message == (f"measurement invalid: {reason}; GET /api/v1/health rate: 400 req/s "
                              "(target > 500 req/s): FAIL")  # fmt: skip
    met = compare("GET /api/v1/health rate", 600, ">", 500, "req/s", invalid_reason=reason)
    assert (met.verdict, met.message) == ("pass", "GET /api/v1/health rate: 600 req/s (target > 500 req/s): PASS")


def test_compare_accepts_the_grammar_operators_and_rejects_others():
    assert compare("x", 3, "=>", 2).op == ">="
    assert compare("x", 2, "=", 2).ok
    with pytest.raises(ValueError, match="unknown operator"):
        compare("x", 1, "~", 2)


def test_require_raises_target_missed_with_the_message():
    assert isinstance(require("x", 1, "<", 2, "ms"), Check)
    with pytest.raises(TargetMissed, match=r"x: 3 ms \(target < 2 ms\): FAIL"):
        require("x", 3, "<", 2, "ms")
