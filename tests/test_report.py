"""End-of-run report (attempts, metrics.json, summary and FACT lines from the per-process files),
the one-page summaries and charts, and the command line's summary and errors."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from sample_runs import full_run

from conductor_perf import report, report_cli
from conductor_perf.records import MetricRecord
from conductor_perf.report import finalize, latest_attempts, to_record


def rec(test, metric, value, verdict, attempt=1, **more):
    return {"suite": "Bus", "test": test, "metric": metric, "value": value, "unit": "ms", "verdict": verdict,
            "attempt": attempt, "time": 1.0, **more}  # fmt: skip


def test_a_re_measured_test_keeps_only_its_last_attempt():
    records = [
        rec("A", "p95", 60, "fail"),
        rec("B", "p95", 1, "pass"),
        rec("A", "p95", 40, "pass", attempt=2),
    ]
    kept, superseded = latest_attempts(records)
    assert [(r["test"], r["value"]) for r in kept] == [("B", 1), ("A", 40)]
    assert [(r["test"], r["value"]) for r in superseded] == [("A", 60)]


def test_unknown_keys_go_to_extra():
    r = to_record(rec("A", "p95", 3, "pass", target="< 50 ms", writers=10))
    assert r.extra["writers"] == 10 and r.extra["attempt"] == 1
    assert r.target == "< 50 ms" and r.verdict == "pass"


def test_finalize_writes_metrics_summary_and_facts(tmp_path):
    d = tmp_path / "run-1"
    (d / "metrics.d").mkdir(parents=True)
    lines = [rec("A", "bus write throughput", 900, "fail", target="> 1000 msg/s"),
             rec("A", "bus write throughput", 1200, "pass", attempt=2, target="> 1000 msg/s"),
             {"metric": "sut", "suite": "", "test": "", "unit": "", "value": 0, "verdict": "info", "time": 0.5,
              "extra": {"kind": "embedded", "version": "x"}}]  # fmt: skip
    (d / "metrics.d" / "1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"torn')
    text = finalize(d, profile="quick", history=tmp_path / "history.jsonl")
    assert "1 figure: 1 pass" in text
    data = json.loads((d / "metrics.json").read_text())
    assert data["sut"]["kind"] == "embedded"
    assert [m["value"] for m in data["metrics"]] == [1200]
    assert data["extra"]["superseded_attempts"][0]["value"] == 900
    assert (d / "summary.md").read_text().count("bus write throughput") == 1
    assert (d / "summary.html").exists()
    assert "Performance benchmarks complete" in (d / "MESSAGE-BUS.md").read_text()
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1



def test_current_run_carries_the_sut_identity_for_the_regression_suite(tmp_path):
    d = tmp_path / "run-2"
    (d / "metrics.d").mkdir(parents=True)
    sut = {"kind": "binary", "url": "http://127.0.0.1:1/", "version": "0.76.0", "pid": 3, "binary_sha256": "AB" * 32}
    lines = [{"metric": "sut", "suite": "", "test": "", "unit": "", "value": 0, "verdict": "info", "time": 0.5,
              "extra": sut},
             rec("A", "bus write throughput", 900, "fail", target="> 1000 msg/s", samples=[880, 900, 910]),
             rec("B", "skipped", None, "skipped", message="no root")]  # fmt: skip
    (d / "metrics.d" / "1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    run = report.current_run(d, profile="quick")
    assert (run.run_id, run.profile) == ("run-2", "quick")
    assert [r.metric for r in run.metrics] == ["bus write throughput"]
    assert run.identity.to_dict() == {"kind": "binary", "version": "0.76.0", "binary_sha256": "ab" * 32}
    assert run.sut["url"] == "http://127.0.0.1:1/"


# -- summaries --------------------------------------------------------------------------------------


def test_summary_markdown_lists_every_target_figure_verdict_and_change():
    base = full_run("base")
    cur = full_run("cur")
    cur.metrics[0].value = 1000.0
    md = report.summary_markdown(cur, base)
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
    md = report.summary_markdown(run)
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
    page = report.summary_html(run, full_run("base"))
    assert page.startswith("<!DOCTYPE html>")
    assert page.count("<svg") == 4  # headroom, throughput series, percentile curve, agent timeline
    assert "http://www.w3.org/2000/svg" in page
    assert not re.search(r'(src|href)="(https?:)?//', page)  # nothing external
    for svg in re.findall(r"<svg.*?</svg>", page, flags=re.S):
        ET.fromstring(svg)
    assert "Task Latency p95" in page and "v-skipped" in page


def test_record_charts_pick_the_chart_for_the_data():
    run = full_run()
    kinds = [len(report.record_charts(r)) for r in run.metrics]
    assert kinds == [1, 1, 0]


# -- CLI: summary and errors -----------------------------------------------------------------------


def test_cli_summary_writes_both_files(tmp_path, capsys):
    run_dir = tmp_path / "r1"
    full_run("r1").write(run_dir)
    assert report_cli.main(["summary", str(run_dir)]) == 0
    assert (run_dir / "summary.md").read_text().startswith("# Performance run r1")
    assert "<svg" in (run_dir / "summary.html").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "{tmp}/missing"], "no such run"),
        (["summary", "{tmp}/bad.json"], "not valid JSON"),
        (["compare", "{tmp}/bad.json"], "not valid JSON"),
        (["noise", "{tmp}/bad.json", "{tmp}/bad.json"], "not valid JSON"),
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


def test_passing_tests_get_their_figures_in_xunit(tmp_path):
    from conductor_perf.report import add_messages_to_xunit

    (tmp_path / "output.xml").write_text(
        '<?xml version="1.0"?><robot schemaversion="5"><suite name="Suites"><suite name="Bus">'
        '<test name="Fast"><status status="PASS">bus write throughput 5000 msg/s (target &gt; 1000 msg/s)</status></test>'
        '<test name="Slow"><status status="FAIL">p95: 80 ms (target &lt; 50 ms): FAIL</status></test>'
        '<test name="Quiet"><status status="PASS"/></test>'
        "</suite></suite></robot>",
        encoding="utf-8",
    )
    (tmp_path / "xunit.xml").write_text(
        '<?xml version="1.0" encoding="UTF-8"?><testsuite name="Suites"><testsuite name="Bus">'
        '<testcase classname="Suites.Bus" name="Fast" time="1.0"></testcase>'
        '<testcase classname="Suites.Bus" name="Slow" time="1.0"><failure message="p95: 80 ms" type="AssertionError"/>'
        '</testcase><testcase classname="Suites.Bus" name="Quiet" time="1.0"></testcase></testsuite></testsuite>',
        encoding="utf-8",
    )
    assert add_messages_to_xunit(tmp_path) == 1
    text = (tmp_path / "xunit.xml").read_text(encoding="utf-8")
    assert "<system-out>bus write throughput 5000 msg/s (target &gt; 1000 msg/s)</system-out>" in text
    assert text.count("system-out") == 2  # the failure keeps robot's own message; an empty message adds nothing
    assert add_messages_to_xunit(tmp_path) == 0  # once
    assert add_messages_to_xunit(tmp_path / "missing") == 0
