"""Run history: one line per run, torn lines, and the choice of a baseline by profile and SUT identity."""

from __future__ import annotations

import pytest
from sample_runs import full_run, rec

from conductor_perf import history
from conductor_perf.records import ResultsError


def test_history_appends_one_line_per_run_and_drops_bulky_fields(tmp_path):
    h = tmp_path / "history.jsonl"
    history.append_history(h, full_run("r1"))
    failing = full_run("r2")
    failing.add(rec("slow", 1))  # 1 msg/s against > 100 msg/s: fail
    history.append_history(h, failing)
    lines = h.read_text().splitlines()
    assert len(lines) == 2
    entries = history.read_history(h)
    assert [e["run_id"] for e in entries] == ["r1", "r2"]
    assert [e["passed"] for e in entries] == [True, False]
    assert "series" not in entries[0]["metrics"][0] and "hdr" not in entries[0]["metrics"][1]
    assert entries[0]["metrics"][0]["samples"] == [1200.0, 1234.5, 1250.25]
    # a torn last line is ignored, a repeated run id keeps its last entry
    with open(h, "a") as f:
        f.write('{"run_id": "r3", "metr')
    history.append_history(h, full_run("r1"))
    assert [e["run_id"] for e in history.read_history(h)] == ["r2", "r1"]


def test_resolve_baseline_latest_passing_skips_failures_and_the_current_run(tmp_path):
    h = tmp_path / "history.jsonl"
    for rid, ok in (("r1", True), ("r2", True), ("r3", False), ("r4", True)):
        run = full_run(rid)
        if not ok:
            run.add(rec("slow", 1))
        history.append_history(h, run)
    assert (
        history.resolve_baseline("latest-passing", results_dir=tmp_path, exclude_run_id="r4").run_id == "r2"
    )
    assert history.resolve_baseline("latest", results_dir=tmp_path, exclude_run_id="r4").run_id == "r3"
    # from the history line (no run dir) the samples are there for the rank test
    r1 = history.resolve_baseline("r1", results_dir=tmp_path)
    assert r1.metrics[0].samples == [1200.0, 1234.5, 1250.25]
    # a run directory wins over the history line
    full_run("r2").write(tmp_path / "r2")
    assert history.resolve_baseline("r2", results_dir=tmp_path).metrics[0].series
    with pytest.raises(ResultsError, match="not found"):
        history.resolve_baseline("r9", results_dir=tmp_path)


def test_latest_baselines_only_come_from_the_same_profile(tmp_path):
    h = tmp_path / "history.jsonl"
    for rid, profile in (("d1", "default"), ("q1", "quick"), ("d2", "default"), ("q2", "quick")):
        run = full_run(rid)
        run.profile = profile
        history.append_history(h, run)
    assert history.resolve_baseline("latest", results_dir=tmp_path, profile="default").run_id == "d2"
    assert history.resolve_baseline("latest-passing", results_dir=tmp_path, profile="quick",
                                    exclude_run_id="q2").run_id == "q1"  # fmt: skip
    assert history.resolve_baseline("latest", results_dir=tmp_path).run_id == "q2"  # no profile: any run
    with pytest.raises(ResultsError, match="no earlier soak run in .*the newest, q2, is a quick run of embedded"):
        history.resolve_baseline("latest", results_dir=tmp_path, profile="soak")


