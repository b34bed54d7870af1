"""Goroutines of a Go server: parsing a captured SIGQUIT dump, and the dump taken under load from a real build."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from conftest import real_binary

from conductor_perf.bench import goroutine_bench
from conductor_perf.binary import start_binary
from conductor_perf.measure.goroutines import (
    GoroutineDumpError,
    goroutine_dump,
    has_schedtrace,
    log_size,
    next_sched_snapshot,
    parse_goroutine_dump,
    parse_schedtrace,
)
from conductor_perf.target import http_json, start_embedded

DUMP = Path(__file__).parent / "fixtures" / "goroutines" / "sigquit-dump.txt"
MODULE = "github.com/jonnyzzz/conductor-loop"


def test_a_captured_dump_counts_every_goroutine_with_its_state() -> None:
    text = DUMP.read_text(encoding="utf-8")
    dump = parse_goroutine_dump(text)
    assert dump.count == 57 == text.count("\ngoroutine ")
    assert dump.states["select"] == 16 and dump.states["IO wait"] == 8 and dump.states["GC worker (idle)"] == 2
    assert sum(dump.states.values()) == 57
    assert list(dump.states)[0] == "select"  # largest first
    # "[select, 1 minutes, locked to thread]" counts as select
    assert dump.runtime == 9
    # 8 stub agents were running: each has its own waiter goroutines
    assert dump.entry_functions[f"{MODULE}/internal/runner.waitForProcessWithIdleOutputTimeout.func1"] == 8
    assert dump.entry_functions["net/http.(*Server).Serve.gowrap3"] == 7


def test_only_the_last_dump_of_a_log_counts() -> None:
    one = DUMP.read_text(encoding="utf-8")
    older = "SIGQUIT: quit\n\ngoroutine 1 [running]:\nmain.main()\n\t/x/main.go:3 +0x1\n\n"
    assert parse_goroutine_dump(older + "some log line\n" + one).count == 57
    assert parse_goroutine_dump(older).count == 1


def test_states_with_waits_and_old_headers_parse() -> None:
    text = ("goroutine 7 [chan receive, 3 minutes]:\nmain.worker(0x1)\n\t/x/w.go:9 +0x2\ncreated by main.main in goroutine 1\n"
            "\t/x/main.go:5 +0x3\n\ngoroutine 9 gp=0x1 m=nil [select, 1 minutes, locked to thread]:\n"
            "runtime.gopark(0x0)\n\t/go/proc.go:1 +0x1\nruntime.ensureSigM.func1()\n\t/go/signal.go:2 +0x2\n"
            "runtime.goexit({})\n\t/go/asm.s:3 +0x1\n")  # fmt: skip
    dump = parse_goroutine_dump(text)
    assert (dump.count, dump.states) == (2, {"chan receive": 1, "select": 1})
    assert dump.entry_functions == {"main.worker": 1, "runtime.ensureSigM.func1": 1}
    assert dump.runtime == 1


def test_text_without_goroutines_is_refused() -> None:
    with pytest.raises(ValueError, match="no goroutine header"):
        parse_goroutine_dump("panic: something else\n")


def test_a_dump_of_a_process_that_is_gone_or_writes_none_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "err.log"
    log.write_text("")
    with open(log, "ab") as err:
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"], stderr=err)
    try:
        with pytest.raises(GoroutineDumpError, match=r"status -3 after SIGQUIT but .* holds no goroutine dump"):
            goroutine_dump(proc.pid, log, timeout=2)
    finally:
        proc.kill()
        proc.wait()
    with pytest.raises(GoroutineDumpError, match="no process"):
        goroutine_dump(proc.pid, log, timeout=1)
    with pytest.raises(GoroutineDumpError, match="does not exist"):
        goroutine_dump(psutil.Process().pid, tmp_path / "missing.log", timeout=1)


def test_a_dump_that_the_process_ignores_is_killed_after_the_timeout(tmp_path: Path) -> None:
    log = tmp_path / "err.log"
    log.write_text("")
    code = "import signal, time; signal.signal(signal.SIGQUIT, signal.SIG_IGN); print(flush=True); time.sleep(60)"
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline()  # the handler is installed
    with pytest.raises(GoroutineDumpError, match=r"did not exit within 0.5 s of SIGQUIT \(killed\)"):
        goroutine_dump(proc.pid, log, timeout=0.5)
    proc.wait(timeout=5)
    proc.stdout.close()
    assert not psutil.pid_exists(proc.pid)


@pytest.mark.timeout(120)
def test_a_real_server_dumps_its_goroutines_at_the_peak_of_a_load(start_real_server) -> None:
    target = start_real_server()
    tree = psutil.Process(target.pid)
    peak = goroutine_bench.goroutines_under_load(target, target.log_path, agents=4, sse_clients=2, connections=3,
                                                 dump_after_s=1.0, timeout=30)  # fmt: skip
    assert not peak.errors, peak.errors
    assert (peak.agents_running, peak.sse_connected, peak.connections) == (4, 2, 3)
    assert peak.requests_before_dump > 0
    assert peak.reading.exit_status == 2
    # an idle run-agent serve has ~16; 4 agents, 2 streams and 3 connections add their goroutines
    assert peak.reading.count > 16 + 4
    assert peak.reading.entry_functions.get(f"{MODULE}/internal/runner.waitForProcessWithIdleOutputTimeout.func1") == 4
    assert not tree.is_running()
    # the stub agents went with the server
    assert not [p for p in psutil.process_iter(["environ"]) if (p.info["environ"] or {}).get("HOME", "").startswith(
        str(target.root.parent))]  # fmt: skip


@pytest.mark.timeout(120)
def test_a_reading_at_the_peak_of_the_same_load_leaves_a_live_server_without_the_loads_agents(tmp_path: Path) -> None:
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path)
    try:
        seen: list[int] = []

        def read() -> int:
            status, body = http_json(target.endpoint("/api/v1/debug/runtime"))
            assert status == 200 and isinstance(body, dict)
            seen.append(int(body["asyncio_tasks"]))
            return seen[-1]

        peak = goroutine_bench.at_peak_of_load(target, read, agents=3, sse_clients=2, connections=2,
                                               dump_after_s=0.5, timeout=30)  # fmt: skip
        assert not peak.errors, peak.errors
        assert peak.reading == seen[0] and peak.agents_running == 3 and peak.sse_connected == 2
        assert peak.to_dict()["reading"] == seen[0]
        # the agents' tasks were deleted: their runs end although they would sleep for minutes
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status, body = http_json(target.endpoint("/api/v1/runs"))
            live = [r for r in (body.get("runs") or []) if r["status"] == "running"]
            if not live:
                break
            time.sleep(0.2)
        assert not live
    finally:
        target.stop()


# -- the scheduler trace ---------------------------------------------------------------------------

SCHED_CAPTURE = Path(__file__).parent / "fixtures" / "goroutines" / "schedtrace-0.76-idle.log"


def test_a_captured_scheduler_trace_counts_live_goroutines_and_busy_threads() -> None:
    text = SCHED_CAPTURE.read_text(encoding="utf-8")
    blocks = parse_schedtrace(text)
    assert [b.at_ms for b in blocks] == [1009, 2019]
    first = blocks[0]
    assert (first.threads, first.idle_threads, first.busy_threads) == (7, 2, 5)
    assert first.goroutines == 10  # G1..G10; the three dead ones (status 6) are the runtime's free list
    assert first.states["select"] == 2 and first.states["syscall"] == 1 and first.states["IO wait"] == 1
    assert text.encode()[first.offset:].startswith(b"SCHED 1009ms:")


def test_a_block_is_counted_only_once_something_follows_it() -> None:
    head = "SCHED 5ms: gomaxprocs=2 idleprocs=1 threads=4 spinningthreads=0 idlethreads=1 runqueue=0\n"
    body = "  M0: p=nil curg=nil\n  G1: status=4(select) m=nil lockedm=nil\n  G2: status=4100(IO wait) m=nil\n"
    assert parse_schedtrace(head + body) == []  # may still be being written
    (block,) = parse_schedtrace(head + body + "server log line\n")
    assert block.goroutines == 2  # the scan bit (0x1000) on a waiting goroutine is still waiting
    assert len(parse_schedtrace(head + body + head)) == 1


def test_the_next_block_after_an_offset_is_waited_for_and_a_missing_trace_is_one_line(tmp_path: Path) -> None:
    log = tmp_path / "conductor.log"
    text = SCHED_CAPTURE.read_text(encoding="utf-8")
    log.write_text(text, encoding="utf-8")
    assert has_schedtrace(log) and not has_schedtrace(tmp_path / "none.log") and not has_schedtrace(None)
    assert next_sched_snapshot(log, 0, timeout=0.5).at_ms == 1009
    second = text.index("SCHED 2019ms")
    assert next_sched_snapshot(log, len(text[: second - 5].encode()), timeout=0.5).at_ms == 2019
    with pytest.raises(GoroutineDumpError, match=r"no scheduler trace block in .* within 0.2 s \(was the program started with GODEBUG="):
        next_sched_snapshot(log, log_size(log), timeout=0.2, poll=0.05)


def test_a_real_go_build_started_by_the_suite_prints_its_scheduler_trace(tmp_path: Path) -> None:
    binary = real_binary()
    if binary is None:
        pytest.skip("no conductor-loop build: set CONDUCTOR_BINARY or put one at ../shared/bin/run-agent")
    target = start_binary(binary, sut_dir=tmp_path / "sut")
    try:
        snap = next_sched_snapshot(target.log_path, log_size(target.log_path), timeout=10)
    finally:
        target.stop()
    assert snap.goroutines > 0 and snap.threads >= snap.busy_threads > 0
