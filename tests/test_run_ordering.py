"""The runner's pabot ordering: the acceptance suites start once every other suite is done."""

from __future__ import annotations

import argparse
from pathlib import Path

from conductor_perf import run


def test_suite_names_follow_robot(tmp_path: Path) -> None:
    for name in ("01__bus.robot", "02__bus_http.robot", "05__load_test.robot", "99__regression.robot"):
        (tmp_path / name).write_text("*** Test Cases ***\n")
    (tmp_path / "98__acceptance").mkdir()
    names = [run.suite_name(p) for p in sorted(tmp_path.iterdir())]
    assert names == ["Bus", "Bus Http", "Load Test", "Acceptance", "Regression"]
    assert run.suite_name(Path("suites/07__SSE.robot")) == "SSE"


def test_pabot_runs_the_acceptance_suites_alone_after_the_others(tmp_path: Path) -> None:
    ordering = run.pabot_ordering(tmp_path).read_text().splitlines()
    assert ordering[-2:] == ["#WAIT", "--suite Suites.Acceptance"]
    assert "--suite Suites.Bus" in ordering and "--suite Suites.Regression" in ordering
    assert ordering.count("--suite Suites.Acceptance") == 1
    assert all(line.startswith("--suite Suites.") for line in ordering if line != "#WAIT")


def test_pabot_gets_the_ordering_only_for_the_whole_suites_folder(tmp_path: Path) -> None:
    args = run._parser().parse_args(["--processes", "2"])
    cmd = run.robot_command(args, tmp_path, [])
    assert cmd[cmd.index("--ordering") + 1] == str(tmp_path / "pabot-ordering.txt")
    args = argparse.Namespace(**{**vars(args), "suites": ["suites/01__bus.robot"]})
    assert "--ordering" not in run.robot_command(args, tmp_path, [])
    single = run._parser().parse_args([])
    assert "--ordering" not in run.robot_command(single, tmp_path, [])
