"""Acceptance checks: the SUT's answers against conductor-loop's documented behaviour."""

from __future__ import annotations

import atexit
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from _perf_base import require_target, robot_var, run_context, seconds, skip
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf.acceptance import behaviour, evidence
from conductor_perf.bench import agent_tasks
from conductor_perf.formats import runs
from conductor_perf.reference.departures import REPRODUCED, is_reference
from conductor_perf.target import EMBEDDED, Target, TargetError, http_json, start_embedded

REPO = Path(__file__).resolve().parent.parent
CONDUCTOR_CONFIG = REPO / "resources" / "conductor.yaml"


@library(scope="GLOBAL", auto_keywords=False)
class AcceptanceLibrary:
    """Checks the SUT's answers against the behaviour conductor-loop documents.

    The behaviour is written down in ``docs/api-behaviour.md``: each rule has an anchor there
    (``run-stop``, ``message-post``, ...), and every failure message of these keywords names the
    rule it checks, what the documentation says, and the evidence -- the request and the answer::

        the run stopping departs from its documented shape: "status" is "stopped", not "stopping"
        documented (docs/api-behaviour.md#run-stop): POST /api/v1/runs/{id}/stop answers 202 ...
        request: POST http://127.0.0.1:41234/api/v1/runs/2026.../stop
        answer:  200 OK (application/json, 21 bytes)
          body: {"status":"stopped"}

    = The SUT =

    `Start Acceptance Conductor` picks what the acceptance suites talk to. The run's SUT when it is
    a conductor we attached to (``CONDUCTOR_URL``) or a managed build; when the run's SUT is the
    embedded reference conductor, a second embedded conductor with a fresh runs root, started with
    ``resources/conductor.yaml`` -- the configuration ``docs/real-server.md`` gives a real conductor-loop
    (1 s SSE heartbeats, a CORS origin) -- so both kinds of SUT are checked with the same settings
    and the perf suites' conductor keeps its own.

    = Requests =

    Requests go through RequestsLibrary (``Create Session``, ``GET On Session``, ...: every request
    and answer is in the log). `Report Transport Failures With Evidence` makes a session fail
    cleanly with the request when the SUT hangs, refuses, or cuts an answer off. The keywords below
    take the response object those keywords return.

    = Departures the embedded conductor reproduces =

    Some documented behaviours conductor-loop 0.76 breaks are reproduced by the reference conductor
    on purpose (``conductor_perf/reference/departures.py``). A test of one of them starts with
    `Expect Reproduced Departure`: against the reference conductor (embedded, or behind its
    ``run-agent`` wrapper; it answers its reference-only ``GET /api/v1/debug/runtime``) its failure
    is reported as skipped, with the evidence; against any other SUT it fails.

    Example:
    | ${url} =    `Start Acceptance Conductor`
    | ${session} =    Create Session    conductor    ${url}    max_retries=0
    | `Report Transport Failures With Evidence`    ${session}
    | ${resp} =    GET On Session    conductor    /api/v1/health    expected_status=anything
    | ${health} =    `Get Json Of Answer`    ${resp}    shape=health
    """

    def __init__(self) -> None:
        self._target: Target | None = None
        self._own: Target | None = None
        self._reference: bool | None = None

    # ------------------------------------------------------------------ the SUT

    def _sut(self) -> Target:
        if self._target is None:
            raise AssertionError(
                "no acceptance conductor: call 'Start Acceptance Conductor' in the suite setup"
            )
        return self._target

    @keyword
    def start_acceptance_conductor(self, *, config: str = "") -> str:
        """Choose the SUT of the acceptance suites and return its base URL.

        An attached or managed conductor is used as it is. When the run's SUT is the embedded
        reference conductor, a second one is started on a free port with a fresh runs root and
        ``config`` (default ``resources/conductor.yaml``); `Stop Acceptance Conductor` stops it.

        Example:
        | ${url} =    `Start Acceptance Conductor`
        """
        if self._target is not None:
            return self._target.url
        target = require_target()
        if target.kind == EMBEDDED:
            results = Path(
                str(robot_var("${RESULTS_DIR}", "") or robot_var("${OUTPUT DIR}", "results/adhoc"))
            )
            base = results.resolve() / f"acceptance-{os.getpid()}"
            run_context().note_scratch(base / "root")  # removed when the run ends; its log stays
            try:
                own = start_embedded(root=base / "root", log_dir=base,
                                     extra_args=["--config", str(Path(config) if config else CONDUCTOR_CONFIG)])  # fmt: skip
            except TargetError as exc:
                BuiltIn().fatal_error(f"could not start the acceptance conductor: {exc}")
            atexit.register(own.stop)
            self._own = target = own
            logger.info(f"acceptance conductor: embedded, {own.url}, runs root {own.root}, config "
                        f"{config or CONDUCTOR_CONFIG}")  # fmt: skip
        else:
            logger.info(f"acceptance conductor: the run's {target.kind} SUT {target.url} (runs root "
                        f"{target.root or 'unknown'})")  # fmt: skip
        self._target = target
        BuiltIn().set_suite_metadata("Acceptance SUT", f"{target.kind} {target.version} at {target.url}")
        return target.url

    @keyword
    def stop_acceptance_conductor(self) -> None:
        """Stop the conductor `Start Acceptance Conductor` started (an attached SUT keeps running).

        Example:
        | Suite Teardown    `Stop Acceptance Conductor`
        """
        own, self._own, self._target, self._reference = self._own, None, None, None
        if own is not None:
            own.stop()

    @keyword
    def get_conductor_auth_headers(self) -> dict[str, str]:
        """Headers that authenticate against the acceptance SUT (``Authorization: Bearer`` when it has a key).

        Example:
        | ${headers} =    `Get Conductor Auth Headers`
        """
        return self._sut().auth_headers()

    @keyword
    def get_conductor_api_key(self) -> str:
        """The acceptance SUT's API key (empty when it has none), for SSE clients.

        Example:
        | ${key} =    `Get Conductor Api Key`
        """
        return self._sut().api_key

    @keyword
    def report_transport_failures_with_evidence(self, session: requests.Session, *,
                                                deadline: timedelta = timedelta(seconds=10)) -> None:  # fmt: skip
        """Make a RequestsLibrary session fail with the request when no complete answer arrives.

        A time-out, a refused or closed connection and an answer cut off (or still dripping after
        ``deadline``) fail the request keyword with one message naming the request, instead of
        requests' exception. Retries are off. ``session`` is what ``Create Session`` returns.

        Example:
        | ${session} =    Create Session    conductor    ${url}    timeout=5    max_retries=0
        | `Report Transport Failures With Evidence`    ${session}    deadline=10 s
        """
        if not isinstance(session, requests.Session):
            raise AssertionError(
                f"expected the session returned by Create Session, got {type(session).__name__}"
            )
        evidence.install(session, deadline_s=seconds(deadline))

    @keyword
    def expect_reproduced_departure(self, rule: str) -> None:
        """Declare that the test checks a rule conductor-loop 0.76 breaks and the embedded conductor reproduces.

        Against the reference conductor the test's failure is then reported as skipped (with the
        evidence); against any other SUT it fails as usual. The rule must be listed in
        ``conductor_perf/reference/departures.py``.

        Example:
        | [Setup]    `Expect Reproduced Departure`    exit-code-zero
        """
        behaviour.rule(rule)  # a typo fails here
        if rule not in REPRODUCED:
            raise AssertionError(f"{rule!r} is not a departure the embedded conductor reproduces: "
                                 f"{', '.join(REPRODUCED)}")  # fmt: skip
        logger.info(f"conductor-loop 0.76 departs from {behaviour.DOC}#{rule}: {REPRODUCED[rule]}")
        if self._is_reference():
            BuiltIn().set_tags("robot:skip-on-failure")
            logger.info("the SUT is the reference conductor, which reproduces this departure: a failure is "
                        "reported as skipped")  # fmt: skip

    def _is_reference(self) -> bool:
        if self._reference is None:
            target = self._sut()
            self._reference = is_reference(lambda path: http_json(target.endpoint(path), timeout=5,
                                                                  headers=target.auth_headers()))  # fmt: skip
        return self._reference

    # ------------------------------------------------------------------ answers

    @keyword
    def describe_exchange(self, response: requests.Response, *, rule: str = "") -> str:
        """The request and the answer in a few lines (and the rule's citation first when ``rule`` is given).

        Example:
        | ${evidence} =    `Describe Exchange`    ${resp}    rule=task-create
        | Status Should Be    201    ${resp}    msg=${evidence}
        """
        text = evidence.describe_exchange(response)
        return f"{behaviour.rule(rule).cite()}\n{text}\n" if rule else text + "\n"

    @keyword
    def get_json_of_answer(self, response: requests.Response, shape: str = "", *, rule: str = "") -> Any:
        """The answer's JSON body; fails (with the evidence) unless it is ``application/json`` and valid JSON,
        and, with ``shape``, unless it has that documented shape (see ``conductor_perf.acceptance.behaviour``).

        Example:
        | ${run} =    `Get Json Of Answer`    ${resp}    shape=run
        """
        rule_id = rule or (behaviour.shape(shape).rule if shape else "error-envelope")
        body = behaviour.json_answer(response.status_code, response.headers.get("Content-Type", ""),
                                     response.content or b"", rule=rule_id,
                                     evidence=evidence.describe_exchange(response))  # fmt: skip
        if shape:
            behaviour.check_shape(body, shape, evidence=evidence.describe_exchange(response))
        return body

    @keyword
    def json_should_have_shape(self, value: Any, shape: str) -> None:
        """A JSON value (already parsed) has the documented ``shape``.

        Example:
        | `Json Should Have Shape`    ${body}[error]    error detail
        """
        behaviour.check_shape(value, shape)

    @keyword
    def answer_items_should_have_shape(self, response: requests.Response, key: str, shape: str) -> list[Any]:
        """Every item of the list under ``key`` of the answer has the documented ``shape``; returns the items.

        ``null`` counts as a departure too: the documented lists are JSON arrays.

        Example:
        | ${tasks} =    `Answer Items Should Have Shape`    ${resp}    tasks    task summary
        """
        items = self._items(response, key, behaviour.shape(shape).rule)
        behaviour.check_shapes(items, shape, evidence=evidence.describe_exchange(response))
        return items

    @keyword
    def answer_field_should_be(self, response: requests.Response, field: str, expected: Any, *,
                               rule: str) -> Any:  # fmt: skip
        """The JSON answer's ``field`` equals ``expected`` (compared as text when the types differ).

        ``field`` may be a dotted path (``error.code``). Fails citing ``rule``, with the evidence.

        Example:
        | `Answer Field Should Be`    ${resp}    status    completed    rule=run-lifecycle
        """
        body = self.get_json_of_answer(response, rule=rule)
        self._fail_with(behaviour.field_problem(body, field, expected), rule, response)
        return behaviour.field_value(body, field)[0]

    @keyword
    def answer_field_should_not_be(self, response: requests.Response, field: str, unexpected: Any, *,
                                   rule: str) -> Any:  # fmt: skip
        """The JSON answer has ``field`` and it differs from ``unexpected``.

        Example:
        | `Answer Field Should Not Be`    ${resp}    exit_code    0    rule=run-failed
        """
        body = self.get_json_of_answer(response, rule=rule)
        self._fail_with(behaviour.field_problem(body, field, unexpected, differ=True), rule, response)
        return behaviour.field_value(body, field)[0]

    @keyword
    def answer_items_should_include_each_once(self, response: requests.Response, key: str, field: str,
                                              *values: str, rule: str) -> None:  # fmt: skip
        """Each of ``values`` is the ``field`` of exactly one item of the list under ``key``.

        Example:
        | `Answer Items Should Include Each Once`    ${resp}    runs    run_id    @{run_ids}    rule=run-list
        """
        if not values:
            raise AssertionError("no values given: name the items that must be listed")
        items = self._items(response, key, rule)
        problems = behaviour.each_once_problems(items, field, values)
        self._fail_with(f'of {len(items)} items under "{key}": ' + "; ".join(problems) if problems else "", rule,
                        response)  # fmt: skip

    @keyword
    def answer_items_should_not_include(self, response: requests.Response, key: str, field: str, *values: str,
                                        rule: str) -> None:  # fmt: skip
        """None of ``values`` is the ``field`` of an item of the list under ``key``.

        Example:
        | `Answer Items Should Not Include`    ${resp}    running_tasks    run_id    ${run}    rule=status
        """
        if not values:
            raise AssertionError("no values given: name the items that must not be listed")
        problems = behaviour.absent_problems(self._items(response, key, rule), field, values)
        self._fail_with(f'under "{key}": ' + "; ".join(problems) if problems else "", rule, response)

    @keyword
    def answer_count_should_match_items(self, response: requests.Response, count_field: str, key: str, *,
                                        rule: str) -> int:  # fmt: skip
        """The answer's ``count_field`` equals the length of its list under ``key``; returns it.

        Example:
        | `Answer Count Should Match Items`    ${resp}    active_runs_count    running_tasks    rule=status
        """
        items = self._items(response, key, rule)
        problem = behaviour.field_problem(
            self.get_json_of_answer(response, rule=rule), count_field, len(items)
        )
        self._fail_with(f'{problem} ("{key}" holds {len(items)} items)' if problem else "", rule, response)
        return len(items)

    @keyword
    def answer_items_should_all_have(self, response: requests.Response, key: str, field: str, expected: str, *,
                                     rule: str) -> None:  # fmt: skip
        """Every item of the list under ``key`` has ``field`` equal to ``expected``.

        Example:
        | `Answer Items Should All Have`    ${resp}    tasks    project_id    ${PROJECT}    rule=task-list-filter
        """
        problems = behaviour.all_have_problems(self._items(response, key, rule), field, expected)
        self._fail_with(f'under "{key}": ' + "; ".join(problems) if problems else "", rule, response)

    def _items(self, response: requests.Response, key: str, rule: str) -> list[Any]:
        body = self.get_json_of_answer(response, rule=rule)
        self._fail_with(behaviour.list_problem(body, key), rule, response)
        return body[key]

    @staticmethod
    def _fail_with(problem: str, rule: str, response: requests.Response) -> None:
        if problem:
            raise behaviour.departure(problem, rule, evidence.describe_exchange(response))

    @keyword
    def answer_header_should_be(self, response: requests.Response, header: str, expected: str, *,
                                rule: str) -> str:  # fmt: skip
        """The answer's ``header`` equals ``expected`` (for a media type, parameters after ``;`` must match too).

        Example:
        | `Answer Header Should Be`    ${resp}    Content-Type    application/x-yaml    rule=run-info-route
        """
        self._fail_with(behaviour.header_problem(response.headers, header, expected), rule, response)
        return response.headers[header]

    # ------------------------------------------------------------------ ids

    @keyword
    def run_id_should_be_well_formed(self, run_id: str) -> None:
        """The run id has the documented form ``YYYYMMDD-HHMMSSffff-PID-SEQ``.

        Example:
        | `Run Id Should Be Well Formed`    ${run_id}
        """
        if not behaviour.RUN_ID.match(run_id or ""):
            raise behaviour.departure(f"run id {run_id!r} is not of the documented form", "run-id-format")

    @keyword
    def message_id_should_be_well_formed(self, msg_id: str) -> None:
        """The message id has the documented form ``MSG-YYYYMMDD-HHMMSS-<9 digits>-PID<5 digits>-<4 digits>``.

        Example:
        | `Message Id Should Be Well Formed`    ${msg_id}
        """
        if not behaviour.MSG_ID.match(msg_id or ""):
            raise behaviour.departure(f"message id {msg_id!r} is not of the documented form", "message-post")

    @keyword
    def answer_should_carry_request_id(self, response: requests.Response, expected: str = "") -> str:
        """The answer has ``X-Request-ID``: ``expected`` when given (the one sent), else a generated
        ``req-<unix ns>-<hex>``. Returns it.

        Example:
        | `Answer Should Carry Request Id`    ${resp}    acceptance-42
        """
        value = response.headers.get("X-Request-ID")
        self._fail_with(behaviour.request_id_problem(value, expected), "request-id", response)
        return value or ""

    @keyword
    def task_should_start_no_further_run(self, task_id: str, project_id: str, *, runs: int,
                                         duration: timedelta = timedelta(seconds=2.5),
                                         interval: timedelta = timedelta(seconds=0.5),
                                         session: str = "conductor") -> None:  # fmt: skip
        """For ``duration``, GET /api/v1/tasks/{id} keeps listing at most ``runs`` runs: the task loop has
        stopped. Each poll is a ``GET On Session`` on ``session`` (in the log).

        Example:
        | `Task Should Start No Further Run`    ${task}    ${PROJECT}    runs=1    duration=2.5 s
        """
        start = time.monotonic()
        end = start + seconds(duration)
        polls = 0
        while True:
            response = BuiltIn().run_keyword("RequestsLibrary.GET On Session", session, f"/api/v1/tasks/{task_id}",
                                             {"project_id": project_id}, "anything")  # fmt: skip
            polls += 1
            body = self.get_json_of_answer(response, shape="task")
            listed = len(body.get("runs") or [])
            if listed > runs:
                raise behaviour.departure(f"{listed} runs listed {time.monotonic() - start:.1f} s after the loop was "
                                          f"stopped (expected at most {runs}): it started another run",
                                          "task-delete", evidence.describe_exchange(response))  # fmt: skip
            if time.monotonic() >= end:
                break
            time.sleep(max(0.0, min(seconds(interval), end - time.monotonic())))
        logger.info(f"{polls} polls over {seconds(duration):g} s: the task kept {runs} run(s)")

    # ------------------------------------------------------------------ files under the runs root

    def _root(self, what: str) -> Path:
        root = self._sut().root
        if root is None:
            skip(f"{what} not checked: the SUT's runs root is unknown (set CONDUCTOR_ROOT)")
        return Path(root)  # type: ignore[arg-type]

    @keyword
    def run_answer_should_agree_with_run_info_on_disk(self, response: requests.Response) -> None:
        """Every field of a served run (GET /api/v1/runs/{id}, or a task's ``runs`` item) equals
        run-info.yaml on disk. Skipped when the runs root is unknown.

        Example:
        | `Run Answer Should Agree With Run Info On Disk`    ${resp}
        """
        body = self.get_json_of_answer(response, rule="run-info-agrees")
        behaviour.check_served_runs(self._root("run-info.yaml on disk"), body, evidence=evidence.describe_exchange(response))

    @keyword
    def info_answer_should_be_the_file_on_disk(self, response: requests.Response, project_id: str, task_id: str,
                                               run_id: str) -> None:  # fmt: skip
        """The info route's body is byte for byte the run's run-info.yaml. Skipped when the runs root is unknown.

        Example:
        | `Info Answer Should Be The File On Disk`    ${resp}    ${PROJECT}    ${task}    ${run}
        """
        behaviour.check_info_file(self._root("run-info.yaml on disk"), project_id, task_id, run_id, response.content or b"",
                               evidence=evidence.describe_exchange(response))  # fmt: skip

    @keyword
    def info_answer_should_agree_with_run(self, info_response: requests.Response,
                                          run_response: requests.Response) -> None:  # fmt: skip
        """The run-info.yaml served by the info route parses as run-info and agrees with the served run.

        Example:
        | `Info Answer Should Agree With Run`    ${info}    ${run}
        """
        info = behaviour.served_run_info(info_response.content or b"", evidence=evidence.describe_exchange(info_response))
        run = self.get_json_of_answer(run_response, shape="run")
        problems = behaviour.run_disagreements(run, info, where="GET /api/v1/runs/{id}")
        if problems:
            raise behaviour.departure("; ".join(problems), "run-info-agrees",
                                      evidence.describe_exchange(info_response) + "\n"
                                      + evidence.describe_exchange(run_response))  # fmt: skip

    @keyword
    def run_answers_should_be_the_same(self, first: requests.Response, second: requests.Response) -> None:
        """Two answers of GET /api/v1/runs/{id} hold the same run (for checks that need a run at rest).

        Example:
        | `Run Answers Should Be The Same`    ${before}    ${after}
        """
        one = self.get_json_of_answer(first, shape="run")
        two = self.get_json_of_answer(second, shape="run")
        changed = behaviour.changed_fields(one, two)
        if changed:
            raise behaviour.departure(f"the run changed between two reads ({', '.join(changed)})", "run-info-agrees",
                                      evidence.describe_exchange(first) + "\n" + evidence.describe_exchange(second))  # fmt: skip

    @keyword
    def run_file_answer_should_be_the_file_on_disk(self, response: requests.Response, project_id: str,
                                                   task_id: str, run_id: str, name: str = "output.md") -> None:  # fmt: skip
        """The run-file route's ``content`` and ``size_bytes`` are those of the file on disk. Skipped when the
        runs root is unknown.

        Example:
        | `Run File Answer Should Be The File On Disk`    ${resp}    ${PROJECT}    ${task}    ${run}
        """
        body = self.get_json_of_answer(response, shape="run file")
        behaviour.check_run_file(self._root(f"{name} on disk"), body, project_id, task_id, run_id, name,
                              evidence=evidence.describe_exchange(response))  # fmt: skip

    @keyword
    def task_should_be_done_after_its_run(self, project_id: str, task_id: str, run_id: str) -> None:
        """Once the task's run ``run_id`` has ended, the task is done: its agent created ``DONE`` (without the
        runs root: the task's status says so) within a few seconds and the server started no other run.

        A task that is not done would be started again and again behind the tests that follow: it is
        stopped (DELETE /api/v1/tasks/{id}) and the test fails at once with the reason (the stub's
        report on its environment, e.g. ``STUB_SKIP_DONE=1``).

        Example:
        | `Task Should Be Done After Its Run`    ${PROJECT}    ${task}    ${run}
        """
        try:
            agent_tasks.wait_until_done(self._sut(), project_id, task_id, run_id)
        except agent_tasks.AgentTaskError as exc:
            raise AssertionError(str(exc)) from None

    @keyword
    def done_should_exist_for_task(self, project_id: str, task_id: str) -> None:
        """The task's ``DONE`` marker exists under the runs root. Skipped when the runs root is unknown.

        Example:
        | `DONE Should Exist For Task`    ${PROJECT}    ${task}
        """
        behaviour.check_done(self._root("DONE on disk"), project_id, task_id)

    @keyword
    def bus_file_should_hold_posted_messages(self, project_id: str, task_id: str, *answers: Any) -> None:
        """The bus file holds each posted message once, in posting order, in the documented format.

        Each of ``answers`` is a dictionary of what was posted (``project_id``, ``task_id``, ``type``,
        ``body``) plus ``msg_id`` and ``timestamp`` from its 201. Skipped when the runs root is unknown.

        Example:
        | `Bus File Should Hold Posted Messages`    ${PROJECT}    ${task}    @{posted}
        """
        path, size = behaviour.check_bus_file(self._root("the bus file"), project_id, task_id, answers)
        logger.info(f"{path}: {len(answers)} posted messages found in the bus format ({size} bytes)")

    # ------------------------------------------------------------------ messages

    @keyword
    def listed_messages_should_match_posted(self, response: requests.Response, *answers: Any,
                                            compare: str = "msg_id,type,project_id,task_id,timestamp",
                                            rule: str = "message-list") -> None:  # fmt: skip
        """The messages listed (GET /api/v1/messages) are the posted ones, in posting order, with the same
        fields (``compare``: comma-separated; ``body`` compares the bodies).

        Each of ``answers`` is a dictionary of what was posted plus ``msg_id`` and ``timestamp`` from its 201.

        Example:
        | `Listed Messages Should Match Posted`    ${resp}    @{posted}    compare=msg_id,body    rule=message-body
        """
        listed = self.answer_items_should_have_shape(response, "messages", "message")
        fields = [f.strip() for f in compare.split(",") if f.strip()]
        problems = behaviour.posted_problems(listed, answers, fields)
        self._fail_with("; ".join(problems), rule, response)

    @keyword
    def messages_after_each_should_be_the_rest(self, *posted: Any, session: str = "conductor") -> None:
        """For each posted message, GET /api/v1/messages with ``after`` = its id answers exactly the messages
        posted after it, in order (``GET On Session`` on ``session``, in the log).

        Each of ``posted`` is what `Post Message` returns (``project_id``, ``task_id``, ``msg_id``, ...).

        Example:
        | `Messages After Each Should Be The Rest`    @{posted}
        """
        if not posted:
            raise AssertionError("no posted messages given")
        ids = [p["msg_id"] for p in posted]
        for i, p in enumerate(posted):
            params = {"project_id": p["project_id"], "task_id": p.get("task_id", ""), "after": p["msg_id"]}
            response = BuiltIn().run_keyword("RequestsLibrary.GET On Session", session, "/api/v1/messages",
                                             params, "anything")  # fmt: skip
            problem = behaviour.after_cursor_problem(ids, i, self._items(response, "messages", "messages-after"))
            if response.status_code != 200 and not problem:
                problem = f"after {p['msg_id']} the answer is {response.status_code}, documented 200"
            self._fail_with(problem, "messages-after", response)
        logger.info(f"each of {len(ids)} cursors answered exactly the messages posted after it")

    @keyword
    def post_numbered_messages(self, task_id: str, amount: int) -> list[dict[str, Any]]:
        """Post ``amount`` messages ``message <i> of <amount>`` to the task's bus with the resource keyword
        ``Post Message`` (each request and its check in the log); returns what it returned for each, in order.

        Example:
        | @{posted} =    `Post Numbered Messages`    ${task}    25
        """
        return [BuiltIn().run_keyword("Post Message", f"body=message {i} of {amount}", f"task_id={task_id}")
                for i in range(1, amount + 1)]  # fmt: skip

    # ------------------------------------------------------------------ metrics

    @keyword
    def get_metrics_of_answer(self, response: requests.Response) -> behaviour.Scrape:
        """The parsed Prometheus text of a GET /metrics answer (checks status 200 and the content type).

        Example:
        | ${scrape} =    `Get Metrics Of Answer`    ${resp}
        """
        problem = behaviour.metrics_answer_problem(response.status_code, response.headers.get("Content-Type", ""))
        self._fail_with(problem, "metrics", response)
        return behaviour.parse_prometheus((response.content or b"").decode("utf-8", "replace"))

    @keyword
    def metrics_should_have_the_documented_families(self, scrape: behaviour.Scrape) -> None:
        """Each documented family is there with its HELP, its TYPE and a sample.

        Example:
        | `Metrics Should Have The Documented Families`    ${scrape}
        """
        problems = behaviour.metrics_problems(scrape)
        if problems:
            raise behaviour.departure("; ".join(problems), "metrics")

    @keyword
    def metric_should_have_moved_by(self, before: behaviour.Scrape, after: behaviour.Scrape, series: str,
                                    amount: int, *, rule: str, at_least: bool = False) -> float:  # fmt: skip
        """``series`` (``name`` or ``name{label="v"}``, or several joined by `` + ``) moved by exactly
        ``amount`` between two scrapes (by at least ``amount`` with ``at_least=True``). Returns the change.

        Example:
        | `Metric Should Have Moved By`    ${before}    ${after}    conductor_api_requests_total{method="POST",status="201"}    3    rule=metrics-requests
        """
        change, problem = behaviour.moved_problem(before, after, series, amount, at_least=at_least)
        logger.info(f"{series}: {before.value(series):g} -> {after.value(series):g} (moved by {change:g})")
        if problem:
            raise behaviour.departure(problem, rule)
        return change

    # ------------------------------------------------------------------ CORS

    @keyword
    def preflight_answer_should_allow_origin(self, response: requests.Response, origin: str) -> None:
        """A preflight (OPTIONS) answer for an allowed ``origin``: 204, that origin, the documented methods
        and headers.

        Example:
        | `Preflight Answer Should Allow Origin`    ${resp}    http://localhost:3000
        """
        problems = behaviour.cors_problems(response.status_code, response.headers, origin, allowed=True)
        if problems:
            raise behaviour.departure("; ".join(problems), "cors", evidence.describe_exchange(response))

    @keyword
    def preflight_answer_should_not_allow_origin(self, response: requests.Response, origin: str) -> None:
        """A preflight answer for an origin not on the allow-list: 204 and no ``Access-Control-Allow-Origin``.

        Example:
        | `Preflight Answer Should Not Allow Origin`    ${resp}    http://elsewhere.invalid
        """
        problems = behaviour.cors_problems(response.status_code, response.headers, origin, allowed=False)
        if problems:
            raise behaviour.departure("; ".join(problems), "cors", evidence.describe_exchange(response))

    # ------------------------------------------------------------------ naming

    @keyword
    def new_task_id(self, slug: str) -> str:
        """A fresh canonical task id ``task-YYYYMMDD-HHMMSS-<slug>-<unique>`` (a task id is never reused:
        a task with DONE starts no run).

        Example:
        | ${task} =    `New Task Id`    lifecycle
        """
        self._serial = getattr(self, "_serial", 0) + 1
        return runs.canonical_task_id(f"{slug}-{os.getpid() % 100000}-{self._serial}")

    @keyword
    def new_project_id(self, name: str) -> str:
        """A fresh project id ``<name>-<unique>`` for lists that must hold only this test's items.

        Example:
        | ${project} =    `New Project Id`    lists
        """
        self._serial = getattr(self, "_serial", 0) + 1
        return f"{name}-{os.getpid() % 100000}-{self._serial}-{os.urandom(2).hex()}"
