"""Security checks: bad input to the SUT's API, and API-key authentication.

**Bad input** (:data:`CASE_NAMES`, :func:`bad_inputs`): path traversal and invalid characters in
project/task/run ids, unknown JSON fields, invalid JSON, bodies over 1 MiB, missing required
fields, wrong methods and huge query values. Each case says what conductor-loop's behaviour
(docs/conductor-loop.md, Errors and Identifiers) makes the right answer:

* ``envelope`` -- a 4xx whose body is the error envelope ``{"error":{"code","message"}}`` with the
  code of the status (``BAD_REQUEST`` 400, ``NOT_FOUND`` 404, ``METHOD_NOT_ALLOWED`` 405, ...);
* ``text-405`` -- ``/healthz`` and ``/metrics`` answer a wrong method with 405 ``text/plain``;
* ``redirect`` -- a ``..`` segment in the URL path is cleaned by the router (Go's ServeMux) and
  answered with a 301 to the cleaned path, never served;
* ``4xx`` -- a request the HTTP layer itself refuses (a request line over the server's limit):
  any 4xx, whatever the body.

Traversal payloads name a directory containing a per-run token; :func:`escapes` looks for
anything with that token around the runs root afterwards ("nothing created outside the root").

**Auth** (:func:`probe_auth`): every protected route must answer 401 with exactly
``{"error":"unauthorized","message":"valid API key required"}`` and
``WWW-Authenticate: Bearer realm="conductor"`` without a valid key, and be let through with
``Authorization: Bearer <key>`` and with ``X-API-Key: <key>``; the exempt routes stay open.

Requests go over a plain socket (:func:`send`), so malformed and oversized requests are sent as
they are, and a stream route that withholds its head (the real server's SSE) does not block.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..measure.rawhttp import HttpProtocolError, ResponseParser
from ..target import Target

MIB = 1 << 20
ENVELOPE_CODES = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND",
                  405: "METHOD_NOT_ALLOWED", 409: "CONFLICT", 429: "TOO_MANY_REQUESTS"}  # fmt: skip
UNAUTHORIZED = {"error": "unauthorized", "message": "valid API key required"}
WWW_AUTHENTICATE = 'Bearer realm="conductor"'


# ------------------------------------------------------------------------------ raw HTTP


@dataclass
class Answer:
    """What the server answered (``status`` 0 and ``error`` set when it did not)."""

    status: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""
    head_only: bool = False
    elapsed_ms: float = 0.0

    def json(self) -> Any:
        """The body as JSON (``None`` when it is not JSON)."""
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def describe(self) -> str:
        """``HTTP 400 application/json {"error":...}`` (body cut to 160 characters)."""
        if not self.status:
            return f"no answer ({self.error})"
        text = self.body[:160].decode("utf-8", "replace").strip()
        return f"HTTP {self.status} {self.headers.get('content-type', '-')} {text}".strip()


def send(
    target: Target, method: str, path: str, body: bytes | None = None, headers: dict[str, str] | None = None,
    *, timeout: float = 10.0, head_timeout: float | None = None,
) -> Answer:  # fmt: skip
    """Send one request as given (no validation) and read the answer.

    The body is written from a thread while the answer is read, so a server that answers before
    reading a huge body does not deadlock the client. ``head_timeout``: for stream routes, stop
    waiting when no response head arrived in that time (``Answer.head_only`` with status 0 and
    ``error`` ``no head``: the server is streaming, i.e. the request was let through).
    """
    lines = [f"{method} {path} HTTP/1.1", f"Host: {target.host}:{target.port}", "User-Agent: conductor-perf",
             "Connection: close"]  # fmt: skip
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")
    started = time.monotonic()
    try:
        sock = socket.create_connection((target.host, target.port), timeout=5)
    except OSError as exc:
        return Answer(error=f"cannot connect: {exc}")
    send_error: list[str] = []

    def write() -> None:
        try:
            sock.sendall(head + (body or b""))
        except OSError as exc:  # the server may answer and close before reading a huge body
            send_error.append(str(exc))

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    parser = ResponseParser(expect_body=method.upper() != "HEAD")
    answer = Answer()
    deadline = started + timeout
    head_deadline = started + head_timeout if head_timeout else None
    try:
        while True:
            now = time.monotonic()
            limit = deadline if head_deadline is None else min(deadline, head_deadline)
            if now >= limit:
                if head_deadline is not None and now >= head_deadline:
                    answer.error, answer.head_only = "no head", True
                else:
                    answer.error = f"no complete answer within {timeout:g} s"
                break
            sock.settimeout(max(0.01, min(0.5, limit - now)))
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                if not _finish(answer, parser, eof=True):
                    answer.error = f"connection broke: {exc}"
                break
            if not chunk:
                if not _finish(answer, parser, eof=True):
                    answer.error = "the server closed the connection without an answer"
                break
            try:
                if _finish(answer, parser, data=chunk):
                    break
            except HttpProtocolError as exc:
                answer.error = f"not HTTP: {exc}"
                break
            if head_deadline is not None and parser._status:  # noqa: SLF001 - a stream's head is enough
                answer.status, answer.headers, answer.head_only = parser._status, dict(parser._headers), True  # noqa: SLF001
                break
    finally:
        try:
            sock.close()
        except OSError:
            pass
        writer.join(timeout=1)
    if not answer.status and answer.error and send_error and not answer.head_only:
        answer.error += f" (sending failed: {send_error[0]})"
    answer.elapsed_ms = (time.monotonic() - started) * 1000
    return answer


def _finish(answer: Answer, parser: ResponseParser, *, data: bytes = b"", eof: bool = False) -> bool:
    """Feed the parser; fill ``answer`` and return True once a whole response is in."""
    if eof:
        try:
            resp = parser.feed_eof()
        except (ConnectionError, HttpProtocolError):
            return False
    else:
        resp = parser.feed(data)
    if resp is None:
        return False
    answer.status, answer.headers, answer.body = resp.status, dict(resp.headers), resp.body
    return True


# ------------------------------------------------------------------------------ bad input


@dataclass(frozen=True)
class BadInput:
    """One bad request and the answer the contract requires."""

    name: str
    method: str
    path: str
    body: bytes | None
    expect: str
    why: str
    escape: str = ""
    prepare: tuple[str, str, bytes] | None = None
    """A valid request (method, path, JSON body) sent first, so the bad input meets the state it needs."""

    def describe(self) -> str:
        """``POST /api/v1/tasks (312 bytes): why`` with the path cut to 100 characters."""
        path = self.path if len(self.path) <= 100 else self.path[:97] + "..."
        size = "" if self.body is None else f" ({len(self.body)} bytes)"
        return f"{self.method} {path}{size}: {self.why}"


def _json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


_PROBE = {"project_id": "perf-badinput", "task_id": "task-20260101-000000-badinput"}


def _with(base: dict[str, Any], fields: dict[str, Any]) -> bytes:
    """``base`` with ``fields`` set (``None``: the field left out), as JSON."""
    body = {**_PROBE, **base, **fields}
    return _json({k: v for k, v in body.items() if v is not None})


def _task(**fields: Any) -> bytes:
    return _with({"agent_type": "codex", "prompt": "bad input probe"}, fields)


def _message(**fields: Any) -> bytes:
    return _with({"body": "bad input probe"}, fields)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def bad_inputs(token: str = "tok") -> list[BadInput]:
    """The bad-input table; traversal payloads name ``perf-escape-<token>`` directories."""
    esc = f"perf-escape-{token}"
    long_name = "a" * 300  # over NAME_MAX (255): no file system can hold it as one name
    long_query = "q" * 6000  # long, but under every server's request-line limit (8 KiB in aiohttp)
    huge_query = "h" * 64 * 1024  # over aiohttp's 8 KiB request line; Go allows 1 MiB of head
    big = "x" * (2 * MIB)
    tasks, messages = "/api/v1/tasks", "/api/v1/messages"
    cases = [
        # --- path traversal and invalid characters in ids
        BadInput("traversal-in-project-id-of-new-task", "POST", tasks, _task(project_id=f"../{esc}"), "envelope",
                 "project_id climbs out of the root", escape=f"../{esc}"),
        BadInput("traversal-in-task-id-of-new-task", "POST", tasks, _task(task_id=f"../../{esc}"), "envelope",
                 "task_id climbs out of the root", escape=f"../{esc}"),
        BadInput("absolute-path-as-project-id", "POST", tasks, _task(project_id=f"/tmp/{esc}"), "envelope",
                 "project_id is an absolute path", escape=f"/tmp/{esc}"),
        BadInput("backslash-in-project-id", "POST", tasks, _task(project_id=f"..\\{esc}"), "envelope",
                 "project_id holds a backslash separator"),
        BadInput("dot-dot-as-task-id", "POST", tasks, _task(task_id=".."), "envelope", "task_id is '..'"),
        BadInput("uppercase-and-underscore-in-project-id", "POST", tasks, _task(project_id="Bad_Proj"), "envelope",
                 "project_id has characters the runner rejects (docs/conductor-loop.md, \"Identifiers\")"),
        BadInput("nul-byte-in-task-id", "POST", tasks, _task(task_id="task-\u0000-nul"), "envelope",
                 "task_id holds a NUL byte"),
        BadInput("task-id-over-name-max", "POST", tasks, _task(task_id=long_name), "envelope",
                 "a 300-character task_id (over NAME_MAX: no directory can have that name)"),
        BadInput("project-id-over-name-max-of-message", "POST", messages, _message(project_id=long_name),
                 "envelope", "a 300-character project_id of a message (over NAME_MAX)"),
        BadInput("traversal-in-project-id-of-message", "POST", messages, _message(project_id=f"../{esc}"),
                 "envelope", "project_id of a message climbs out of the root", escape=f"../{esc}"),
        BadInput("traversal-in-task-id-of-message", "POST", messages, _message(task_id=f"../../{esc}"),
                 "envelope", "task_id of a message climbs out of the root", escape=f"../{esc}"),
        BadInput("traversal-in-project-id-query", "GET", f"{messages}?project_id={_q('../' + esc)}", None,
                 "envelope", "project_id query climbs out of the root"),
        BadInput("traversal-in-task-id-query-of-stream", "GET",
                 f"{messages}/stream?project_id=perf-badinput&task_id={_q('../../' + esc)}", None, "envelope",
                 "task_id query of the message stream climbs out of the root"),
        BadInput("backslash-traversal-in-task-id-path", "GET", f"{tasks}/{_q('..' + chr(92) + esc)}", None,
                 "envelope", "task id in the URL holds a backslash separator"),
        BadInput("traversal-in-project-id-query-of-task", "GET",
                 f"{tasks}/task-20260101-000000-badinput?project_id={_q('../..')}", None, "envelope",
                 "project_id query of a task lookup climbs out of the root"),
        BadInput("backslash-traversal-in-run-id-path", "GET", f"/api/v1/runs/{_q('..' + chr(92) + '..' + chr(92) + esc)}",
                 None, "envelope", "run id in the URL holds backslash separators"),
        BadInput("dot-dot-segments-in-run-path", "GET", "/api/v1/runs/%2e%2e/%2e%2e/info", None, "redirect",
                 "encoded '..' segments in the URL path"),
        # --- unknown JSON fields
        BadInput("unknown-field-in-new-task", "POST", tasks, _task(bogus=1), "envelope", "unknown JSON field"),
        BadInput("unknown-field-in-message", "POST", messages, _message(bogus="x"), "envelope", "unknown JSON field"),
        # --- invalid JSON
        BadInput("invalid-json-new-task", "POST", tasks, b'{"project_id": "perf-badinput",', "envelope",
                 "truncated JSON"),
        BadInput("not-json-message", "POST", messages, b"project_id=perf-badinput&body=x", "envelope",
                 "a form body instead of JSON"),
        BadInput("empty-body-message", "POST", messages, b"", "envelope", "an empty body"),
        BadInput("trailing-data-after-message", "POST", messages, _message() + b' {"x":1}', "envelope",
                 "a second JSON value after the document"),
        BadInput("array-instead-of-object", "POST", tasks, b"[]", "envelope", "a JSON array instead of an object"),
        BadInput("number-as-prompt", "POST", tasks, _task(prompt=42), "envelope", "prompt is a number"),
        # --- bodies over 1 MiB
        BadInput("message-body-over-1-mib", "POST", messages, _message(body=big), "envelope",
                 "a 2 MiB message (the server reads 1 MiB)"),
        BadInput("task-prompt-over-1-mib", "POST", tasks, _task(prompt=big), "envelope",
                 "a 2 MiB prompt (the server reads 1 MiB)"),
        # --- missing required fields
        BadInput("task-without-project-id", "POST", tasks, _task(project_id=None), "envelope", "no project_id"),
        BadInput("task-without-task-id", "POST", tasks, _task(task_id=None), "envelope", "no task_id"),
        BadInput("task-without-agent-type", "POST", tasks, _task(agent_type=None), "envelope", "no agent_type"),
        BadInput("task-with-blank-prompt", "POST", tasks, _task(prompt="   "), "envelope", "a blank prompt"),
        BadInput("task-with-invalid-attach-mode", "POST", tasks, _task(attach_mode="bogus"), "envelope",
                 "attach_mode is not create/attach/resume"),
        BadInput("message-without-project-id", "POST", messages, _message(project_id=None), "envelope",
                 "no project_id"),
        BadInput("message-without-body", "POST", messages, _message(body=None), "envelope", "no body"),
        BadInput("messages-query-without-project-id", "GET", messages, None, "envelope", "no project_id query"),
        BadInput("message-stream-without-project-id", "GET", f"{messages}/stream", None, "envelope",
                 "no project_id query on the stream"),
        # --- wrong methods
        BadInput("put-tasks", "PUT", tasks, b"{}", "envelope", "PUT on the task list"),
        BadInput("delete-messages", "DELETE", messages, None, "envelope", "DELETE on the message list"),
        BadInput("post-health", "POST", "/api/v1/health", b"", "envelope", "POST on the health check"),
        BadInput("put-version", "PUT", "/api/v1/version", b"", "envelope", "PUT on the version"),
        BadInput("post-status", "POST", "/api/v1/status", b"", "envelope", "POST on the status"),
        BadInput("patch-runs", "PATCH", "/api/v1/runs", b"{}", "envelope", "PATCH on the run list"),
        BadInput("get-run-stop", "GET", "/api/v1/runs/perf-no-such-run/stop", None, "envelope",
                 "GET on a run's stop action"),
        BadInput("post-all-runs-stream", "POST", "/api/v1/runs/stream/all", b"", "envelope",
                 "POST on the all-runs stream"),
        BadInput("delete-healthz", "DELETE", "/healthz", None, "text-405", "DELETE on /healthz"),
        BadInput("post-metrics", "POST", "/metrics", b"", "text-405", "POST on /metrics"),
        # --- huge query values
        BadInput("project-id-over-name-max", "GET", f"{messages}?project_id={long_name}", None, "envelope",
                 "a 300-character project_id query (over NAME_MAX)"),
        # the bus must exist: conductor-loop answers 200 {"messages":[]} for a missing bus whatever the cursor
        BadInput("long-after-cursor", "GET", f"{messages}?project_id=perf-badinput&after={long_query}", None,
                 "envelope", "a 6000-character 'after' message id",
                 prepare=("POST", messages, _message(task_id=None))),
        BadInput("long-project-id-of-task-lookup", "GET", f"{tasks}/task-20260101-000000-badinput?project_id="
                 f"{long_query}", None, "envelope", "a 6000-character project_id query"),
        BadInput("query-over-64-kib", "GET", f"{messages}?project_id=perf-badinput&task_id={huge_query}", None,
                 "4xx", "a 64 KiB query value"),
    ]  # fmt: skip
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "bad-input case names must be unique"
    return cases


CASE_NAMES: tuple[str, ...] = tuple(c.name for c in bad_inputs())
"""Every bad-input case, in table order."""


def case(name: str, token: str = "tok") -> BadInput:
    """The case called ``name`` (``KeyError`` listing the names when unknown)."""
    for c in bad_inputs(token):
        if c.name == name:
            return c
    raise KeyError(f"no bad-input case {name!r}; known: {', '.join(CASE_NAMES)}")


def judge(c: BadInput, answer: Answer) -> str:
    """``""`` when ``answer`` is what the contract requires for ``c``, else why it is not (one line)."""
    got = answer.describe()
    if not answer.status:
        return f"expected a 4xx, got {got}"
    status = answer.status
    ctype = answer.headers.get("content-type", "")
    if c.expect == "redirect":
        location = answer.headers.get("location", "")
        if status in (301, 308) and location and ".." not in location:
            return ""
        if 400 <= status < 500:
            return _envelope_problem(answer) if "json" in ctype else ""
        return f"expected a redirect to the cleaned path or a 4xx, got {got}"
    if not 400 <= status < 500:
        return f"expected a 4xx, got {got}"
    if c.expect == "4xx":
        return ""
    if c.expect == "text-405":
        if status == 405 and ctype.startswith("text/plain") and answer.body.strip() == b"method not allowed":
            return ""
        return f"expected 405 text/plain 'method not allowed', got {got}"
    return _envelope_problem(answer)


def _envelope_problem(answer: Answer) -> str:
    got = answer.describe()
    if "application/json" not in answer.headers.get("content-type", ""):
        return f"expected the JSON error envelope, got {got}"
    data = answer.json()
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str) or not err.get("message"):
        return f'expected the error envelope {{"error":{{"code","message"}}}}, got {got}'
    want = ENVELOPE_CODES.get(answer.status)
    if want and err.get("code") != want:
        return f"expected error code {want} for HTTP {answer.status}, got {got}"
    return ""


def escape_paths(root: Path, c: BadInput) -> list[Path]:
    """Where a traversal payload of ``c`` would land if the server followed it."""
    if not c.escape:
        return []
    if c.escape.startswith("/"):
        return [Path(c.escape)]
    return [Path(os.path.normpath(root / "x" / c.escape)), Path(os.path.normpath(root / "x" / "y" / c.escape)),
            Path(os.path.normpath(root / c.escape))]  # fmt: skip


def escapes(root: Path, token: str, cases: list[BadInput] | None = None) -> list[str]:
    """Paths outside ``root`` that carry ``token`` (created by a followed traversal); ``[]`` is good.

    Looks at the targets of every traversal payload and lists the two folders above the root.
    """
    root = root.resolve()
    found: set[str] = set()
    for c in cases if cases is not None else bad_inputs(token):
        for p in escape_paths(root, c):
            if token in p.name and (p.exists() or p.is_symlink()):
                found.add(str(p))
    for folder in (root.parent, root.parent.parent):
        try:
            for entry in folder.iterdir():
                if token in entry.name:
                    found.add(str(entry))
        except OSError:
            continue
    return sorted(found)


# ------------------------------------------------------------------------------ auth


@dataclass(frozen=True)
class Route:
    """A route probed for auth (a body that cannot create anything: it fails validation)."""

    method: str
    path: str
    body: bytes | None = None
    stream: bool = False


PROTECTED_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/status"),
    Route("GET", "/api/v1/tasks"),
    Route("POST", "/api/v1/tasks", b'{"project_id":"perf-auth"}'),
    Route("GET", "/api/v1/tasks/task-20260101-000000-perf-auth"),
    Route("DELETE", "/api/v1/tasks/task-20260101-000000-perf-auth?project_id=perf-auth"),
    Route("GET", "/api/v1/runs"),
    Route("GET", "/api/v1/runs/perf-auth-no-such-run"),
    Route("GET", "/api/v1/runs/perf-auth-no-such-run/info"),
    Route("POST", "/api/v1/runs/perf-auth-no-such-run/stop", b""),
    Route("GET", "/api/v1/runs/perf-auth-no-such-run/stream", stream=True),
    Route("GET", "/api/v1/runs/stream/all", stream=True),
    Route("GET", "/api/v1/messages?project_id=perf-auth"),
    Route("POST", "/api/v1/messages", b'{"project_id":"perf-auth"}'),
    Route("GET", "/api/v1/messages/stream?project_id=perf-auth", stream=True),
    Route("GET", "/api/projects"),
    Route("GET", "/api/v1/no-such-route"),
)
"""Routes that need the key (docs/conductor-loop.md, Errors: everything but the exempt ones and OPTIONS)."""

EXEMPT_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/v1/health"),
    Route("GET", "/api/v1/version"),
    Route("GET", "/metrics"),
    Route("GET", "/healthz"),
)
"""Routes that stay open without a key (docs/conductor-loop.md, Errors)."""


def credentials(kind: str, key: str) -> dict[str, str]:
    """Headers for ``kind``: ``none``, ``bearer``, ``x-api-key``, or the wrong forms ``wrong-bearer``,
    ``wrong-x-api-key``, ``basic`` (the right key in the wrong scheme)."""
    forms = {"none": {}, "bearer": {"Authorization": f"Bearer {key}"}, "x-api-key": {"X-API-Key": key},
             "wrong-bearer": {"Authorization": f"Bearer {key}-wrong"}, "wrong-x-api-key": {"X-API-Key": f"{key}-wrong"},
             "basic": {"Authorization": f"Basic {key}"}}  # fmt: skip
    if kind not in forms:
        raise ValueError(f"unknown credential kind {kind!r}; known: {', '.join(forms)}")
    return forms[kind]


def judge_unauthorized(answer: Answer) -> str:
    """``""`` when ``answer`` is the exact 401 of the contract, else why not."""
    got = answer.describe()
    if answer.status != 401:
        return f"expected 401, got {got}"
    if answer.json() != UNAUTHORIZED:
        return f"expected the body {json.dumps(UNAUTHORIZED, separators=(',', ':'))}, got {got}"
    if answer.headers.get("www-authenticate") != WWW_AUTHENTICATE:
        return (
            f"expected WWW-Authenticate: {WWW_AUTHENTICATE}, got {answer.headers.get('www-authenticate')!r}"
        )
    if "application/json" not in answer.headers.get("content-type", ""):
        return f"expected Content-Type application/json, got {answer.headers.get('content-type')!r}"
    return ""


def judge_let_through(answer: Answer) -> str:
    """``""`` when the request got past auth (any answer but 401/403, or a stream that is open)."""
    if answer.head_only and not answer.status:
        return ""  # a stream route withholding its head: the handler runs, so auth passed
    if not answer.status:
        return f"no answer ({answer.error})"
    if answer.status in (401, 403):
        return f"rejected: {answer.describe()}"
    if answer.status >= 500:
        return f"server error: {answer.describe()}"
    return ""


@dataclass
class AuthProbe:
    """Results of probing a set of routes with one credential form."""

    kind: str
    tried: int = 0
    failures: list[str] = field(default_factory=list)

    def message(self) -> str:
        """One line: what was tried and what failed (the first three)."""
        if not self.failures:
            return f"{self.tried} routes answered as required with credentials '{self.kind}'"
        more = f" (and {len(self.failures) - 3} more)" if len(self.failures) > 3 else ""
        return f"{len(self.failures)} of {self.tried} routes wrong with credentials '{self.kind}': " + \
            "; ".join(self.failures[:3]) + more  # fmt: skip


def probe_auth(target: Target, key: str, kind: str, routes: tuple[Route, ...], *, expect: str,
               timeout: float = 10.0) -> AuthProbe:  # fmt: skip
    """Send every route with credentials ``kind``; ``expect`` is ``401`` or ``through``."""
    probe = AuthProbe(kind=kind)
    for route in routes:
        headers = dict(credentials(kind, key))
        if route.body is not None:
            headers["Content-Type"] = "application/json"
        answer = send(target, route.method, route.path, route.body, headers, timeout=timeout,
                      head_timeout=2.0 if route.stream else None)  # fmt: skip
        problem = judge_unauthorized(answer) if expect == "401" else judge_let_through(answer)
        probe.tried += 1
        if problem:
            probe.failures.append(f"{route.method} {route.path}: {problem}")
    return probe
