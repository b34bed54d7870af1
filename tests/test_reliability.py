"""Reliability checkers: bus integrity counting, torn run-info detection, SSE delivery, fail-fast faults."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from conductor_perf import faults
from conductor_perf.bench import bus_bench, reliability
from conductor_perf.formats import bus, runs
from conductor_perf.measure import load
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread
from conductor_perf.target import EMBEDDED, EXTERNAL, Target, start_embedded

# ------------------------------------------------------------------------------ bus integrity


def _bench(writer: int, seq: int, run_id: str | None = None) -> bus.Message:
    return bus.Message(type="FACT", project_id="p", task_id="t", run_id=run_id or f"writer-{writer}",
                       body=bus_bench.body_for(writer, seq))  # fmt: skip


def test_count_bodies_separates_benchmark_garbled_and_foreign() -> None:
    seen, garbled, foreign = reliability.count_bodies(
        [
            "perf test message w0 #0",
            "perf test message w0 #0",
            "perf test message w1 #7\n",
            "perf test message w1 #",
            "run started",
        ]  # fmt: skip
    )
    assert seen == {(0, 0): 2, (1, 7): 1}
    assert (garbled, foreign) == (1, 1)


def test_scan_bus_counts_duplicates_torn_and_foreign(tmp_path: Path) -> None:
    path = tmp_path / "TASK-MESSAGE-BUS.md"
    for w, s in ((0, 0), (0, 1), (1, 0), (1, 0)):  # (1, 0) twice: a duplicate
        bus.append(path, _bench(w, s))
    bus.append(path, _bench(2, 0, run_id="writer-9"))  # another writer's run id: torn
    bus.append(path, bus.Message(type="RUN_START", project_id="p", task_id="t", body="run started"))
    with open(path, "ab") as fh:  # a header cut short by a crash: the reader drops it
        fh.write(b"---\nmsg_id: MSG-20260101-000000-000000000-PID1-0001\nts: 2026-01-")
    seen, torn, foreign, parsed = reliability.scan_bus(path)
    assert seen == {(0, 0): 1, (0, 1): 1, (1, 0): 2}
    assert foreign == 1
    assert torn == 2
    assert parsed == 6


def test_file_contention_of_several_processes_loses_nothing(tmp_path: Path) -> None:
    c = reliability.bus_contention_file(
        tmp_path / "bus.md", writers=4, duration=0.3, max_messages_per_writer=300
    )
    assert c.written > 0 and c.processes == 4
    assert (c.lost, c.duplicated, c.torn) == (0, 0, 0)
    assert c.found == c.written == c.parsed
    assert c.ok and "lost 0" in c.message()


def test_http_contention_checks_the_api_and_the_file(tmp_path: Path) -> None:
    with ServerThread(ReferenceConfig(root=tmp_path / "root", log_file=tmp_path / "log")) as srv:
        target = Target(kind=EXTERNAL, url=srv.url, root=tmp_path / "root")
        c = reliability.bus_contention_http(target, writers=4, processes=2, duration=0.3)
    assert c.written > 0 and c.errors == 0
    assert (c.lost, c.duplicated, c.torn) == (0, 0, 0)
    assert c.api_count == c.parsed == c.found
    assert c.ok and not c.notes


# ------------------------------------------------------------------------------ run-info atomicity


def _stamped(version: int) -> str:
    info = runs.RunInfo(run_id="20260101-0000000000-1-1", project_id="p", task_id="t", agent="codex",
                        start_time_ns=1_700_000_000_000_000_000)  # fmt: skip
    reliability.stamp_version(info, version)
    return info.to_yaml()


def test_a_whole_version_is_not_torn() -> None:
    assert reliability.check_run_info_text(_stamped(0)) == ""
    assert reliability.check_run_info_text(_stamped(12345)) == ""


def test_every_cut_short_file_is_detected() -> None:
    text = _stamped(41)
    step = 7  # every 7th prefix: covers every key and the middle of the long cwd
    for cut in list(range(0, len(text) - 1, step)) + [len(text) - 1]:
        assert reliability.check_run_info_text(text[:cut]) != "", f"a file cut at {cut} bytes passed"


def test_a_file_mixing_two_versions_is_torn() -> None:
    old, new = _stamped(41), _stamped(42)
    half = len(old) // 2
    reason = reliability.check_run_info_text(new[:half] + old[half:])
    assert reason.startswith("torn"), reason


def test_garbage_is_unparsable() -> None:
    assert reliability.check_run_info_text("").startswith("unparsable")
    assert reliability.check_run_info_text("- a\n- list\n").startswith("unparsable")
    assert reliability.check_run_info_text("version: 1\n").startswith("unparsable")


def test_atomic_updates_under_readers_lose_nothing(tmp_path: Path) -> None:
    r = reliability.run_info_atomicity(tmp_path, readers=2, writers=2, min_reads=3000, max_duration=20)
    assert r.reads >= 3000
    assert r.writes > 0
    assert (r.torn, r.unparsable, r.lost_updates) == (0, 0, 0), r.samples
    assert "torn 0" in r.message()


# ------------------------------------------------------------------------------ SSE delivery


def test_judge_delivery_counts_missing_duplicates_and_order() -> None:
    expected = ["a", "b", "c", "d"]
    assert reliability.judge_delivery("s", expected, ["a", "b", "c", "d"]).complete
    d = reliability.judge_delivery("s", expected, ["a", "c", "b", "b", "x"])
    assert (d.received, d.missing, d.duplicated, d.out_of_order) == (4, 1, 1, 1)
    assert not d.complete


@pytest.fixture
def srv(tmp_path: Path):
    cfg = ReferenceConfig(root=tmp_path / "root", heartbeat_interval_s=30, log_file=tmp_path / "log")
    with ServerThread(cfg) as s:
        yield s


def test_burst_reaches_every_subscriber_and_the_slow_one(srv: ServerThread, tmp_path: Path) -> None:
    target = Target(kind=EXTERNAL, url=srv.url, root=tmp_path / "root")
    b = reliability.sse_burst(target, target.root, lines=300, subscribers=3, slow=1, backlog=2000, timeout=20)
    assert [d.received for d in b.fast] == [300, 300, 300]
    assert b.lost == 0 and b.out_of_order == 0
    assert b.slow[0].received == 300 and not b.slow[0].ended_early
    assert b.latency["count"] == 900
    info = runs.read_run_info(next(runs.iter_run_info_paths(target.root)))
    assert info.status == runs.STATUS_COMPLETED  # the synthetic run is finished afterwards


def test_resume_across_a_restart_replays_the_lines_written_while_down(tmp_path: Path) -> None:
    root = tmp_path / "root"
    servers = [ServerThread(ReferenceConfig(root=root, log_file=tmp_path / "log")).start()]
    target = Target(kind=EXTERNAL, url=servers[0].url, root=root)

    def kill() -> None:
        servers[-1].stop()

    def start() -> Target:
        port = servers[-1].running.port
        servers.append(ServerThread(ReferenceConfig(root=root, port=port, log_file=tmp_path / "log")).start())
        return Target(kind=EXTERNAL, url=servers[-1].url, root=root)

    try:
        r = reliability.sse_resume_across_restart(target, root, kill=kill, start=start, before=20, during=30,
                                                  after=10, timeout=20)  # fmt: skip
    finally:
        servers[-1].stop()
    assert r.delivery.complete, r.message()
    assert r.delivery.received == 60 and r.replayed == 30
    assert r.last_event_id == "s=20;e=0"


# ------------------------------------------------------------------------------ faults


def _dummy_sut() -> Target:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return Target(kind=EMBEDDED, url="http://127.0.0.1:9/", pid=proc.pid, process=proc)


def test_a_blocking_body_is_interrupted_soon_after_the_sut_dies() -> None:
    target = _dummy_sut()
    kills: list[float] = []
    timer = faults.kill_later(target, 0.3, on_kill=kills.append)
    started = time.monotonic()
    with pytest.raises(faults.SutDown) as err:
        with faults.fail_fast_if_sut_dies(target, poll_s=0.05):
            time.sleep(20)
    assert time.monotonic() - started < 18  # the body would sleep 20 s (the margin is for a loaded machine)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("conductor died: embedded conductor") and "SIGKILL" in message
    assert kills == [timer.killed_at] and kills[0] is not None  # the caller learns when it killed


def test_a_load_run_in_worker_processes_is_stopped_when_the_sut_dies(srv: ServerThread) -> None:
    target = _dummy_sut()
    faults.kill_later(target, 1.0)
    started = time.monotonic()
    with pytest.raises(faults.SutDown):
        with faults.fail_fast_if_sut_dies(target, poll_s=0.05):
            load.run_closed(srv.url, "/api/v1/health", workers=2, processes=2, duration=30)
    assert time.monotonic() - started < 25  # the load would run 30 s (the margin is for a loaded machine)
    deadline = time.monotonic() + 20  # the workers are stopped; a loaded machine reaps them late
    while [p for p in __import__("multiprocessing").active_children() if p.is_alive()] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in __import__("multiprocessing").active_children() if p.is_alive()]


def test_an_asyncio_load_in_this_thread_is_stopped_when_the_sut_dies(srv: ServerThread) -> None:
    target = _dummy_sut()
    faults.kill_later(target, 0.5)
    started = time.monotonic()
    with pytest.raises(faults.SutDown):
        with faults.fail_fast_if_sut_dies(target, poll_s=0.05):
            load.run_closed(srv.url, "/api/v1/health", workers=2, duration=30)
    assert time.monotonic() - started < 25  # the load would run 30 s (the margin is for a loaded machine)


def test_a_healthy_sut_lets_the_body_finish_and_stray_signals_are_harmless() -> None:
    target = _dummy_sut()
    try:
        with faults.fail_fast_if_sut_dies(target, poll_s=0.05) as watch:
            time.sleep(0.2)
        assert watch.reason is None
        os.kill(os.getpid(), faults.INTERRUPT_SIGNAL)  # the handler stays installed and ignores it
        time.sleep(0.05)
    finally:
        target.process.kill()  # type: ignore[union-attr]
        target.process.wait()  # type: ignore[union-attr]
    assert not [t for t in threading.enumerate() if t.name == "conductor-perf-watchdog"]


def test_from_another_thread_the_error_comes_when_the_body_returns() -> None:
    target = _dummy_sut()
    errors: list[BaseException] = []

    def body() -> None:
        try:
            with faults.fail_fast_if_sut_dies(target, poll_s=0.05):
                faults.kill_sut(target)
                time.sleep(0.5)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    t = threading.Thread(target=body)
    t.start()
    t.join(10)
    assert len(errors) == 1 and isinstance(errors[0], faults.SutDown)


def test_down_reason_of_an_external_sut_names_the_refusal() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    reason = faults.down_reason(Target(kind=EXTERNAL, url=f"http://127.0.0.1:{port}/"))
    assert reason is not None and "not reachable" in reason
    assert not faults.is_down(Target(kind=EXTERNAL, url=f"http://127.0.0.1:{port}/"))


def test_kill_and_restart_refuse_an_external_sut_naming_the_capability() -> None:
    with pytest.raises(faults.TargetError, match="cannot kill this SUT: the SUT lacks the capability 'can_restart'"):
        faults.kill_sut(Target(kind=EXTERNAL, url="http://127.0.0.1:9/"))
    with pytest.raises(faults.TargetError, match="cannot restart this SUT: the SUT lacks the capability 'can_restart'"):
        faults.restart_sut(Target(kind=EXTERNAL, url="http://127.0.0.1:9/"))


def test_restart_after_a_kill_keeps_the_root_and_the_port(tmp_path: Path) -> None:
    old = start_embedded(root=tmp_path / "root", log_dir=tmp_path)
    new = None
    try:
        (old.root / "marker").write_text("kept")  # type: ignore[operator]
        faults.kill_sut(old)
        assert faults.is_down(old)
        assert faults.down_reason(old) == f"embedded conductor (pid {old.pid}) was killed by SIGKILL"
        new = faults.restart_sut(old)
        assert new.pid != old.pid and new.port == old.port and new.root == old.root
        assert (new.root / "marker").read_text() == "kept"  # type: ignore[operator]
        assert faults.down_reason(new) is None
    finally:
        for t in (old, new):
            if t is not None:
                t.stop()


def test_interrupt_signal_is_not_one_robot_or_pabot_uses() -> None:
    assert faults.INTERRUPT_SIGNAL not in (signal.SIGALRM, signal.SIGINT, signal.SIGTERM)
