"""Results schema: round trip, atomic writes, merge of per-process parts, history, summaries, CLI."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from conductor_perf import report_cli, results
from conductor_perf.results import MetricRecord, ResultsError, RunResults


def full_run(run_id: str = "20261127-183000-100", **kw) -> RunResults:
    run = RunResults(
        run_id=run_id,
        started=kw.get("started", "2026-11-27T18:30:00+00:00"),
        finished=kw.get("finished", "2026-11-27T18:40:00+00:00"),
        machine={
            "cpu_model": "Test CPU",
            "logical_cores": 2,
            "memory_bytes": 2**31,
            "os": "Linux",
            "python": "3.11.7",
            "hostname": "box",
        },
        commit={"sha": "0123456789abcdef", "dirty": False},
        tools={"robotframework": "7.5", "pabot": "5.2.2", "hdrhistogram": None},
        sut={"kind": "embedded", "url": "http://127.0.0.1:8123", "version": "ref-1", "root": "/tmp/runs"},
        profile="default",
    )
    run.add(
        MetricRecord(
            "Message Bus",
            "Bus Throughput Meets Target",
            "throughput",
            "msg/s",
            1234.5,
            target="> 1000 msg/s",
            samples=[1200.0, 1234.5, 1250.25],
            series={"msg/s": [(0, 1180.0), (1, 1250.5)]},
            extra={"writers": 10},
        )
    )
    run.add(
        MetricRecord(
            "API",
            "Task Latency p95",
            "p95 latency",
            "ms",
            31.5,
            target="p95 < 50 ms",
            histogram={"unit": "ms", "count": 1000, "percentiles": {"50": 10.0, "99.9": 60.0}, "max": 90.0},
            hdr="HISTFAAAACl4nJNpmSzMwMDAzAABMBoTMF...",
            higher_is_better=False,
        )
    )
    run.add(
        MetricRecord(
            "Resources",
            "Goroutines",
            "goroutines",
            "count",
            None,
            target="< 1000",
            verdict="skipped",
            message="SUT exposes no pprof",
        )
    )
    return run


# -- records and targets ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "value", "unit", "label"),
    [
        ("> 1000 msg/s", ">", 1000, "msg/s", ""),
        ("<=50ms", "<=", 50, "ms", ""),
        ("p95 < 50 ms", "<", 50, "ms", "p95"),
        ("≥ 1,000 req/s", ">=", 1000, "req/s", ""),
        ("< 5 min", "<", 5, "min", ""),
        ("<1e3", "<", 1000, "", ""),
    ],
)
def test_parse_target(text, op, value, unit, label):
    t = results.parse_target(text)
    assert (t.op, t.value, t.unit, t.label) == (op, value, unit, label)


def test_target_round_trips_through_format_and_rejects_non_targets():
    assert results.format_target(">", 1000, "msg/s") == "> 1000 msg/s"
    assert str(results.parse_target("p95 < 50 ms")) == "p95 < 50 ms"
    assert results.parse_target("fast please") is None
    assert results.parse_target(None) is None
    with pytest.raises(ValueError):
        results.format_target("~", 1)


def test_target_check_converts_time_units_and_orients_headroom():
    assert results.parse_target("< 5 min").check(200, "s") is True
    assert results.parse_target("< 5 min").check(301, "s") is False
    assert results.parse_target("< 200 ms").check(0.25, "s") is False
    assert results.parse_target("> 1000 msg/s").check(10, "ms") is None  # incompatible units
    assert results.parse_target("> 1000 msg/s").headroom(1500, "msg/s") == pytest.approx(1.5)
    assert results.parse_target("< 50 ms").headroom(25, "ms") == pytest.approx(2.0)
    assert results.parse_target("> 1000 messages/sec").check(1200, "msg/s") is True


def test_record_verdict_is_derived_when_left_empty_and_validated_when_given():
    assert MetricRecord("s", "t", "m", "msg/s", 1200, target="> 1000 msg/s").verdict == "pass"
    assert MetricRecord("s", "t", "m", "msg/s", 900, target="> 1000 msg/s").verdict == "fail"
    assert MetricRecord("s", "t", "m", "ms", None, target="< 5 ms").verdict == "invalid"
    assert MetricRecord("s", "t", "m", "ms", 3).verdict == "info"  # informational
    assert MetricRecord("s", "t", "m", "ms", 3, verdict="SKIPPED").verdict == "skipped"
    with pytest.raises(ValueError, match="verdict"):
        MetricRecord("s", "t", "m", "ms", 3, verdict="ok")


def test_record_direction_comes_from_field_target_or_unit():
    assert MetricRecord("s", "t", "m", "x", 1, higher_is_better=True).direction() is True
    assert MetricRecord("s", "t", "m", "x", 1, target="> 5 x").direction() is True
    assert MetricRecord("s", "t", "m", "ms", 1).direction() is False
    assert MetricRecord("s", "t", "m", "req/s", 1).direction() is True
    assert MetricRecord("s", "t", "m", "widgets", 1).direction() is None


def test_record_normalises_to_json_types():
    r = MetricRecord(
        "s",
        "t",
        "m",
        "ms",
        float("nan"),
        samples=[1, float("inf"), 2],
        histogram={"percentiles": {50: 1.0}},
        series={"a": [(0, 1)]},
    )
    assert r.value is None and r.samples == [1.0, 2.0]
    assert r.histogram == {"percentiles": {"50": 1.0}}
    assert r.series == {"a": [[0.0, 1.0]]}


# -- schema round trip ------------------------------------------------------------------------------


def test_schema_round_trip_write_then_load_is_equal(tmp_path):
    run = full_run()
    path = run.write(tmp_path / run.run_id)
    assert path == tmp_path / run.run_id / "metrics.json"
    loaded = RunResults.load(path.parent)
    assert loaded == run
    assert loaded.to_json() == run.to_json()
    data = json.loads(path.read_text())
    assert data["schema_version"] == results.SCHEMA_VERSION
    assert list(data)[:4] == ["schema_version", "run_id", "started", "finished"]
    rec = data["metrics"][0]
    assert {"suite", "test", "metric", "unit", "value", "target", "verdict", "message"} <= set(rec)
    assert "hdr" not in rec and "hdr" in data["metrics"][1]


def test_new_run_fills_machine_commit_and_tools(tmp_path):
    run = RunResults.new(profile="smoke", sut={"kind": "external", "url": "http://127.0.0.1:1"})
    assert re.fullmatch(r"\d{8}-\d{6}-\d+", run.run_id)
    for k in ("cpu_model", "logical_cores", "memory_bytes", "os", "python", "hostname"):
        assert k in run.machine
    assert set(run.commit) == {"sha", "dirty"}
    assert set(results.TOOL_DISTRIBUTIONS) == set(run.tools)
    assert run.tools["robotframework"]  # installed in the venv
    assert run.sut == {"kind": "external", "url": "http://127.0.0.1:1", "version": None, "root": None}
    run.finish()
    assert RunResults.load(run.write(tmp_path / "r.json")) == run


def test_tool_versions_reports_missing_distributions_as_none():
    assert results.tool_versions({"nothing": "no-such-distribution-xyz"}) == {"nothing": None}


def test_new_run_id_sorts_by_time():
    a = results.new_run_id(now=1_800_000_000, pid=99)
    b = results.new_run_id(now=1_800_000_001, pid=3)
    assert a == "20270115-080000-99" and a < b


def test_repo_commit_tolerates_no_git_and_reports_dirty(tmp_path):
    assert results.repo_commit(tmp_path) == {"sha": None, "dirty": None}
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    (tmp_path / "f").write_text("1")
    for cmd in (["git", "init", "-q"], ["git", "add", "f"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=tmp_path, check=True, env=env, timeout=30)
    clean = results.repo_commit(tmp_path)
    assert len(clean["sha"]) == 40 and clean["dirty"] is False
    (tmp_path / "f").write_text("2")
    assert results.repo_commit(tmp_path)["dirty"] is True


def test_write_is_atomic_and_leaves_no_temp_files(tmp_path):
    p = tmp_path / "metrics.json"
    full_run().write(p)
    run2 = full_run("20261127-190000-1")
    run2.write(p)
    assert RunResults.load(p).run_id == "20261127-190000-1"
    assert [x.name for x in tmp_path.iterdir()] == ["metrics.json"]
    assert stat.S_IMODE(p.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "no such file"),
        ("{not json", "not valid JSON (line 1"),
        ("[1, 2]", "not a metrics file"),
        ('{"run_id": "x"}', "not a metrics file"),
        ('{"run_id": "x", "metrics": [], "schema_version": 99}', "newer than supported"),
        ('{"run_id": "x", "metrics": [{"suite": "s"}]}', "metric #1"),
        (
            '{"run_id": "x", "metrics": [{"suite": "s", "test": "t", "metric": "m", "verdict": "meh"}]}',
            "verdict",
        ),
    ],
)
def test_load_errors_are_one_line(tmp_path, content, expected):
    p = tmp_path / "metrics.json"
    if content is not None:
        p.write_text(content)
    with pytest.raises(ResultsError) as exc:
        RunResults.load(p)
    assert expected in str(exc.value)
    assert "\n" not in str(exc.value)


def test_unknown_record_keys_survive_under_extra():
    rec = MetricRecord.from_dict(
        {"suite": "s", "test": "t", "metric": "m", "unit": "ms", "value": 1, "future": 7}
    )
    assert rec.extra["_unknown"] == {"future": 7}


# -- merge ------------------------------------------------------------------------------------------


def part(run_id: str, started: str, finished: str | None, records: list[MetricRecord], **meta) -> RunResults:
    base = full_run(run_id, started=started, finished=finished)
    base.metrics = []
    for k, v in meta.items():
        setattr(base, k, v)
    for r in records:
        base.add(r)
    return base


def rec(test: str, value: float) -> MetricRecord:
    return MetricRecord("Suite", test, "throughput", "msg/s", value, target="> 100 msg/s")


def test_merge_concatenates_records_and_spans_the_run(tmp_path):
    rid = "20261127-183000-1"
    a = part(rid, "2026-11-27T18:30:05+00:00", "2026-11-27T18:35:00+00:00", [rec("A", 1), rec("B", 2)])
    b = part(rid, "2026-11-27T18:30:01+00:00", "2026-11-27T18:39:00+00:00", [rec("C", 3)])
    pa, pb = results.part_path(tmp_path, 1), results.part_path(tmp_path, "pabot 2")
    assert pa == tmp_path / "parts" / "metrics-1.json" and pb.name == "metrics-pabot_2.json"
    a.write(pa)
    b.write(pb)
    merged = results.merge([pa, pb])
    assert [r.test for r in merged.metrics] == ["A", "B", "C"]
    assert merged.started == "2026-11-27T18:30:01+00:00"
    assert merged.finished == "2026-11-27T18:39:00+00:00"
    assert merged.machine == a.machine and merged.sut == a.sut and merged.tools == a.tools
    assert merged.extra["merged_parts"] == 2
    assert "merge_conflicts" not in merged.extra


def test_merge_notes_conflicting_metadata_and_open_parts():
    rid = "r1"
    a = part(rid, "2026-11-27T18:30:00+00:00", None, [rec("A", 1)])
    b = part(rid, "2026-11-27T18:31:00+00:00", "2026-11-27T18:32:00+00:00", [rec("B", 1)], profile="soak")
    merged = results.merge([a, b])
    assert merged.finished is None  # a part never finished
    assert merged.profile == "default"
    assert merged.extra["merge_conflicts"] == ["profile"]


def test_merge_refuses_different_runs_and_nothing():
    with pytest.raises(ResultsError, match="different runs"):
        results.merge([full_run("a"), full_run("b")])
    with pytest.raises(ResultsError, match="nothing to merge"):
        results.merge([])


def test_merge_run_dir_writes_metrics_json_and_is_idempotent(tmp_path):
    rid = "20261127-183000-1"
    part(rid, "2026-11-27T18:30:00+00:00", "2026-11-27T18:31:00+00:00", [rec("A", 1)]).write(
        results.part_path(tmp_path, 1)
    )
    part(rid, "2026-11-27T18:30:00+00:00", "2026-11-27T18:32:00+00:00", [rec("B", 2)]).write(
        results.part_path(tmp_path, 2)
    )
    first = results.merge_run_dir(tmp_path)
    second = results.merge_run_dir(tmp_path)
    assert first == second == RunResults.load(tmp_path)
    assert len(first.metrics) == 2


# -- history ----------------------------------------------------------------------------------------


def test_history_appends_one_line_per_run_and_drops_bulky_fields(tmp_path):
    h = tmp_path / "history.jsonl"
    results.append_history(h, full_run("r1"))
    failing = full_run("r2")
    failing.add(rec("slow", 1))  # 1 msg/s against > 100 msg/s: fail
    results.append_history(h, failing)
    lines = h.read_text().splitlines()
    assert len(lines) == 2
    entries = results.read_history(h)
    assert [e["run_id"] for e in entries] == ["r1", "r2"]
    assert [e["passed"] for e in entries] == [True, False]
    assert "series" not in entries[0]["metrics"][0] and "hdr" not in entries[0]["metrics"][1]
    assert entries[0]["metrics"][0]["samples"] == [1200.0, 1234.5, 1250.25]
    # a torn last line is ignored, a repeated run id keeps its last entry
    with open(h, "a") as f:
        f.write('{"run_id": "r3", "metr')
    results.append_history(h, full_run("r1"))
    assert [e["run_id"] for e in results.read_history(h)] == ["r2", "r1"]


def test_resolve_baseline_latest_passing_skips_failures_and_the_current_run(tmp_path):
    h = tmp_path / "history.jsonl"
    for rid, ok in (("r1", True), ("r2", True), ("r3", False), ("r4", True)):
        run = full_run(rid)
        if not ok:
            run.add(rec("slow", 1))
        results.append_history(h, run)
    assert (
        results.resolve_baseline("latest-passing", results_dir=tmp_path, exclude_run_id="r4").run_id == "r2"
    )
    assert results.resolve_baseline("latest", results_dir=tmp_path, exclude_run_id="r4").run_id == "r3"
    # from the history line (no run dir) the samples are there for the rank test
    r1 = results.resolve_baseline("r1", results_dir=tmp_path)
    assert r1.metrics[0].samples == [1200.0, 1234.5, 1250.25]
    # a run directory wins over the history line
    full_run("r2").write(tmp_path / "r2")
    assert results.resolve_baseline("r2", results_dir=tmp_path).metrics[0].series
    with pytest.raises(ResultsError, match="not found"):
        results.resolve_baseline("r9", results_dir=tmp_path)


def test_latest_baselines_only_come_from_the_same_profile(tmp_path):
    h = tmp_path / "history.jsonl"
    for rid, profile in (("d1", "default"), ("q1", "quick"), ("d2", "default"), ("q2", "quick")):
        run = full_run(rid)
        run.profile = profile
        results.append_history(h, run)
    assert results.resolve_baseline("latest", results_dir=tmp_path, profile="default").run_id == "d2"
    assert results.resolve_baseline("latest-passing", results_dir=tmp_path, profile="quick",
                                    exclude_run_id="q2").run_id == "q1"  # fmt: skip
    assert results.resolve_baseline("latest", results_dir=tmp_path).run_id == "q2"  # no profile: any run
    with pytest.raises(ResultsError, match="no run of profile soak"):
        results.resolve_baseline("latest", results_dir=tmp_path, profile="soak")


# -- summaries --------------------------------------------------------------------------------------


def test_summary_markdown_lists_every_target_figure_verdict_and_change():
    base = full_run("base")
    cur = full_run("cur")
    cur.metrics[0].value = 1000.0
    md = results.summary_markdown(cur, base)
    assert md.startswith("# Performance run cur")
    for needle in (
        "> 1000 msg/s",
        "p95 < 50 ms",
        "< 1000",
        "1,000 msg/s",
        "1,234 msg/s",
        "31.50 ms",
        "skipped",
        "Regression gate",
        "SUT exposes no pprof",
        "0123456789ab",
        "Baseline",
    ):
        assert needle in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(cur.metrics)
    assert "same (insufficient samples)" in md


def test_summary_markdown_escapes_pipes_and_works_without_baseline():
    run = full_run()
    run.add(MetricRecord("S|uite", "T", "m", "ms", 1.0))
    md = results.summary_markdown(run)
    assert "S\\|uite" in md and "Baseline" not in md


def test_summary_html_is_self_contained_with_table_and_charts():
    run = full_run()
    run.add(
        MetricRecord(
            "Agents",
            "Agents Finish",
            "duration",
            "s",
            40.0,
            target="< 5 min",
            extra={"spans": [["a1", 0, 30, "completed"], ["a2", 1, 40, "failed"]]},
        )
    )
    page = results.summary_html(run, full_run("base"))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 4  # headroom, throughput series, percentile curve, agent timeline
    assert "http://www.w3.org/2000/svg" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing external
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)
    assert "Task Latency p95" in page and "v-skipped" in page


def test_record_charts_pick_the_chart_for_the_data():
    run = full_run()
    kinds = [len(results.record_charts(r)) for r in run.metrics]
    assert kinds == [1, 1, 0]


# -- CLI: summary, merge and errors -----------------------------------------------------------------


def test_cli_summary_writes_both_files(tmp_path, capsys):
    run_dir = tmp_path / "r1"
    full_run("r1").write(run_dir)
    assert report_cli.main(["summary", str(run_dir)]) == 0
    assert (run_dir / "summary.md").read_text().startswith("# Performance run r1")
    assert "<svg" in (run_dir / "summary.html").read_text()


def test_cli_merge_with_history(tmp_path, capsys):
    rid = "r1"
    run_dir = tmp_path / rid
    part(rid, "2026-11-27T18:30:00+00:00", "2026-11-27T18:31:00+00:00", [rec("A", 1)]).write(
        results.part_path(run_dir, 1)
    )
    part(rid, "2026-11-27T18:30:00+00:00", "2026-11-27T18:32:00+00:00", [rec("B", 200)]).write(
        results.part_path(run_dir, 2)
    )
    assert report_cli.main(["merge", str(run_dir), "--history"]) == 0
    assert len(RunResults.load(run_dir).metrics) == 2
    assert [e["run_id"] for e in results.read_history(tmp_path / "history.jsonl")] == ["r1"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "{tmp}/missing"], "no such run"),
        (["summary", "{tmp}/bad.json"], "not valid JSON"),
        (["compare", "{tmp}/bad.json"], "not valid JSON"),
        (["noise", "{tmp}/bad.json", "{tmp}/bad.json"], "not valid JSON"),
        (["merge", "{tmp}/missing"], "no such file"),
    ],
)
def test_cli_errors_are_one_line_with_exit_2(tmp_path, capsys, argv, message):
    (tmp_path / "bad.json").write_text("{oops")
    code = report_cli.main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_cli_as_module_prints_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "conductor_perf.report_cli", "compare", str(tmp_path / "nope.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("conductor_perf.report_cli: error:") and "Traceback" not in proc.stderr
    usage = subprocess.run(
        [sys.executable, "-m", "conductor_perf.report_cli"], capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 2
