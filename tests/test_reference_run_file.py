"""Reference conductor: the one project-API route it serves, a run's files (``.../runs/{r}/file``)."""

from __future__ import annotations

import time

import httpx
import pytest

from conductor_perf.formats import runs
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread

PROJECT = "files"
TASK = "task-20260101-000000-files"


@pytest.fixture(scope="module")
def done_run(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("run-file") / "root"
    cfg = ReferenceConfig(root=root, restart_delay_s=0.05, log_file=root.parent / "server.log")
    with ServerThread(cfg) as srv, httpx.Client(base_url=srv.url, timeout=20) as client:
        created = client.post(
            "/api/v1/tasks",
            json={
                "project_id": PROJECT,
                "task_id": TASK,
                "agent_type": "codex",
                "prompt": "write the files",
                "config": {
                    "STUB_STDOUT_TEXT": "one|two",
                    "STUB_STDERR_TEXT": "warn",
                    "STUB_OUTPUT": "# result\n",
                },
            },
        )
        assert created.status_code == 201, created.text
        run_id = created.json()["run_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            answer = client.get(f"/api/v1/runs/{run_id}")
            if answer.status_code == 200 and answer.json()["status"] != "running":
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"run {run_id} did not finish")
        yield client, root, run_id


def file_url(run_id: str, project: str = PROJECT, task: str = TASK) -> str:
    return f"/api/projects/{project}/tasks/{task}/runs/{run_id}/file"


def test_output_md_is_served_with_its_metadata(done_run) -> None:
    client, root, run_id = done_run
    answer = client.get(file_url(run_id), params={"name": "output.md"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.text.startswith('{"content":')  # Go marshals a map with its keys sorted
    body = answer.json()
    assert list(body) == ["content", "modified", "name", "size_bytes"]
    on_disk = runs.run_dir(root, PROJECT, TASK, run_id) / "output.md"
    assert body["content"] == on_disk.read_text() and body["content"].startswith("# result\n")
    assert body["size_bytes"] == on_disk.stat().st_size
    assert body["name"] == "output.md"
    assert body["modified"].endswith("Z") and body["modified"].startswith(time.strftime("%Y-", time.gmtime()))


@pytest.mark.parametrize(
    ("name", "ending"), [("stdout", "one\ntwo\n"), ("stderr", "\nwarn\n"), ("", "one\ntwo\n")]
)
def test_logs_are_served_and_stdout_is_the_default(done_run, name: str, ending: str) -> None:
    client, root, run_id = done_run
    params = {"name": name} if name else {}
    body = client.get(file_url(run_id), params=params).json()
    on_disk = runs.run_dir(root, PROJECT, TASK, run_id) / (runs.STDERR if name == "stderr" else runs.STDOUT)
    assert body["content"] == on_disk.read_text() and body["content"].endswith(ending)
    if name != "stderr":
        assert body["content"] == ending
    else:  # the stub's report on its environment comes first
        assert body["content"].startswith("conductor-perf stub env: ")
    assert body["name"] == (name or "stdout")


def test_prompt_is_served(done_run) -> None:
    client, _, run_id = done_run
    body = client.get(file_url(run_id), params={"name": "prompt"}).json()
    assert "JRUN_ID=" + run_id in body["content"] and body["content"].rstrip().endswith("write the files")


def test_unknown_file_name_run_or_task_is_404_with_the_envelope(done_run) -> None:
    client, _, run_id = done_run
    unknown = client.get(file_url(run_id), params={"name": "TASK.md"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "NOT_FOUND", "message": "unknown file: TASK.md"}}
    for url in (file_url("20260101-0000000000-1-1"), file_url(run_id, task="task-20260101-000000-other"),
                file_url(run_id, project="other")):  # fmt: skip
        answer = client.get(url, params={"name": "output.md"})
        assert answer.status_code == 404
        assert answer.json() == {"error": {"code": "NOT_FOUND", "message": "run not found"}}


def test_missing_file_is_404(done_run) -> None:
    client, root, run_id = done_run
    output = runs.run_dir(root, PROJECT, TASK, run_id) / "output.md"
    saved = output.read_bytes()
    output.unlink()
    try:
        answer = client.get(file_url(run_id), params={"name": "output.md"})
        assert answer.status_code == 404
        assert answer.json()["error"]["message"] == "file not found: output.md"
    finally:
        output.write_bytes(saved)


def test_other_methods_are_405_and_other_project_routes_stay_unknown(done_run) -> None:
    client, _, run_id = done_run
    answer = client.post(file_url(run_id), params={"name": "output.md"})
    assert answer.status_code == 405
    assert answer.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
    for path in (
        f"/api/projects/{PROJECT}",
        f"/api/projects/{PROJECT}/tasks",
        f"/api/projects/{PROJECT}/stats",
    ):
        other = client.get(path)
        assert (other.status_code, other.text) == (404, "404 page not found\n")
