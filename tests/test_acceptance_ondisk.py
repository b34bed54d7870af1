"""Acceptance checks against the runs root (conductor_perf.acceptance.behaviour) and the small answer checks.

Files are written with conductor_perf.formats (the one implementation of the formats); each check
must pass on what the format writes and name the file and the rule when the served answer differs.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conductor_perf.acceptance import behaviour
from conductor_perf.acceptance.behaviour import NotAsDocumented
from conductor_perf.formats import bus, runs
from conductor_perf.formats.runs import RunInfo

PROJECT, TASK, RUN_ID = "p", "task-20260101-120000-ondisk", "20260101-1200000000-42-1"


def _run(root: Path) -> RunInfo:
    info = RunInfo(run_id=RUN_ID, project_id=PROJECT, task_id=TASK, agent="codex", process_ownership="managed",
                   pid=1, pgid=1, start_time_ns=1767268800_500000000, end_time_ns=1767268801_000000000, exit_code=0,
                   status="completed")  # fmt: skip
    runs.create_run(root, info, fsync=False)
    return info


def test_served_runs_and_the_info_file_are_compared_with_run_info_on_disk(tmp_path: Path) -> None:
    info = _run(tmp_path)
    served = behaviour.run_info_fields(info)
    assert behaviour.check_served_runs(tmp_path, served) == 1
    assert behaviour.check_served_runs(tmp_path, {"runs": [served]}) == 1
    with pytest.raises(NotAsDocumented, match=r'"status" is "failed", run-info.yaml has "completed"\ndocumented \(docs/api-behaviour.md#run-info-agrees\)'):
        behaviour.check_served_runs(tmp_path, {**served, "status": "failed"})
    with pytest.raises(NotAsDocumented, match="the answer holds no run"):
        behaviour.check_served_runs(tmp_path, {"runs": []}, evidence="request: GET /x")
    path, data, read = behaviour.read_run_info(tmp_path, PROJECT, TASK, RUN_ID)
    assert read.status == "completed" and data == path.read_bytes()
    behaviour.check_info_file(tmp_path, PROJECT, TASK, RUN_ID, data)
    with pytest.raises(NotAsDocumented, match="the body differs from"):
        behaviour.check_info_file(tmp_path, PROJECT, TASK, RUN_ID, data + b"\n")
    with pytest.raises(NotAsDocumented, match="cannot be read as run-info"):
        behaviour.read_run_info(tmp_path, PROJECT, TASK, "20260101-1200000000-42-2")
    assert behaviour.served_run_info(data).run_id == RUN_ID
    with pytest.raises(NotAsDocumented, match="run-info-route"):
        behaviour.served_run_info(b"<html>")


def test_run_files_done_and_the_bus_file_are_read_from_the_root(tmp_path: Path) -> None:
    _run(tmp_path)
    output = runs.run_dir(tmp_path, PROJECT, TASK, RUN_ID) / runs.OUTPUT
    output.write_text("hello\n", encoding="utf-8")
    behaviour.check_run_file(tmp_path, {"content": "hello\n", "size_bytes": 6}, PROJECT, TASK, RUN_ID)
    with pytest.raises(NotAsDocumented, match="content/size_bytes differ"):
        behaviour.check_run_file(tmp_path, {"content": "hello", "size_bytes": 5}, PROJECT, TASK, RUN_ID)
    with pytest.raises(NotAsDocumented, match="cannot be read"):
        behaviour.check_run_file(tmp_path, {"content": "", "size_bytes": 0}, PROJECT, TASK, RUN_ID, "stderr")
    with pytest.raises(NotAsDocumented, match="DONE does not exist"):
        behaviour.check_done(tmp_path, PROJECT, TASK)
    (runs.task_dir(tmp_path, PROJECT, TASK) / runs.DONE).touch()
    assert behaviour.check_done(tmp_path, PROJECT, TASK).name == runs.DONE

    path = bus.task_bus_path(tmp_path, PROJECT, TASK)
    path.parent.mkdir(parents=True, exist_ok=True)
    msg = bus.Message(type="FACT", project_id=PROJECT, task_id=TASK, body="one",
                      msg_id="MSG-20260101-120000-000000001-PID00042-0001", ts_ns=1767268800_000001000)  # fmt: skip
    path.write_bytes(bus.serialize(msg))
    answer = {"msg_id": msg.msg_id, "timestamp": msg.timestamp, "type": "FACT", "project_id": PROJECT,
              "task_id": TASK, "body": "one"}  # fmt: skip
    assert behaviour.check_bus_file(tmp_path, PROJECT, TASK, [answer]) == (path, path.stat().st_size)
    with pytest.raises(NotAsDocumented, match="is in the file 0 times"):
        behaviour.check_bus_file(tmp_path, PROJECT, TASK, [answer, {**answer, "msg_id": "MSG-x"}])
    with pytest.raises(NotAsDocumented, match="bus-file"):
        behaviour.check_bus_file(tmp_path, PROJECT, "", [answer])  # no project bus was written


def test_answer_checks_say_what_differs() -> None:
    headers = {"Content-Type": "application/x-yaml"}
    assert behaviour.header_problem(headers, "Content-Type", "Application/X-YAML") == ""
    assert behaviour.header_problem(headers, "Content-Type", "text/plain") == (
        "Content-Type is 'application/x-yaml', expected 'text/plain'")  # fmt: skip
    assert behaviour.header_problem({}, "ETag", "x") == "ETag is missing, expected 'x'"
    assert behaviour.request_id_problem("req-1796466168152445588-f4ae") == ""
    assert behaviour.request_id_problem("mine", "mine") == ""
    assert behaviour.request_id_problem(None) == "X-Request-ID is None, expected a generated req-<unix ns>-<hex>"
    assert behaviour.request_id_problem("other", "mine") == "X-Request-ID is 'other', expected 'mine'"
    assert behaviour.changed_fields({"a": 1, "b": 2}, {"a": 1, "b": 3, "c": 0}) == ["b", "c"]
    listed = [{"msg_id": "m2"}, {"msg_id": "m3"}]
    assert behaviour.after_cursor_problem(["m1", "m2", "m3"], 0, listed) == ""
    assert behaviour.after_cursor_problem(["m1", "m2", "m3"], 1, listed) == (
        "after m2 (message 2 of 3) the answer lists ['m2', 'm3'], expected ['m3']")  # fmt: skip
    assert behaviour.metrics_answer_problem(200, "text/plain; version=0.0.4; charset=utf-8") == ""
    assert behaviour.metrics_answer_problem(200, "text/plain") == (
        "answered 200 'text/plain', documented 200 text/plain; version=0.0.4")  # fmt: skip


def test_a_counter_moves_by_exactly_or_at_least_an_amount() -> None:
    before = behaviour.parse_prometheus("conductor_api_requests_total{method=\"GET\"} 2\n")
    after = behaviour.parse_prometheus("conductor_api_requests_total{method=\"GET\"} 5\n")
    series = 'conductor_api_requests_total{method="GET"}'
    assert behaviour.moved_problem(before, after, series, 3) == (3, "")
    assert behaviour.moved_problem(before, after, series, 2, at_least=True) == (3, "")
    assert behaviour.moved_problem(before, after, series, 2) == (
        3, f"{series} moved by 3 (from 2 to 5), expected exactly 2")  # fmt: skip
    assert behaviour.moved_problem(before, after, series, 4, at_least=True)[1].endswith("expected at least 4")
