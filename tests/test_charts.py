"""SVG charts: valid XML, the expected series, target lines, legends and escaping."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import pytest

from conductor_perf import charts

NS = "{http://www.w3.org/2000/svg}"


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    assert root.get("viewBox")
    return root


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{NS}{tag}") if cls in (e.get("class") or "").split()]


def texts(root: ET.Element) -> list[str]:
    return ["".join(e.itertext()) for e in root.iter(f"{NS}text")]


def points(polyline: ET.Element) -> list[tuple[float, float]]:
    return [tuple(map(float, p.split(","))) for p in polyline.get("points", "").split()]  # type: ignore[misc]


def target_line(root: ET.Element) -> ET.Element:
    lines = by_class(root, "line", "target")
    assert len(lines) == 1
    assert lines[0].get("stroke-dasharray"), "target must be dashed"
    return lines[0]


# -- line chart -------------------------------------------------------------------------------------


def test_line_chart_has_one_polyline_per_series_a_legend_and_a_dashed_target():
    svg = charts.line_chart(
        {"writer 1": [(0, 900), (1, 1100), (2, 1050)], "writer 2": [(0, 800), (1, 950), (2, 1000)]},
        "Bus throughput",
        "time (s)",
        "throughput (msg/s)",
        target=1000,
        target_label="target > 1000 msg/s",
    )
    root = parse(svg)
    series = by_class(root, "polyline", "series")
    assert [s.get("data-series") for s in series] == ["writer 1", "writer 2"]
    assert all(len(points(s)) == 3 for s in series)
    line = target_line(root)
    assert line.get("y1") == line.get("y2")
    all_text = texts(root)
    assert "Bus throughput" in all_text
    assert "time (s)" in all_text and "throughput (msg/s)" in all_text
    assert "target > 1000 msg/s" in all_text
    legend = by_class(root, "g", "legend")
    assert legend and {"writer 1", "writer 2"} <= set(
        "".join(t.itertext()) for t in legend[0].iter(f"{NS}text")
    )
    assert root.find(f"{NS}title").text == "Bus throughput"


def test_line_chart_target_is_drawn_at_the_value_it_names():
    root = parse(charts.line_chart({"s": [(0, 50), (10, 80)]}, "t", "x (s)", "y (ms)", target=50))
    (x0, y0), _ = points(by_class(root, "polyline", "series")[0])
    assert float(target_line(root).get("y1")) == pytest.approx(y0)


def test_line_chart_range_includes_a_target_above_all_data():
    root = parse(charts.line_chart({"s": [(0, 1), (1, 2)]}, "t", "x", "y", target=100))
    y_target = float(target_line(root).get("y1"))
    ys = [y for _, y in points(by_class(root, "polyline", "series")[0])]
    assert y_target < min(ys)  # SVG y grows downwards: target above the data
    assert y_target >= 30  # and still inside the plot, below the title


def test_single_series_has_no_legend_and_small_series_have_markers():
    root = parse(charts.line_chart({"only": [(0, 1), (1, 2), (2, 3)]}, "t", "x", "y"))
    assert not by_class(root, "g", "legend")
    assert len(by_class(root, "circle", "marker")) == 3
    assert not by_class(root, "line", "target")


def test_text_is_escaped():
    name = 'a <b> & "c"'
    root = parse(charts.line_chart({name: [(0, 1), (1, 2)], "x&y": [(0, 2)]}, f"T {name}", "x <s>", "y & z"))
    assert by_class(root, "polyline", "series")[0].get("data-series") == name
    assert f"T {name}" in texts(root)
    assert "x <s>" in texts(root)


def test_non_finite_points_are_dropped_and_empty_chart_says_no_data():
    root = parse(
        charts.line_chart({"s": [(0, 1), (1, float("nan")), (2, float("inf")), (3, 2)]}, "t", "x", "y")
    )
    assert len(points(by_class(root, "polyline", "series")[0])) == 2
    empty = parse(charts.line_chart({}, "empty", "x", "y", target=5))
    assert "no data" in texts(empty)


def test_long_series_are_downsampled_but_keep_the_spike():
    pts = [(i, 1.0) for i in range(10_000)]
    pts[7777] = (7777, 500.0)
    root = parse(charts.line_chart({"s": pts}, "t", "x", "y", max_points=400))
    poly = points(by_class(root, "polyline", "series")[0])
    assert len(poly) <= 400
    assert len({y for _, y in poly}) == 2  # flat line plus the spike's height


def test_nice_ticks_are_round_and_cover_the_range():
    ticks = charts.nice_ticks(0, 97)
    assert ticks[0] <= 0 and ticks[-1] >= 97
    assert ticks == [0, 20, 40, 60, 80, 100]
    small = charts.nice_ticks(0.0012, 0.0047)
    assert small[0] <= 0.0012 and small[-1] >= 0.0047
    assert len(charts.nice_ticks(5, 5)) >= 2


# -- percentile curve -------------------------------------------------------------------------------


SUMMARY = {
    "unit": "ms",
    "count": 1000,
    "mean": 12.0,
    "percentiles": {"50": 10, "90": 20, "99": 35, "99.9": 60},
    "max": 90,
}


def test_percentile_points_accepts_the_usual_key_spellings():
    assert charts.percentile_points(SUMMARY) == [(50, 10), (90, 20), (99, 35), (99.9, 60), (100, 90)]
    flat = {"p50": 1, "p99_9": 3, "p999": 3, "p99.99": 4, "count": 7, "max": 5, "min": 0.1}
    assert charts.percentile_points(flat) == [(50, 1), (99.9, 3), (99.99, 4), (100, 5)]
    assert charts.percentile_points([(99, 2.0), (50, 1.0)]) == [(50, 1.0), (99, 2.0)]


def test_percentile_curve_spaces_nines_evenly_and_draws_the_target():
    root = parse(charts.percentile_curve(SUMMARY, "API latency", target_ms=50))
    poly = by_class(root, "polyline", "series")
    assert len(poly) == 1
    xs = [x for x, _ in points(poly[0])]
    assert len(xs) == 5 and xs == sorted(xs)
    # 50 -> 90 -> 99 -> 99.9 are equal steps on the log-like axis
    step = xs[2] - xs[1]
    assert xs[3] - xs[2] == pytest.approx(step, abs=0.2)
    assert xs[1] - xs[0] == pytest.approx(step * 0.699, abs=0.3)  # log10(10) - log10(2)
    labels = texts(root)
    for label in ("50", "90", "99", "99.9", "max", "percentile", "latency (ms)", "target 50 ms"):
        assert label in labels
    target_line(root)


def test_percentile_curve_compares_several_curves_with_a_legend():
    root = parse(
        charts.percentile_curve(
            {"baseline": SUMMARY, "current": [(50, 12), (90, 25), (99, 40), (99.9, 80)]}, "p by run"
        )
    )
    assert [p.get("data-series") for p in by_class(root, "polyline", "series")] == ["baseline", "current"]
    assert by_class(root, "g", "legend")


# -- bar chart --------------------------------------------------------------------------------------


def test_bar_chart_one_bar_per_entry_with_vertical_target():
    bars = {
        "Bus throughput": 1.4,
        "SSE latency p95": 0.8,
        "A very long test name that needs to be cut short": 3.0,
    }
    root = parse(
        charts.bar_chart(
            bars,
            "Headroom",
            "× target",
            target=1.0,
            statuses={"Bus throughput": "pass", "SSE latency p95": "fail"},
        )
    )
    rects = by_class(root, "rect", "bar")
    assert [r.get("data-label") for r in rects] == list(bars)
    line = target_line(root)
    assert line.get("x1") == line.get("x2")
    widths = [float(r.get("width")) for r in rects]
    assert widths[2] > widths[0] > widths[1]
    assert by_class(root, "g", "legend")  # two statuses


def test_bar_chart_log_scale_is_valid_svg():
    root = parse(
        charts.bar_chart([("a", 0.5), ("b", 28.0), ("c", 1.0)], "Headroom", "× target", target=1, log=True)
    )
    assert len(by_class(root, "rect", "bar")) == 3


# -- timeline ---------------------------------------------------------------------------------------


def test_timeline_draws_one_span_per_run_and_a_deadline():
    spans = [
        ("agent-1", 0.0, 12.0, "completed"),
        ("agent-2", 1.0, 30.0, "failed"),
        {"label": "agent-3", "start": 2.0, "end": None},
    ]
    root = parse(charts.timeline(spans, "Agent completion", target=25, target_label="deadline 25 s"))
    rects = by_class(root, "rect", "span")
    assert [r.get("data-label") for r in rects] == ["agent-1", "agent-2", "agent-3"]
    assert float(rects[1].get("width")) > float(rects[0].get("width"))
    assert rects[2].get("fill-opacity") == "0.5"  # unfinished
    assert "deadline 25 s" in texts(root)
    target_line(root)


def test_timeline_with_many_rows_stays_valid():
    spans = [(f"agent-{i}", i * 0.1, 10 + i, "completed") for i in range(120)]
    root = parse(charts.timeline(spans, "Many agents"))
    assert len(by_class(root, "rect", "span")) == 120


# -- embedding --------------------------------------------------------------------------------------


def test_svg_img_html_embeds_the_svg_as_base64_data_uri_or_inline():
    svg = charts.line_chart({"s": [(0, 1), (1, 2)]}, "Title & more", "x", "y")
    html = charts.svg_img_html(svg)
    assert html.startswith('<img src="data:image/svg+xml;base64,')
    data = html.split("base64,", 1)[1].split('"', 1)[0]
    assert base64.b64decode(data).decode() == svg
    assert 'alt="Title &amp; more"' in html
    assert svg in charts.svg_img_html(svg, inline=True)


def test_rate_series_leaves_out_a_cut_off_last_interval() -> None:
    from conductor_perf.charts import rate_series

    # 0.25 s steps; the window ended 0.05 s after the last step and the batched counter read nothing new
    cumulative = [(0.25 * i, 1000 * i) for i in range(1, 41)] + [(10.05, 40000)]
    rates = rate_series(cumulative)
    assert len(rates) == 40 and all(r == pytest.approx(4000.0) for _, r in rates)
    assert rate_series([(1.0, 100), (2.0, 250)]) == [[1.0, 100.0], [2.0, 150.0]]  # a full last interval stays
    assert rate_series([(0.0, 0), (0.5, 0)]) == [[0.5, 0.0]]
    assert rate_series([]) == []
