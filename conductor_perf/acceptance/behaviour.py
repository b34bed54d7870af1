"""The documented behaviour the acceptance suites check, and the checks themselves.

Every rule has an id that is an anchor of ``docs/api-behaviour.md`` (a pytest test keeps the two in
step) and a one-line statement of what conductor-loop's documentation says. A check that finds a
departure raises :class:`NotAsDocumented`, whose message has three parts: what the SUT did, what
the documentation says (with the rule's anchor), and the evidence (request and answer)::

    run 2026...-1: "exit_code" is missing
    documented (docs/api-behaviour.md#exit-code-zero): a completed run reports "exit_code": 0 ...
    request: GET http://127.0.0.1:41234/api/v1/runs/2026...-1
    answer:  200 OK (application/json, 240 bytes)
      body: {"run_id":...}

Example::

    body = json_answer(200, "application/json", b'{"status":"ok"}', rule="health")
    check_shape(body, "health")
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..formats import bus, runs
from ..formats.runs import RunInfo, StorageError

DOC = "docs/api-behaviour.md"


@dataclass(frozen=True)
class Rule:
    """One documented behaviour: its anchor in :data:`DOC`, what the docs say, where (conductor-loop paths)."""

    id: str  # noqa: A003
    says: str
    sources: tuple[str, ...]

    def cite(self) -> str:
        """``documented (docs/api-behaviour.md#id): says``."""
        return f"documented ({DOC}#{self.id}): {self.says}"


_SPEC = "docs/specifications/subsystem-frontend-backend-api.md"
_USER = "docs/user/api-reference.md"
_FLOW = "docs/architecture/data-flow-api.md"
_BUSFLOW = "docs/architecture/data-flow-message-bus.md"
_SCHEMA = "docs/specifications/subsystem-storage-layout-run-info-schema.md"
_LIFE = "docs/architecture/data-flow-task-lifecycle.md"
_MODEL = "docs/specifications/subsystem-message-bus-object-model.md"
_TOOLS = "docs/specifications/subsystem-message-bus-tools.md"

RULES: dict[str, Rule] = {r.id: r for r in (
    Rule("task-create", 'POST /api/v1/tasks answers 201 with "project_id", "task_id", "run_id" and "status": "started"',
         (_SPEC, _USER)),
    Rule("run-id-format", "a run id is YYYYMMDD-HHMMSSffff-PID-SEQ, e.g. 20260223-2048580000-66788-1", (_SCHEMA,)),
    Rule("run-lifecycle", "a started run is served by GET /api/v1/runs/{id} as running, then completed "
         "(exit code 0) or failed (non-zero exit code)", (_SCHEMA, _LIFE, _SPEC)),
    Rule("run-response", 'a run is answered as RunResponse: "run_id", "project_id", "task_id", "status", '
         '"start_time", "end_time", "exit_code", "process_ownership", "agent_version", "error_summary"', (_SPEC,)),
    Rule("exit-code-zero", 'a completed run reports "exit_code": 0 (the field is left out only while the run '
         "is still running)", (_SPEC, _USER, _SCHEMA)),
    Rule("run-info-route", "GET /api/v1/runs/{id}/info answers the raw run-info.yaml as application/x-yaml",
         (_SPEC,)),
    Rule("run-info-agrees", "run-info.yaml is the canonical run metadata: the run, the task's runs and the info "
         "route serve what it holds", (_SCHEMA, _SPEC)),
    Rule("run-file", 'GET /api/projects/{p}/tasks/{t}/runs/{r}/file?name=output.md answers {"name", "content", '
         '"modified", "size_bytes"} of the run\'s output.md', (_SPEC, _USER)),
    Rule("task-delete", 'DELETE /api/v1/tasks/{id} marks the task done (writes DONE) and stops its active runs: '
         '202 {"stopped_runs": N}; with DONE present the loop starts no further run', (_SPEC, _LIFE)),
    Rule("run-stop", 'POST /api/v1/runs/{id}/stop answers 202 {"status": "stopping"}; the run then ends as '
         'failed (non-zero exit code, an error summary)', (_SPEC, _SCHEMA, _USER)),
    Rule("run-failed", "an agent that exits non-zero leaves its run failed, with that exit code and an "
         "error summary", (_SCHEMA,)),
    Rule("task-status", "task status values are queued, running, blocked, completed, failed and idle: a task "
         "whose work is done reports completed", (_USER,)),
    Rule("task-list", 'GET /api/v1/tasks answers {"tasks": [...]}, each task once, each with "project_id", '
         '"task_id", "status", "last_activity"', (_SPEC, _USER)),
    Rule("task-list-filter", "GET /api/v1/tasks?project_id=P lists the tasks of project P only", (_USER,)),
    Rule("run-list", 'GET /api/v1/runs answers {"runs": [...]}, each run once, as RunResponse', (_SPEC, _USER)),
    Rule("status", 'GET /api/v1/status answers "active_runs_count", "uptime_seconds", "configured_agents", '
         '"version" and "running_tasks" (project_id, task_id, run_id, agent, started) of each running run',
         (_SPEC,)),
    Rule("messages-after", "GET /api/v1/messages?after=ID answers the messages after ID in append order; an "
         "unknown ID is 404", (_USER, _BUSFLOW, _TOOLS)),
    Rule("message-post", 'POST /api/v1/messages answers 201 {"msg_id", "timestamp"}; msg_id is '
         "MSG-YYYYMMDD-HHMMSS-<9-digit ns>-PID<5 digits>-<4 digits>; type defaults to USER; with task_id the "
         "message goes to the task bus, without to the project bus", (_SPEC, _MODEL, _BUSFLOW)),
    Rule("message-list", "GET /api/v1/messages lists each message with its msg_id, type, project_id, task_id, "
         "timestamp and body, in append order", (_SPEC, _TOOLS)),
    Rule("message-body", "a message's body is stored after its front matter and read back as posted",
         (_MODEL, _SPEC)),
    Rule("bus-file", "the bus file (TASK-MESSAGE-BUS.md, PROJECT-MESSAGE-BUS.md) holds each message as '---', "
         "its YAML header, '---', its body", (_MODEL, _BUSFLOW)),
    Rule("sse-headers", "SSE answers carry Content-Type: text/event-stream and Cache-Control: no-cache", (_FLOW,)),
    Rule("run-stream", "the run stream sends `status` (run_id, status, exit_code) when the status changes and "
         "`log` events (id s=<stdout lines>;e=<stderr lines>; run_id, stream, line, timestamp) per line",
         (_FLOW, _SPEC)),
    Rule("run-stream-resume", "a run stream opened with a Last-Event-ID cursor behind the logs replays the "
         "missed lines, then continues live", (_FLOW, _SPEC)),
    Rule("message-stream", "the message stream sends `message` events with id = msg_id; without Last-Event-ID "
         "it reads the bus from its start", (_FLOW, _BUSFLOW, _SPEC)),
    Rule("message-stream-resume", "a message stream opened with Last-Event-ID: <msg_id> sends the messages "
         "after that id, none before it", (_SPEC, _FLOW, _BUSFLOW)),
    Rule("heartbeat", "every stream sends `heartbeat` events with data {} every api.sse.heartbeat_interval_s",
         (_FLOW, _SPEC)),
    Rule("healthz", "GET /healthz answers 200 with an ok status", ("docs/roadmap/quick-wins.md",)),
    Rule("health", 'GET /api/v1/health answers {"status": "ok"}', (_USER, _SPEC)),
    Rule("version", 'GET /api/v1/version answers {"version": "<server version>"}', (_USER, _SPEC)),
    Rule("metrics", "GET /metrics answers Prometheus text (text/plain; version=0.0.4) with "
         "conductor_uptime_seconds, conductor_active_runs_total (gauges), conductor_completed_runs_total, "
         "conductor_failed_runs_total, conductor_messagebus_appends_total and conductor_api_requests_total "
         "(counters)", (_USER, _FLOW)),
    Rule("metrics-requests", 'conductor_api_requests_total{method,status} counts the API requests answered',
         (_USER, _FLOW)),
    Rule("metrics-bus-appends", "conductor_messagebus_appends_total counts message bus append operations", (_USER,)),
    Rule("metrics-runs", "conductor_completed_runs_total counts completed agent runs, "
         "conductor_failed_runs_total failed agent runs", (_USER,)),
    Rule("cors", "every OPTIONS request is answered 204; an Origin on api.cors_origins gets "
         "Access-Control-Allow-Origin and the allowed methods (GET, POST, DELETE, OPTIONS) and headers "
         "(Content-Type); other origins get no CORS headers", (_FLOW, _USER)),
    Rule("request-id", "every answer carries X-Request-ID: the one sent, else a generated req-<unix ns>-<hex>",
         (_FLOW,)),
    Rule("error-envelope", 'API errors answer {"error": {"code": "<CODE>", "message": "..."}}, e.g. 404 '
         "NOT_FOUND for an unknown run", (_SPEC, _FLOW)),
)}  # fmt: skip


class NotAsDocumented(AssertionError):
    """The SUT departs from the documented behaviour; the message says how, what the docs say, and the evidence."""

    ROBOT_SUPPRESS_NAME = True  # Robot shows the message alone, as for AssertionError


def rule(rule_id: str) -> Rule:
    """The rule with this anchor; ``KeyError`` naming the known ones for a typo."""
    try:
        return RULES[rule_id]
    except KeyError:
        raise KeyError(f"no documented rule {rule_id!r}: use one of {', '.join(RULES)}") from None


def departure(what: str, rule_id: str, evidence: str = "") -> NotAsDocumented:
    """The exception for one departure: ``what``, the rule's citation, then the evidence."""
    text = f"{what}\n{rule(rule_id).cite()}"
    return NotAsDocumented(f"{text}\n{evidence}" if evidence else text)


# --------------------------------------------------------------------------- JSON answers and shapes

Number = (int, float)


@dataclass(frozen=True)
class Shape:
    """Keys a JSON object must have (with their types) and keys it may have; ``rule`` documents it."""

    rule: str
    required: Mapping[str, type | tuple[type, ...]]
    optional: Mapping[str, type | tuple[type, ...]] = field(default_factory=dict)
    exact: Mapping[str, Any] = field(default_factory=dict)
    """Keys whose value is documented exactly (e.g. ``{"status": "ok"}``)."""


_RUN = Shape("run-response",
             {"run_id": str, "project_id": str, "task_id": str, "status": str, "start_time": str},
             {"end_time": str, "exit_code": int, "process_ownership": str, "agent_version": str,
              "error_summary": str})  # fmt: skip

SHAPES: dict[str, Shape] = {
    "task created": Shape("task-create", {"project_id": str, "task_id": str, "run_id": str, "status": str},
                          {"queue_position": int, "depends_on": list}),
    "run": _RUN,
    "task summary": Shape("task-list", {"project_id": str, "task_id": str, "status": str, "last_activity": str},
                          {"queue_position": int, "depends_on": list, "blocked_by": list, "runs": list}),
    "task": Shape("task-list", {"project_id": str, "task_id": str, "status": str, "last_activity": str,
                                "runs": list}, {"queue_position": int, "depends_on": list, "blocked_by": list}),
    "task list": Shape("task-list", {"tasks": list}),
    "run list": Shape("run-list", {"runs": list}),
    "status": Shape("status", {"active_runs_count": int, "uptime_seconds": Number, "configured_agents": list,
                               "version": str, "running_tasks": list}),
    "running task": Shape("status", {"project_id": str, "task_id": str, "run_id": str, "agent": str,
                                     "started": str}),
    "task deleted": Shape("task-delete", {"stopped_runs": int}),
    "run stopping": Shape("run-stop", {"status": str}, exact={"status": "stopping"}),
    "run file": Shape("run-file", {"name": str, "content": str, "modified": str, "size_bytes": int}),
    "message posted": Shape("message-post", {"msg_id": str, "timestamp": str}),
    "message list": Shape("message-list", {"messages": list}),
    "message": Shape("message-list", {"msg_id": str, "timestamp": str, "type": str, "project_id": str,
                                      "body": str},
                     {"task_id": str, "run_id": str, "issue_id": str, "parents": list, "links": list,
                      "meta": dict}),
    "health": Shape("health", {"status": str}, exact={"status": "ok"}),
    "healthz": Shape("healthz", {"status": str}, {"uptime": str}, exact={"status": "ok"}),
    "version": Shape("version", {"version": str}),
    "error": Shape("error-envelope", {"error": dict}),
    "error detail": Shape("error-envelope", {"code": str, "message": str}, {"details": dict}),
    "log event": Shape("run-stream", {"run_id": str, "stream": str, "line": str, "timestamp": str},
                       {"project_id": str, "task_id": str}),
    "status event": Shape("run-stream", {"run_id": str, "status": str, "exit_code": int},
                          {"project_id": str, "task_id": str}),
    "message event": Shape("message-stream", {"msg_id": str, "timestamp": str, "type": str, "project_id": str,
                                              "body": str},
                           {"task_id": str, "run_id": str, "issue_id": str, "parents": list, "meta": dict}),
}  # fmt: skip


def _type_name(t: type | tuple[type, ...]) -> str:
    if isinstance(t, tuple):
        return " or ".join(x.__name__ for x in t)
    return t.__name__


def _is(value: Any, t: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool):  # JSON true/false is not a number here
        return t is bool or (isinstance(t, tuple) and bool in t)
    return isinstance(value, t)


def shape(name: str) -> Shape:
    """The shape called ``name``; ``KeyError`` naming the known ones for a typo."""
    try:
        return SHAPES[name]
    except KeyError:
        raise KeyError(f"no documented shape {name!r}: use one of {', '.join(SHAPES)}") from None


def shape_problems(value: Any, name: str) -> list[str]:
    """What in ``value`` departs from the shape ``name`` (empty when it matches)."""
    s = shape(name)
    if not isinstance(value, dict):
        return [f"expected a JSON object ({name}), got {type(value).__name__}: {brief(value)}"]
    problems = []
    for key, t in s.required.items():
        if key not in value:
            problems.append(f'"{key}" is missing')
        elif not _is(value[key], t):
            problems.append(f'"{key}" is {brief(value[key])}, not a {_type_name(t)}')
    for key, t in s.optional.items():
        if key in value and value[key] is not None and not _is(value[key], t):
            problems.append(f'"{key}" is {brief(value[key])}, not a {_type_name(t)}')
    for key, expected in s.exact.items():
        if key in value and value[key] != expected:
            problems.append(f'"{key}" is {brief(value[key])}, not {json.dumps(expected)}')
    return problems


def check_shape(value: Any, name: str, *, evidence: str = "", subject: str = "") -> None:
    """Raise :class:`NotAsDocumented` when ``value`` departs from the shape ``name``."""
    problems = shape_problems(value, name)
    if problems:
        what = (
            f"{subject + ': ' if subject else ''}the {name} departs from its documented shape: "
            + "; ".join(problems)
        )
        raise departure(what, shape(name).rule, evidence)


def check_shapes(values: Sequence[Any], name: str, *, evidence: str = "", subject: str = "") -> None:
    """:func:`check_shape` for every item of a list (the message names the first bad item and how many)."""
    bad = [(i, p) for i, v in enumerate(values) if (p := shape_problems(v, name))]
    if bad:
        first, problems = bad[0]
        what = (f"{subject + ': ' if subject else ''}{len(bad)} of {len(values)} items depart from the documented "
                f"shape of a {name}; item {first}: " + "; ".join(problems))  # fmt: skip
        raise departure(what, shape(name).rule, evidence)


EXCERPT = 600
"""How many characters of a body a message shows (:func:`excerpt`)."""


def excerpt(text: str | bytes | None, limit: int = EXCERPT) -> str:
    """``text`` on one line (line breaks shown as ``\\n``), cut to ``limit`` characters with the rest counted."""
    if text is None:
        return ""
    if isinstance(text, bytes | bytearray):
        text = bytes(text).decode("utf-8", "replace")
    one_line = text.replace("\r", "\\r").replace("\n", "\\n")
    if len(one_line) <= limit:
        return one_line
    return f"{one_line[:limit]}... ({len(one_line) - limit} more characters)"


def brief(value: Any, limit: int = 120) -> str:
    """A JSON value on one line, cut to ``limit`` characters (for messages)."""
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[:limit] + "..."


def json_answer(status: int, content_type: str, body: bytes, *, rule: str, evidence: str = "") -> Any:
    """The parsed body of a JSON answer; :class:`NotAsDocumented` when it is not JSON (HTML, text, cut off)."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    if ctype != "application/json":
        raise departure(f"answered {status} with Content-Type {content_type or '(none)'!r} instead of "
                        "application/json", rule, evidence)  # fmt: skip
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise departure(
            f"answered {status} with a body that is not valid JSON ({exc})", rule, evidence
        ) from None


# --------------------------------------------------------------------------- fields and lists of answers


def same_value(value: Any, expected: Any) -> bool:
    """Equal, or equal as text (Robot passes ``0`` and ``true`` as text); ``None`` never equals a value."""
    if value == expected:
        return True
    if value is None or isinstance(value, dict | list):
        return False
    if isinstance(value, bool):
        return str(value).lower() == str(expected).lower()
    return str(value) == str(expected)


def field_value(body: Any, path: str) -> tuple[Any, bool]:
    """``(value, present)`` of a dotted ``path`` (``error.code``) in a JSON object."""
    value = body
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None, False
        value = value[part]
    return value, True


def field_problem(body: Any, path: str, expected: Any, *, differ: bool = False) -> str:
    """Why ``path`` is not ``expected`` (with ``differ``: why it is missing or equal to it); '' when fine."""
    value, present = field_value(body, path)
    if not present:
        return f'"{path}" is missing'
    if differ and same_value(value, expected):
        return f'"{path}" is {brief(value)}, expected anything but {brief(expected)}'
    if not differ and not same_value(value, expected):
        return f'"{path}" is {brief(value)}, expected {brief(expected)}'
    return ""


def list_problem(body: Any, key: str) -> str:
    """Why ``body[key]`` is not a JSON array ('' when it is)."""
    items = body.get(key) if isinstance(body, dict) else None
    return "" if isinstance(items, list) else f'"{key}" is {brief(items)}, not a list'


def each_once_problems(items: Sequence[Any], field: str, values: Iterable[str]) -> list[str]:
    """Each of ``values`` must be the ``field`` of exactly one item."""
    seen = [item.get(field) for item in items if isinstance(item, dict)]
    return [f"{v} is listed {seen.count(v)} times" for v in values if seen.count(v) != 1]


def absent_problems(items: Sequence[Any], field: str, values: Iterable[str]) -> list[str]:
    """None of ``values`` may be the ``field`` of an item."""
    seen = {item.get(field) for item in items if isinstance(item, dict)}
    listed = [v for v in values if v in seen]
    return [f"still listed: {listed}"] if listed else []


def all_have_problems(items: Sequence[Any], field: str, expected: str) -> list[str]:
    """Every item must have ``field`` equal to ``expected``."""
    other = [item.get(field) if isinstance(item, dict) else item for item in items
             if not isinstance(item, dict) or item.get(field) != expected]  # fmt: skip
    if not other:
        return []
    return [f"{len(other)} of {len(items)} items have {field} other than {expected!r}: "
            f"{sorted({str(o) for o in other})[:5]}"]  # fmt: skip


def header_problem(headers: Mapping[str, str], header: str, expected: str) -> str:
    """Why the answer's ``header`` is not ``expected`` (compared without case; a media type's parameters
    must match too); '' when it is. ``headers`` look names up without case (requests' answers do)."""
    value = headers.get(header)
    if value is None or value.strip().lower() != expected.strip().lower():
        return f"{header} is {'missing' if value is None else repr(value)}, expected {expected!r}"
    return ""


def request_id_problem(value: str | None, expected: str = "") -> str:
    """Why ``X-Request-ID`` is not ``expected`` (the one sent) or, without it, not a generated
    ``req-<unix ns>-<hex>``; '' when it is."""
    ok = value == expected if expected else bool(value and REQUEST_ID.match(value))
    if ok:
        return ""
    return f"X-Request-ID is {value!r}, expected {repr(expected) if expected else 'a generated req-<unix ns>-<hex>'}"


def changed_fields(one: Mapping[str, Any], two: Mapping[str, Any]) -> list[str]:
    """The keys whose values differ between two JSON objects (a key missing on one side counts)."""
    return sorted(k for k in set(one) | set(two) if one.get(k) != two.get(k))


def after_cursor_problem(ids: Sequence[str], i: int, listed: Sequence[Any]) -> str:
    """Why the messages listed after cursor ``ids[i]`` are not exactly ``ids[i + 1:]``, in order; '' when they are."""
    got = [m.get("msg_id") for m in listed if isinstance(m, dict)]
    if got == list(ids[i + 1 :]):
        return ""
    return f"after {ids[i]} (message {i + 1} of {len(ids)}) the answer lists {got}, expected {list(ids[i + 1:])}"


def posted_problems(
    listed: Sequence[Any], posted: Sequence[Mapping[str, Any]], fields: Sequence[str]
) -> list[str]:
    """The listed messages must be the posted ones (by ``msg_id``, in order) with the same ``fields``.

    ``posted`` are dictionaries of what was sent plus ``msg_id`` and ``timestamp`` of the 201; a
    missing ``type`` is the documented default ``USER``; ``timestamp`` compares instants.
    """
    ids = [m.get("msg_id") if isinstance(m, dict) else None for m in listed]
    want = [p["msg_id"] for p in posted]
    problems = [] if ids == want else [f"listed ids {ids} differ from the posted ids {want}"]
    for p, m in zip(posted, listed, strict=False):
        if not isinstance(m, dict):
            continue
        for f in fields:
            expected = p.get(f, "USER" if f == "type" else "")
            got = m.get(f, "")
            same = same_time(str(got), str(expected)) if f == "timestamp" else got == expected
            if not same:
                problems.append(f"{p['msg_id']}: {f} is {brief(got)}, posted {brief(expected)}")
    return problems


# --------------------------------------------------------------------------- ids

RUN_ID = re.compile(r"^\d{8}-\d{10}-\d+-\d+(-\d+)?$")
"""``YYYYMMDD-HHMMSSffff-PID-SEQ`` (a ``-<digits>`` suffix is the documented fallback for a taken name)."""
MSG_ID = re.compile(r"^MSG-\d{8}-\d{6}-\d{9}-PID\d{5}-\d{4}$")
"""``MSG-YYYYMMDD-HHMMSS-<ns 9>-PID<5>-<4>``."""
REQUEST_ID = re.compile(r"^req-\d+-[0-9a-f]+$")


# --------------------------------------------------------------------------- runs against run-info.yaml

RUN_FIELDS = ("run_id", "project_id", "task_id", "status", "process_ownership", "start_time", "end_time",
              "exit_code", "agent_version", "error_summary")  # fmt: skip


def run_info_fields(info: RunInfo) -> dict[str, Any]:
    """The RunResponse fields as run-info.yaml holds them (``process_ownership`` defaults to managed)."""
    return {"run_id": info.run_id, "project_id": info.project_id, "task_id": info.task_id, "status": info.status,
            "process_ownership": info.process_ownership or "managed", "start_time": info.start_time,
            "end_time": info.end_time, "exit_code": info.exit_code, "agent_version": info.agent_version,
            "error_summary": info.error_summary}  # fmt: skip


def same_time(a: str, b: str) -> bool:
    """Whether two RFC3339 times name the same instant (``.5Z`` and ``.500Z`` do)."""
    if a == b:
        return True
    try:
        return bus.parse_rfc3339(a) == bus.parse_rfc3339(b)
    except ValueError:
        return False


def served_run_info(content: bytes, *, evidence: str = "") -> RunInfo:
    """The info route's body parsed as run-info.yaml; a departure (run-info-route) when it is not one."""
    try:
        return RunInfo.from_yaml(content.decode("utf-8", "replace"))
    except StorageError as exc:
        raise departure(f"the body is not run-info.yaml: {exc}", "run-info-route", evidence) from None


def run_disagreements(served: Mapping[str, Any], info: RunInfo, *, where: str = "the run") -> list[str]:
    """Fields of a served run that differ from run-info.yaml. A field left out is not a disagreement
    (whether ``exit_code`` may be left out is a rule of its own: ``exit-code-zero``)."""
    expected = run_info_fields(info)
    out = []
    for key in RUN_FIELDS:
        if key not in served:
            continue
        value, want = served[key], expected[key]
        if key in ("start_time", "end_time") and isinstance(value, str) and same_time(value, want):
            continue
        if key in ("agent_version", "error_summary") and value in (None, "") and not want:
            continue
        if value != want:
            out.append(f'{where} "{key}" is {brief(value)}, run-info.yaml has {brief(want)}')
    return out


# --------------------------------------------------------------------------- bus file


@dataclass(frozen=True)
class Posted:
    """A message as posted and as acknowledged (``msg_id``, ``timestamp`` of the 201)."""

    msg_id: str
    timestamp: str
    type: str  # noqa: A003
    project_id: str
    body: str
    task_id: str = ""
    run_id: str = ""


def bus_file_problems(data: bytes, posted: Sequence[Posted]) -> list[str]:
    """What departs from the bus format for the posted messages in a bus file's bytes.

    The file is parsed with :mod:`conductor_perf.formats.bus` (the one implementation): each posted
    id must be there once, in posting order, with its type, project, task and run, its header time
    equal to the acknowledged timestamp, and the exact bytes of the message in the documented
    layout (``---``, header, ``---``, body) must be in the file.
    """
    messages = bus.parse(data)
    by_id: dict[str, list[bus.Message]] = {}
    for m in messages:
        by_id.setdefault(m.msg_id, []).append(m)
    problems = []
    order = [m.msg_id for m in messages if m.msg_id in {p.msg_id for p in posted}]
    if order != [p.msg_id for p in posted if p.msg_id in by_id]:
        problems.append(
            f"messages are in the file in the order {order}, posted as {[p.msg_id for p in posted]}"
        )
    for p in posted:
        found = by_id.get(p.msg_id, [])
        if len(found) != 1:
            problems.append(f"{p.msg_id} is in the file {len(found)} times (expected once)")
            continue
        m = found[0]
        for key in ("type", "project_id", "task_id", "run_id"):
            if getattr(m, key) != getattr(p, key):
                problems.append(
                    f"{p.msg_id}: {key} is {getattr(m, key)!r} in the file, posted {getattr(p, key)!r}"
                )
        if not same_time(m.timestamp, p.timestamp):
            problems.append(f"{p.msg_id}: ts is {m.timestamp} in the file, the 201 said {p.timestamp}")
        layout = bus.serialize(bus.Message(type=p.type, project_id=p.project_id, task_id=p.task_id,
                                           run_id=p.run_id, msg_id=p.msg_id, ts_ns=m.ts_ns, body=p.body))  # fmt: skip
        if layout not in data:
            problems.append(f"{p.msg_id}: the file does not hold the message in the bus format; expected the bytes "
                            f"{layout.decode('utf-8', 'replace')!r}")  # fmt: skip
    return problems


# --------------------------------------------------------------------------- files under the runs root
# Each check reads the file conductor-loop's documentation names (run-info.yaml, a run's files,
# ``DONE``, a bus file) and raises NotAsDocumented citing the rule, with the caller's evidence.

Root = str | os.PathLike[str]

RUN_FILES = {"output.md": runs.OUTPUT, "stdout": runs.STDOUT, "stderr": runs.STDERR, "prompt": runs.PROMPT}
"""The run-file route's ``name`` values and the files under the run folder they serve."""


def read_run_info(root: Root, project_id: str, task_id: str, run_id: str) -> tuple[Path, bytes, RunInfo]:
    """The run's run-info.yaml: (path, bytes, parsed); a departure (run-info-agrees) when it cannot be read."""
    path = runs.run_dir(root, project_id, task_id, run_id) / runs.RUN_INFO
    try:
        data = path.read_bytes()
        return path, data, RunInfo.from_yaml(data.decode("utf-8", "replace"), path)
    except (OSError, StorageError) as exc:
        raise departure(f"{path} cannot be read as run-info: {exc}", "run-info-agrees") from None


def check_served_runs(root: Root, body: Mapping[str, Any], *, evidence: str = "") -> int:
    """Every field of the served run(s) (a run, or a task with ``runs``) equals run-info.yaml on disk.

    Returns how many runs were compared; a departure (run-info-agrees) for an answer holding no run
    or any field that differs.
    """
    served = [body] if "run_id" in body else body.get("runs") or []
    if not served:
        raise departure("the answer holds no run", "run-info-agrees", evidence)
    problems = []
    for run in served:
        _, _, info = read_run_info(root, run.get("project_id", ""), run.get("task_id", ""), run.get("run_id", ""))
        problems += run_disagreements(run, info, where=f"run {run.get('run_id')}")
    if problems:
        raise departure("; ".join(problems), "run-info-agrees", evidence)
    return len(served)


def check_info_file(root: Root, project_id: str, task_id: str, run_id: str, content: bytes, *,
                    evidence: str = "") -> None:  # fmt: skip
    """The info route's body is byte for byte the run's run-info.yaml (rule run-info-agrees)."""
    path, data, _ = read_run_info(root, project_id, task_id, run_id)
    if content != data:
        raise departure(f"the body differs from {path} ({len(data)} bytes: {excerpt(data, 300)})",
                                  "run-info-agrees", evidence)  # fmt: skip


def check_run_file(root: Root, served: Mapping[str, Any], project_id: str, task_id: str, run_id: str,
                   name: str = "output.md", *, evidence: str = "") -> None:  # fmt: skip
    """The run-file route's ``content`` and ``size_bytes`` are those of the file on disk (rule run-file)."""
    if name not in RUN_FILES:
        raise ValueError(f"unknown run file {name!r}: use one of {', '.join(RUN_FILES)}")
    path = runs.run_dir(root, project_id, task_id, run_id) / RUN_FILES[name]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise departure(f"{path} cannot be read: {exc}", "run-file") from None
    if served.get("content") != data.decode("utf-8", "replace") or served.get("size_bytes") != len(data):
        raise departure(f"content/size_bytes differ from {path} ({len(data)} bytes: {excerpt(data, 300)})",
                                  "run-file", evidence)  # fmt: skip


def check_done(root: Root, project_id: str, task_id: str) -> Path:
    """The task's ``DONE`` marker exists (rule task-delete); returns its path."""
    path = runs.task_dir(root, project_id, task_id) / runs.DONE
    if not path.is_file():
        raise departure(f"{path} does not exist", "task-delete")
    return path


def posted(answers: Sequence[Mapping[str, Any]]) -> list[Posted]:
    """What the acceptance suites' ``Post Message`` returned (the fields posted plus the 201's ``msg_id`` and
    ``timestamp``), as :class:`~conductor_perf.acceptance.Posted` messages."""
    return [Posted(msg_id=a["msg_id"], timestamp=a["timestamp"], type=a.get("type") or "USER",
                             project_id=a["project_id"], task_id=a.get("task_id", ""), run_id=a.get("run_id", ""),
                             body=a["body"]) for a in answers]  # fmt: skip


def check_bus_file(root: Root, project_id: str, task_id: str, answers: Sequence[Mapping[str, Any]]) -> tuple[Path, int]:
    """The task's bus file (the project's without ``task_id``) holds each posted message once, in posting
    order, in the documented format (rule bus-file); returns (its path, its size in bytes)."""
    path = bus.task_bus_path(root, project_id, task_id) if task_id else bus.project_bus_path(root, project_id)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise departure(f"{path} cannot be read: {exc}", "bus-file") from None
    problems = bus_file_problems(data, posted(answers))
    if problems:
        raise departure(f"{path}: " + "; ".join(problems), "bus-file")
    return path, len(data)


# --------------------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')


@dataclass
class Scrape:
    """One /metrics answer: samples by series (``name{a="1",b="2"}``, labels sorted), TYPE and HELP by family."""

    samples: dict[str, float] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def value(self, series: str) -> float:
        """The sample of ``series`` (a name, or ``name{label="v",...}`` in any label order; several joined by
        `` + `` are summed); 0 when absent."""
        return sum(self.samples.get(series_key(part), 0.0) for part in series.split(" + ") if part.strip())


def series_key(series: str) -> str:
    """``name{labels}`` with its labels sorted, so any label order names the same series."""
    m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})?$", series.strip())
    if not m:
        raise ValueError(f"not a metric series: {series!r}")
    name, labels = m.group(1), m.group(2)
    if not labels:
        return name
    pairs = sorted(_LABEL.findall(labels[1:-1]))
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in pairs) + "}"


def parse_prometheus(text: str) -> Scrape:
    """Parse Prometheus text format 0.0.4; lines that are not valid are listed in ``problems``."""
    scrape = Scrape()
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 3 and parts[1] == "TYPE":
                scrape.types[parts[2]] = parts[3].strip() if len(parts) > 3 else ""
            elif len(parts) >= 3 and parts[1] == "HELP":
                scrape.helps[parts[2]] = parts[3] if len(parts) > 3 else ""
            continue
        m = _SAMPLE.match(line)
        if not m:
            scrape.problems.append(f"line {n} is not a sample: {line[:120]!r}")
            continue
        try:
            value = float(m.group(3))
        except ValueError:
            scrape.problems.append(f"line {n} has no number: {line[:120]!r}")
            continue
        if math.isnan(value):
            scrape.problems.append(f"line {n} is NaN: {line[:120]!r}")
        scrape.samples[series_key(m.group(1) + (m.group(2) or ""))] = value
    return scrape


METRICS_CONTENT_TYPE = "text/plain; version=0.0.4"
"""The documented content type of ``GET /metrics`` (Prometheus text format 0.0.4)."""


def metrics_answer_problem(status: int, content_type: str) -> str:
    """Why a ``GET /metrics`` answer is not the documented 200 in :data:`METRICS_CONTENT_TYPE`; '' when it is."""
    if status == 200 and content_type.replace(" ", "").startswith(METRICS_CONTENT_TYPE.replace(" ", "")):
        return ""
    return f"answered {status} {content_type!r}, documented 200 {METRICS_CONTENT_TYPE}"


def moved_problem(before: Scrape, after: Scrape, series: str, amount: float, *, at_least: bool = False) -> tuple[float, str]:
    """How far ``series`` moved between two scrapes, and why that is not exactly ``amount`` (at least
    ``amount`` with ``at_least``); ('' when it is)."""
    old, new = before.value(series), after.value(series)
    change = new - old
    if (change >= amount) if at_least else (change == amount):
        return change, ""
    expected = f"at least {amount:g}" if at_least else f"exactly {amount:g}"
    return change, f"{series} moved by {change:g} (from {old:g} to {new:g}), expected {expected}"


METRIC_FAMILIES = {
    "conductor_uptime_seconds": "gauge",
    "conductor_active_runs_total": "gauge",
    "conductor_completed_runs_total": "counter",
    "conductor_failed_runs_total": "counter",
    "conductor_messagebus_appends_total": "counter",
    "conductor_api_requests_total": "counter",
}
"""The documented families and their types."""


def metrics_problems(scrape: Scrape) -> list[str]:
    """Documented families missing, without HELP, of another TYPE, or without a sample; unparsable lines."""
    out = list(scrape.problems)
    for family, kind in METRIC_FAMILIES.items():
        if scrape.types.get(family) != kind:
            out.append(f"{family}: TYPE is {scrape.types.get(family, 'missing')!r}, documented {kind!r}")
        if family not in scrape.helps:
            out.append(f"{family}: no HELP line")
        if family != "conductor_api_requests_total" and family not in scrape.samples:
            out.append(f"{family}: no sample")
    return out


# --------------------------------------------------------------------------- CORS


def _tokens(value: str) -> set[str]:
    return {t.strip().lower() for t in value.split(",") if t.strip()}


def cors_problems(status: int, headers: Mapping[str, str], origin: str, *, allowed: bool,
                  methods: Iterable[str] = ("GET", "POST", "DELETE", "OPTIONS"),
                  request_headers: Iterable[str] = ("Content-Type",)) -> list[str]:  # fmt: skip
    """What departs from the documented preflight answer for ``origin`` (``allowed``: on the allow-list)."""
    out = []
    if status != 204:
        out.append(f"a preflight is answered {status}, documented 204")
    got = {k.lower(): v for k, v in headers.items()}
    allow_origin = got.get("access-control-allow-origin")
    if not allowed:
        if allow_origin is not None:
            out.append(f"origin {origin} is not allowed, yet got Access-Control-Allow-Origin: {allow_origin}")
        return out
    if allow_origin not in (origin, "*"):
        out.append(f"Access-Control-Allow-Origin is {allow_origin!r}, expected {origin!r}")
    missing = {m.lower() for m in methods} - _tokens(got.get("access-control-allow-methods", ""))
    if missing:
        out.append(f"Access-Control-Allow-Methods {got.get('access-control-allow-methods')!r} lacks "
                   f"{', '.join(sorted(m.upper() for m in missing))}")  # fmt: skip
    lacking = {h.lower() for h in request_headers} - _tokens(got.get("access-control-allow-headers", ""))
    if lacking:
        out.append(f"Access-Control-Allow-Headers {got.get('access-control-allow-headers')!r} lacks "
                   f"{', '.join(sorted(lacking))}")  # fmt: skip
    return out
