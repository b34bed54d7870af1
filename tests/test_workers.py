"""measure/workers.py: the one worker pool (barrier, result return, failures named, cleanup) and the one merge.

No test depends on machine speed: hangs and missed barriers are made by workers that block for
far longer than the short timeouts given here, and deaths by a worker killing itself.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
import time

import pytest

from conductor_perf.measure.histogram import LatencyHistogram
from conductor_perf.measure.workers import (
    LagProbe,
    WorkerContext,
    WorkerError,
    WorkerPool,
    WorkerReport,
    cpu_reason,
    lag_reason,
    merge_reports,
)

BLOCK_S = 60.0  # "for ever" for a test: every timeout below is far shorter


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _no_children_left(pids: list[int]) -> None:
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]
    assert not [pid for pid in pids if pid_alive(pid)]


# --------------------------------------------------------------------------------------------
# workers used by the tests (fork inherits them; no pickling of functions)
# --------------------------------------------------------------------------------------------
def _counting(share: int, ctx: WorkerContext) -> WorkerReport:
    start = ctx.wait_start()
    h = LatencyHistogram()
    for k in range(share):
        h.record_us(100 * (k + 1))
        ctx.add("items")
    return WorkerReport(ctx.name, counts={"items": share, f"by/{ctx.index}": 1}, histograms={"lat": h.encode()},
                        maxima={"start": start}, records=[ctx.index] * share, cpu_s=0.1, wall_s=1.0)  # fmt: skip


def _raising(share: int, ctx: WorkerContext) -> WorkerReport:
    ctx.wait_start()
    if share == 1:
        raise ValueError("worker one cannot count")
    while not ctx.stop_requested():  # the healthy ones run until the pool stops them
        time.sleep(0.01)
    return WorkerReport(ctx.name)


def _self_killing(share: int, ctx: WorkerContext) -> WorkerReport:
    ctx.wait_start()
    if share == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return WorkerReport(ctx.name)


def _hanging(share: int, ctx: WorkerContext) -> WorkerReport:
    ctx.wait_start()
    if share == 1:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # it must take a SIGKILL to go
        time.sleep(BLOCK_S)
    return WorkerReport(ctx.name)


def _never_ready(share: int, ctx: WorkerContext) -> WorkerReport:
    if share == 1:
        time.sleep(BLOCK_S)
    ctx.wait_start()
    return WorkerReport(ctx.name)


def _skips_barrier(share: int, ctx: WorkerContext) -> WorkerReport:
    if share == 1:
        return WorkerReport(ctx.name)
    ctx.wait_start()
    return WorkerReport(ctx.name)


def _until_goal(share: int, ctx: WorkerContext) -> WorkerReport:
    ctx.wait_start()
    n = 0
    while not ctx.stop_requested():
        n += 1
        ctx.add("reads")
        if ctx.total("reads") >= 500:
            ctx.request_stop()
    return WorkerReport(ctx.name, counts={"reads": n})


# --------------------------------------------------------------------------------------------
# processes
# --------------------------------------------------------------------------------------------
def test_results_come_back_in_worker_order_and_merge_exactly() -> None:
    with WorkerPool(_counting, [3, 0, 5], name="count", counters=("items",)) as pool:
        started = pool.start()
        reports = pool.collect(timeout=30)
        pids = pool.pids
        assert pool.total("items") == 8
    assert [r.worker for r in reports] == ["count-0", "count-1", "count-2"]
    merged = merge_reports(reports)
    assert merged.count("items") == 8 and merged.counts_under("by") == {"0": 1, "1": 1, "2": 1}
    assert merged.histogram("lat").count == 8
    assert merged.histogram("lat").max_us == LatencyHistogram.decode(reports[2].histograms["lat"]).max_us
    assert merged.maxima["start"] == started  # every worker got the same start time
    assert merged.records == [0, 0, 0, 2, 2, 2, 2, 2]
    assert merged.cpu_percents() == [10.0, 10.0, 10.0] and merged.complete
    _no_children_left(pids)


def test_a_shared_goal_stops_every_worker() -> None:
    with WorkerPool(_until_goal, [0, 1, 2], name="readers", counters=("reads",)) as pool:
        merged = merge_reports(pool.run(timeout=30))
    assert merged.count("reads") >= 500


def test_a_worker_that_raises_is_named_with_its_error_and_the_rest_are_stopped() -> None:
    pool = WorkerPool(_raising, [0, 1, 2], name="counters")
    pool.start()
    with pytest.raises(WorkerError) as err:
        pool.collect(timeout=BLOCK_S)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("counters: worker counters-1 failed: ValueError: worker one cannot count")
    assert "worker one cannot count" in err.value.tracebacks["counters-1"]
    assert "Traceback" in str(err.value.__cause__)
    _no_children_left(pool.pids)


def test_a_worker_killed_by_a_signal_is_named_with_the_signal() -> None:
    pool = WorkerPool(_self_killing, [0, 1], name="writers")
    pool.start()
    with pytest.raises(WorkerError) as err:
        pool.collect(timeout=BLOCK_S)
    pid = pool.pids[1]
    assert str(err.value).startswith(f"writers: worker writers-1 (pid {pid}) died: killed by SIGKILL "
                                     "before it sent its result")  # fmt: skip
    _no_children_left(pool.pids)


def test_a_worker_that_hangs_past_the_deadline_is_named_and_killed() -> None:
    pool = WorkerPool(_hanging, [1], name="load")  # it ignores SIGTERM: only a SIGKILL ends it
    pool.start()
    with pytest.raises(WorkerError) as err:
        pool.collect(timeout=0.5)
    assert str(err.value) == f"load: worker load-0 (pid {pool.pids[0]}) hung: no result within 0.5 s"
    assert err.value.failures == {"load-0": f"(pid {pool.pids[0]}) hung: no result within 0.5 s"}
    _no_children_left(pool.pids)


def test_the_start_barrier_times_out_naming_the_worker_that_never_arrived() -> None:
    pool = WorkerPool(_never_ready, [0, 1, 0], name="sse", start_timeout=0.5)
    with pytest.raises(WorkerError) as err:
        pool.start()
    assert "worker sse-1 did not reach the start barrier within 0.5 s" in str(err.value)
    _no_children_left(pool.pids)


def test_a_worker_that_ends_without_the_barrier_fails_the_start() -> None:
    pool = WorkerPool(_skips_barrier, [0, 1], name="bus")
    with pytest.raises(WorkerError, match="worker bus-1 ended before it reached the start barrier"):
        pool.start()
    _no_children_left(pool.pids)


def test_check_reports_a_dead_worker_while_the_caller_waits_on_counters() -> None:
    pool = WorkerPool(_self_killing, [1], name="clients")
    try:
        pool.start()
        deadline = time.monotonic() + BLOCK_S
        with pytest.raises(WorkerError, match=r"clients-0 \(pid \d+\) died: killed by SIGKILL"):
            while time.monotonic() < deadline:
                pool.check()
                time.sleep(0.01)
    finally:
        pool.close()
    _no_children_left(pool.pids)


def test_ticks_come_while_results_are_awaited() -> None:
    ticks: list[float] = []

    def until_stopped(share: int, ctx: WorkerContext) -> WorkerReport:
        ctx.wait_start()
        while not ctx.stop_requested():
            time.sleep(0.01)
        return WorkerReport(ctx.name)

    pool = WorkerPool(until_stopped, [0], name="ticker")
    pool.start()

    def tick(elapsed: float) -> None:
        ticks.append(elapsed)
        if len(ticks) == 3:
            pool.request_stop()

    pool.collect(timeout=BLOCK_S, on_tick=tick, tick_s=0.05)
    assert len(ticks) >= 3 and ticks == sorted(ticks) and ticks[0] >= 0.05


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        WorkerPool(_counting, [], name="x")
    with pytest.raises(ValueError):
        WorkerPool(_counting, [1], name="x", mode="fibers")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WorkerPool(_counting, [1, 2], name="x", names=["only-one"])


# --------------------------------------------------------------------------------------------
# threads: the same interface
# --------------------------------------------------------------------------------------------
def test_threads_share_the_interface() -> None:
    pool = WorkerPool(_counting, [2, 4], name="t", counters=("items",), mode="threads")
    merged = merge_reports(pool.run(timeout=30))
    assert merged.count("items") == 6 and pool.total("items") == 6
    assert [r.worker for r in merged.reports] == ["t-0", "t-1"]


def test_a_thread_that_raises_is_named() -> None:
    pool = WorkerPool(_raising, [0, 1], name="t", mode="threads")
    with pytest.raises(WorkerError, match="worker t-1 failed: ValueError: worker one cannot count"):
        pool.run(timeout=BLOCK_S)
    assert not [t for t in threading.enumerate() if t.name.startswith("conductor-perf-t-")]


def test_a_thread_that_misses_the_barrier_is_named() -> None:
    release = threading.Event()

    def late(share: int, ctx: WorkerContext) -> WorkerReport:
        if share:
            release.wait(BLOCK_S)
        ctx.wait_start()
        return WorkerReport(ctx.name)

    pool = WorkerPool(late, [0, 1], name="t", mode="threads", start_timeout=0.3)
    try:
        with pytest.raises(WorkerError, match="worker t-1 did not reach the start barrier within 0.3 s"):
            pool.start()
    finally:
        release.set()


# --------------------------------------------------------------------------------------------
# the merge protocol, whatever carried the reports
# --------------------------------------------------------------------------------------------
def test_reports_travel_as_json_and_merge_like_the_originals() -> None:
    a, b = LatencyHistogram(), LatencyHistogram()
    for v in range(1, 1001):
        a.record_us(v)
        b.record_us(v * 10)
    ra = WorkerReport("pabot-1", counts={"ok": 1000}, histograms={"lat": a.encode()}, samples=["x"], wall_s=2)
    rb = WorkerReport("pabot-2", counts={"ok": 1000, "errors": 3}, histograms={"lat": b.encode()},
                      samples=["x", "y"], maxima={"duration_s": 2.5})  # fmt: skip
    moved = [WorkerReport.from_json(r.to_json()) for r in (ra, rb)]
    assert moved == [ra, rb]
    merged = merge_reports(moved, expected=3)
    both = a.copy().merge(b)
    assert merged.histogram("lat").summary() == both.summary()
    assert merged.counts == {"ok": 2000, "errors": 3} and merged.samples == ["x", "y"]
    assert merged.maxima == {"duration_s": 2.5}
    assert not merged.complete and merged.workers == 2
    assert merge_reports(moved).complete


def test_from_json_refuses_what_is_not_a_report() -> None:
    with pytest.raises(ValueError, match="not a worker report"):
        WorkerReport.from_json('{"counts": {}}')


def test_a_merge_keeps_the_precision_of_the_workers_histograms() -> None:
    h = LatencyHistogram(2)
    h.record_us(12345)
    merged = merge_reports([WorkerReport("a", histograms={"t": h.encode()}),
                            WorkerReport("b", histograms={"t": h.encode()})])  # fmt: skip
    assert merged.histogram("t").hdr.significant_figures == 2 and merged.histogram("t").count == 2


# --------------------------------------------------------------------------------------------
# self-check
# --------------------------------------------------------------------------------------------
def test_lag_probe_records_one_lag_per_tick_until_told_to_stop() -> None:
    probe = LagProbe(interval_s=0.001)
    ticks: list[float] = []
    asyncio.run(probe.run(lambda t: ticks.append(t) or len(ticks) >= 5))
    assert probe.histogram.count == 5 and len(ticks) == 5


def test_saturation_reasons_are_phrased_only_over_budget() -> None:
    lag = LatencyHistogram()
    assert lag_reason(lag, 10) == ""  # no probe ticks: nothing to say
    for _ in range(100):
        lag.record_us(25_000)
    assert lag_reason(lag, 10) == "scheduling lag p99 25.0 ms, max 25.0 ms (budget 10 ms)"
    assert lag_reason(lag, 30) == ""
    assert cpu_reason(95, 90, who="load generator") == "load generator used 95 % of a CPU core (budget 90 %)"
    assert cpu_reason(95, 90, who="client process", when=" during delivery").endswith(
        "core during delivery (budget 90 %)")  # fmt: skip
    assert cpu_reason(50, 90, who="x") == ""
