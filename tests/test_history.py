"""Run history: one line per run, torn lines, and the choice of a baseline by profile and SUT identity."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sample_runs import full_run, rec

from conductor_perf import history, report_cli
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




# -- baselines per SUT identity ---------------------------------------------------------------------

EMBEDDED = {"kind": "embedded", "url": "http://127.0.0.1:8123", "version": "ref-1", "root": "/tmp/runs", "pid": 7}
EXTERNAL = {"kind": "external", "url": "http://127.0.0.1:14355/", "version": "0.76.0-SNAPSHOT-ce73c6a",
            "root": None, "pid": None}  # fmt: skip
SHA_A = "f7ed51" + "0" * 58
SHA_B = "0badc0" + "1" * 58
BINARY_A = {"kind": "binary", "url": "http://127.0.0.1:40001/", "version": "0.76.0-SNAPSHOT-ce73c6a",
            "root": "/r", "pid": 9, "binary_sha256": SHA_A}  # fmt: skip
BINARY_B = {**BINARY_A, "binary_sha256": SHA_B}


def history_of(tmp_path, *runs: tuple[str, dict | None, str]) -> None:
    """Append runs given as (run id, sut block or None for a line without one, profile)."""
    for rid, sut, profile in runs:
        run = full_run(rid)
        run.profile = profile
        run.sut = dict(sut) if sut is not None else {"kind": None, "url": None, "version": None, "root": None}
        history.append_history(tmp_path / "history.jsonl", run)


def pick(tmp_path, sut, profile="default", spec="latest-passing", exclude="current"):
    return history.resolve_baseline(spec, results_dir=tmp_path, exclude_run_id=exclude, profile=profile,
                                     sut=sut).run_id  # fmt: skip


def test_latest_baselines_only_come_from_the_same_sut_identity(tmp_path):
    history_of(tmp_path, ("e1", EMBEDDED, "default"), ("x1", EXTERNAL, "default"), ("a1", BINARY_A, "default"),
               ("b1", BINARY_B, "default"), ("e2", {**EMBEDDED, "pid": 8, "url": "http://127.0.0.1:9/"}, "default"),
               ("xq", EXTERNAL, "quick"))  # fmt: skip
    assert pick(tmp_path, EMBEDDED) == "e2"  # url, root and pid are not part of the identity
    assert pick(tmp_path, EXTERNAL) == "x1"  # never the newer embedded run, nor the quick one
    assert pick(tmp_path, EXTERNAL, profile="quick") == "xq"
    assert pick(tmp_path, BINARY_A) == "a1"  # same version, but only the same binary
    assert pick(tmp_path, {**BINARY_B, "binary_sha256": SHA_B.upper()}) == "b1"
    assert pick(tmp_path, BINARY_A, spec="latest") == "a1"


def test_no_baseline_says_what_it_looked_for(tmp_path):
    history_of(tmp_path, ("e1", EMBEDDED, "default"), ("a1", BINARY_A, "default"))
    with pytest.raises(ResultsError) as exc:
        pick(tmp_path, EXTERNAL)
    assert str(exc.value) == (
        f"no earlier passing default run of external conductor 0.76.0-SNAPSHOT-ce73c6a in {tmp_path / 'history.jsonl'}"
        " (2 other passing run(s) in the history; the newest, a1, is a default run of binary conductor "
        "0.76.0-SNAPSHOT-ce73c6a (sha256 f7ed51000000))"
    )
    with pytest.raises(ResultsError, match=r"^no earlier passing default run of binary conductor "
                                           r"0\.76\.0-SNAPSHOT-ce73c6a \(sha256 0badc0111111\) in "):  # fmt: skip
        pick(tmp_path, BINARY_B)
    with pytest.raises(ResultsError, match=r"^no earlier quick run of embedded conductor ref-1: .* does not exist yet"):
        pick(tmp_path / "empty", EMBEDDED, profile="quick", spec="latest")


def test_the_current_run_is_never_its_own_baseline(tmp_path):
    history_of(tmp_path, ("e1", EMBEDDED, "default"))
    with pytest.raises(ResultsError, match="no earlier passing default run of embedded conductor ref-1 in"):
        pick(tmp_path, EMBEDDED, exclude="e1")


def test_a_line_without_sut_identity_counts_as_embedded_of_unknown_version(tmp_path):
    history_of(tmp_path, ("old", None, "default"), ("e1", EMBEDDED, "default"))
    raw = tmp_path / "history.jsonl"
    lines = raw.read_text().splitlines()
    legacy = json.loads(lines[0])
    del legacy["sut"]  # as written by hand or by an old tool: no sut block at all
    raw.write_text(json.dumps(legacy) + "\n" + lines[1] + "\n")
    assert pick(tmp_path, {"kind": None}) == "old"  # a current run without identity: the same (unknown) one
    assert pick(tmp_path, {}) == "old"
    assert pick(tmp_path, {"kind": "embedded", "version": "unknown"}) == "old"
    assert pick(tmp_path, EMBEDDED) == "e1"
    with pytest.raises(ResultsError, match="external conductor"):
        pick(tmp_path, EXTERNAL)  # never a real-server run


def test_without_sut_any_identity_is_a_baseline(tmp_path):
    history_of(tmp_path, ("e1", EMBEDDED, "default"), ("x1", EXTERNAL, "default"))
    assert pick(tmp_path, None) == "x1"


def test_an_explicit_baseline_is_used_as_given_whatever_its_sut(tmp_path):
    history_of(tmp_path, ("e1", EMBEDDED, "default"), ("x1", EXTERNAL, "default"))
    assert pick(tmp_path, EXTERNAL, spec="e1") == "e1"
    base = history.resolve_baseline("e1", results_dir=tmp_path)
    assert history.baseline_note(base, "e1") == (
        "a default run of embedded conductor ref-1, commit 0123456789ab (given as e1)")


def test_baseline_note_says_why_this_run():
    run = full_run("a1")
    run.sut = dict(BINARY_A)
    assert history.baseline_note(run, "latest-passing") == (
        "the newest passing default run of binary conductor 0.76.0-SNAPSHOT-ce73c6a (sha256 f7ed51000000), "
        "commit 0123456789ab")
    run.commit = {"sha": None, "dirty": None}
    run.profile = "quick"
    assert history.baseline_note(run, "latest").startswith("the newest quick run of binary conductor")
    assert history.baseline_note(run, "latest").endswith("commit no git")


# -- the command line uses the same rule ------------------------------------------------------------


def test_cli_compare_picks_a_baseline_of_the_same_sut_and_says_which(tmp_path, capsys):
    history_of(tmp_path, ("20261201-000000-1", EXTERNAL, "default"), ("20261201-000100-2", EMBEDDED, "default"))
    current = full_run("20261201-000200-3")
    current.sut = dict(EXTERNAL)
    current.write(tmp_path / current.run_id)
    assert report_cli.main(["compare", str(tmp_path / current.run_id)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[:2] == [
        "baseline 20261201-000000-1  vs  current 20261201-000200-3",
        "baseline: the newest default run of external conductor 0.76.0-SNAPSHOT-ce73c6a that measured these "
        "figures, commit 0123456789ab (it passed)",
    ]
    assert report_cli.main(["compare", str(tmp_path / current.run_id), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["baseline"] == "20261201-000000-1"
    assert data["sut"] == {"kind": "external", "version": "0.76.0-SNAPSHOT-ce73c6a", "binary_sha256": None}


def test_cli_compare_without_a_baseline_of_the_same_sut_says_why(tmp_path, capsys):
    history_of(tmp_path, ("20261201-000100-2", EMBEDDED, "default"))
    current = full_run("20261201-000200-3")
    current.sut = dict(BINARY_A)
    current.write(tmp_path / current.run_id)
    assert report_cli.main(["compare", str(tmp_path / current.run_id)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("conductor_perf.report_cli: error: no earlier default run of binary conductor "
                          "0.76.0-SNAPSHOT-ce73c6a (sha256 f7ed51000000) that measured any of the 2 figures of this "
                          "run in ")  # fmt: skip
    assert err.count("\n") == 1


def test_cli_compare_with_an_explicit_baseline_of_another_sut_warns(tmp_path, capsys):
    history_of(tmp_path, ("20261201-000100-2", BINARY_B, "default"))
    current = full_run("20261201-000200-3")
    current.sut = dict(BINARY_A)
    current.write(tmp_path / current.run_id)
    assert report_cli.main(["compare", str(tmp_path / current.run_id), "--baseline", "20261201-000100-2"]) == 0
    out = capsys.readouterr().out
    assert "baseline: a default run of binary conductor 0.76.0-SNAPSHOT-ce73c6a (sha256 0badc0111111)" in out
    assert f"warning: SUT binary_sha256 differs: {SHA_B} vs {SHA_A}" in out


# -- latest-measured: the newest run of the same SUT that measured these figures, passing or not ------


def test_latest_measured_takes_a_failing_run_of_the_same_build_and_says_so(tmp_path):
    h = tmp_path / "history.jsonl"
    first = full_run("a1")
    first.sut = dict(BINARY_A)
    first.add(rec("slow", 1))  # a real build misses a target in every run
    history.append_history(h, first)
    other_build = full_run("b1")
    other_build.sut = dict(BINARY_B)
    history.append_history(h, other_build)
    second = full_run("a2")
    second.sut = dict(BINARY_A)
    second.add(rec("slow", 1))
    with pytest.raises(ResultsError, match="no earlier passing default run of binary conductor"):
        history.resolve_baseline("latest-passing", results_dir=tmp_path, exclude_run_id="a2", profile="default",
                                 sut=second.sut)  # fmt: skip
    base = history.resolve_baseline("latest-measured", results_dir=tmp_path, exclude_run_id="a2", profile="default",
                                    sut=second.sut, figures=history.measured_figures(second))  # fmt: skip
    assert base.run_id == "a1"
    assert history.baseline_note(base, "latest-measured") == (
        "the newest default run of binary conductor 0.76.0-SNAPSHOT-ce73c6a (sha256 f7ed51000000) that measured "
        "these figures, commit 0123456789ab (it missed 1 target(s): 1 failed, 0 invalid)")  # fmt: skip


def test_latest_measured_skips_runs_that_measured_none_of_the_figures(tmp_path):
    h = tmp_path / "history.jsonl"
    measured = full_run("m1")
    history.append_history(h, measured)
    other_suite = full_run("o1")
    other_suite.metrics = [rec("elsewhere", 500)]  # another suite's figure only
    history.append_history(h, other_suite)
    skipped = full_run("s1")
    for r in skipped.metrics:
        r.value, r.verdict = None, "skipped"
    history.append_history(h, skipped)
    figures = history.measured_figures(full_run("now"))
    assert figures == {("Message Bus", "Bus Throughput Meets Target", "throughput"),
                       ("API", "Task Latency p95", "p95 latency")}  # the skipped goroutines are not measured
    assert history.resolve_baseline("latest-measured", results_dir=tmp_path, figures=figures).run_id == "m1"
    assert history.resolve_baseline("latest-measured", results_dir=tmp_path).run_id == "o1"  # any measured figure
    assert history.resolve_baseline("latest", results_dir=tmp_path).run_id == "s1"
    with pytest.raises(ResultsError, match=r"no earlier run that measured any of the 1 figures of this run in .* "
                                           r"\(3 other run\(s\) in the history"):  # fmt: skip
        history.resolve_baseline("latest-measured", results_dir=tmp_path, figures=[("X", "Y", "Z")])
    assert history.DEFAULT_BASELINE == "latest-measured"


REGRESSION_SUITE = Path(__file__).resolve().parent.parent / "suites" / "99__regression.robot"


def test_the_regression_suite_compares_a_second_run_of_a_build_with_its_first_failing_run(tmp_path):
    """Two runs of the same conductor-loop build, each missing a target: the second is compared with the first."""
    results = tmp_path / "results"
    first = full_run("20261205-100000-1")
    first.sut = dict(BINARY_A)
    first.metrics[0].samples = [1200.0, 1210.0, 1190.0, 1205.0, 1195.0, 1201.0]
    first.add(rec("slow", 1))
    history.append_history(results / "history.jsonl", first)
    current = results / "20261205-110000-2"
    lines = [{"metric": "sut", "suite": "", "test": "", "unit": "", "value": 0, "verdict": "info", "extra": BINARY_A},
             {"suite": "Message Bus", "test": "Bus Throughput Meets Target", "metric": "throughput", "unit": "msg/s",
              "value": 1200.0, "target": "> 1000 msg/s", "verdict": "pass",
              "samples": [1198.0, 1204.0, 1193.0, 1207.0, 1199.0, 1202.0]},
             {"suite": "Suite", "test": "slow", "metric": "throughput", "unit": "msg/s", "value": 1.0,
              "target": "> 100 msg/s", "verdict": "fail"}]  # fmt: skip
    (current / "metrics.d").mkdir(parents=True)
    (current / "metrics.d" / "1.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCTOR_", "PERF_", "PROFILE"))}
    done = subprocess.run([sys.executable, "-m", "robot", "--outputdir", str(tmp_path / "out"), "--pythonpath",
                           str(REGRESSION_SUITE.parent.parent / "libraries"), "--variable", f"RESULTS_DIR:{current}",
                           str(REGRESSION_SUITE)], capture_output=True, text=True, timeout=120, env=env,
                          cwd=REGRESSION_SUITE.parent.parent)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    message = " ".join(done.stdout.split())
    assert "baseline 20261205-100000-1: the newest default run of binary conductor 0.76.0-SNAPSHOT-ce73c6a" in message
    assert "(it missed 1 target(s): 1 failed, 0 invalid)" in message and "SKIP" not in done.stdout
