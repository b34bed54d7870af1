"""swarm/runner.py: tiny real swarms (pabot worker processes, a PabotLib server, the embedded conductor).

What is asserted does not depend on machine speed: the swarm's structure (every worker reported,
the merged count is the sum of the workers', nothing lost) and the failures named, never whether
a rate target was met on this machine now.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from conductor_perf.swarm import runner

pytestmark = pytest.mark.timeout(300)


WINDOW_S = 1
"""The swarms' window (the coordinator's BUS_DURATION): what is asserted does not depend on its length."""


def _swarm(tmp_path: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "conductor_perf.swarm", *args, "--results", str(tmp_path), "--",
                           "--variable", f"BUS_DURATION:{WINDOW_S} s"],
                          capture_output=True, text=True, timeout=timeout, cwd=runner.REPO)  # fmt: skip


def _metrics(run_dir: Path) -> dict[str, dict]:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {m["metric"]: m for m in data["metrics"]}


def _messages(output: Path) -> list[str]:
    root = ET.parse(output).getroot()
    return [s.text or "" for s in root.iter("status") if s.get("status") == "FAIL" and (s.text or "").strip()]


def test_preflight_names_the_bad_option() -> None:
    parser = runner._parser()
    args = parser.parse_args(["run", "--scenario", "nope"])
    assert "unknown scenario 'nope'" in runner.preflight(args)
    args = parser.parse_args(["run", "--workers", "3", "--local-workers", "4"])
    assert "--local-workers must be within 0..3" in runner.preflight(args)
    args = parser.parse_args(["run", "--pabotlib", "somewhere"])
    assert "host:port" in runner.preflight(args)
    args = parser.parse_args(["run", "--url", "http://10.1.2.3:80/"])
    assert runner.preflight(args)  # only loopback SUTs


def test_argument_files_name_each_worker_and_the_board(tmp_path: Path) -> None:
    files = runner.argument_files(tmp_path, ["w01", "w02"], board="127.0.0.2:8270", run="r1", scenario="bus",
                                  host="h")  # fmt: skip
    text = files[1].read_text()
    assert "--variable SWARM_WORKER:w02" in text and "--variable PABOTLIBURI:127.0.0.2:8270" in text
    assert "--name Bus Worker w02" in text
    cmd = runner.pabot_command(runner.suite_file("bus-http"), tmp_path, files, board="127.0.0.2:8270",
                               variables={"CONDUCTOR_URL": "http://127.0.0.1:1/", "CONDUCTOR_ROOT": ""}, timeout_s=60)  # fmt: skip
    assert cmd[cmd.index("--processes") + 1] == "2"
    assert cmd[cmd.index("--pabotlibhost") + 1] == "127.0.0.2" and cmd[cmd.index("--pabotlibport") + 1] == "8270"
    assert "--argumentfile2" in cmd and cmd[-1].endswith("swarm/bus_http.robot")
    assert "CONDUCTOR_ROOT:" not in " ".join(cmd)


def test_tiny_bus_swarm_merges_every_worker_exactly(tmp_path: Path) -> None:
    proc = _swarm(tmp_path, "--scenario", "bus", "--workers", "2", "--profile", "quick")
    run_dir = next(tmp_path.glob("swarm-2*"))
    assert (run_dir / "log.html").exists(), proc.stdout + proc.stderr
    metrics = _metrics(run_dir)
    assert metrics["swarm workers reported"]["value"] == 2, proc.stdout
    rate = metrics["swarm bus write throughput"]
    per_worker = rate["extra"]["per_worker"]
    assert sorted(per_worker) == ["w01", "w02"]
    total = sum(w["messages"] for w in per_worker.values())
    assert total > 0
    assert rate["value"] == pytest.approx(total / WINDOW_S)
    for name in ("swarm bus messages lost", "swarm bus messages duplicated", "swarm bus messages torn"):
        assert metrics[name]["value"] == 0
        assert metrics[name]["extra"]["found"] == total
    workers = ET.parse(run_dir / "workers" / "output.xml").getroot()
    assert sorted(s.get("name") for s in workers.iter("suite") if s.get("source")) == ["Bus Worker w01",
                                                                                       "Bus Worker w02"]  # fmt: skip
    assert not list(run_dir.glob("sut-*/root")), "the SUT's runs root (the workers' bus files) is scratch"
    assert list(run_dir.glob("sut-*/conductor.log*")), "the SUT's log stays"
    assert "run directory" in proc.stdout and "removed 1 scratch folder(s)" in proc.stdout


def _board(host: str) -> tuple[subprocess.Popen, int]:
    with socket.socket() as s:
        s.bind((host, 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "pabot.pabotlib", "", host, str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    return proc, port


def _join(tmp_path: Path, board: str, *args: str) -> tuple[threading.Thread, list]:
    out: list[subprocess.CompletedProcess[str]] = []
    thread = threading.Thread(target=lambda: out.append(subprocess.run(
        [sys.executable, "-m", "conductor_perf.swarm", "join", "--pabotlib", board, *args,
         "--results", str(tmp_path / "b")], capture_output=True, text=True, timeout=240, cwd=runner.REPO)))  # fmt: skip
    thread.start()
    return thread, out


def test_two_hosts_on_one_pabotlib_server_merge_exactly(tmp_path: Path) -> None:
    """Two pabot invocations as two hosts: a PabotLib server on 127.0.0.2 on its own, the SUT on 127.0.0.1."""
    board, port = _board("127.0.0.2")
    try:
        thread, joined = _join(tmp_path, f"127.0.0.2:{port}", "--workers", "1", "--host-label", "host-b")
        proc = _swarm(tmp_path, "--scenario", "bus-http", "--workers", "2", "--local-workers", "1",
                      "--pabotlib", f"127.0.0.2:{port}", "--profile", "quick")  # fmt: skip
        thread.join(timeout=240)
    finally:
        board.kill()
        board.wait(timeout=10)
    run_dir = next(tmp_path.glob("swarm-2*"))
    metrics = _metrics(run_dir)
    reported = metrics["swarm workers reported"]
    assert reported["value"] == 2, proc.stdout + proc.stderr
    assert reported["extra"]["hosts"]["w02"] == "host-b" and reported["extra"]["hosts"]["w01"] != "host-b"
    rate = metrics["swarm message posting rate"]
    per_worker = rate["extra"]["per_worker"]
    assert sorted(per_worker) == ["w01", "w02"] and all(w["ok"] > 0 for w in per_worker.values())
    ok = [per_worker["w01"]["ok"], per_worker["w02"]["ok"]]
    log = (run_dir / "coordinator" / "output.xml").read_text()
    assert f"merged 2 of 2 reports: {sum(ok)} ok = w01 {ok[0]} + w02 {ok[1]}" in log  # merged = sum of the workers'
    assert joined and joined[0].returncode == 0, joined[0].stdout[-2000:] if joined else "join did not finish"
    assert list((tmp_path / "b").glob("swarm-*-join-host-b/output.xml"))


def test_worker_that_cannot_reach_the_sut_calls_the_swarm_off_naming_it(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # nothing listens here
    board, board_port = _board("127.0.0.1")
    try:
        join, joined = _join(tmp_path, f"127.0.0.1:{board_port}", "--workers", "1", "--host-label", "host-b",
                             "--url", f"http://127.0.0.1:{dead}/")  # fmt: skip
        proc = _swarm(tmp_path, "--scenario", "bus-http", "--workers", "2", "--local-workers", "1",
                      "--pabotlib", f"127.0.0.1:{board_port}", "--barrier-timeout", "60", "--profile", "quick")  # fmt: skip
        join.join(timeout=240)
    finally:
        board.kill()
        board.wait(timeout=10)
    assert proc.returncode != 0
    run_dir = next(tmp_path.glob("swarm-2*"))
    text = " ".join(_messages(run_dir / "coordinator" / "output.xml"))
    assert "worker w02 (on host-b) failed before the start: cannot reach the SUT" in text, text
    assert f"127.0.0.1:{dead}" in text
    assert joined and joined[0].returncode != 0
    local = " ".join(_messages(run_dir / "workers" / "output.xml"))
    assert "w01" in local and "called off" in local, local
    assert _metrics(run_dir)["swarm workers at the start barrier"]["verdict"] == "fail"


def test_join_without_a_pabotlib_server_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.run([sys.executable, "-m", "conductor_perf.swarm", "join", "--pabotlib", f"127.0.0.1:{port}",
                           "--workers", "1", "--wait", "0.5", "--results", str(tmp_path)], capture_output=True,
                          text=True, timeout=60, cwd=runner.REPO)  # fmt: skip
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"cannot reach PabotLib at 127.0.0.1:{port}" in lines[0], proc.stderr
