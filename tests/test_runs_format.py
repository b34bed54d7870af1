"""Run storage: run-info.yaml bytes, tolerant reads, atomic writes, locked updates, ids, layout."""

from __future__ import annotations

import multiprocessing as mp
import os
import time

import pytest

from conductor_perf.formats import bus, runs

# Contract section 3.2, the observed file of a completed run (paths shortened consistently).
OBSERVED = """version: 1
run_id: 20261127-1732010000-14239-1
project_id: proj-a
task_id: task-20261127-000000-perf
agent: codex
process_ownership: managed
pid: 14883
pgid: 14883
start_time: 2026-11-27T17:32:01.338965503Z
end_time: 2026-11-27T17:32:02.349650969Z
exit_code: 0
status: completed
cwd: /srv/conductor/root/proj-a/task-20261127-000000-perf
prompt_path: /srv/conductor/root/r/prompt.md
output_path: /srv/conductor/root/r/output.md
stdout_path: /srv/conductor/root/r/agent-stdout.txt
stderr_path: /srv/conductor/root/r/agent-stderr.txt
commandline: codex exec --dangerously-bypass-approvals-and-sandbox --json - < /srv/conductor/root/r/prompt.md
agent_version: codex-cli 0.1.0-stub
"""


def test_observed_run_info_round_trips_byte_for_byte():
    info = runs.RunInfo.from_yaml(OBSERVED)
    assert info.status == "completed" and info.exit_code == 0 and info.pid == 14883
    assert info.start_time == "2026-11-27T17:32:01.338965503Z"
    assert info.to_yaml() == OBSERVED


def test_running_run_has_zero_end_time_and_minus_one_exit_code():
    info = runs.RunInfo(run_id="r1", project_id="p", task_id="t", agent="codex", start_time_ns=1)
    text = info.to_yaml()
    assert "end_time: 0001-01-01T00:00:00Z\n" in text
    assert "exit_code: -1\n" in text
    assert 'agent_version: ""\n' in text  # always present
    for omitted in ("parent_run_id", "previous_run_id", "process_ownership", "cwd", "error_summary"):
        assert omitted not in text
    keys = [line.split(":")[0] for line in text.splitlines()]
    assert keys == [
        "version", "run_id", "project_id", "task_id", "agent", "pid", "pgid",
        "start_time", "end_time", "exit_code", "status", "agent_version",
    ]  # fmt: skip


def test_reader_is_tolerant_and_takes_ids_from_the_path(tmp_path):
    path = tmp_path / "proj" / "task-x" / "runs" / "run-9" / runs.RUN_INFO
    path.parent.mkdir(parents=True)
    path.write_text("version: 0\nsomething_new: 42\nstatus: ''\npid: 0\n")
    info = runs.read_run_info(path)
    assert (info.project_id, info.task_id, info.run_id) == ("proj", "task-x", "run-9")
    assert info.status == "unknown"


@pytest.mark.parametrize("text", ["- a list\n- not a map\n", "pid: lots\n", "key: [unclosed\n"])
def test_malformed_run_info_raises_a_clear_error(text):
    with pytest.raises(runs.StorageError):
        runs.RunInfo.from_yaml(text)


def test_run_ids_have_the_real_format():
    gen = runs.RunIdGenerator(pid=14239)
    now = bus.parse_rfc3339("2026-11-27T17:32:01.5Z")
    assert gen.next(now) == "20261127-1732010000-14239-1"
    assert gen.next(now) == "20261127-1732010000-14239-2"


def test_create_run_layout_and_atomic_write_leave_no_temp_files(tmp_path):
    info = runs.RunInfo(
        run_id="20261127-1732010000-1-1", project_id="proj-a", task_id="task-1", agent="codex", version=0
    )
    directory = runs.create_run(tmp_path, info)
    assert directory == tmp_path / "proj-a" / "task-1" / "runs" / info.run_id
    assert os.listdir(directory) == [runs.RUN_INFO]
    assert oct((directory / runs.RUN_INFO).stat().st_mode & 0o777) == "0o644"
    assert runs.read_run_info(directory / runs.RUN_INFO) == info


@pytest.mark.parametrize("bad", ["", "a/b", "a\\b", "..", "x/../y"])
def test_create_run_rejects_path_ids(tmp_path, bad):
    with pytest.raises(runs.InvalidId):
        runs.create_run(tmp_path, runs.RunInfo(run_id="r", project_id=bad, task_id="t"))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "ok"), [("proj-a", True), ("p", True), ("Bad_Proj", False), ("-x", False), ("x-", False)]
)
def test_project_id_rule_of_the_runner(value, ok):
    if ok:
        assert runs.check_project_id(value) == value
    else:
        with pytest.raises(runs.InvalidId):
            runs.check_project_id(value)


def test_canonical_task_ids():
    tid = runs.canonical_task_id("perf-load", now_ns=bus.parse_rfc3339("2026-11-27T00:00:00Z"))
    assert tid == "task-20261127-000000-perf-load"
    assert runs.is_canonical_task_id(tid)
    assert not runs.is_canonical_task_id("t1")


def test_task_md_is_never_overwritten_and_done_marker(tmp_path):
    task = runs.task_dir(tmp_path, "p", "t")
    assert runs.write_task_md(task, "first prompt")
    assert not runs.write_task_md(task, "second prompt")
    assert (task / runs.TASK_MD).read_text() == "first prompt\n"
    assert not runs.is_done(task)
    runs.mark_done(task)
    assert runs.is_done(task)


def test_update_removes_the_lock_file_and_changes_fields(tmp_path):
    info = runs.RunInfo(run_id="r", project_id="p", task_id="t", start_time_ns=time.time_ns())
    path = runs.create_run(tmp_path, info) / runs.RUN_INFO

    def finish(i: runs.RunInfo) -> None:
        i.status, i.exit_code, i.end_time_ns = "completed", 0, time.time_ns()

    runs.update_run_info(path, finish)
    assert runs.read_run_info(path).status == "completed"
    assert not path.with_name("run-info.yaml.lock").exists()


def _updater(path: str, n: int) -> None:
    for _ in range(n):
        runs.update_run_info(path, lambda i: setattr(i, "pid", i.pid + 1), fsync=False)


def _reader(path: str, seconds: float, queue) -> None:
    reads = torn = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            info = runs.read_run_info(path)
            if info.run_id != "r" or info.agent != "codex":
                torn += 1
        except runs.StorageError:
            torn += 1
        reads += 1
    queue.put((reads, torn))


def test_concurrent_updates_are_serialized_and_reads_never_torn(tmp_path):
    info = runs.RunInfo(run_id="r", project_id="p", task_id="t", agent="codex", cwd="/x" * 200)
    path = str(runs.create_run(tmp_path, info) / runs.RUN_INFO)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    readers = [ctx.Process(target=_reader, args=(path, 1.5, queue)) for _ in range(2)]
    writers = [ctx.Process(target=_updater, args=(path, 100)) for _ in range(3)]
    for p in readers + writers:
        p.start()
    for p in readers + writers:
        p.join(60)
        assert p.exitcode == 0
    results = [queue.get(timeout=5) for _ in readers]
    assert sum(r for r, _ in results) > 0
    assert sum(t for _, t in results) == 0
    assert runs.read_run_info(path).pid == 300  # no lost update
    assert sorted(os.listdir(os.path.dirname(path))) == [runs.RUN_INFO]


def test_iter_run_info_paths_finds_runs_and_skips_service_dirs(tmp_path):
    for project, task, run in [("a", "t1", "r1"), ("a", "t2", "r2"), ("b", "t1", "r3")]:
        runs.create_run(tmp_path, runs.RunInfo(run_id=run, project_id=project, task_id=task))
    (tmp_path / "_audit").mkdir()
    (tmp_path / "a" / "t1" / "runs" / "empty-preallocated").mkdir()
    found = sorted(p.parent.name for p in runs.iter_run_info_paths(tmp_path))
    assert found == ["r1", "r2", "r3"]


def test_concurrent_read_write_benchmark_sums_every_reader_and_writer(tmp_path):
    from conductor_perf.bench import storage_bench

    result = storage_bench.concurrent_read_write(tmp_path, readers=2, writers=2, duration=0.3)
    assert result.reads > 0 and result.writes > 0 and result.torn_reads == 0
    path = next(runs.iter_run_info_paths(tmp_path))
    assert runs.read_run_info(path).pid == result.writes  # each update counted once, by one writer
    assert not [p for p in mp.active_children() if p.is_alive()]
