"""Reference conductor REST API: routes, status codes, exact bodies and headers, bad input."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
from pathlib import Path

import httpx
import pytest

from conductor_perf.formats import bus, runs
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread

_ids = itertools.count(1)


def unique(prefix: str = "p") -> str:
    return f"{prefix}{next(_ids)}-{os.getpid()}"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("parent") / "root"


@pytest.fixture(scope="module")
def srv(root: Path):
    cfg = ReferenceConfig(root=root, restart_delay_s=0.05, heartbeat_interval_s=1,
                          log_file=root.parent / "server.log")
    with ServerThread(cfg) as s:
        yield s


@pytest.fixture(scope="module")
def client(srv: ServerThread):
    with httpx.Client(base_url=srv.url, timeout=20) as c:
        yield c


def raw_request(srv: ServerThread, data: bytes) -> bytes:
    """Send raw bytes and return the whole response (the server closes after Connection: close)."""
    port = srv.running.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_health_exact_bytes_and_headers(srv: ServerThread) -> None:
    resp = raw_request(srv, b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    head, _, body = resp.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert body == b'{"status":"ok"}\n'
    assert b"Content-Type: application/json\r\n" in head
    assert re.search(rb"X-Request-Id: req-\d{19}-[0-9a-f]{12}\r\n", head)
    assert b"Server:" not in head


def test_request_id_is_echoed(client: httpx.Client) -> None:
    resp = client.get("api/v1/version", headers={"X-Request-ID": "my-id-1"})
    assert resp.headers["X-Request-ID"] == "my-id-1"
    assert resp.json() == {"version": "0.76.0-reference"}


def test_healthz(client: httpx.Client) -> None:
    resp = client.get("healthz")
    assert resp.status_code == 200
    assert re.fullmatch(r'\{"status":"ok","uptime":"\d+s"\}', resp.text)


def test_wrong_method_on_api_route_is_json_405(client: httpx.Client) -> None:
    resp = client.post("api/v1/health")
    assert resp.status_code == 405
    assert resp.text == '{"error":{"code":"METHOD_NOT_ALLOWED","message":"method not allowed"}}\n'
    assert client.put("api/v1/messages").status_code == 405
    assert client.delete("api/v1/runs").status_code == 405


def test_wrong_method_on_healthz_and_metrics_is_plain_text(client: httpx.Client) -> None:
    for path in ("healthz", "metrics"):
        resp = client.post(path)
        assert resp.status_code == 405
        assert resp.text == "method not allowed\n"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_unknown_path_is_go_404_text(client: httpx.Client) -> None:
    for path in ("nope", "api/v1/nothing", "api/v1/messages/"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert resp.text == "404 page not found\n"
        assert resp.headers["Content-Type"] == "text/plain; charset=utf-8"
        assert "X-Request-ID" in resp.headers


def test_unclean_path_redirects_like_go_mux(srv: ServerThread) -> None:
    resp = raw_request(srv, b"GET /api/v1/tasks/../health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert resp.startswith(b"HTTP/1.1 301")
    assert b"Location: /api/v1/health\r\n" in resp


def test_status_and_metrics_shape(client: httpx.Client) -> None:
    body = client.get("api/v1/status").json()
    assert set(body) == {"active_runs_count", "uptime_seconds", "configured_agents", "version", "running_tasks"}
    assert body["configured_agents"] == ["codex"]
    text = client.get("metrics").text
    for name in ("conductor_uptime_seconds", "conductor_active_runs_total", "conductor_completed_runs_total",
                 "conductor_failed_runs_total", "conductor_messagebus_appends_total", "conductor_queued_runs_total"):
        assert f"# TYPE {name} " in text
    assert 'conductor_api_requests_total{method="GET",status="200"}' in text


def test_runs_list_is_null_when_empty(tmp_path: Path) -> None:
    with ServerThread(ReferenceConfig(root=tmp_path / "empty", log_file=tmp_path / "log")) as s:
        resp = httpx.get(s.url + "api/v1/runs", timeout=10)
        assert resp.text == '{"runs":null}\n'
        assert httpx.get(s.url + "api/v1/tasks", timeout=10).text == '{"tasks":[]}\n'


def test_post_and_list_messages_with_go_escaping(client: httpx.Client, srv: ServerThread, root: Path) -> None:
    project = unique()
    before = metric(client, "conductor_messagebus_appends_total")
    first = client.post("api/v1/messages", json={"project_id": project, "task_id": "t1", "body": "a<b>&c"})
    assert first.status_code == 201
    assert set(first.json()) == {"msg_id", "timestamp"}
    assert re.fullmatch(r"MSG-\d{8}-\d{6}-\d{9}-PID\d{5}-\d{4}", first.json()["msg_id"])
    client.post("api/v1/messages", json={"project_id": project, "task_id": "t1", "type": "FACT", "body": "two"})
    resp = client.get("api/v1/messages", params={"project_id": project, "task_id": "t1"})
    assert "a\\u003cb\\u003e\\u0026c" in resp.text
    msgs = resp.json()["messages"]
    assert [m["type"] for m in msgs] == ["USER", "FACT"]
    assert msgs[0]["body"] == "a<b>&c\n" and msgs[1]["body"] == "two"  # the real read-back quirk
    assert "run_id" not in msgs[0]
    after = client.get("api/v1/messages", params={"project_id": project, "task_id": "t1",
                                                  "after": first.json()["msg_id"]})  # fmt: skip
    assert [m["body"] for m in after.json()["messages"]] == ["two"]
    unknown = client.get("api/v1/messages", params={"project_id": project, "task_id": "t1", "after": "MSG-x"})
    assert unknown.status_code == 404
    assert unknown.json() == {"error": {"code": "NOT_FOUND", "message": "message id not found"}}
    assert metric(client, "conductor_messagebus_appends_total") == before + 2
    assert (root / project / "t1" / bus.TASK_BUS).exists()


def test_project_bus_and_missing_bus(client: httpx.Client, root: Path) -> None:
    project = unique()
    assert client.get("api/v1/messages", params={"project_id": project}).text == '{"messages":[]}\n'
    client.post("api/v1/messages", json={"project_id": project, "body": "hello"})
    assert (root / project / bus.PROJECT_BUS).exists()


def test_messages_use_go_field_names_for_parents_and_links(client: httpx.Client, root: Path) -> None:
    project = unique()
    (root / project).mkdir(parents=True)
    msg = bus.Message(type="FACT", project_id=project, body="x", parents=[bus.Parent("MSG-a", "source_fact")],
                      links=[bus.Link("/abs", "label")], meta={"k": "v"})  # fmt: skip
    bus.append(root / project / bus.PROJECT_BUS, msg)
    item = client.get("api/v1/messages", params={"project_id": project}).json()["messages"][0]
    assert item["parents"] == [{"MsgID": "MSG-a", "Kind": "source_fact", "Meta": None}]
    assert item["links"] == [{"URL": "/abs", "Label": "label", "Kind": ""}]
    assert item["meta"] == {"k": "v"}


def test_message_validation_errors(client: httpx.Client) -> None:
    cases = [
        ({"body": "x"}, "project_id is required"),
        ({"project_id": "p", "body": "  "}, "body is required"),
        ({"project_id": "a/b", "body": "x"}, "project_id must not contain path separators"),
        ({"project_id": "..", "body": "x"}, "project_id must not contain .."),
        ({"project_id": "p", "task_id": "x\\y", "body": "x"}, "task_id must not contain path separators"),
        ({"project_id": "p", "body": "x", "x": 1}, 'invalid json: json: unknown field "x"'),
        ({"project_id": 5, "body": "x"},
         "invalid json: json: cannot unmarshal number into Go struct field PostMessageRequest.project_id of type string"),
    ]  # fmt: skip
    for payload, message in cases:
        resp = client.post("api/v1/messages", json=payload)
        assert resp.status_code == 400, payload
        assert resp.json() == {"error": {"code": "BAD_REQUEST", "message": message}}
    assert client.get("api/v1/messages").json()["error"]["message"] == "project_id is required"


def test_bad_bodies(client: httpx.Client) -> None:
    assert error_of(client.post("api/v1/tasks", content=b"")) == "invalid json: EOF"
    assert error_of(client.post("api/v1/tasks", content=b'{"project_id":')) == "invalid json: unexpected EOF"
    assert error_of(client.post("api/v1/tasks", content=b"{x}")) == (
        "invalid json: invalid character 'x' looking for beginning of object key string")
    assert error_of(client.post("api/v1/tasks", content=b"{} {}")) == "unexpected trailing data"
    assert error_of(client.post("api/v1/tasks", content=b"[1]")) == (
        "invalid json: json: cannot unmarshal array into Go value of type api.TaskCreateRequest")
    big = b'{"project_id":"p","task_id":"t","agent_type":"codex","prompt":"' + b"x" * (1 << 20) + b'"}'
    resp = client.post("api/v1/tasks", content=big)
    assert resp.status_code == 400
    assert error_of(resp) == "invalid json: unexpected EOF"
    assert client.get("api/v1/health").status_code == 200


def test_task_validation_and_nothing_written_outside_root(client: httpx.Client, root: Path) -> None:
    parent = root.parent
    before = sorted(p.name for p in parent.iterdir())
    good = {"project_id": "pv", "task_id": "t", "agent_type": "codex", "prompt": "p"}
    cases = [
        ({**good, "project_id": ""}, "project_id is required"),
        ({**good, "project_id": "../escape"}, "project_id must not contain path separators"),
        ({**good, "project_id": ".."}, "project_id must not contain .."),
        ({**good, "task_id": "../../x"}, "task_id must not contain path separators"),
        ({**good, "task_id": "a%2Fb"}, "task_id must not contain path separators"),
        ({**good, "agent_type": " "}, "agent_type is required"),
        ({**good, "prompt": "\n"}, "prompt is required"),
        ({**good, "attach_mode": "x"}, 'invalid attach_mode "x": must be create, attach, or resume'),
        ({**good, "project_root": "/does/not/exist"}, "project_root does not exist: /does/not/exist"),
    ]
    for payload, message in cases:
        resp = client.post("api/v1/tasks", json=payload)
        assert resp.status_code == 400, payload
        assert error_of(resp) == message
    bad_project = client.post("api/v1/tasks", json={**good, "project_id": "Bad_Proj"})
    assert bad_project.status_code == 400
    assert "invalid project_id 'Bad_Proj'" in error_of(bad_project)
    assert not (root / "Bad_Proj").exists()
    unknown_agent = client.post("api/v1/tasks", json={**good, "agent_type": "nope"})
    assert unknown_agent.status_code == 400 and "unknown agent_type" in error_of(unknown_agent)
    assert sorted(p.name for p in parent.iterdir()) == before


def test_symlink_escape_is_refused(client: httpx.Client, root: Path, tmp_path: Path) -> None:
    project = unique()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / project).symlink_to(outside)
    resp = client.post("api/v1/messages", json={"project_id": project, "body": "x"})
    assert resp.status_code == 400
    assert list(outside.iterdir()) == []


def test_task_and_run_lookup_errors(client: httpx.Client) -> None:
    assert client.get("api/v1/tasks/nope").json() == {"error": {"code": "NOT_FOUND", "message": "task not found"}}
    assert client.get("api/v1/tasks/a/b").status_code == 404
    assert client.get("api/v1/tasks/").json()["error"]["message"] == "task not found"
    assert client.delete("api/v1/tasks/nope").status_code == 404
    assert client.put("api/v1/tasks/x").status_code == 405
    for path in ("api/v1/runs/nope", "api/v1/runs/nope/info", "api/v1/runs/nope/stream", "api/v1/runs/x/other"):
        resp = client.get(path)
        assert resp.status_code == 404, path
        assert resp.json()["error"]["message"] == "run not found"
    assert client.post("api/v1/runs/nope/stop").status_code == 404
    assert client.get("api/v1/runs/nope/stop").status_code == 405


def test_synthetic_runs_written_on_disk_appear(client: httpx.Client, root: Path) -> None:
    project = unique()
    info = runs.RunInfo(run_id=f"run-{project}", project_id=project, task_id="task-a", agent="codex",
                        start_time_ns=1_700_000_000_000_000_000, end_time_ns=1_700_000_001_000_000_000,
                        exit_code=0, status="completed", version=0)  # fmt: skip
    runs.create_run(root, info)
    runs.write_task_md(runs.task_dir(root, project, "task-a"), "prompt")
    listed = client.get("api/v1/runs").json()["runs"]
    mine = [r for r in listed if r["run_id"] == info.run_id]
    assert mine == [{"run_id": info.run_id, "project_id": project, "task_id": "task-a", "status": "completed",
                     "process_ownership": "managed", "start_time": "2023-11-14T22:13:20Z",
                     "end_time": "2023-11-14T22:13:21Z"}]  # fmt: skip
    assert client.get(f"api/v1/runs/{info.run_id}").json() == mine[0]
    raw = client.get(f"api/v1/runs/{info.run_id}/info")
    assert raw.headers["Content-Type"] == "application/x-yaml"
    assert raw.text == info.to_yaml()
    task = client.get(f"api/v1/tasks/task-a?project_id={project}").json()
    assert task["status"] == "idle" and task["runs"] == mine
    stop = client.post(f"api/v1/runs/{info.run_id}/stop")
    assert stop.status_code == 409
    assert stop.json() == {"error": {"code": "CONFLICT", "message": "run already finished",
                                     "details": {"run_id": info.run_id}}}  # fmt: skip
    # a running synthetic run (pid 0) shows exit_code -1 and the zero end time, and is never rewritten
    running = runs.RunInfo(run_id=f"run2-{project}", project_id=project, task_id="task-a", agent="codex",
                           start_time_ns=1_700_000_000_000_000_000, status="running")  # fmt: skip
    path = runs.create_run(root, running) / runs.RUN_INFO
    mtime = path.stat().st_mtime_ns
    body = client.get(f"api/v1/runs/{running.run_id}").json()
    assert body["exit_code"] == -1 and body["end_time"] == "0001-01-01T00:00:00Z"
    status = client.get("api/v1/status").json()
    assert running.run_id in [t["run_id"] for t in status["running_tasks"]]
    assert client.get(f"api/v1/tasks/task-a?project_id={project}").json()["status"] == "running"
    assert path.stat().st_mtime_ns == mtime


def test_audit_records(client: httpx.Client, srv: ServerThread, root: Path) -> None:
    project = unique()
    resp = client.post("api/v1/messages", json={"project_id": project, "body": "token=abc123 hello"},
                       headers={"X-Request-ID": "audit-1"})  # fmt: skip
    assert resp.status_code == 201
    srv.server.audit.flush()
    lines = (root / "_audit" / "form-submissions.jsonl").read_text().splitlines()
    record = next(json.loads(line) for line in lines if json.loads(line)["request_id"] == "audit-1")
    assert list(record) == ["timestamp", "request_id", "correlation_id", "method", "path", "endpoint",
                            "remote_addr", "project_id", "message_id", "payload"]  # fmt: skip
    assert record["endpoint"] == "POST /api/v1/messages"
    assert record["payload"] == {"body": "[REDACTED] hello", "project_id": project}


def error_of(resp: httpx.Response) -> str:
    return resp.json()["error"]["message"]


def metric(client: httpx.Client, name: str) -> float:
    for line in client.get("metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(name)


def test_debug_runtime_is_a_reference_extension(client: httpx.Client) -> None:
    body = client.get("api/v1/debug/runtime").json()
    assert {"asyncio_tasks", "threads", "open_streams", "subscribers", "pid"} <= set(body)
    assert body["pid"] == os.getpid()  # the test server runs in this process
    assert body["asyncio_tasks_peak"] >= body["asyncio_tasks"] >= 1
    assert client.post("api/v1/debug/runtime").status_code == 405


def test_ids_longer_than_a_file_name_are_400(client: httpx.Client) -> None:
    long_id = "a" * 300
    for resp in (client.get("api/v1/messages", params={"project_id": long_id}),
                 client.post("api/v1/messages", json={"project_id": long_id, "body": "x"}),
                 client.post("api/v1/tasks", json={"project_id": "p", "task_id": long_id, "agent_type": "codex",
                                                   "prompt": "x"})):  # fmt: skip
        assert resp.status_code == 400
        assert "is too long" in error_of(resp)


def test_append_waits_for_a_foreign_bus_lock(client: httpx.Client, srv: ServerThread, root: Path) -> None:
    import fcntl
    import threading

    project = unique()
    client.post("api/v1/messages", json={"project_id": project, "body": "first"})
    path = root / project / bus.PROJECT_BUS
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process's writer holds the bus
    timer = threading.Timer(0.3, lambda: (fcntl.flock(fd, fcntl.LOCK_UN), os.close(fd)))
    timer.start()
    try:
        resp = client.post("api/v1/messages", json={"project_id": project, "body": "second"},
                           headers={"X-Request-ID": f"locked-{project}"})  # fmt: skip
    finally:
        timer.join()
    assert resp.status_code == 201
    assert [m.body for m in bus.read(path)] == ["first\n", "second"]
    srv.server.audit.flush()
    assert f'"request_id":"locked-{project}"' in (root / "_audit" / "form-submissions.jsonl").read_text()


def test_task_count_is_what_the_task_list_holds(tmp_path) -> None:
    from conductor_perf.bench import api_bench
    from conductor_perf.target import start_embedded

    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=["--disable-task-start"])
    try:
        assert api_bench.task_count(target) == 0
        for i in range(3):
            body = {"project_id": "p", "task_id": f"t-{i}", "agent_type": "codex", "prompt": "x"}
            assert httpx.post(target.url + "api/v1/tasks", json=body, timeout=10).status_code == 201
        assert api_bench.task_count(target) == 3
    finally:
        target.stop()
