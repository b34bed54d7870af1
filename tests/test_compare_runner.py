"""The comparison runner end to end (``python -m conductor_perf.compare``) on a one-figure suite, and its bad input.

Two comparisons run at once as subprocesses on ``tests/fixtures/compare_suites``: an A/A of the
embedded conductor (4 rounds, the fewest that give a 95 % interval) and one whose B is a binary
that dies a few seconds after it starts. Only the structure and the round verdicts are asserted,
never a figure: whether an A/A figure is flagged is chance (at most 2.9 % per figure here).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conductor_perf import compare, run

REPO = Path(__file__).resolve().parent.parent
SUITES = REPO / "tests" / "fixtures" / "compare_suites"
WRAPPER = REPO / "conductor_perf" / "reference" / "bin" / "reference-run-agent"
DYING = """#!/bin/sh
# the reference conductor, killed half a second after it first answers: a build that crashes in a round
if [ "$1" = "--version" ]; then exec {wrapper} --version; fi
port=""
prev=""
for arg in "$@"; do
    if [ "$prev" = "--port" ]; then port=$arg; fi
    prev=$arg
done
{wrapper} "$@" &
child=$!
{python} - "$port" <<'PY'
import sys, time, urllib.request
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{{sys.argv[1]}}/api/v1/health", timeout=1)
        break
    except OSError:
        time.sleep(0.05)
PY
sleep 0.5
kill -9 $child
exit 3
"""

def compare_cmd(results: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "conductor_perf.compare", "--results", str(results), "--suite-dir", str(SUITES),
            "--suites", "tiny", *args]  # fmt: skip


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CONDUCTOR_", "PERF_", "PROFILE"))}


@pytest.fixture(scope="module")
def comparisons(tmp_path_factory: pytest.TempPathFactory):
    base = tmp_path_factory.mktemp("compare")
    dying = base / "dying-run-agent"
    dying.write_text(DYING.format(wrapper=WRAPPER, python=sys.executable))
    dying.chmod(0o755)
    scenarios = {
        "a/a": compare_cmd(base / "aa", "--a", "embedded", "--b", "embedded", "--rounds", "4", "--id", "aa"),
        "dying b": compare_cmd(base / "dying", "--a", "embedded", "--b", str(dying), "--rounds", "2", "--id", "dying",
                                "--", "--variable", "TINY_LOAD:1 s"),  # a round outlives the SUT's half second
    }
    procs = {name: subprocess.Popen(cmd, cwd=REPO, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, cmd in scenarios.items()}  # fmt: skip
    out = {}
    deadline = time.monotonic() + 420
    try:
        for name, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            out[name] = (proc.returncode, stdout, stderr)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
    return {"aa": base / "aa" / "aa", "dying": base / "dying" / "dying", **out}


@pytest.mark.timeout(480)
def test_an_a_a_comparison_writes_every_output_and_a_log_with_every_round(comparisons):
    rc, stdout, stderr = comparisons["a/a"]
    folder = comparisons["aa"]
    data = json.loads((folder / "compare.json").read_text())
    assert rc == (0 if not data["summary"]["adverse"] else 1), stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert data["mode"] == "A/A" and data["order"] == ["1A", "1B", "2B", "2A", "3A", "3B", "4B", "4A"]
    assert [r["status"] for r in data["rounds"]] == ["ok"] * 8
    rate = next(f for f in data["figures"] if f["name"] == "GET /api/v1/health rate")
    assert rate["kind"] == "ratio" and len(rate["a"]) == len(rate["b"]) == 4 and rate["unit"] == "req/s"
    assert rate["ci_low"] is not None and rate["ci_low"] <= rate["ratio"] <= rate["ci_high"]
    assert data["summary"]["false_alarm_rate"] is not None
    for name in ("compare.md", "compare.svg", "summary.html", "log.html", "report.html", "plan.json"):
        assert (folder / name).is_file(), name
    top = ET.parse(folder / "output.xml").getroot().find("suite")
    children = [s.get("name") for s in top.findall("suite")]
    assert children == ["Round 1 A", "Round 1 B", "Round 2 B", "Round 2 A", "Round 3 A", "Round 3 B", "Round 4 B",
                        "Round 4 A", "Comparison"]  # fmt: skip
    tests = [t.get("name") for t in top.findall("suite")[-1].findall("test")]
    assert tests == ["Every Round Completed On A Fresh SUT", "B Is Not Slower Than A In Any Figure",
                     "B Meets Every Exact Target In Every Round"]  # fmt: skip
    assert (folder.parent / "latest-compare").resolve() == folder.resolve()
    assert "false-alarm rate" in stdout and not list(folder.rglob("dry-run*"))
    # every round's SUT runs root is scratch, removed once the last round has measured; its log stays
    assert not list(folder.glob("rounds/*/sut-*/root")) and list(folder.glob("rounds/*/sut-*/conductor.log*"))
    rounds = len(list(folder.glob("rounds/*/output.xml")))
    assert re.search(rf"comparison folder [\d.]+ MB \(was [\d.]+ MB; removed {rounds} scratch folder\(s\)", stdout)


@pytest.mark.timeout(480)
def test_a_round_whose_sut_died_is_reported_and_left_out(comparisons):
    rc, stdout, stderr = comparisons["dying b"]
    assert rc == 1, stdout + stderr
    data = json.loads((comparisons["dying"] / "compare.json").read_text())
    failed = {f"{r['number']}{r['side']}": r["reason"] for r in data["rounds"] if r["status"] != "ok"}
    assert set(failed) == {"1B", "2B"}
    assert all(reason.startswith("its SUT died during the round: conductor binary ") for reason in failed.values())
    assert "exited with status 3" in failed["1B"] or "exited with code 3" in failed["1B"], failed
    died = [line for line in stdout.splitlines() if line.startswith("failed: round 1 B: its SUT died")]
    assert len(died) == 1
    rate = next(f for f in data["figures"] if f["name"] == "GET /api/v1/health rate")
    assert rate["b"] == [] and rate["verdict"] == "not compared"  # nothing of the dead rounds averaged in
    assert "2 failed round(s) left out" in (comparisons["dying"] / "compare.md").read_text()
    round_suite = ET.parse(comparisons["dying"] / "rounds" / "01-B" / "output.xml").getroot().find("suite")
    metadata = {m.get("name"): m.text for m in round_suite.find("meta") is not None and round_suite.iter("meta")}
    assert metadata["SUT spec"].startswith("``") and metadata["SUT spec"].endswith("dying-run-agent``")  # not its file


@pytest.mark.timeout(480)
def test_the_report_again_refuses_rounds_of_another_profile(comparisons, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(comparisons["dying"], copy, symlinks=True)
    again = subprocess.run([sys.executable, "-m", "conductor_perf.compare", "--report", str(copy)], cwd=REPO,
                           env=clean_env(), capture_output=True, text=True, timeout=300)  # fmt: skip
    assert again.returncode == 1 and "failed: round 1 B: its SUT died" in again.stdout
    info_path = copy / "rounds" / "02-A" / "round.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "profile": "default"}))
    refused = subprocess.run([sys.executable, "-m", "conductor_perf.compare", "--report", str(copy)], cwd=REPO,
                             env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert refused.returncode == 2 and refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "conductor-perf compare: round 2 A ran profile 'default' but the comparison 'quick': A and B must run the "
        "same profile and suites with the same options"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["--a", "embeded", "--b", "embedded"],
         "unknown SUT 'embeded' for A (did you mean embedded?): use embedded, embedded:<reference flags> or the path "
         "of a conductor-loop executable"),
        (["--a", "embedded", "--b", "/no/such/run-agent"], "B: conductor binary /no/such/run-agent does not exist"),
        (["--a", "embedded:--slowdown-us", "--b", "embedded"],
         "A='embedded:--slowdown-us': argument --slowdown-us: expected one argument"),
        (["--a", "embedded:--port 3", "--b", "embedded"], "A='embedded:--port 3': --port is set by the suite itself"),
        (["--a", "embedded", "--b", ""], "B names no SUT"),
        (["--a", "embedded", "--b", "embedded", "--suites", "nope"], "unknown suite or tag 'nope': suites are tiny"),
        (["--a", "embedded", "--b", "embedded", "--suites", "regression"], "suite 'regression' cannot be compared"),
        (["--a", "embedded", "--b", "embedded", "--profile", "fast"], "unknown profile 'fast'"),
        (["--a", "embedded", "--b", "embedded", "--rounds", "0"], "--rounds must be at least 1, got 0"),
        (["--a", "embedded", "--b", "embedded", "--", "--nosuchoption"], "robot refuses the options: "),
    ],
    ids=["unknown spelling", "missing binary", "bad reference flag", "reserved flag", "empty side", "unknown suite",
         "regression suite", "unknown profile", "no rounds", "bad robot option"],
)
def test_bad_input_is_one_line_and_leaves_nothing(tmp_path, args, line):
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "conductor_perf.compare", "--results", str(results), "--suite-dir", str(SUITES),
           *(["--suites", "tiny"] if "--suites" not in args else []), *args]  # fmt: skip
    done = subprocess.run(cmd, cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("conductor-perf compare: ") and line in lines[0], lines
    assert not results.exists() or not any(results.iterdir())


def test_sut_spellings():
    assert compare.parse_sut("embedded", "A").spec == "embedded"
    assert compare.parse_sut("embedded: --slowdown-us  20", "B").spec == "embedded:--slowdown-us 20"
    relative = os.path.relpath(WRAPPER)
    wrapper = compare.parse_sut(relative, "B")
    assert wrapper.kind == "binary" and wrapper.spec == str(WRAPPER)


def test_a_round_names_only_its_own_sut_whatever_the_environment_says(tmp_path, monkeypatch):
    monkeypatch.setenv("CONDUCTOR_BINARY", str(WRAPPER))  # e.g. left over from `CONDUCTOR_BINARY=... make perf`
    monkeypatch.setenv("CONDUCTOR_EMBEDDED_ARGS", "--slowdown-us 99")
    monkeypatch.setenv("CONDUCTOR_BINARY_ARGS", "--disable-task-start")  # a setting for every binary side
    ns = compare._parser().parse_args(["--a", "embedded", "--b", str(WRAPPER), "--suite-dir", str(SUITES),
                                       "--suites", "tiny"])  # fmt: skip
    plan, a, b = compare.plan_comparison(ns, [])
    embedded = compare.round_command(plan, a, tmp_path, name="Round 1 A", doc="d")
    assert not [w for w in embedded if w.startswith(("CONDUCTOR_BINARY", "CONDUCTOR_EMBEDDED_ARGS"))]
    binary = compare.round_command(plan, b, tmp_path, name="Round 1 B", doc="d")
    assert f"CONDUCTOR_BINARY:{WRAPPER}" in binary and "CONDUCTOR_BINARY_ARGS:--disable-task-start" in binary
    assert not [w for w in binary if w.startswith("CONDUCTOR_EMBEDDED_ARGS")]
    slow = compare.round_command(plan, compare.parse_sut("embedded:--slowdown-us 10", "B"), tmp_path, name="n", doc="d")
    assert "CONDUCTOR_EMBEDDED_ARGS:--slowdown-us 10" in slow
    assert embedded[embedded.index("--metadata") + 1] == "SUT spec:``embedded``"
    assert "CONDUCTOR_BINARY" not in compare._robot_env(tmp_path)  # nor in the round's environment


def test_suite_selection_by_name_file_and_tag():
    assert compare.select_suites(["api", "bus_http", "07__sse.robot", "Load Test"]) == [
        "--suite", "Api", "--suite", "Bus Http", "--suite", "Sse", "--suite", "Load Test"]  # fmt: skip
    assert compare.select_suites(["perf"]) == ["--include", "perf"]


def test_embedded_flags_reach_the_runner_as_a_robot_variable(tmp_path):
    args = run._parser().parse_args(["--embedded-arg=--slowdown-us", "--embedded-arg", "20"])
    assert run.preflight(args, [], environ={}) == ""
    cmd = run.robot_command(args, tmp_path, [])
    assert cmd[cmd.index("CONDUCTOR_EMBEDDED_ARGS:--slowdown-us 20") - 1] == "--variable"
    assert run.embedded_variables(run._parser().parse_args([]), {"CONDUCTOR_EMBEDDED_ARGS": "--slowdown-us 5"}) == [
        ("CONDUCTOR_EMBEDDED_ARGS", "--slowdown-us 5")]  # fmt: skip
    bad = run._parser().parse_args(["--embedded-arg=--slowdown-us", "--embedded-arg", "-4"])
    assert "must not be negative" in run.preflight(bad, [], environ={})
    assert "but the SUT is a URL" in run.preflight(args, [], environ={"CONDUCTOR_URL": "http://127.0.0.1:1/"})
