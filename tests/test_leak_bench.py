"""Leak bench: verdicts per resource, idle points, and the whole method on the reference conductor.

The end-to-end tests run a small workload (1 agent, 30 messages, 2 SSE clients) for a warm-up and
6 cycles against (a) the normal embedded conductor, which must be judged ``ok``, and (b) the same
server started with the hidden ``--debug-leak-kb 256`` test double, which keeps 256 KiB per request
(about 9 MB a cycle) and must be judged ``leak`` on memory. Sizes are far apart from the
tolerance on both sides, so the verdicts do not depend on the machine's speed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import psutil
import pytest

from conductor_perf.bench import leak_bench
from conductor_perf.bench.agent_tasks import AgentTaskError
from conductor_perf.bench.leak_bench import LeakTolerances, Workload
from conductor_perf.measure.monitor import MIB
from conductor_perf.target import Target, start_embedded

SMALL = Workload(agents=1, agent_work_ms=50, agent_lines=2, messages=30, message_writers=2, sse_clients=2,
                 sse_events=5, api_reads=3, timeout_s=30)  # fmt: skip
TOLERANCES = LeakTolerances(memory_mb=3.0, threads=2, open_fds=4, tcp_connections=2)
LEAK_KIB = 256


def _sample(uss_mb: float | None, threads: int = 5, fds: int = 10, tcp: int = 1) -> dict:
    return {"rss_bytes": int(40 * MIB), "uss_bytes": None if uss_mb is None else int(uss_mb * MIB),
            "pss_bytes": None, "threads": threads, "open_fds": fds, "tcp_connections": tcp}  # fmt: skip


# -- pure parts ----------------------------------------------------------------------------


def test_memory_basis_prefers_uss_then_pss_then_rss():
    assert leak_bench.memory_basis({"uss_bytes": 1, "pss_bytes": 2, "rss_bytes": 3}) == "uss"
    assert leak_bench.memory_basis({"uss_bytes": None, "pss_bytes": 2, "rss_bytes": 3}) == "pss"
    assert leak_bench.memory_basis({"uss_bytes": None, "pss_bytes": None, "rss_bytes": 3}) == "rss"


def test_resource_values_in_mb_and_counts():
    values = leak_bench.resource_values(_sample(12.5, threads=7, fds=11, tcp=2))
    assert values == {"memory": 12.5, "threads": 7, "goroutines": None, "open fds": 11, "tcp connections": 2}
    assert leak_bench.resource_values(_sample(None), "rss")["memory"] == 40.0


def test_a_go_builds_trace_gives_goroutines_and_its_busy_threads_stand_for_threads():
    """The Go runtime parks the threads it made: a rising high-water mark of them is no leak."""
    base = leak_bench.resource_values({**_sample(30.0, threads=12), "busy_threads": 5, "goroutines": 20})
    points = [leak_bench.resource_values({**_sample(30.0, threads=12 + i), "busy_threads": 5, "goroutines": 20})
              for i in range(1, 7)]  # fmt: skip
    verdicts = leak_bench.leak_verdicts(base, points, TOLERANCES)
    assert points[0]["threads"] == 5 and points[0]["goroutines"] == 20
    assert not verdicts["threads"].leaked and not verdicts["goroutines"].leaked
    leaking = [leak_bench.resource_values({**_sample(30.0), "busy_threads": 5, "goroutines": 20 + 4 * i})
               for i in range(1, 7)]  # fmt: skip
    assert leak_bench.leak_verdicts(base, leaking, TOLERANCES)["goroutines"].leaked


def test_flat_idle_points_are_ok_and_a_growing_one_leaks():
    base = leak_bench.resource_values(_sample(30.0))
    flat = [leak_bench.resource_values(_sample(30.0 + d)) for d in (0.1, -0.2, 0.3, 0.0, 0.2, -0.1)]
    verdicts = leak_bench.leak_verdicts(base, flat, TOLERANCES)
    assert set(verdicts) == {"memory", "threads", "open fds", "tcp connections"}
    assert all(not v.leaked for v in verdicts.values())

    growing = [leak_bench.resource_values(_sample(30.0 + 2.0 * i, threads=5 + i)) for i in range(1, 7)]
    verdicts = leak_bench.leak_verdicts(base, growing, TOLERANCES)
    assert verdicts["memory"].leaked and "trend" in verdicts["memory"].reasons
    assert verdicts["threads"].leaked
    assert not verdicts["open fds"].leaked and not verdicts["tcp connections"].leaked
    assert verdicts["memory"].slope_per_cycle == pytest.approx(2.0)


def test_a_level_that_does_not_return_to_the_baseline_leaks():
    base = leak_bench.resource_values(_sample(30.0))
    # one step up after the warm-up, flat afterwards: no trend, but 5 MB above the baseline
    stepped = [leak_bench.resource_values(_sample(35.0)) for _ in range(6)]
    v = leak_bench.leak_verdicts(base, stepped, TOLERANCES)["memory"]
    assert v.leaked and v.reasons == ["no-return"]


def test_history_allowance_widens_only_the_memory_tolerance():
    tol = LeakTolerances(memory_mb=3.0, memory_per_run_kb=16.0)
    assert tol.of("memory") == 3.0 and tol.of("memory", 64) == 4.0 and tol.of("threads", 64) == 2.0
    base = leak_bench.resource_values(_sample(30.0))
    # +0.7 MB a cycle: 3.5 MB over 6 cycles, above 3 MB without the allowance, below 4 MB with 64 runs of it
    points = [leak_bench.resource_values(_sample(30.0 + 0.7 * i)) for i in range(1, 7)]
    assert leak_bench.leak_verdicts(base, points, tol)["memory"].leaked
    assert not leak_bench.leak_verdicts(base, points, tol, runs_created=64)["memory"].leaked


def test_missing_values_are_left_out_of_the_series():
    base = {"memory": 30.0, "threads": 5, "open fds": 10, "tcp connections": None}
    points = [{"memory": 30.0, "threads": 5, "open fds": 10, "tcp connections": None} for _ in range(6)]
    verdicts = leak_bench.leak_verdicts(base, points, TOLERANCES)
    assert "tcp connections" not in verdicts and not verdicts["memory"].leaked


def test_workload_validation_and_request_count():
    assert Workload(agents=3, messages=200, sse_clients=5, api_reads=20).requests_per_cycle == 229
    with pytest.raises(ValueError):
        Workload(messages=-1)
    with pytest.raises(ValueError):
        Workload(message_writers=0)


def test_too_few_cycles_and_no_pid_are_refused():
    target = Target(kind="external", url="http://127.0.0.1:1/", pid=None)
    with pytest.raises(ValueError, match="at least 3"):
        leak_bench.run_leak_cycles(target, 2)
    with pytest.raises(ValueError, match="not visible"):
        leak_bench.run_leak_cycles(target, 6)


def test_wait_until_quiet_sees_children_end():
    code = ("import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(0.5)']); "
            "print('spawned', flush=True); g.wait()")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spawned"
        assert leak_bench.wait_until_quiet(child.pid, timeout=0.05) is False  # the grandchild still sleeps
        assert leak_bench.wait_until_quiet(child.pid, timeout=10) is True
    finally:
        child.wait(timeout=10)
        child.stdout.close()
    with pytest.raises(ProcessLookupError):
        leak_bench.wait_until_quiet(child.pid, timeout=1)


def test_an_idle_point_that_never_gets_quiet_names_the_processes_left():
    code = ("import subprocess, sys; g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)']); "
            "print('spawned', flush=True); g.wait()")  # fmt: skip
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "spawned"
        sample = leak_bench.idle_point(child.pid, idle_s=60, quiet_timeout=0.1, cpu_window=0.05)
        assert sample["quiet"] is False and len(sample["agents_left"]) == 1
        assert "time.sleep(30)" in sample["agents_left"][0]
    finally:
        for p in psutil.Process(child.pid).children(recursive=True):
            p.kill()
        child.wait(timeout=10)
        child.stdout.close()


def test_the_first_failing_cycle_ends_the_run(monkeypatch):
    target = Target(kind="external", url="http://127.0.0.1:1/", pid=os.getpid())
    calls = []

    def cycle(target, workload, index):
        calls.append(index)
        errors = ["agents: 0 of 1 completed (1 unfinished)"] if index == 1 else []
        return leak_bench.CycleReport(index=index, warmup=index == 0, t_s=0.0, workload_s=0.1, agents_completed=1,
                                      messages_ok=0, sse_events=0, api_reads_ok=0, errors=errors)  # fmt: skip

    monkeypatch.setattr(leak_bench, "run_cycle", cycle)
    monkeypatch.setattr(leak_bench, "idle_point", lambda pid, **kw: {**_sample(30.0), "quiet": True})
    run = leak_bench.run_leak_cycles(target, 6, workload=SMALL, idle_s=0)
    assert calls == [0, 1] and len(run.cycles) == 1
    assert run.workload_errors == ["cycle 1: agents: 0 of 1 completed (1 unfinished)"]


def test_a_server_whose_agents_never_finish_fails_the_first_cycle(tmp_path):
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=["--agent-env", "early"])
    try:
        started = time.monotonic()
        with pytest.raises(AgentTaskError, match="the server gave the agent neither JRUN_TASK_FOLDER nor TASK_FOLDER"):
            leak_bench.run_leak_cycles(target, 6, workload=SMALL, tolerances=TOLERANCES, idle_s=0.3)
        assert time.monotonic() - started < SMALL.timeout_s
        assert leak_bench.wait_until_quiet(target.pid, timeout=10)  # the stopped tasks start no new agent
    finally:
        target.stop()


# -- end to end on the reference conductor -------------------------------------------------------


def _leak_run(tmp_path, extra_args: list[str]) -> leak_bench.LeakRun:
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=extra_args)
    try:
        return leak_bench.run_leak_cycles(target, 6, workload=SMALL, tolerances=TOLERANCES, idle_s=0.3)
    finally:
        target.stop()


@pytest.mark.timeout(60)
def test_the_reference_conductor_does_not_leak(tmp_path):
    run = _leak_run(tmp_path, [])
    assert not run.workload_errors, run.workload_errors
    assert len(run.cycles) == 6 and run.baseline.warmup
    assert run.cycles[0].sse_events == SMALL.sse_clients * SMALL.sse_events
    assert run.cycles[0].messages_ok == SMALL.messages and run.cycles[0].agents_completed == 1
    assert run.leaking == [], [v.message for v in run.verdicts.values()]
    rows = leak_bench.verdict_table(run)
    assert [r["resource"] for r in rows] == ["memory", "threads", "open fds", "tcp connections"]
    assert run.to_dict()["leaking"] == []


@pytest.mark.timeout(60)
def test_the_leaking_test_double_is_flagged(tmp_path):
    run = _leak_run(tmp_path, ["--debug-leak-kb", str(LEAK_KIB)])
    assert not run.workload_errors, run.workload_errors
    assert "memory" in run.leaking, run.verdicts["memory"].message
    v = run.verdicts["memory"]
    expected_mb = SMALL.requests_per_cycle * LEAK_KIB / 1024
    # the double keeps what it was told to keep, give or take the allocator (never machine speed)
    assert 0.5 * expected_mb < v.slope_per_cycle < 2 * expected_mb
    assert v.p_value < 0.05 and "no-return" in v.reasons
    assert "threads" not in run.leaking
