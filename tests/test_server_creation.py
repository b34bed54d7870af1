"""Run creation through the server: an instance with task launch disabled, real conductor-loop and reference alike."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conductor_perf.bench import server_creation
from conductor_perf.formats import runs
from conductor_perf.target import Target, start_embedded


def _check_created(target: Target, result: server_creation.ServerCreationResult, count: int) -> None:
    assert result.runs == count and result.statuses == {201: count}, result.errors
    assert result.run_dirs_missing == 0 and not result.errors
    assert result.latency["count"] == count and result.latency["p50"] > 0
    assert result.rate > 0 and result.histogram
    project = Path(target.root) / server_creation.PROJECT
    tasks = sorted(p for p in project.iterdir() if p.is_dir())
    assert len(tasks) == count
    for task in tasks:
        assert (task / "TASK.md").read_text(encoding="utf-8").strip() == "run creation benchmark"
        assert len(list((task / runs.RUNS_DIR).iterdir())) == 1
    # nothing is launched: no run-info.yaml appears, now or a moment later
    assert result.run_info_written == 0
    time.sleep(0.5)
    assert list(runs.iter_run_info_paths(target.root)) == []


@pytest.mark.timeout(60)
def test_the_real_server_with_task_start_disabled_creates_run_directories_only(start_real_server) -> None:
    target = start_real_server(server_creation.DISABLE_FLAG)
    result = server_creation.creation_through_server(target, duration=30, max_runs=25)
    _check_created(target, result, 25)


@pytest.mark.timeout(60)
def test_the_reference_with_task_start_disabled_does_the_same(tmp_path: Path) -> None:
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=[server_creation.DISABLE_FLAG])
    try:
        result = server_creation.creation_through_server(target, duration=30, max_runs=25)
        _check_created(target, result, 25)
    finally:
        target.stop()


@pytest.mark.timeout(60)
def test_a_dead_server_ends_the_measurement_with_the_reason(tmp_path: Path) -> None:
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=[server_creation.DISABLE_FLAG])
    target.stop()
    with pytest.raises(OSError):
        server_creation.creation_through_server(target, duration=1)
    with pytest.raises(ValueError, match="no runs root"):
        server_creation.creation_through_server(Target(kind="external", url="http://127.0.0.1:9/"), duration=1)


def test_a_sibling_folder_is_beside_the_root_on_its_file_system(tmp_path: Path) -> None:
    root = tmp_path / "sut" / "root"
    root.mkdir(parents=True)
    path = server_creation.sibling_dir(root, "storage-1")
    assert path == (tmp_path / "sut" / "storage-1").resolve() and path.is_dir()
    assert os.stat(path).st_dev == os.stat(root).st_dev
    assert server_creation.sibling_dir(root, "storage-1") == path  # idempotent
