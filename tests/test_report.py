"""End-of-run report: attempts, metrics.json, summary and FACT lines from the per-process files."""

from __future__ import annotations

import json

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
    assert "1 figures: 1 pass" in text
    data = json.loads((d / "metrics.json").read_text())
    assert data["sut"]["kind"] == "embedded"
    assert [m["value"] for m in data["metrics"]] == [1200]
    assert data["extra"]["superseded_attempts"][0]["value"] == 900
    assert (d / "summary.md").read_text().count("bus write throughput") == 1
    assert (d / "summary.html").exists()
    assert "Performance benchmarks complete" in (d / "MESSAGE-BUS.md").read_text()
    assert len((tmp_path / "history.jsonl").read_text().splitlines()) == 1
