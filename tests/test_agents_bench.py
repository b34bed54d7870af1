"""Agent waits on the reference conductor: every build's agent environment, tasks that never end, stalls.

The reference plays each conductor-loop build's agent environment (``agent_env``). With the JRUN_
names and with the older unprefixed ones the stub finishes its tasks; with the earliest names (no
task folder) or a stub told never to finish, a wait must fail fast with the reason, stop the tasks
through the API, and leave no task restarting behind.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from conductor_perf.bench import agent_tasks, agents_bench
from conductor_perf.formats import agentenv, runs
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread
from conductor_perf.target import EXTERNAL, Target

RESTART_DELAY_S = 0.2


def _server(tmp_path: Path, style: str = agentenv.CURRENT, **kw) -> ServerThread:
    cfg = ReferenceConfig(root=tmp_path / "root", restart_delay_s=RESTART_DELAY_S, agent_env=style,
                          log_file=tmp_path / "server.log", **kw)  # fmt: skip
    return ServerThread(cfg)


def _target(srv: ServerThread, *, with_root: bool = True) -> Target:
    return Target(kind=EXTERNAL, url=srv.url, root=srv.config.root if with_root else None)


def _run_counts(root: Path, subs: list[agents_bench.Submission]) -> list[int]:
    return [len(list((runs.task_dir(root, s.project_id, s.task_id) / runs.RUNS_DIR).glob(f"*/{runs.RUN_INFO}")))
            for s in subs]  # fmt: skip


def _assert_stopped_for_good(root: Path, subs: list[agents_bench.Submission]) -> None:
    """Every task has DONE, no run is running, and no new run appears after a restart delay."""
    for s in subs:
        task = runs.task_dir(root, s.project_id, s.task_id)
        assert runs.is_done(task), f"{task} has no DONE"
        for info_path in (task / runs.RUNS_DIR).glob(f"*/{runs.RUN_INFO}"):
            assert runs.read_run_info(info_path).end_time_ns > 0, f"{info_path} still running"
    before = _run_counts(root, subs)
    time.sleep(5 * RESTART_DELAY_S)
    assert _run_counts(root, subs) == before


@pytest.mark.parametrize("style", [agentenv.CURRENT, agentenv.LEGACY])
def test_agents_finish_under_the_current_and_the_legacy_environment(tmp_path: Path, style: str) -> None:
    with _server(tmp_path, style) as srv:
        target = _target(srv)
        result = agents_bench.run_agents(target, 4, sleep_ms=10, timeout=60)
        assert (result.completed, result.failed, result.unfinished) == (4, 0, 0)
        assert result.report is not None and result.report.style == style
        assert result.report.names == [agentenv.NAMES[style][loc] for loc in agentenv.LOCATIONS]
        assert "codex-cli" not in result.report.describe() and style in agentenv.DESCRIPTIONS
        assert result.report.describe().startswith(", ".join(agentenv.NAMES[style].values()))


def test_api_only_wait_checks_tasks_through_the_api(tmp_path: Path) -> None:
    with _server(tmp_path, agentenv.LEGACY) as srv:
        target = _target(srv, with_root=False)
        subs = agents_bench.submit_tasks(target, 3, config=agents_bench.stub_config(sleep_ms=10))
        done, pending = agents_bench.wait_for_runs(target, subs, timeout=60)
        assert [o.status for o in done] == ["completed"] * 3 and pending == []
        assert done[0].report is None  # the stub's report is read from the runs root only


def test_no_task_folder_fails_fast_with_the_reason_and_stops_the_tasks(tmp_path: Path) -> None:
    with _server(tmp_path, agentenv.EARLY) as srv:
        target = _target(srv)
        subs = agents_bench.submit_tasks(target, 3, config=agents_bench.stub_config(sleep_ms=10))
        started = time.monotonic()
        with pytest.raises(agent_tasks.AgentTaskError) as info:
            agents_bench.wait_for_runs(target, subs, timeout=120)
        assert time.monotonic() - started < 60
        message = str(info.value)
        assert "its agent never marked it done; the server gave the agent neither JRUN_TASK_FOLDER nor TASK_FOLDER" in message
        assert "stopped 3 unfinished tasks through DELETE /api/v1/tasks/{id}" in message
        assert info.value.report is not None and info.value.report.style == agentenv.EARLY
        _assert_stopped_for_good(srv.config.root, subs)


def test_a_stub_told_never_to_finish_fails_fast_also_without_the_runs_root(tmp_path: Path) -> None:
    with _server(tmp_path) as srv:
        target = _target(srv, with_root=False)
        config = {**agents_bench.stub_config(sleep_ms=10), "STUB_SKIP_DONE": "1"}
        subs = agents_bench.submit_tasks(target, 2, config=config)
        with pytest.raises(agent_tasks.AgentTaskError) as info:
            agents_bench.wait_for_runs(target, subs, timeout=120)
        message = str(info.value)
        assert message.startswith(f"task {subs[0].project_id}/") and "its agent never marked it done" in message
        assert "give CONDUCTOR_ROOT to have it read" in message
        _assert_stopped_for_good(srv.config.root, subs)

        with_root = _target(srv)
        subs = agents_bench.submit_tasks(with_root, 2, config=config)
        with pytest.raises(agent_tasks.AgentTaskError, match="the stub did not create DONE: STUB_SKIP_DONE=1"):
            agents_bench.wait_for_runs(with_root, subs, timeout=120)
        _assert_stopped_for_good(srv.config.root, subs)


def test_one_task_waited_for_after_its_run_passes_when_done_and_is_stopped_when_not(tmp_path: Path) -> None:
    """The acceptance suites' check (Task Should Be Done After Its Run) on one task whose run ended."""
    with _server(tmp_path) as srv:
        target = _target(srv)
        done, never = (agents_bench.submit_tasks(target, 1, config={**agents_bench.stub_config(sleep_ms=10), **extra})[0]
                       for extra in ({}, {"STUB_SKIP_DONE": "1"}))  # fmt: skip
        agents_bench.wait_for_runs(target, [done], timeout=60)
        check = agent_tasks.wait_until_done(target, done.project_id, done.task_id, done.run_id)
        assert check.done and check.runs == 1
        with pytest.raises(agent_tasks.AgentTaskError) as info:
            agent_tasks.wait_until_done(target, never.project_id, never.task_id, never.run_id)
        message = str(info.value)
        assert message.startswith(f"task {never.project_id}/{never.task_id} ")
        assert "the stub did not create DONE: STUB_SKIP_DONE=1" in message
        assert message.endswith("; stopped 1 unfinished task through DELETE /api/v1/tasks/{id}")
        _assert_stopped_for_good(srv.config.root, [never])


def test_a_restart_counts_in_the_message() -> None:
    target = Target(kind=EXTERNAL, url="http://127.0.0.1:9/", root=Path("/nonexistent"))
    check = agent_tasks.TaskCheck(done=False, runs=4)
    report = agentenv.parse_stub_report("conductor-perf stub env: task_folder=none run_folder=none\n")
    message = agent_tasks.not_done_message(target, "p", "t", "r1", check, report)
    assert message == ("task p/t restarted 3 times: its agent never marked it done; "
                       "the server gave the agent neither JRUN_TASK_FOLDER nor TASK_FOLDER")  # fmt: skip
    message = agent_tasks.not_done_message(target, "p", "t", "r1", agent_tasks.TaskCheck(False, 1), None)
    assert message.startswith("task p/t ended its run r1 without being done: its agent never marked it done; ")
    assert "is its folder first on the server's PATH?" in message


def test_runs_that_never_start_fail_after_the_stall_bound(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # the server finds no `codex`: no run ever starts
    with _server(tmp_path, stub_path=False) as srv:
        target = _target(srv)
        subs = agents_bench.submit_tasks(target, 2, config=agents_bench.stub_config(sleep_ms=10))
        assert [s.status for s in subs] == [201, 201]
        with pytest.raises(agent_tasks.AgentTaskError) as info:
            agents_bench.wait_for_runs(target, subs, timeout=120, stall_timeout=1.0)
        message = str(info.value)
        assert message.startswith("no agent run started or ended for 1 s: 2 of 2 runs never started")
        assert "is the stub `codex` first on the server's PATH" in message
        for s in subs:
            assert runs.is_done(runs.task_dir(srv.config.root, s.project_id, s.task_id))


def test_a_timeout_stops_the_unfinished_tasks(tmp_path: Path) -> None:
    with _server(tmp_path) as srv:
        target = _target(srv)
        subs = agents_bench.submit_tasks(target, 2, config=agents_bench.stub_config(sleep_ms=60_000))
        done, pending = agents_bench.wait_for_runs(target, subs, timeout=1.0, stall_timeout=600)
        assert done == [] and {s.run_id for s in pending} == {s.run_id for s in subs}
        _assert_stopped_for_good(srv.config.root, subs)
        with httpx.Client(base_url=srv.url, timeout=10) as c:
            statuses = [c.get(f"api/v1/runs/{s.run_id}").json()["status"] for s in subs]
        assert statuses == ["failed", "failed"]


def test_stop_tasks_reports_a_task_it_cannot_stop(tmp_path: Path) -> None:
    with _server(tmp_path) as srv:
        problems = agent_tasks.stop_tasks(_target(srv), [("proj", "task-20260101-000000-missing")])
        assert problems == []  # 404: nothing to stop
        url = srv.url
    dead = Target(kind=EXTERNAL, url=url, root=None)  # the server is gone
    problems = agent_tasks.stop_tasks(dead, [("proj", "task-20260101-000000-x")], timeout=0.5)
    assert problems[0].startswith("DELETE /api/v1/tasks/task-20260101-000000-x: ConnectError")
    assert problems[1].startswith("1 task(s) not confirmed stopped within 0.5 s")


def test_load_test_cli_reports_tasks_that_cannot_finish(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from conductor_perf import loadtest

    with _server(tmp_path, agentenv.EARLY) as srv:
        rc = loadtest.main([srv.url, "--tasks", "2", "--root", str(srv.config.root), "--timeout", "60"])
    out = capsys.readouterr().out
    assert rc == 1
    assert "load test: FAIL: task perf-load/" in out and "neither JRUN_TASK_FOLDER nor TASK_FOLDER" in out


def test_report_describes_names_build_and_what_stops_tasks() -> None:
    line = "conductor-perf stub env: task_folder=JRUN_TASK_FOLDER run_folder=JRUN_RUN_FOLDER message_bus=JRUN_MESSAGE_BUS runs_dir=JRUN_RUNS_DIR conductor_url=JRUN_CONDUCTOR_URL\n"
    skip = agentenv.parse_stub_report(line + "conductor-perf stub done: not created: STUB_SKIP_DONE=1\n")
    assert skip is not None and skip.describe() == (
        "JRUN_TASK_FOLDER, JRUN_RUN_FOLDER, JRUN_MESSAGE_BUS, JRUN_RUNS_DIR, JRUN_CONDUCTOR_URL "
        "(JRUN_ names, conductor-loop builds from 2026-02-26); the stub does not create DONE: STUB_SKIP_DONE=1")
    early = agentenv.parse_stub_report(
        "x\nconductor-perf stub env: task_folder=none run_folder=none message_bus=MESSAGE_BUS runs_dir=RUNS_DIR "
        "conductor_url=none\nconductor-perf stub done: not created: the server set neither JRUN_TASK_FOLDER nor "
        "TASK_FOLDER\n")  # fmt: skip
    assert early is not None and early.style == agentenv.EARLY and early.names == ["MESSAGE_BUS", "RUNS_DIR"]
    assert early.describe().endswith("so agents cannot mark a task done")
    mixed = agentenv.parse_stub_report("conductor-perf stub env: task_folder=JRUN_TASK_FOLDER run_folder=RUN_FOLDER\n")
    assert mixed is not None and mixed.style == "mixed" and "a mix of names" in mixed.describe()
    assert agentenv.parse_stub_report("warn\n") is None
