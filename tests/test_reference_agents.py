"""Reference conductor agents: the stub codex from POST to completed/failed, limits, stop, restarts."""

from __future__ import annotations

import itertools
import os
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from conductor_perf.formats import agentenv, bus, runs
from conductor_perf.reference.config import STUB_DIR, ReferenceConfig
from conductor_perf.reference.testing import ServerThread

_ids = itertools.count(1)
TIMEOUT = 30.0


def task_id() -> str:
    return f"task-20260101-000000-t{next(_ids)}x{os.getpid()}"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("agents") / "root"


@pytest.fixture(scope="module")
def srv(root: Path):
    cfg = ReferenceConfig(root=root, restart_delay_s=0.05, log_file=root.parent / "server.log")
    with ServerThread(cfg) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv: ServerThread):
    with httpx.Client(base_url=srv.url, timeout=20) as c:
        yield c


def create(client: httpx.Client, project: str, task: str, config: dict[str, str] | None = None) -> str:
    resp = client.post("api/v1/tasks", json={"project_id": project, "task_id": task, "agent_type": "codex",
                                             "prompt": "do the thing", "config": config or {}})  # fmt: skip
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "started" and body["project_id"] == project and body["task_id"] == task
    return body["run_id"]


def wait_for(predicate, timeout: float = TIMEOUT, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def finished_run(client: httpx.Client, run_id: str) -> dict:
    def check():
        resp = client.get(f"api/v1/runs/{run_id}")
        return resp.json() if resp.status_code == 200 and resp.json()["status"] != "running" else None

    return wait_for(check, what=f"run {run_id} to finish")


def bus_types(root: Path, project: str, task: str) -> list[str]:
    return [m.type for m in bus.read(root / project / task / bus.TASK_BUS)]


def wait_task_done(root: Path, project: str, task: str) -> None:
    wait_for(lambda: "FACT" in bus_types(root, project, task), what="task loop to finish")


def test_stub_task_completes_with_output_and_bus_events(client: httpx.Client, root: Path) -> None:
    task = task_id()
    run_id = create(client, "proj-ok", task, {"STUB_STDOUT_TEXT": "hello|world", "STUB_STDERR_TEXT": "warn"})
    run = finished_run(client, run_id)
    assert run["status"] == "completed"
    assert "exit_code" not in run
    assert run["agent_version"] == "codex-cli 0.1.0-stub"
    run_dir = runs.run_dir(root, "proj-ok", task, run_id)
    assert (run_dir / "agent-stdout.txt").read_text() == "hello\nworld\n"
    stderr = (run_dir / "agent-stderr.txt").read_text()
    assert stderr.endswith("\nwarn\n")  # after the stub's report on its environment
    report = agentenv.parse_stub_report(stderr)
    assert report is not None and report.style == agentenv.CURRENT and report.marks_done
    assert (run_dir / "output.md").read_text() == "hello\nworld\n"
    prompt = (run_dir / "prompt.md").read_text()
    assert prompt.startswith(f"JRUN_TASK_FOLDER={root / 'proj-ok' / task}\nJRUN_RUN_FOLDER={run_dir}\n")
    assert prompt.endswith("\n---\n\ndo the thing\n")
    info = runs.read_run_info(run_dir / "run-info.yaml")
    assert (info.version, info.status, info.exit_code, info.process_ownership) == (1, "completed", 0, "managed")
    assert info.pid == info.pgid > 0 and info.end_time_ns > info.start_time_ns
    assert info.commandline == f"codex exec --dangerously-bypass-approvals-and-sandbox --json - < {run_dir}/prompt.md"
    wait_task_done(root, "proj-ok", task)
    messages = bus.read(root / "proj-ok" / task / bus.TASK_BUS)
    assert [m.type for m in messages] == ["INFO", "RUN_START", "RUN_STOP", "INFO", "FACT"]
    assert messages[1].run_id == run_id and messages[1].body.startswith(f"run started\nrun_dir: {run_dir}\n")
    assert messages[2].body.startswith("run stopped with code 0\n")
    assert messages[3].body.startswith("task completed (DONE marker present, no active children)")
    project_facts = bus.read(root / "proj-ok" / bus.PROJECT_BUS)
    fact = [m for m in project_facts if m.task_id == task][0]
    assert fact.type == "FACT" and fact.meta["kind"] == "task_completion_propagation"
    assert fact.parents[0].kind == "source_run_event" and fact.parents[0].msg_id == messages[2].msg_id
    assert f"msg_id={fact.msg_id}" in messages[4].body
    assert (root / "proj-ok" / task / "DONE").exists()
    task_body = client.get(f"api/v1/tasks/{task}").json()
    assert task_body["status"] == "all_finished" and [r["run_id"] for r in task_body["runs"]] == [run_id]


def test_codex_ndjson_output_becomes_output_md(client: httpx.Client, root: Path) -> None:
    task = task_id()
    line = '{"type":"item.completed","item":{"type":"agent_message","text":"the answer"}}'
    run_id = create(client, "proj-ok", task, {"STUB_STDOUT_TEXT": line})
    finished_run(client, run_id)
    assert (runs.run_dir(root, "proj-ok", task, run_id) / "output.md").read_text() == "the answer"


def test_failing_stub_fails_with_error_summary(client: httpx.Client, root: Path) -> None:
    task = task_id()
    run_id = create(client, "proj-fail", task, {"STUB_EXIT_CODE": "1", "STUB_STDERR_TEXT": "boom|bang"})
    run = finished_run(client, run_id)
    assert run["status"] == "failed" and run["exit_code"] == 1
    assert run["error_summary"] == "agent reported failure"
    wait_task_done(root, "proj-fail", task)
    messages = bus.read(root / "proj-fail" / task / bus.TASK_BUS)
    crash = [m for m in messages if m.type == "RUN_CRASH"][0]
    assert crash.body.startswith("run stopped with code 1\n")
    section = crash.body.rstrip("\n").split("## stderr (last 50 lines)\n", 1)[1].split("\n")
    assert section[0].startswith("conductor-perf stub env: ") and section[2:] == ["boom", "bang"]
    warning = [m for m in messages if m.type == "WARNING"][0]
    assert warning.body.startswith("root agent failed on restart #0: agent execution failed: wait process: exit status 1")


def test_stub_output_env_and_exit_code_classes(client: httpx.Client, root: Path) -> None:
    task = task_id()
    run_id = create(client, "proj-ok", task, {"STUB_OUTPUT": "# result", "STUB_EXIT_CODE": "137"})
    run = finished_run(client, run_id)
    assert run["error_summary"] == "agent killed (OOM or signal)"
    assert (runs.run_dir(root, "proj-ok", task, run_id) / "output.md").read_text() == "# result\n"


def test_missing_done_restarts_with_new_run_until_deleted(client: httpx.Client, root: Path) -> None:
    task = task_id()
    first = create(client, "proj-loop", task, {"STUB_SKIP_DONE": "1"})
    runs_dir = root / "proj-loop" / task / "runs"
    wait_for(lambda: len([d for d in runs_dir.iterdir() if (d / "run-info.yaml").exists()]) >= 2,
             what="a restart")  # fmt: skip
    resp = client.delete(f"api/v1/tasks/{task}", params={"project_id": "proj-loop"})
    assert resp.status_code == 202 and set(resp.json()) == {"stopped_runs"}
    wait_task_done(root, "proj-loop", task)
    infos = sorted((runs.read_run_info(d / "run-info.yaml") for d in runs_dir.iterdir()
                    if (d / "run-info.yaml").exists()), key=lambda i: i.start_time_ns)  # fmt: skip
    assert infos[0].run_id == first
    assert infos[1].previous_run_id == first
    second_prompt = (runs_dir / infos[1].run_id / "prompt.md").read_text()
    assert second_prompt.endswith("---\n\nContinue working on the following:\n\ndo the thing\n")


def test_delete_stops_a_running_agent(client: httpx.Client, root: Path) -> None:
    task = task_id()
    run_id = create(client, "proj-stop", task, {"STUB_SLEEP_MS": "60000"})
    wait_for(lambda: client.get(f"api/v1/runs/{run_id}").status_code == 200, what="run visible")
    running = client.get(f"api/v1/runs/{run_id}").json()
    assert running["status"] == "running" and running["exit_code"] == -1
    assert running["end_time"] == "0001-01-01T00:00:00Z"
    started = time.monotonic()
    resp = client.delete(f"api/v1/tasks/{task}")
    assert resp.json() == {"stopped_runs": 1}
    run = finished_run(client, run_id)
    assert time.monotonic() - started < 40  # the agent would sleep 60 s (the margin is for a loaded machine)
    assert run["status"] == "failed" and run["exit_code"] == -1
    assert run["error_summary"] == "agent exited with code -1"
    assert client.post(f"api/v1/runs/{run_id}/stop").status_code == 409


def test_run_stop_endpoint(client: httpx.Client, root: Path) -> None:
    task = task_id()
    run_id = create(client, "proj-stop", task, {"STUB_SLEEP_MS": "60000"})
    wait_for(lambda: client.get(f"api/v1/runs/{run_id}").status_code == 200, what="run visible")
    resp = client.post(f"api/v1/runs/{run_id}/stop")
    assert resp.status_code == 202 and resp.text == '{"status":"stopping"}\n'
    assert finished_run(client, run_id)["status"] == "failed"
    client.delete(f"api/v1/tasks/{task}")


def test_max_concurrent_runs_is_honoured(tmp_path: Path) -> None:
    cfg = ReferenceConfig(root=tmp_path / "root", max_concurrent_runs=1, restart_delay_s=0.05,
                          log_file=tmp_path / "log")  # fmt: skip
    with ServerThread(cfg) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        ids = [create(c, "proj-lim", task_id(), {"STUB_SLEEP_MS": "300"}) for _ in range(3)]
        queued = wait_for(lambda: metric(c, "conductor_queued_runs_total") >= 1, what="a queued run")
        assert queued
        done = [finished_run(c, r) for r in ids]
        spans = sorted((r["start_time"], r["end_time"]) for r in done)
        for (_, end), (start, _) in itertools.pairwise(spans):
            assert start >= end, spans
        assert metric(c, "conductor_queued_runs_total") == 0


def test_disable_task_start_answers_201_and_runs_nothing(tmp_path: Path) -> None:
    cfg = ReferenceConfig(root=tmp_path / "root", start_tasks=False, log_file=tmp_path / "log")
    with ServerThread(cfg) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        run_id = create(c, "proj-off", task_id())
        time.sleep(0.3)
        assert c.get(f"api/v1/runs/{run_id}").status_code == 404
        assert c.get("api/v1/runs").text == '{"runs":null}\n'


def test_stub_script_contract() -> None:
    stub = STUB_DIR / "codex"
    assert os.access(stub, os.X_OK)
    out = subprocess.run([str(stub), "--version"], capture_output=True, text=True, timeout=10, check=True)
    assert out.stdout == "codex-cli 0.1.0-stub\n"
    env = {"PATH": os.environ["PATH"], "STUB_STDOUT_LINES": "3", "STUB_BURST_LINES": "2", "STUB_SKIP_DONE": "1",
           "ORCH_STUB_STDOUT": "tail"}  # fmt: skip
    out = subprocess.run([str(stub), "exec", "-"], input="prompt", capture_output=True, text=True, env=env,
                         timeout=10, check=True)  # fmt: skip
    lines = out.stdout.split("\n")
    assert lines[0] == "tail" + lines[0][4:] and lines[0].startswith("tailline 1 ")
    assert [line.split()[0:2] for line in lines[1:5]] == [["line", "2"], ["line", "3"], ["burst", "1"], ["burst", "2"]]


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def _stub(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([str(STUB_DIR / "codex"), "exec", "-"], input="prompt", capture_output=True, text=True,
                          env={"PATH": os.environ["PATH"], **env}, timeout=10, check=False)  # fmt: skip


@pytest.mark.parametrize("style", agentenv.STYLES)
def test_stub_takes_its_folders_from_each_builds_names(tmp_path: Path, style: str) -> None:
    task_dir, run_dir = tmp_path / "p" / "t", tmp_path / "p" / "t" / "runs" / "r1"
    run_dir.mkdir(parents=True)
    env = agentenv.agent_environment(style, project_id="p", task_id="t", run_id="r1", task_dir=str(task_dir),
                                     run_dir=str(run_dir), runs_dir=str(run_dir.parent),
                                     bus_path=str(task_dir / "TASK-MESSAGE-BUS.md"), conductor_url="http://127.0.0.1:1")  # fmt: skip
    out = _stub({**env, "STUB_OUTPUT": "result"})
    assert out.returncode == 0, out.stderr
    report = agentenv.parse_stub_report(out.stderr)
    assert report is not None and report.style == style
    assert report.names == [agentenv.NAMES[style][loc] for loc in agentenv.LOCATIONS if loc in agentenv.NAMES[style]]
    if style == agentenv.EARLY:
        assert not report.has_task_folder and not report.marks_done
        assert report.done == f"not created: {agentenv.missing_task_folder()}"
        assert not (task_dir / "DONE").exists() and not (run_dir / "output.md").exists()
    else:
        assert report.has_task_folder and report.done == f"will create {task_dir}/DONE"
        assert (task_dir / "DONE").exists() and (run_dir / "output.md").read_text() == "result\n"


def test_stub_prefers_the_jrun_names_and_reports_skip_done(tmp_path: Path) -> None:
    out = _stub({"JRUN_TASK_FOLDER": str(tmp_path / "new"), "TASK_FOLDER": str(tmp_path / "old"), "STUB_SKIP_DONE": "1"})
    report = agentenv.parse_stub_report(out.stderr)
    assert report is not None and report.used["task_folder"] == "JRUN_TASK_FOLDER"
    assert report.done == "not created: STUB_SKIP_DONE=1" and not report.marks_done
    (tmp_path / "new").mkdir()
    out = _stub({"JRUN_TASK_FOLDER": str(tmp_path / "new"), "TASK_FOLDER": str(tmp_path / "old")})
    assert out.returncode == 0 and (tmp_path / "new" / "DONE").exists() and not (tmp_path / "old").exists()


@pytest.mark.parametrize("style", [agentenv.LEGACY, agentenv.EARLY])
def test_reference_plays_an_older_builds_agent_environment(tmp_path: Path, style: str) -> None:
    cfg = ReferenceConfig(root=tmp_path / "root", restart_delay_s=0.05, agent_env=style, log_file=tmp_path / "log")
    with ServerThread(cfg) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        task = task_id()
        run_id = create(c, "proj-env", task, {"STUB_STDOUT_TEXT": "hi"})
        finished_run(c, run_id)
        run_dir = runs.run_dir(cfg.root, "proj-env", task, run_id)
        report = agentenv.parse_stub_report((run_dir / "agent-stderr.txt").read_text())
        assert report is not None and report.style == style
        prompt = (run_dir / "prompt.md").read_text()
        assert prompt.startswith(f"TASK_FOLDER={cfg.root / 'proj-env' / task}\nRUN_FOLDER={run_dir}\n")
        assert "The MESSAGE_BUS env var is set" in prompt and "JRUN_TASK_FOLDER" not in prompt
        if style == agentenv.LEGACY:
            wait_task_done(cfg.root, "proj-env", task)
            assert len(list((cfg.root / "proj-env" / task / "runs").iterdir())) == 1
        else:  # no task folder in the environment: the stub cannot create DONE and the task restarts
            runs_dir = cfg.root / "proj-env" / task / "runs"
            wait_for(lambda: len([d for d in runs_dir.iterdir() if (d / "run-info.yaml").exists()]) >= 2,
                     what="a restart")  # fmt: skip
            assert c.delete(f"api/v1/tasks/{task}", params={"project_id": "proj-env"}).status_code == 202
            wait_task_done(cfg.root, "proj-env", task)


def test_reference_passes_no_inherited_location_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JRUN_TASK_FOLDER", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("CONDUCTOR_URL", "http://127.0.0.1:9/")
    cfg = ReferenceConfig(root=tmp_path / "root", agent_env=agentenv.LEGACY, log_file=tmp_path / "log")
    with ServerThread(cfg) as s, httpx.Client(base_url=s.url, timeout=20) as c:
        task = task_id()
        run_id = create(c, "proj-env", task)
        finished_run(c, run_id)
        stderr = (runs.run_dir(cfg.root, "proj-env", task, run_id) / "agent-stderr.txt").read_text()
        report = agentenv.parse_stub_report(stderr)
        assert report is not None and report.used["task_folder"] == "TASK_FOLDER"
        assert report.used["conductor_url"] == "CONDUCTOR_URL" and report.style == agentenv.LEGACY
    assert not (tmp_path / "elsewhere").exists()
