"""Acceptance rules and checks: the documented shapes, run-info and bus-file comparisons, metrics, CORS."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conductor_perf.acceptance import behaviour
from conductor_perf.acceptance.behaviour import NotAsDocumented, Posted
from conductor_perf.formats import bus
from conductor_perf.formats.runs import RunInfo
from conductor_perf.reference.app import Metrics
from conductor_perf.reference.departures import REPRODUCED

REPO = Path(__file__).resolve().parent.parent
DOC = (REPO / "docs" / "api-behaviour.md").read_text(encoding="utf-8")
ROBOT_FILES = sorted((REPO / "suites" / "98__acceptance").glob("*.robot")) + [
    REPO / "resources" / "acceptance.resource"
]


def test_every_rule_has_its_anchor_in_the_doc_and_every_anchor_is_a_rule() -> None:
    anchors = set(re.findall(r'<a id="([a-z0-9-]+)"></a>', DOC))
    assert anchors == set(behaviour.RULES)
    for rule in behaviour.RULES.values():
        assert rule.says and rule.sources, rule.id
        assert all(src.startswith("docs/") and src.endswith(".md") for src in rule.sources), rule.id


def test_shapes_departures_and_the_suites_name_only_known_rules() -> None:
    assert {s.rule for s in behaviour.SHAPES.values()} <= set(behaviour.RULES)
    assert set(REPRODUCED) <= set(behaviour.RULES)
    text = "\n".join(p.read_text(encoding="utf-8") for p in ROBOT_FILES)
    rules = set(re.findall(r"rule=([a-z0-9-]+)", text))
    shapes = set(re.findall(r"shape=([a-z ]+?)(?:\s{2,}|\n|$)", text))
    shapes |= set(
        re.findall(r"Should Have Shape\s{2,}\S+\s{2,}(?:\S+\s{2,})?([a-z][a-z ]*[a-z])\s*(?:\s{2,}|\n)", text)
    )
    departures = set(re.findall(r"Expect Reproduced Departure\s{2,}([a-z0-9-]+)", text))
    assert rules and shapes and departures
    assert rules - set(behaviour.RULES) == set(), "unknown rules in the suites"
    assert shapes - set(behaviour.SHAPES) == set(), "unknown shapes in the suites"
    assert departures == set(REPRODUCED), "every reproduced departure is tested, and only those"
    assert "Expect Reproduced Departure" in (REPO / "libraries" / "AcceptanceLibrary.py").read_text()


def test_a_typo_in_a_rule_or_shape_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match="no documented rule 'run-stpo': use one of task-create"):
        behaviour.rule("run-stpo")
    with pytest.raises(KeyError, match="no documented shape 'rnu'"):
        behaviour.shape_problems({}, "rnu")


RUN = {"run_id": "20260101-1200000000-42-1", "project_id": "p", "task_id": "t", "status": "completed",
       "process_ownership": "managed", "start_time": "2026-01-01T12:00:00.5Z", "end_time": "2026-01-01T12:00:01Z",
       "agent_version": "codex-cli 0.1.0-stub"}  # fmt: skip


def test_shape_problems_name_missing_and_mistyped_keys_and_exact_values() -> None:
    assert behaviour.shape_problems(RUN, "run") == []
    assert behaviour.shape_problems({**RUN, "exit_code": 0}, "run") == []
    bad = {k: v for k, v in RUN.items() if k != "status"} | {"exit_code": "0", "start_time": 5}
    assert behaviour.shape_problems(bad, "run") == ['"status" is missing', '"start_time" is 5, not a str',
                                                    '"exit_code" is "0", not a int']  # fmt: skip
    assert behaviour.shape_problems({"exit_code": True, **RUN}, "run") == ['"exit_code" is true, not a int']
    assert behaviour.shape_problems({"status": "stopped"}, "run stopping") == [
        '"status" is "stopped", not "stopping"'
    ]
    assert behaviour.shape_problems([RUN], "run") == [
        f"expected a JSON object (run), got list: {behaviour.brief([RUN])}"
    ]
    assert behaviour.shape_problems({"uptime_seconds": 4, "active_runs_count": 0, "configured_agents": [],
                                     "version": "v", "running_tasks": []}, "status") == []  # fmt: skip


def test_a_departure_message_says_what_then_the_rule_then_the_evidence() -> None:
    with pytest.raises(NotAsDocumented) as err:
        behaviour.check_shape(
            {"status": "stopped"}, "run stopping", evidence="request: POST /x", subject="stop"
        )
    lines = str(err.value).splitlines()
    assert (
        lines[0]
        == 'stop: the run stopping departs from its documented shape: "status" is "stopped", not "stopping"'
    )
    assert lines[1].startswith(
        "documented (docs/api-behaviour.md#run-stop): POST /api/v1/runs/{id}/stop answers 202"
    )
    assert lines[2] == "request: POST /x"
    with pytest.raises(
        NotAsDocumented, match="2 of 3 items depart from the documented shape of a run; item 1"
    ):
        behaviour.check_shapes([RUN, {}, {}], "run")


def test_json_answer_refuses_html_text_and_broken_json() -> None:
    assert behaviour.json_answer(200, "application/json; charset=utf-8", b'{"a":1}\n', rule="health") == {
        "a": 1
    }
    with pytest.raises(
        NotAsDocumented, match="answered 500 with Content-Type 'text/html' instead of application/json"
    ):
        behaviour.json_answer(500, "text/html", b"<h1>x</h1>", rule="health")
    with pytest.raises(NotAsDocumented, match="answered 200 with Content-Type '\\(none\\)'"):
        behaviour.json_answer(200, "", b"{}", rule="health")
    with pytest.raises(NotAsDocumented, match="answered 200 with a body that is not valid JSON"):
        behaviour.json_answer(200, "application/json", b'{"a":', rule="health")


def test_ids_have_the_documented_forms() -> None:
    assert behaviour.RUN_ID.match("20261127-1732010000-14239-1")
    assert behaviour.RUN_ID.match(
        "20261127-1732010000-14239-1-8123"
    )  # the documented fallback for a taken name
    assert not behaviour.RUN_ID.match("run_20260205_100001_abc123")
    assert behaviour.MSG_ID.match("MSG-20261127-173153-970467578-PID14239-0001")
    assert not behaviour.MSG_ID.match("msg_001")
    assert behaviour.REQUEST_ID.match("req-1796466168152445588-f4aeabb6d539")


def test_run_disagreements_compare_every_served_field_with_run_info() -> None:
    info = RunInfo.from_yaml(
        "version: 1\nrun_id: 20260101-1200000000-42-1\nproject_id: p\ntask_id: t\nagent: codex\n"
        "process_ownership: managed\npid: 1\npgid: 1\nstart_time: 2026-01-01T12:00:00.5Z\n"
        "end_time: 2026-01-01T12:00:01Z\nexit_code: 0\nstatus: completed\nagent_version: codex-cli 0.1.0-stub\n")  # fmt: skip
    assert behaviour.run_disagreements(RUN, info) == []  # exit_code left out: a rule of its own
    assert (
        behaviour.run_disagreements({**RUN, "exit_code": 0, "start_time": "2026-01-01T12:00:00.500Z"}, info)
        == []
    )
    assert behaviour.run_disagreements({**RUN, "status": "failed", "exit_code": 3}, info, where="run r") == [
        'run r "status" is "failed", run-info.yaml has "completed"',
        'run r "exit_code" is 3, run-info.yaml has 0',
    ]


def _posted(*messages: bus.Message) -> tuple[bytes, list[Posted]]:
    data, posted = b"", []
    for i, m in enumerate(messages, start=1):
        m.msg_id = f"MSG-20260101-120000-00000000{i}-PID00042-000{i}"
        m.ts_ns = 1767268800_000000000 + i * 1000
        data += (b"\n" if data else b"") + bus.serialize(m)
        posted.append(Posted(m.msg_id, m.timestamp, m.type, m.project_id, m.body, m.task_id, m.run_id))
    return data, posted


def test_bus_file_problems_accept_the_format_and_name_each_departure() -> None:
    data, posted = _posted(bus.Message(type="FACT", project_id="p", task_id="t", body="one"),
                           bus.Message(type="PROGRESS", project_id="p", task_id="t", body="two\nlines"),
                           bus.Message(type="USER", project_id="p", task_id="t", body="three\n"))  # fmt: skip
    assert behaviour.bus_file_problems(data, posted) == []
    assert behaviour.bus_file_problems(data, list(reversed(posted)))[0].startswith(
        "messages are in the file in the order"
    )
    assert behaviour.bus_file_problems(data.replace(b"type: PROGRESS", b"type: INFO"), posted) == [
        f"{posted[1].msg_id}: type is 'INFO' in the file, posted 'PROGRESS'",
        f"{posted[1].msg_id}: the file does not hold the message in the bus format; expected the bytes "
        f"{bus.serialize(bus.Message(type='PROGRESS', project_id='p', task_id='t', msg_id=posted[1].msg_id, ts_ns=1767268800_000002000, body='two' + chr(10) + 'lines')).decode()!r}"]  # fmt: skip
    torn = behaviour.bus_file_problems(data.replace(b"two\nlines", b"two lines"), posted)
    assert torn == [f"{posted[1].msg_id}: the file does not hold the message in the bus format; expected the bytes "
                    + repr(bus.serialize(bus.Message(type="PROGRESS", project_id="p", task_id="t", body="two\nlines",
                                                     msg_id=posted[1].msg_id, ts_ns=1767268800_000002000)).decode())]  # fmt: skip
    missing = behaviour.bus_file_problems(data.split(b"\n\n---\nmsg_id: MSG-20260101-120000-000000003")[0] + b"\n",
                                          posted)  # fmt: skip
    assert f"{posted[2].msg_id} is in the file 0 times (expected once)" in missing


def test_prometheus_text_of_the_reference_has_the_documented_families() -> None:
    metrics = Metrics()
    metrics.record("POST", 201)
    metrics.record("GET", 200)
    scrape = behaviour.parse_prometheus(metrics.render())
    assert behaviour.metrics_problems(scrape) == []
    assert scrape.value('conductor_api_requests_total{status="201",method="POST"}') == 1
    assert scrape.value('conductor_api_requests_total{method="DELETE",status="204"}') == 0
    assert scrape.value("conductor_uptime_seconds") >= 0
    broken = behaviour.parse_prometheus(metrics.render().replace("# TYPE conductor_failed_runs_total counter\n", "")
                                        .replace("conductor_messagebus_appends_total 0", "conductor_messagebus_appends_total x"))  # fmt: skip
    assert behaviour.metrics_problems(broken) == [
        "line 18 has no number: 'conductor_messagebus_appends_total x'",
        "conductor_failed_runs_total: TYPE is 'missing', documented 'counter'",
        "conductor_messagebus_appends_total: no sample"]  # fmt: skip
    with pytest.raises(ValueError, match="not a metric series"):
        behaviour.series_key("no spaces allowed")


def test_cors_problems_for_allowed_and_other_origins() -> None:
    good = {"Access-Control-Allow-Origin": "http://localhost:3000", "Access-Control-Allow-Methods": "GET,POST,DELETE,OPTIONS",
            "Access-Control-Allow-Headers": "Content-Type, Authorization"}  # fmt: skip
    assert behaviour.cors_problems(204, good, "http://localhost:3000", allowed=True) == []
    assert (
        behaviour.cors_problems(204, {**good, "Access-Control-Allow-Origin": "*"}, "http://x", allowed=True)
        == []
    )
    assert behaviour.cors_problems(200, {"Access-Control-Allow-Methods": "GET, POST"}, "http://a", allowed=True) == [
        "a preflight is answered 200, documented 204", "Access-Control-Allow-Origin is None, expected 'http://a'",
        "Access-Control-Allow-Methods 'GET, POST' lacks DELETE, OPTIONS",
        "Access-Control-Allow-Headers None lacks content-type"]  # fmt: skip
    assert behaviour.cors_problems(204, {}, "http://other", allowed=False) == []
    assert behaviour.cors_problems(204, good, "http://other", allowed=False) == [
        "origin http://other is not allowed, yet got Access-Control-Allow-Origin: http://localhost:3000"
    ]


def test_field_and_list_checks_of_answers() -> None:
    body = {"status": "failed", "exit_code": 3, "error": {"code": "NOT_FOUND"}, "ok": True, "none": None}
    assert behaviour.field_problem(body, "status", "failed") == ""
    assert behaviour.field_problem(body, "exit_code", "3") == ""  # Robot passes numbers as text
    assert behaviour.field_problem(body, "ok", "true") == ""
    assert behaviour.field_problem(body, "error.code", "NOT_FOUND") == ""
    assert behaviour.field_problem(body, "exit_code", 0) == '"exit_code" is 3, expected 0'
    assert behaviour.field_problem(body, "exit_code", "0", differ=True) == ""
    assert behaviour.field_problem(body, "status", "failed", differ=True) == (
        '"status" is "failed", expected anything but "failed"'
    )
    assert behaviour.field_problem(body, "missing", "x") == '"missing" is missing'
    assert behaviour.field_problem(body, "none", "None") == '"none" is null, expected "None"'
    assert behaviour.field_problem(body, "error", "{'code': 'NOT_FOUND'}") != ""
    assert behaviour.list_problem({"runs": None}, "runs") == '"runs" is null, not a list'
    assert behaviour.list_problem({"runs": []}, "runs") == ""
    items = [{"run_id": "a"}, {"run_id": "b"}, {"run_id": "b"}]
    assert behaviour.each_once_problems(items, "run_id", ["a"]) == []
    assert behaviour.each_once_problems(items, "run_id", ["b", "c"]) == [
        "b is listed 2 times",
        "c is listed 0 times",
    ]
    assert behaviour.absent_problems(items, "run_id", ["c"]) == []
    assert behaviour.absent_problems(items, "run_id", ["a", "c"]) == ["still listed: ['a']"]
    assert behaviour.all_have_problems([{"p": "x"}, {"p": "y"}, {}], "p", "x") == [
        "2 of 3 items have p other than 'x': ['None', 'y']"
    ]


def test_posted_problems_compare_ids_order_and_fields() -> None:
    posted = [{"msg_id": "M1", "timestamp": "2026-01-01T00:00:00.5Z", "body": "one", "project_id": "p"},
              {"msg_id": "M2", "timestamp": "2026-01-01T00:00:01Z", "body": "two", "type": "FACT", "project_id": "p"}]  # fmt: skip
    listed = [{"msg_id": "M1", "timestamp": "2026-01-01T00:00:00.500Z", "type": "USER", "project_id": "p",
               "body": "one\n"},
              {"msg_id": "M2", "timestamp": "2026-01-01T00:00:01Z", "type": "FACT", "project_id": "p", "body": "two"}]  # fmt: skip
    assert behaviour.posted_problems(listed, posted, ["msg_id", "type", "project_id", "timestamp"]) == []
    assert behaviour.posted_problems(listed, posted, ["body"]) == ['M1: body is "one\\n", posted "one"']
    assert behaviour.posted_problems(list(reversed(listed)), posted, [])[0] == (
        "listed ids ['M2', 'M1'] differ from the posted ids ['M1', 'M2']"
    )


def test_a_scrape_sums_series_joined_by_plus() -> None:
    scrape = behaviour.parse_prometheus('a_total 2\nb_total 3\nc_total{x="1"} 4\n')
    assert scrape.value("a_total + b_total") == 5
    assert scrape.value('a_total + c_total{x="1"} + missing_total') == 6


def test_the_reference_is_told_by_its_reference_only_route(tmp_path: Path) -> None:
    from conductor_perf.reference.config import ReferenceConfig
    from conductor_perf.reference.departures import REFERENCE_ONLY_ROUTE, is_reference
    from conductor_perf.reference.testing import ServerThread
    from conductor_perf.target import http_json

    with ServerThread(ReferenceConfig(root=tmp_path / "root", log_file=tmp_path / "server.log")) as srv:
        assert is_reference(lambda path: http_json(srv.url.rstrip("/") + path))
    assert not is_reference(lambda path: (404, "404 page not found\n"))  # conductor-loop's answer
    assert not is_reference(lambda path: (200, {"status": "ok"}))

    def unreachable(path: str) -> tuple[int, object]:
        raise OSError("connection refused")

    assert not is_reference(unreachable)
    assert REFERENCE_ONLY_ROUTE == "/api/v1/debug/runtime"


def test_the_managed_binary_runs_with_the_config_a_hand_started_server_gets() -> None:
    import yaml

    from conductor_perf.binary import DEFAULT_CONFIG

    assert yaml.safe_load((REPO / "resources" / "conductor.yaml").read_text()) == DEFAULT_CONFIG
