"""Bad input to the suite itself: one clear line naming the problem, a non-zero exit, no traceback.

Each scenario runs ``python -m conductor_perf.run`` (or plain ``robot``) as a subprocess on a
one-test suite. All scenarios start together (two of them wait for the 10 s attach time-out), so
the file takes about as long as the slowest one.
"""

from __future__ import annotations

import http.server
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conductor_perf import run

REPO = Path(__file__).resolve().parent.parent
TINY_SUITE = f"""*** Settings ***
Resource          {REPO}/resources/common.resource
Suite Setup       Start Conductor For Suite

*** Test Cases ***
Conductor Answers
    Conductor Should Be Healthy
"""


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Answers500(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
        body = b'{"error":{"code":"INTERNAL","message":"boom"}}\n'
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("runner")
    suite = base / "tiny.robot"
    suite.write_text(TINY_SUITE, encoding="utf-8")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answers500)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dead = f"http://127.0.0.1:{_closed_port()}/"
    runner = [sys.executable, "-m", "conductor_perf.run", "--results", str(base / "results")]
    not_executable = base / "not-executable-run-agent"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    crashing = base / "crashing-run-agent"
    crashing.write_text('#!/bin/sh\nif [ "$1" = "--version" ]; then echo "run-agent 0.0.1-fake"; exit 0; fi\n'
                        'echo "panic: the runs root is a teapot" >&2\nexit 4\n')  # fmt: skip
    crashing.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCTOR_", "PERF_", "PROFILE"))}
    scenarios = {
        "unreachable url": (runner + ["--url", dead, str(suite)], {}),
        "url answering 500": (runner + ["--url", f"http://127.0.0.1:{server.server_port}/", str(suite)], {}),
        "root that does not exist": (runner + ["--root", str(base / "no" / "such" / "root"), str(suite)], {}),
        "url that is not a url": (runner + ["--url", "localhost:14355", str(suite)], {}),
        "unknown profile": (runner + [str(suite)], {"PROFILE": "x"}),
        "non-numeric target": (runner + [str(suite), "--", "--variable", "BUS_MIN_MSG_PER_S:fast"], {}),
        "non-numeric target from the environment": (runner + [str(suite)], {"PERF_SSE_LATENCY_MS": "soon"}),
        "duration that is not one": (runner + [str(suite), "--", "-v", "BUS_DURATION:forever"], {}),
        "binary that is not executable": (runner + ["--binary", str(not_executable), str(suite)], {}),
        "binary and url": (runner + ["--binary", str(crashing), "--url", dead, str(suite)], {}),
        "bad binary config": (runner + ["--binary", str(crashing), "--binary-config", "api.sse", str(suite)], {}),
        "binary that exits at start": (runner + [str(suite)], {"CONDUCTOR_BINARY": str(crashing)}),
        "plain robot, unreachable url": (
            [
                sys.executable,
                "-m",
                "robot",
                "--outputdir",
                str(base / "plain"),
                "--pythonpath",
                str(REPO / "libraries"),
                "--variable",
                f"CONDUCTOR_URL:{dead}",
                str(suite),
            ],
            {},
        ),  # fmt: skip
    }
    procs = {
        name: subprocess.Popen(
            cmd, cwd=REPO, env={**env, **extra}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )  # fmt: skip
        for name, (cmd, extra) in scenarios.items()
    }
    results = {}
    deadline = time.monotonic() + 90
    try:
        for name, proc in procs.items():
            out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results[name] = (proc.returncode, out, err)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
        server.shutdown()
    return results


@pytest.mark.parametrize(
    ("scenario", "line"),
    [
        ("unreachable url", "not healthy within 10 s (conductor at http://127.0.0.1:"),
        ("url answering 500", "not healthy within 10 s (HTTP 500"),
        ("root that does not exist", "conductor-perf: --root "),
        ("url that is not a url", "conductor-perf: --url must look like http://127.0.0.1:14355/"),
        ("unknown profile", "conductor-perf: unknown profile 'x'"),
        (
            "non-numeric target",
            "conductor-perf: BUS_MIN_MSG_PER_S must be a number (default 1000), got 'fast'",
        ),
        (
            "non-numeric target from the environment",
            "SSE_LATENCY_MAX_MS must be a number (default 200), got 'soon' "
            "from environment PERF_SSE_LATENCY_MS",
        ),  # fmt: skip
        (
            "duration that is not one",
            "BUS_DURATION must be a duration like '10 s' (default 10 s), got 'forever'",
        ),
        ("plain robot, unreachable url", "not healthy within 10 s (conductor at http://127.0.0.1:"),
        ("binary that is not executable", "not-executable-run-agent is not an executable file"),
        ("binary and url", "conductor-perf: a URL (--url or CONDUCTOR_URL) and a binary (--binary or CONDUCTOR_BINARY) "
                           "both name a SUT: choose one"),
        ("bad binary config", "conductor-perf: config override 'api.sse' must look like api.sse.max_clients_per_run=200"),
        ("binary that exits at start", "crashing-run-agent exited with status 4 during start-up; last log lines: "
                                       "panic: the runs root is a teapot (log "),
    ],
)
def test_bad_input_to_the_suite_gives_one_clear_line(outcomes, scenario: str, line: str) -> None:
    rc, out, err = outcomes[scenario]
    console = out + err
    assert rc != 0, console
    assert "Traceback" not in console, console
    matching = [text for text in console.splitlines() if line in text]
    assert matching, f"no line with {line!r} in:\n{console}"


@pytest.mark.parametrize("scenario", ["root that does not exist", "unknown profile", "non-numeric target",
                                      "binary that is not executable", "binary and url", "bad binary config"])
def test_option_problems_stop_before_robot_starts(outcomes, scenario: str) -> None:
    rc, out, err = outcomes[scenario]
    assert rc == 2
    assert out == "" and len(err.strip().splitlines()) == 1


def test_preflight_accepts_good_values(tmp_path: Path) -> None:
    args = run._parser().parse_args(
        ["--profile", "quick", "--root", str(tmp_path), "--url", "http://127.0.0.1:1/"]
    )
    extra = ["--variable", "BUS_MIN_MSG_PER_S:2000.5", "-v", "BUS_DURATION:2 min", "--variable=API_DURATION:3",
             "--variable", "SOMETHING_ELSE:any text", "--include", "perf"]  # fmt: skip
    assert run.preflight(args, extra, environ={"PERF_SSE_LATENCY_MS": "150"}) == ""
    assert "default" in run.PROFILES and "quick" in run.PROFILES


def test_binary_options_become_robot_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    binary = tmp_path / "run-agent"
    binary.write_text("#!/bin/sh\n")
    binary.chmod(0o755)
    args = run._parser().parse_args(["--binary", str(binary), "--binary-arg=--watchdog-interval",
                                     "--binary-arg", "60s", "--binary-config", "api.sse.max_clients_per_run=500"])  # fmt: skip
    environ = {"CONDUCTOR_BINARY_ARGS": "--disable-task-start", "CONDUCTOR_BINARY_CONFIG": "defaults.timeout=60"}
    assert run.preflight(args, [], environ=environ) == ""
    assert run.binary_variables(args, environ) == [
        ("CONDUCTOR_BINARY", str(binary)),
        ("CONDUCTOR_BINARY_ARGS", "--disable-task-start --watchdog-interval 60s"),
        ("CONDUCTOR_BINARY_CONFIG", "defaults.timeout=60 api.sse.max_clients_per_run=500"),
    ]
    monkeypatch.delenv("CONDUCTOR_BINARY", raising=False)
    assert not any("CONDUCTOR_BINARY" in part for part in run.robot_command(run._parser().parse_args([]), tmp_path, []))
    cmd = run.robot_command(args, tmp_path, [])
    assert cmd[cmd.index(f"CONDUCTOR_BINARY:{binary}") - 1] == "--variable"
    from_env = run._parser().parse_args([])
    assert run.binary_variables(from_env, {"CONDUCTOR_BINARY": str(binary)})[0] == ("CONDUCTOR_BINARY", str(binary))
    assert run.preflight(from_env, [], environ={"CONDUCTOR_BINARY": str(tmp_path / "missing")}) == (
        f"conductor binary {tmp_path / 'missing'} does not exist"
    )


def test_agent_env_option_reaches_the_embedded_conductor_only(tmp_path: Path) -> None:
    args = run._parser().parse_args(["--agent-env", "legacy"])
    assert args.agent_env == "legacy" and run.preflight(args, []) == ""
    args = run._parser().parse_args(["--agent-env", "legacy", "--url", "http://127.0.0.1:1/"])
    assert run.preflight(args, []).startswith("--agent-env sets what the embedded conductor plays")
    with pytest.raises(SystemExit):
        run._parser().parse_args(["--agent-env", "ancient"])


def test_root_suite_name_is_read_from_the_first_attempt(tmp_path: Path) -> None:
    out = tmp_path / "output.xml"
    out.write_text('<?xml version="1.0"?>\n<robot generator="Robot 7.5"><suite id="s1" name="Load Test &amp; Agents">'
                   '<suite id="s1-s1" name="Load Test"></suite></suite></robot>\n')  # fmt: skip
    assert run.root_suite_name(out) == "Load Test & Agents"
    assert run.root_suite_name(tmp_path / "missing.xml") == ""
    (tmp_path / "torn.xml").write_text("<robot><sui")
    assert run.root_suite_name(tmp_path / "torn.xml") == ""
