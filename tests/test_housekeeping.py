"""Disk housekeeping: a finished run keeps its reports and loses its scratch data; old runs are pruned."""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conductor_perf import housekeeping, report_cli
from conductor_perf.context import RunContext

REPO = Path(__file__).resolve().parent.parent


def _run_dir(tmp_path: Path, name: str = "20261205-100000-1") -> Path:
    run = tmp_path / name
    (run / "sut-1" / "root" / "proj" / "task").mkdir(parents=True)
    (run / "sut-1" / "root" / "proj" / "task" / "TASK-MESSAGE-BUS.md").write_bytes(b"x" * 50_000)
    (run / "sut-1" / "storage-1" / "runs").mkdir(parents=True)
    (run / "sut-1" / ".fs-probe-1-2" / "0").mkdir(parents=True)
    (run / "sut-1" / ".fs-probe-1-3").mkdir(parents=True)
    (run / "sut-1" / "conductor.log").write_text("GET /api/v1/health 200\n" * 60_000, encoding="utf-8")
    (run / "output.xml").write_text("<robot/>", encoding="utf-8")
    (run / "metrics.json").write_text("{}", encoding="utf-8")
    return run


def test_scratch_is_noted_once_and_only_inside_the_run(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    housekeeping.note_scratch(run, run / "sut-1" / "root")
    housekeeping.note_scratch(run, run / "sut-1" / "root")
    housekeeping.note_scratch(run, "sut-1/.fs-probe-*")
    assert (run / housekeeping.SCRATCH_LIST).read_text(encoding="utf-8").splitlines() == [
        "sut-1/root", "sut-1/.fs-probe-*"]  # fmt: skip
    with pytest.raises(ValueError, match="outside the run directory"):
        housekeeping.note_scratch(run, tmp_path / "elsewhere")
    with pytest.raises(ValueError):
        housekeeping.note_scratch(run, run / ".." / "other")
    with pytest.raises(ValueError):
        housekeeping.note_scratch(run, run)
    assert [p.name for p in housekeeping.scratch_paths(run)] == ["root", ".fs-probe-1-2", ".fs-probe-1-3"]


def test_a_hand_edited_list_never_reaches_outside(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    outside = tmp_path / "precious"
    outside.mkdir()
    (run / "link").symlink_to(outside)
    (run / housekeeping.SCRATCH_LIST).write_text(f"../precious\n{outside}\nlink\n", encoding="utf-8")
    assert housekeeping.scratch_paths(run) == []
    housekeeping.remove_scratch(run)
    assert outside.is_dir()


def test_the_context_notes_scratch_inside_its_results_folder(tmp_path: Path) -> None:
    ctx = RunContext(results_dir=tmp_path)
    assert ctx.note_scratch(tmp_path / "sut-1" / "root")
    assert not ctx.note_scratch("/srv/conductor/root")  # an external SUT's root is never ours
    assert (tmp_path / housekeeping.SCRATCH_LIST).read_text(encoding="utf-8") == "sut-1/root\n"


def test_remove_scratch_keeps_reports_and_compresses_large_logs(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    for path in ("sut-1/root", "sut-1/storage-1", "sut-1/.fs-probe-*", "sut-1/never-created"):
        housekeeping.note_scratch(run, path)
    log_text = (run / "sut-1" / "conductor.log").read_text(encoding="utf-8")
    cleaned = housekeeping.remove_scratch(run)
    assert sorted(cleaned.removed) == ["sut-1/.fs-probe-1-2", "sut-1/.fs-probe-1-3", "sut-1/root", "sut-1/storage-1"]
    assert not (run / "sut-1" / "root").exists() and not (run / "sut-1" / "storage-1").exists()
    assert (run / "output.xml").is_file() and (run / "metrics.json").is_file()
    assert cleaned.compressed == ["sut-1/conductor.log.gz"]
    assert not (run / "sut-1" / "conductor.log").exists()
    assert gzip.decompress((run / "sut-1" / "conductor.log.gz").read_bytes()).decode() == log_text
    assert cleaned.size_after < cleaned.size_before
    assert cleaned.problems == []
    assert "run directory" in cleaned.summary() and "removed 4 scratch folder(s)" in cleaned.summary()
    assert cleaned.elapsed_s > 0
    assert housekeeping.remove_scratch(run).removed == []  # twice is harmless


def test_finish_cleans_a_run_or_each_run_inside_a_folder_and_says_its_size(tmp_path: Path) -> None:
    runs = [_run_dir(tmp_path / "cmp", f"rounds/0{i}-A") for i in (1, 2)]
    for run in runs:
        housekeeping.note_scratch(run, "sut-1/root")
    kept = housekeeping.finish(tmp_path / "cmp", keep=True, runs=runs, label="comparison folder")
    assert kept.startswith("comparison folder ") and kept.endswith(" MB, scratch data kept (--keep-data)")
    assert all((run / "sut-1" / "root").is_dir() for run in runs)
    line = housekeeping.finish(tmp_path / "cmp", keep=False, runs=[*runs, tmp_path / "cmp" / "missing"],
                               label="comparison folder")  # fmt: skip
    assert line.startswith("comparison folder ") and "removed 2 scratch folder(s)" in line
    assert not any((run / "sut-1" / "root").exists() for run in runs)
    assert all((run / "output.xml").is_file() for run in runs)
    one = _run_dir(tmp_path, "r1")
    housekeeping.note_scratch(one, "sut-1/root")
    assert "run directory" in housekeeping.finish(one, keep=False) and not (one / "sut-1" / "root").exists()


def test_small_logs_stay_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_text("short\n", encoding="utf-8")
    assert housekeeping.compress_logs(tmp_path) == ([], [])
    assert (tmp_path / "a.log").is_file()


def _age(path: Path, seconds_ago: float) -> None:
    t = path.stat().st_mtime - seconds_ago
    os.utime(path, (t, t))


def test_prune_keeps_the_newest_runs_the_history_and_a_valid_latest(tmp_path: Path) -> None:
    runs = [_run_dir(tmp_path, f"2026120{i}-100000-1") for i in range(1, 5)]
    for age, run in zip((400, 300, 200, 100), runs, strict=True):
        _age(run, age)
    (tmp_path / "history.jsonl").write_text('{"run_id": "x"}\n', encoding="utf-8")
    (tmp_path / "README.md").write_text("results\n", encoding="utf-8")
    (tmp_path / "libdoc").mkdir()  # not a run: never touched
    (tmp_path / "latest").symlink_to(runs[0].name)  # pointing at a run that goes
    pruned = housekeeping.prune_runs(tmp_path, 2)
    assert pruned.removed == [runs[0].name, runs[1].name]
    assert pruned.kept == [runs[2].name, runs[3].name]
    assert not runs[0].exists() and not runs[1].exists() and runs[2].is_dir()
    assert (tmp_path / "history.jsonl").read_text(encoding="utf-8") == '{"run_id": "x"}\n'
    assert (tmp_path / "README.md").is_file() and (tmp_path / "libdoc").is_dir()
    assert os.readlink(tmp_path / "latest") == runs[3].name and pruned.latest == runs[3].name
    assert pruned.freed > 0 and "removed 2 run directories" in pruned.summary()
    assert housekeeping.prune_runs(tmp_path, 0).kept == []
    assert not (tmp_path / "latest").is_symlink()  # nothing left to point at
    with pytest.raises(ValueError):
        housekeeping.prune_runs(tmp_path, -1)


def test_prune_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _run_dir(tmp_path, "a")
    assert report_cli.main(["prune", "--keep", "0", "--results-dir", str(tmp_path)]) == 0
    assert "removed 1 run directory" in capsys.readouterr().out
    assert report_cli.main(["prune", "--keep", "1", "--results-dir", str(tmp_path / "none")]) == 2


TINY_SUITE = f"""*** Settings ***
Resource          {REPO}/resources/common.resource
Suite Setup       Start Conductor For Suite
Suite Teardown    Stop Conductor For Suite

*** Test Cases ***
Conductor Answers
    Record File System State
    Conductor Should Be Healthy
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep", [False, True], ids=["cleaned", "kept"])
def test_the_runner_removes_the_scratch_of_a_finished_run(tmp_path: Path, keep: bool) -> None:
    suite = tmp_path / "tiny.robot"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "conductor_perf.run", "--results", str(results), "--run-id", "r1", str(suite)]
    proc = subprocess.run(cmd + (["--keep-data"] if keep else []), cwd=REPO, capture_output=True, text=True,
                          timeout=110, env={k: v for k, v in os.environ.items() if not k.startswith("CONDUCTOR_")})  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = results / "r1"
    roots = list(run.glob("sut-*/root"))
    probes = list(run.glob("sut-*/.fs-probe-*"))
    assert (run / "metrics.json").is_file() and (run / "log.html").is_file()
    assert list(run.glob("sut-*/conductor.log*")), "the SUT's log stays"
    if keep:
        assert roots and probes
        assert "scratch data kept" in proc.stdout
    else:
        assert roots == [] and probes == []
        assert "run directory" in proc.stdout and "removed 2 scratch folder(s)" in proc.stdout
