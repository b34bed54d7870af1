"""Acceptance evidence: a misbehaving SUT gives one clear failure with the request and answer, within its time limit.

The server is ``tests/badsut.py`` (aiohttp). Nothing here measures speed: each time limit is proven by
the failure message that names it (and pytest's own timeout would stop a hang).
"""

from __future__ import annotations

import socket

import pytest
import requests
from badsut import BadSut

from conductor_perf.acceptance import evidence
from conductor_perf.acceptance.behaviour import NotAsDocumented, json_answer
from conductor_perf.acceptance.streams import EventRecorder, StreamProblem, names


@pytest.fixture(scope="module")
def sut():
    with BadSut() as server:
        yield server


@pytest.fixture
def session():
    s = requests.Session()
    evidence.install(s, deadline_s=1.5)
    yield s
    s.close()


def test_a_server_error_is_described_with_request_and_answer(sut, session) -> None:
    resp = session.post(sut.url + "api/v1/runs/err500", json={"a": 1}, timeout=2)  # POST: 405 from aiohttp
    text = evidence.describe_exchange(resp)
    assert text.startswith(f"request: POST {sut.url}api/v1/runs/err500\n  body: {{\"a\": 1}}\nanswer:  405")
    resp = session.get(sut.url + "api/v1/runs/err500", timeout=2)
    text = evidence.describe_exchange(resp)
    assert "answer:  500 Internal Server Error (text/html; charset=utf-8, " in text
    assert "<h1>Internal Server Error</h1>" in text


def test_html_instead_of_json_is_a_departure_naming_the_content_type(sut, session) -> None:
    resp = session.get(sut.url + "api/v1/runs/html", timeout=2)
    with pytest.raises(NotAsDocumented) as err:
        json_answer(resp.status_code, resp.headers["Content-Type"], resp.content, rule="run-response",
                    evidence=evidence.describe_exchange(resp))  # fmt: skip
    message = str(err.value)
    assert message.startswith("answered 200 with Content-Type 'text/html; charset=utf-8' instead of application/json")
    assert "docs/api-behaviour.md#run-response" in message and "<p>a web page</p>" in message


def test_a_hanging_server_fails_within_the_read_timeout_naming_the_request(sut, session) -> None:
    with pytest.raises(evidence.TransportFailure) as err:
        session.get(sut.url + "api/v1/runs/hang", timeout=0.5)
    message = str(err.value)
    assert message.startswith("no answer within 0.5 s: the server accepted the request and sent nothing back")
    assert f"request: GET {sut.url}api/v1/runs/hang" in message
    assert "Traceback" not in message


def test_an_answer_cut_off_fails_with_what_arrived(sut, session) -> None:
    with pytest.raises(evidence.TransportFailure) as err:
        session.get(sut.url + "api/v1/runs/cut", timeout=2)
    message = str(err.value)
    assert message.startswith("answer 200 OK: the answer was cut off")
    assert "after 21 bytes of its body" in message and '{"run_id":"2026010100' in message


def test_a_dripping_answer_fails_at_the_deadline(sut, session) -> None:
    with pytest.raises(evidence.TransportFailure) as err:
        session.get(sut.url + "api/v1/runs/drip", timeout=1)
    message = str(err.value)
    assert message.startswith("answer 200 still incomplete after 1.5 s (")
    assert "the server drips or hangs" in message


def test_a_connection_closed_without_answer_and_a_refused_one(sut, session) -> None:
    with pytest.raises(evidence.TransportFailure) as err:
        session.get(sut.url + "api/v1/runs/closed", timeout=2)
    assert str(err.value).startswith("no answer: the server closed the connection without an answer")
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(evidence.TransportFailure) as err:
        session.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
    assert str(err.value).startswith("no answer: connection refused (nothing listens there)")


def test_a_good_answer_is_read_whole_and_retries_are_off(sut, session) -> None:
    resp = session.get(sut.url + "api/v1/runs/ok", timeout=2)
    assert resp.status_code == 200 and resp.json()["status"] == "completed"
    adapter = session.get_adapter(sut.url)
    assert isinstance(adapter, evidence.EvidenceAdapter) and adapter.max_retries.total == 0


def test_excerpt_is_one_line_and_bounded() -> None:
    assert evidence.excerpt("a\nb\r\n") == "a\\nb\\r\\n"
    long = evidence.excerpt("x" * 700, limit=600)
    assert long.startswith("x" * 600) and long.endswith("... (100 more characters)")
    assert evidence.excerpt(b"\xffok") == "\ufffdok"


# --------------------------------------------------------------------------- event streams


def test_a_stream_is_recorded_while_the_caller_waits(sut) -> None:
    with EventRecorder(sut.url + "api/v1/runs/ok/stream") as rec:
        rec.open(timeout=2)
        events = rec.wait(lambda evs: len(evs) >= 3, timeout=5, what="3 events")
        assert names(events) == ["status", "log", "status"]
        assert events[1].id == "s=1;e=0" and events[1].json()["line"] == "alpha"
        assert rec.headers["Content-Type"] == "text/event-stream"


def test_a_truncated_stream_fails_with_the_events_received(sut) -> None:
    with EventRecorder(sut.url + "api/v1/runs/truncated/stream") as rec:
        rec.open(timeout=2)
        with pytest.raises(StreamProblem) as err:
            rec.wait(lambda evs: len(evs) >= 3, timeout=5, what="the final status event")
    message = str(err.value)
    assert message.startswith("expected the final status event: the stream ended first")
    assert "2 events received:" in message and "log[s=1;e=0]" in message
    assert "stream ended: the server ended the stream" in message


def test_a_silent_stream_fails_within_its_timeout(sut) -> None:
    with EventRecorder(sut.url + "api/v1/runs/silent/stream") as rec:
        rec.open(timeout=2)
        with pytest.raises(StreamProblem) as err:
            rec.wait(lambda evs: bool(evs), timeout=0.5, what="an event")
    message = str(err.value)
    assert message.startswith("expected an event: not within 0.5 s")
    assert "no events received" in message and "stream still open" in message


@pytest.mark.parametrize(("case", "start"), [
    ("html", "answered 200 with Content-Type 'text/html; charset=utf-8' instead of text/event-stream"),
    ("err500", "the stream was refused with 500"),
    ("hang", "no answer head within 0.5 s (the server hangs)"),
])  # fmt: skip
def test_a_stream_that_cannot_open_fails_with_the_answer(sut, case: str, start: str) -> None:
    rec = EventRecorder(sut.url + f"api/v1/runs/{case}/stream", last_event_id="s=3;e=0")
    with pytest.raises(StreamProblem) as err:
        rec.open(timeout=0.5)
    message = str(err.value)
    assert message.startswith(start)
    assert f"request: GET {sut.url}api/v1/runs/{case}/stream\n  Last-Event-ID: s=3;e=0" in message
    if case == "err500":
        assert '"stream exploded"' in message
    rec.close()
