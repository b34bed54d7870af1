"""swarm/board.py and swarm/protocol.py: the board (memory and a real PabotLib server), the barrier,
the exact merge of the workers' reports and the naming of every worker that failed, fell silent,
never joined or never reported. No outcome depends on machine speed: a worker that misbehaves
does so for far longer than the short timeouts given here."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import pytest

from conductor_perf.measure.histogram import LatencyHistogram
from conductor_perf.measure.workers import WorkerReport
from conductor_perf.swarm.board import BoardError, LocalBoard, PabotLibBoard, parse_uri
from conductor_perf.swarm.protocol import (
    Coordinator,
    Swarm,
    SwarmError,
    SwarmMember,
    worker_names,
)

FOREVER = 60.0


def _report(name: str, n: int) -> WorkerReport:
    h = LatencyHistogram()
    for k in range(n):
        h.record_us(100 + k)
    return WorkerReport(name, counts={"messages": n, "timeline/0": n}, histograms={"append": h.encode()})


def _worker(swarm: Swarm, name: str, n: int, *, host: str = "here") -> threading.Thread:
    def run() -> None:
        member = SwarmMember(swarm, name, host=host)
        member.check_roster()
        member.wait_for_spec(timeout=10)
        member.join()
        try:
            member.wait_for_start(timeout=10)
        except SwarmError as exc:
            member.fail(str(exc))
            return
        member.hand_in(_report(name, n))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


# --------------------------------------------------------------------------------------------
# names, boards
# --------------------------------------------------------------------------------------------
def test_worker_names_are_padded_and_bounded() -> None:
    assert worker_names(3) == ["w01", "w02", "w03"]
    assert worker_names(120)[-1] == "w120" and worker_names(120)[0] == "w001"
    with pytest.raises(ValueError):
        worker_names(0)


def test_parse_uri() -> None:
    assert parse_uri("127.0.0.2:8270") == ("127.0.0.2", 8270)
    assert parse_uri("http://127.0.0.1:9/") == ("127.0.0.1", 9)
    for bad in ("127.0.0.1", "host:port", ":80", "h:70000"):
        with pytest.raises(ValueError, match="host:port"):
            parse_uri(bad)


def test_local_board_values_and_locks() -> None:
    board = LocalBoard()
    assert board.get("k") == ""
    board.set("k", "v")
    assert board.get("k") == "v"
    with board.lock("l"):
        held = threading.Event()

        def other() -> None:
            try:
                with board.lock("l", timeout=0.05):
                    held.set()
            except BoardError:
                pass

        t = threading.Thread(target=other)
        t.start()
        t.join()
        assert not held.is_set()


@pytest.fixture(scope="module")
def pabotlib_server():
    """A real PabotLib server (python -m pabot.pabotlib) on a free loopback port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "pabot.pabotlib", "", "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    board = PabotLibBoard("127.0.0.1", port, timeout=2)
    deadline = time.monotonic() + 30
    while True:
        try:
            board.ping()
            break
        except BoardError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the PabotLib server did not start")
            time.sleep(0.05)
    yield port
    proc.kill()
    proc.wait(timeout=10)


def test_pabotlib_board_values_and_locks_between_callers(pabotlib_server: int) -> None:
    a = PabotLibBoard("127.0.0.1", pabotlib_server, caller="a")
    b = PabotLibBoard("127.0.0.1", pabotlib_server, caller="b")
    a.set("swarm:test:k", '{"x": 1}')
    assert b.get("swarm:test:k") == '{"x": 1}'
    assert b.get("swarm:test:unset") == ""
    with a.lock("swarm:test:lock"):
        with pytest.raises(BoardError, match="not had within"):
            with b.lock("swarm:test:lock", timeout=0.1):
                pass
    with b.lock("swarm:test:lock", timeout=1):  # released by a
        pass


def test_pabotlib_board_that_is_not_there_fails_in_one_line() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there now
    with pytest.raises(BoardError, match=rf"cannot reach PabotLib at 127.0.0.1:{port}: .*refused"):
        PabotLibBoard("127.0.0.1", port).get("k")


def test_pabotlib_board_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # accepts into the backlog, never answers
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        with pytest.raises(BoardError, match="no answer within 0.3 s"):
            PabotLibBoard("127.0.0.1", port, timeout=0.3).get("k")
        assert time.monotonic() - t0 < FOREVER


# --------------------------------------------------------------------------------------------
# roster and claims
# --------------------------------------------------------------------------------------------
def test_claims_hand_out_each_name_once_and_refuse_too_many() -> None:
    board = LocalBoard()
    swarm = Swarm.create(board, "bus", 5, url="http://127.0.0.1:1/", run="r1")
    assert Swarm.current(board).run == "r1"
    assert swarm.claim(3, "host-a") == ["w01", "w02", "w03"]
    assert swarm.claim(2, "host-b") == ["w04", "w05"]
    with pytest.raises(SwarmError, match="only 0 of 5 are unclaimed"):
        swarm.claim(1, "host-c")
    assert swarm.claims() == {"w01": "host-a", "w02": "host-a", "w03": "host-a", "w04": "host-b", "w05": "host-b"}


def test_no_current_run_is_a_clear_error() -> None:
    with pytest.raises(SwarmError, match="no swarm run on local board"):
        Swarm.current(LocalBoard())


def test_a_worker_not_on_the_roster_is_refused() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 2, run="r2")
    with pytest.raises(SwarmError, match="w07 is not on swarm run r2"):
        SwarmMember(swarm, "w07").check_roster()


# --------------------------------------------------------------------------------------------
# barrier, go, collection, exact merge
# --------------------------------------------------------------------------------------------
def test_full_swarm_merges_exactly() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 3, run="r3")
    swarm.claim(3, "here")
    coord = Coordinator(swarm, poll_s=0.01)
    coord.open({"duration_s": 0.1})
    threads = [_worker(swarm, n, k) for n, k in zip(coord.names, (10, 20, 30), strict=True)]
    coord.wait_for_workers(timeout=FOREVER)
    coord.start(lead_s=0.05)
    outcome = coord.collect(window_s=0.1, grace_s=FOREVER)
    for t in threads:
        t.join()
    assert outcome.complete and outcome.failures == {}
    merged = outcome.merged()
    assert merged.complete and merged.workers == 3
    assert merged.count("messages") == 60 == sum(r.counts["messages"] for r in outcome.ordered_reports())
    assert merged.histogram("append").count == 60
    assert [r.worker for r in outcome.ordered_reports()] == ["w01", "w02", "w03"]
    assert all("start_late_ms" in r.maxima for r in outcome.ordered_reports())


def test_barrier_that_never_fills_is_called_off_naming_the_missing() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 3, run="r4")
    swarm.claim(2, "host-a")  # w03 is never claimed
    coord = Coordinator(swarm, poll_s=0.01)
    coord.open({})
    member = SwarmMember(swarm, "w01", host="host-a")
    member.join()  # w02 is claimed but never joins
    with pytest.raises(SwarmError) as err:
        coord.wait_for_workers(timeout=0.2)
    text = str(err.value)
    assert "1 of 3 workers joined within 0.2 s" in text
    assert "worker w02 claimed by host-a but did not join" in text
    assert "worker w03 was never claimed by any host" in text
    assert set(err.value.failures) == {"w02", "w03"}
    with pytest.raises(SwarmError, match="called off: start barrier: 1 of 3"):
        member.wait_for_start(timeout=FOREVER)  # the waiting worker learns why at once
    member.close()


def test_a_worker_failing_before_the_start_calls_the_run_off() -> None:
    swarm = Swarm.create(LocalBoard(), "api", 2, run="r5")
    swarm.claim(2, "host-a")
    coord = Coordinator(swarm, poll_s=0.01)
    SwarmMember(swarm, "w02", host="host-b").fail("cannot reach the conductor at http://127.0.0.1:1/: refused")
    with pytest.raises(SwarmError, match=r"worker w02 \(on host-b\) failed before the start: cannot reach"):
        coord.wait_for_workers(timeout=FOREVER)
    assert "abort" in (swarm.go() or {})


def test_worker_that_falls_silent_mid_window_is_named_and_the_merge_is_incomplete() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 2, run="r6")
    swarm.claim(2, "here")
    coord = Coordinator(swarm, poll_s=0.01, stale_s=0.3)
    coord.open({})
    good = SwarmMember(swarm, "w01", host="here")
    dead = SwarmMember(swarm, "w02", host="here")
    good.join()
    dead.join()
    coord.wait_for_workers(timeout=FOREVER)
    coord.start(lead_s=0)
    dead.close()  # its heartbeat stops and it never reports: as if killed mid-window
    good.hand_in(_report("w01", 5))
    outcome = coord.collect(window_s=0, grace_s=FOREVER, tick_s=0.05)
    assert not outcome.complete
    assert list(outcome.failures) == ["w02"]
    assert "fell silent: no heartbeat for 0.3 s (last heard before the start, waiting)" in outcome.failures["w02"]
    merged = outcome.merged()
    assert not merged.complete and merged.workers == 1 and merged.expected == 2
    assert merged.count("messages") == 5
    assert "1 of 2 workers reported: worker w02 on here fell silent" in outcome.describe()


def test_worker_failing_mid_window_is_named_with_its_reason() -> None:
    swarm = Swarm.create(LocalBoard(), "bus-http", 2, run="r7")
    swarm.claim(2, "here")
    coord = Coordinator(swarm, poll_s=0.01)
    a, b = SwarmMember(swarm, "w01"), SwarmMember(swarm, "w02")
    a.join()
    b.join()
    coord.wait_for_workers(timeout=FOREVER)
    coord.start(lead_s=0)
    a.hand_in(_report("w01", 3))
    b.fail("ConnectionRefusedError: the conductor went away")
    outcome = coord.collect(window_s=0, grace_s=FOREVER)
    assert outcome.failures == {"w02": "failed: ConnectionRefusedError: the conductor went away"}
    assert not outcome.merged().complete


def test_worker_still_beating_without_a_report_is_late_at_the_deadline() -> None:
    swarm = Swarm.create(LocalBoard(), "tasks", 1, run="r8")
    swarm.claim(1, "here")
    coord = Coordinator(swarm, poll_s=0.01, stale_s=FOREVER)
    slow = SwarmMember(swarm, "w01")
    slow.join()
    slow.start_heartbeat(interval=0.02)
    coord.wait_for_workers(timeout=FOREVER)
    coord.start(lead_s=0)
    outcome = coord.collect(window_s=0.1, grace_s=0.1)
    slow.close()
    assert "handed in no report within 0.2 s of the start" in outcome.failures["w01"]


def test_a_report_that_is_not_one_is_a_failure_not_a_crash() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 1, run="r9")
    coord = Coordinator(swarm, poll_s=0.01)
    swarm.board.set(swarm.key("report", "w01"), "not json")
    swarm.set_status("w01", "reported")
    coord.start(lead_s=0)
    outcome = coord.collect(window_s=0, grace_s=FOREVER)
    assert "handed in something that is not a report" in outcome.failures["w01"]


def test_heartbeat_carries_progress_and_phase() -> None:
    swarm = Swarm.create(LocalBoard(), "bus", 1, run="r10")
    member = SwarmMember(swarm, "w01", host="h")
    member.set_progress(lambda: {"messages": 42})
    member.join()
    deadline = time.monotonic() + FOREVER
    while (swarm.beat_of("w01") or {}).get("progress") != {"messages": 42}:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    beat = swarm.beat_of("w01")
    assert beat["phase"] == "waiting" and beat["host"] == "h" and beat["seq"] >= 1
    member.close()
