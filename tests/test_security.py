"""Security checkers: the bad-input table, answer judging, escapes outside the root, auth probes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conductor_perf.bench import security
from conductor_perf.bench.security import Answer
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread
from conductor_perf.target import EXTERNAL, Target

SUITE = Path(__file__).resolve().parent.parent / "suites" / "10__security.robot"
KNOWN_DEFECTS: set[str] = set()  # cases the reference is known to answer wrongly (none)


# ------------------------------------------------------------------------------ the table


def test_case_names_are_unique_kebab_case_and_expectations_known() -> None:
    cases = security.bad_inputs("tok")
    assert len(cases) >= 40
    assert len({c.name for c in cases}) == len(cases)
    for c in cases:
        assert re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", c.name), c.name
        assert c.expect in ("envelope", "text-405", "redirect", "4xx"), c.name
        assert c.method in ("GET", "POST", "PUT", "PATCH", "DELETE") and c.path.startswith("/"), c.name


def test_the_table_covers_every_kind_of_bad_input_of_the_issue() -> None:
    names = " ".join(security.CASE_NAMES)
    for kind in ("traversal", "backslash", "nul", "unknown-field", "invalid-json", "over-1-mib", "without",
                 "put-", "delete-", "over-name-max", "query-over"):  # fmt: skip
        assert kind in names, kind
    big = [c for c in security.bad_inputs() if c.body is not None and len(c.body) > security.MIB]
    assert len(big) >= 2


def test_traversal_payloads_carry_the_token() -> None:
    for c in security.bad_inputs("t0k3n"):
        if c.escape:
            assert "perf-escape-t0k3n" in c.escape
            assert b"perf-escape-t0k3n" in (c.body or b"") or "perf-escape-t0k3n" in c.path


def _suite_cases() -> list[str]:
    text = SUITE.read_text(encoding="utf-8")
    section = text.split("*** Test Cases ***", 1)[1].split("*** Keywords ***", 1)[0]
    return re.findall(r"(?m)^(?:\S.*?\s{2,}|\s{4})([a-z0-9]+(?:-[a-z0-9]+)+)\s*$", section)


def test_the_robot_table_has_one_row_per_case_in_order() -> None:
    assert _suite_cases() == list(security.CASE_NAMES)


def test_an_unknown_case_name_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="traversal-in-project-id-of-new-task"):
        security.case("no-such-case")


# ------------------------------------------------------------------------------ judging answers

ENVELOPE = b'{"error":{"code":"BAD_REQUEST","message":"project_id is required"}}\n'
JSON = {"content-type": "application/json"}


def _case(expect: str) -> security.BadInput:
    return security.BadInput("c", "POST", "/api/v1/tasks", b"{}", expect, "test")


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        (Answer(400, JSON, ENVELOPE), ""),
        (Answer(404, JSON, b'{"error":{"code":"NOT_FOUND","message":"task not found"}}'), ""),
        (Answer(201, JSON, b'{"run_id":"x"}'), "expected a 4xx"),
        (Answer(500, JSON, b'{"error":{"code":"INTERNAL","message":"x"}}'), "expected a 4xx"),
        (Answer(400, {"content-type": "text/plain"}, b"bad request"), "JSON error envelope"),
        (Answer(400, JSON, b'{"error":"bad"}'), "error envelope"),
        (Answer(400, JSON, b'{"error":{"code":"NOT_FOUND","message":"x"}}'), "error code BAD_REQUEST"),
        (Answer(error="cannot connect: refused"), "no answer"),
    ],
)
def test_envelope_judging(answer: Answer, problem: str) -> None:
    got = security.judge(_case("envelope"), answer)
    assert (got == "") if not problem else (problem in got), got


def test_text_405_redirect_and_any_4xx_judging() -> None:
    text = {"content-type": "text/plain; charset=utf-8"}
    assert security.judge(_case("text-405"), Answer(405, text, b"method not allowed\n")) == ""
    assert "405 text/plain" in security.judge(_case("text-405"), Answer(405, JSON, ENVELOPE))
    assert security.judge(_case("redirect"), Answer(301, {"location": "/api/v1/info"}, b"")) == ""
    assert "redirect" in security.judge(_case("redirect"), Answer(301, {"location": "/api/../x"}, b""))
    assert "redirect" in security.judge(_case("redirect"), Answer(200, JSON, b"{}"))
    assert security.judge(_case("4xx"), Answer(431, text, b"too large")) == ""
    assert "4xx" in security.judge(_case("4xx"), Answer(200, text, b"ok"))


def test_escapes_finds_what_a_followed_traversal_created(tmp_path: Path) -> None:
    root = tmp_path / "sut" / "root"
    root.mkdir(parents=True)
    assert security.escapes(root, "tok") == []
    (tmp_path / "sut" / "perf-escape-tok").mkdir()
    assert security.escapes(root, "tok") == [str(tmp_path / "sut" / "perf-escape-tok")]
    (root / "inside-perf-escape-tok").mkdir()  # inside the root is not an escape
    assert len(security.escapes(root, "tok")) == 1


# ------------------------------------------------------------------------------ against the reference


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("security")
    with ServerThread(ReferenceConfig(root=base / "sut" / "root", log_file=base / "log")) as srv:
        yield Target(kind=EXTERNAL, url=srv.url, root=base / "sut" / "root")


def test_every_bad_input_gets_the_contract_answer_from_the_reference(ref: Target) -> None:
    failures = {}
    for c in security.bad_inputs("ref"):
        headers = {"Content-Type": "application/json"} if c.body is not None else None
        answer = security.send(ref, c.method, c.path, c.body, headers)
        problem = security.judge(c, answer)
        if problem:
            failures[c.name] = problem
    assert set(failures) <= KNOWN_DEFECTS, failures
    assert security.escapes(ref.root, "ref") == []  # type: ignore[arg-type]
    assert security.send(ref, "GET", "/api/v1/health").status == 200


def test_send_reports_a_refused_connection() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    answer = security.send(Target(kind=EXTERNAL, url=f"http://127.0.0.1:{port}/"), "GET", "/")
    assert answer.status == 0 and answer.error.startswith("cannot connect")
    assert answer.describe().startswith("no answer")


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("auth")
    with ServerThread(ReferenceConfig(root=base / "root", api_key="k3y", log_file=base / "log")) as srv:
        yield Target(kind=EXTERNAL, url=srv.url, api_key="k3y")


@pytest.mark.parametrize("kind", ["none", "wrong-bearer", "wrong-x-api-key", "basic"])
def test_protected_routes_answer_the_exact_401(keyed: Target, kind: str) -> None:
    probe = security.probe_auth(keyed, "k3y", kind, security.PROTECTED_ROUTES, expect="401")
    assert probe.tried == len(security.PROTECTED_ROUTES)
    assert probe.failures == []


@pytest.mark.parametrize("kind", ["bearer", "x-api-key"])
def test_the_key_lets_every_protected_route_through(keyed: Target, kind: str) -> None:
    assert security.probe_auth(keyed, "k3y", kind, security.PROTECTED_ROUTES, expect="through").failures == []


def test_exempt_routes_are_open(keyed: Target) -> None:
    assert security.probe_auth(keyed, "k3y", "none", security.EXEMPT_ROUTES, expect="through").failures == []


def test_a_server_without_auth_fails_the_401_probe(ref: Target) -> None:
    probe = security.probe_auth(ref, "k3y", "none", security.PROTECTED_ROUTES[:3], expect="401")
    assert len(probe.failures) == 3
    assert "expected 401" in probe.message()


def test_judge_unauthorized_wants_body_and_header() -> None:
    body = b'{"error":"unauthorized","message":"valid API key required"}'
    hdrs = {"content-type": "application/json", "www-authenticate": 'Bearer realm="conductor"'}
    assert security.judge_unauthorized(Answer(401, hdrs, body)) == ""
    assert "WWW-Authenticate" in security.judge_unauthorized(Answer(401, JSON, body))
    assert "expected the body" in security.judge_unauthorized(Answer(401, hdrs, b'{"error":"nope"}'))
    assert security.judge_let_through(Answer(head_only=True, error="no head")) == ""
    assert "rejected" in security.judge_let_through(Answer(401, hdrs, body))
    assert "server error" in security.judge_let_through(Answer(500, JSON, b"{}"))
    with pytest.raises(ValueError, match="unknown credential kind"):
        security.credentials("cookie", "k")
