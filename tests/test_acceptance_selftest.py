"""Robot self-test: acceptance keywords against a misbehaving conductor fail cleanly, with the evidence.

``tests/acceptance_selftest/bad_sut.robot`` uses the acceptance resource against ``tests/badsut.py``
(500, HTML instead of JSON, a hang, a cut-off answer, a dripping body, a closed connection, a
truncated, silent, HTML, head-less or refused SSE stream). Every test there must fail with a message
that names the request (and the answer when there is one) and says what went wrong -- never an
exception name or a traceback from a keyword library.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from badsut import BadSut
from robot.api import ExecutionResult

REPO = Path(__file__).resolve().parent.parent
SUITE = Path(__file__).resolve().parent / "acceptance_selftest" / "bad_sut.robot"

EXPECTED = {
    "A Server Error Fails With The Answer": ["documented (docs/api-behaviour.md#run-lifecycle)",
                                             "request: GET {url}api/v1/runs/err500",
                                             "answer:  500 Internal Server Error (text/html",
                                             "<h1>Internal Server Error</h1>", "Expected status: 500 != 200"],
    "HTML Instead Of JSON Fails With The Answer": ["answered 200 with Content-Type 'text/html; charset=utf-8' "
                                                   "instead of application/json", "<p>a web page</p>"],
    "A Hanging Server Fails Within The Timeout": ["no answer within 1 s: the server accepted the request and "
                                                  "sent nothing back (it hangs)", "request: GET {url}api/v1/runs/hang"],
    "An Answer Cut Off Fails With What Arrived": ["the answer was cut off (21 bytes read, 979 more announced)",
                                                  '{"run_id":"2026010100'],
    "A Dripping Answer Fails At The Deadline": ["still incomplete after 1.5 s", "the server drips or hangs"],
    "A Closed Connection Fails With The Request": ["the server closed the connection without an answer",
                                                   "request: GET {url}api/v1/runs/closed"],
    "Polling A Hanging Server Fails Within The Wait": ["failed after retrying", "no answer within 1 s"],
    "A Truncated Stream Fails With The Events Received": ["expected a status with status=completed event: the "
                                                          "stream ended first", "2 events received:",
                                                          "log[s=1;e=0]", "stream ended:"],
    "A Silent Stream Fails Within Its Timeout": ["expected 1 non-heartbeat events: not within 1 s",
                                                 "no events received", "stream still open"],
    "A Stream Answering HTML Fails With The Content Type": ["instead of text/event-stream",
                                                            "request: GET {url}api/v1/runs/html/stream"],
    "A Stream Without An Answer Head Fails Within Its Timeout": ["no answer head within 1 s (the server hangs)"],
    "A Refused Stream Fails With The Answer": ["the stream was refused with 500", '"stream exploded"'],
    "A Wrong Shape Fails With The Departure": ['the task departs from its documented shape: "last_activity" is missing; "runs" is missing',
                                               "documented (docs/api-behaviour.md#task-list)",
                                               "request: GET {url}api/v1/runs/ok"],
}  # fmt: skip

NOT_IN_A_CLEAN_FAILURE = ("Traceback", "ReadTimeout", "ConnectionError", "JSONDecodeError", "ChunkedEncodingError",
                          "ProtocolError", "StreamProblem:", "NotAsDocumented:", "TransportFailure:", "KeyError")  # fmt: skip


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("selftest")
    with BadSut() as sut:
        cmd = [sys.executable, "-m", "robot", "--outputdir", str(out), "--log", "NONE", "--report", "NONE",
               "--pythonpath", str(REPO / "libraries"), "--variable", f"CONDUCTOR_URL:{sut.url}",
               "--variable", f"RESULTS_DIR:{out}", "--variable", "ACCEPT_HTTP_TIMEOUT:1 s",
               "--variable", "ACCEPT_HTTP_DEADLINE:1.5 s", "--variable", "ACCEPT_STREAM_TIMEOUT:1 s",
               "--variable", "ACCEPT_RUN_TIMEOUT:2 s", "--variable", "ACCEPT_POLL_INTERVAL:0.5 s", str(SUITE)]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=100)
        url = sut.url
    assert (out / "output.xml").exists(), proc.stdout + proc.stderr
    tests = {t.name: t for t in ExecutionResult(str(out / "output.xml")).suite.all_tests}
    return url, tests, proc


def test_every_misbehaviour_has_a_self_test(result) -> None:
    _, tests, proc = result
    assert set(tests) == set(EXPECTED), proc.stdout[-2000:]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_misbehaving_sut_fails_the_test_with_the_evidence(result, name: str) -> None:
    url, tests, _ = result
    test = tests[name]
    assert test.status == "FAIL", f"{name}: {test.status} {test.message}"
    for fragment in EXPECTED[name]:
        assert fragment.replace("{url}", url) in test.message, f"{name}: {fragment!r} not in:\n{test.message}"
    for word in NOT_IN_A_CLEAN_FAILURE:
        assert word not in test.message, f"{name}: {word!r} in:\n{test.message}"


def test_the_run_ends_with_failures_and_no_library_error(result) -> None:
    _, _, proc = result
    assert proc.returncode == len(EXPECTED), proc.stdout[-2000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "[ ERROR ]" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr
