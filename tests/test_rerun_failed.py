"""Measuring failed tests again when test names take their numbers from variables."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from robot.api import ExecutionResult

LIBRARIES = Path(__file__).resolve().parent.parent / "libraries"
sys.path.insert(0, str(LIBRARIES))

from RerunFailed import name_pattern  # noqa: E402

SUITE = """*** Variables ***
${N}    5

*** Test Cases ***
Over ${N} Things
    No Operation
Over ${N} Other Things
    Fail    boom
Plain Failure
    Fail    boom
"""


def test_a_name_as_written_matches_the_names_it_runs_as() -> None:
    pattern = name_pattern("Bus Sustains Over ${BUS_MIN_MSG_PER_S} Messages With ${BUS_WRITERS} Writers")
    assert pattern.fullmatch("Bus Sustains Over 2000 Messages With 10 Writers")
    assert not pattern.fullmatch("Bus Sustains Over 2000 Messages With 10 Writers And More")
    assert name_pattern("A [bracket] and * star").fullmatch("A [bracket] and * star")


def _robot(tmp_path: Path, *args: str) -> ExecutionResult:
    out = tmp_path / f"out-{len(list(tmp_path.glob('out-*')))}.xml"
    subprocess.run([sys.executable, "-m", "robot", "--output", str(out), "--log", "NONE", "--report", "NONE",
                    *args, str(tmp_path / "things.robot")], capture_output=True, timeout=120, check=False)  # fmt: skip
    return ExecutionResult(str(out)), out


def test_only_the_failed_tests_run_again(tmp_path: Path) -> None:
    (tmp_path / "things.robot").write_text(SUITE, encoding="utf-8")
    first, first_xml = _robot(tmp_path)
    assert [t.name for t in first.suite.tests] == ["Over 5 Things", "Over 5 Other Things", "Plain Failure"]
    again, _ = _robot(tmp_path, "--prerunmodifier", f"{LIBRARIES / 'RerunFailed.py'}:{first_xml}")
    # "Over 5 Other Things" also fits "Over ${N} Things": the name with more literal text wins
    assert [t.name for t in again.suite.tests] == ["Over 5 Other Things", "Plain Failure"]
