"""Load generator: both models, bounds, errors, coordinated-omission correction, processes, self-check.

The server runs in its own process (this file run as a script), so the generator's figures are not
mixed with the server's GIL, and forking load processes never copies a running server thread.
Assertions are about structure and ordering, never about machine speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import timedelta

import pytest

from conductor_perf.measure import load
from conductor_perf.measure.histogram import LatencyHistogram
from conductor_perf.measure.load import LoadResult, Request, parse_loopback_url, run_closed, run_open


# ---------------------------------------------------------------------------------------------
# the test server (run as: python tests/test_load.py serve)
# ---------------------------------------------------------------------------------------------
def serve() -> None:
    """Serve on a free 127.0.0.1 port, print the URL, stop by itself after 120 s."""
    import asyncio

    from aiohttp import web

    ids: list[str] = []
    counters: dict[str, int] = {}

    async def ok(_req):
        return web.json_response({"status": "ok"})

    async def tasks(req):
        doc = await req.json()
        if doc.get("bad"):
            return web.json_response({"error": "bad task"}, status=400)
        ids.append(doc["id"])
        return web.json_response({"id": doc["id"]}, status=201)

    async def get_ids(_req):
        return web.json_response(ids)

    async def stall_once(req):
        """Blocks the whole server for 1 s when this key's request number reaches ?at=N."""
        key = req.match_info["key"]
        counters[key] = counters.get(key, 0) + 1
        if counters[key] == int(req.query.get("at", "100")):
            time.sleep(1.0)  # deliberately blocking: every connection stalls
        return web.json_response({"n": counters[key]})

    async def main():
        app = web.Application()
        app.router.add_get("/ok", ok)
        app.router.add_post("/tasks", tasks)
        app.router.add_get("/ids", get_ids)
        app.router.add_get("/stall/{key}", stall_once)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        print(f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}", flush=True)
        await asyncio.sleep(120)
        await runner.cleanup()

    asyncio.run(main())


@pytest.fixture(scope="module")
def server():
    proc = subprocess.Popen([sys.executable, __file__, "serve"], stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("http://127.0.0.1:"), line
        yield line
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def get_json(url: str):
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def assert_consistent(r: LoadResult) -> None:
    s = r.histogram.summary()
    if s["count"]:
        order = [s[k] for k in ("min", "p50", "p90", "p95", "p99", "p99.9", "max")]
        assert order == sorted(order)
    assert r.requests == r.ok + r.errors
    assert sum(p.count for p in r.timeline) == r.requests
    assert [p.second for p in r.timeline] == list(range(len(r.timeline)))
    assert sum(p.errors for p in r.timeline) == r.errors
    json.dumps(r.to_dict())  # JSON-friendly


# ---------------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1:80/",
        "http://192.168.1.2:8080/x",
        "http://example.com/",
        "http://8.8.8.8/",
        "https://127.0.0.1:8443/",
        "http://[2001:db8::1]:80/",
        "ftp://127.0.0.1/",
    ],
)
def test_refuses_non_loopback_targets(url):
    with pytest.raises(ValueError, match="loopback|http://"):
        run_closed(url, workers=1, duration=0.1)
    with pytest.raises(ValueError):
        run_open(url, rate=1, duration=0.1)


def test_parse_loopback_url_accepts_loopback_forms():
    assert parse_loopback_url("http://127.0.0.1:8080/a?b=1") == ("127.0.0.1", 8080, "/a?b=1")
    assert parse_loopback_url("http://127.1.2.3:1") == ("127.1.2.3", 1, "/")
    assert parse_loopback_url("http://localhost:9/")[0] == "localhost"
    assert parse_loopback_url("http://[::1]:9/")[0] == "::1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"duration": 0},
        {"duration": -1},
        {"workers": 0},
        {"max_requests": 0},
        {"processes": 0},
        {"workers": 1, "processes": 2},
        {"timeout": 0},
    ],
)
def test_bad_arguments_raise_value_error(kwargs):
    args = {"workers": 2, "duration": 0.1} | kwargs
    with pytest.raises(ValueError):
        run_closed("http://127.0.0.1:9/", **args)


# ---------------------------------------------------------------------------------------------
# closed loop
# ---------------------------------------------------------------------------------------------
def test_closed_loop_stops_at_max_requests(server):
    r = run_closed(server + "/ok", workers=4, duration=timedelta(seconds=30), max_requests=300)
    assert r.requests == 300 and r.ok == 300 and r.errors == 0
    assert r.stopped_by == "max_requests"
    assert r.histogram.count == 300
    assert r.status_counts == {200: 300}
    assert r.model == "closed" and r.uncorrected is None
    assert r.rate > 0
    assert_consistent(r)


def test_closed_loop_stops_at_duration(server):
    started = time.monotonic()
    r = run_closed(server + "/ok", workers=2, duration=0.5)
    assert time.monotonic() - started < 60  # stopped by the duration, not hanging (a loaded machine is slow)
    assert r.stopped_by == "duration"
    assert r.requests > 0
    assert r.duration_s >= 0.4  # it ran for its duration
    assert_consistent(r)


def test_factory_gets_unique_indexes_and_errors_are_counted(server):
    def factory(i: int) -> Request:
        return Request.json("POST", "/tasks", {"id": f"closed-{i}", "bad": i % 10 == 0})

    r = run_closed(server, factory, workers=3, duration=30, max_requests=100)
    assert r.requests == 100
    assert r.status_counts == {201: 90, 400: 10}
    assert (r.ok, r.errors) == (90, 10)
    assert r.error_percent == pytest.approx(10.0)
    assert any(s.startswith("HTTP 400") and "bad task" in s for s in r.error_samples)
    created = [i for i in get_json(server + "/ids") if i.startswith("closed-")]
    assert sorted(created) == sorted(f"closed-{i}" for i in range(100) if i % 10)
    assert_consistent(r)


def test_ok_status_can_accept_non_2xx(server):
    r = run_closed(
        server,
        Request.json("POST", "/tasks", {"id": "x", "bad": True}),
        workers=1,
        duration=30,
        max_requests=5,
        ok_status={400},
    )
    assert (r.ok, r.errors) == (5, 0)


def test_refused_connections_are_errors_and_the_run_still_ends():
    import socket

    with socket.socket() as s:  # a free port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run_closed(f"http://127.0.0.1:{port}/", workers=2, duration=0.3, timeout=1)
    assert r.requests > 0 and r.ok == 0 and r.errors == r.requests
    assert set(r.exceptions) == {"ConnectionRefusedError"}
    assert r.histogram.count == 0
    assert r.error_percent == 100.0


# ---------------------------------------------------------------------------------------------
# open loop
# ---------------------------------------------------------------------------------------------
def test_open_loop_keeps_the_schedule_and_reports_both_latencies(server):
    r = run_open(server + "/ok", rate=200, duration=1.0, connections=4)
    assert r.model == "open" and r.offered_rate == 200
    assert r.planned == 200 and r.dispatched == 200
    assert r.requests + r.dropped == 200
    assert r.uncorrected is not None and r.uncorrected.count == r.histogram.count == r.requests
    # each request's corrected latency includes its uncorrected one, so every percentile does too
    for q in (50, 90, 99, 100):
        assert r.histogram.percentile_ms(q) >= r.uncorrected.percentile_ms(q)
    d = r.to_dict()
    assert d["uncorrected_latency_ms"]["count"] == r.requests
    assert "intended" in d["latency_basis"]
    assert_consistent(r)


def test_coordinated_omission_correction_shows_a_one_second_stall(server):
    """At 200 req/s for 3 s over 2 connections the server blocks for 1 s once (at request 200).

    Requests due during the stall wait for a connection: measured from their intended send time
    they are up to 1 s late (corrected p99 sees it); measured from when they were finally sent they
    look fast, and only the 2 requests on the wire saw the stall (0.3 % of samples, below p99).
    """
    r = run_open(server + "/stall/co?at=200", rate=200, duration=3.0, connections=2)
    assert r.errors == 0 and r.dropped == 0
    assert r.requests == 600
    corrected, uncorrected = r.histogram.summary(), r.uncorrected.summary()
    assert corrected["p99"] > 500.0, corrected
    assert uncorrected["p99"] < 200.0, uncorrected
    assert uncorrected["max"] > 900.0  # the stalled request itself is in both
    assert corrected["max"] > 900.0
    assert r.late > 50  # most of the requests due during the stall were sent late


def test_open_loop_drops_beyond_max_in_flight(server):
    # one connection, at most 2 requests waiting or in flight: during the 1 s stall the rest drop
    r = run_open(server + "/stall/drop?at=20", rate=100, duration=2.0, connections=1, max_in_flight=2)
    assert r.dropped > 0
    assert r.requests + r.dropped == r.planned
    assert r.summary()["dropped"] == r.dropped
    assert_consistent(r)


def test_open_loop_max_requests_caps_the_plan(server):
    r = run_open(server + "/ok", rate=100, duration=30, max_requests=20)
    assert r.planned == 20 and r.requests == 20
    assert r.stopped_by == "max_requests"


def test_async_api_runs_in_the_callers_loop_and_sync_api_refuses_to(server):
    import asyncio

    async def main():
        closed = await load.closed_loop(server + "/ok", workers=2, duration=5, max_requests=50)
        opened = await load.open_loop(server + "/ok", rate=100, duration=0.3)
        with pytest.raises(RuntimeError, match="inside an event loop"):
            run_closed(server + "/ok", workers=1, duration=0.1)
        return closed, opened

    closed, opened = asyncio.run(main())
    assert closed.requests == 50 and closed.model == "closed"
    assert opened.planned == 30 and opened.model == "open"


# ---------------------------------------------------------------------------------------------
# several processes: exact merge
# ---------------------------------------------------------------------------------------------
def test_closed_loop_in_two_processes_merges_exactly(server):
    def factory(i: int) -> Request:
        return Request.json("POST", "/tasks", {"id": f"mp-{i}"})

    progress: list[tuple[float, int, float]] = []
    r = run_closed(
        server,
        factory,
        workers=4,
        processes=2,
        duration=30,
        max_requests=400,
        on_progress=lambda *a: progress.append(a),
        progress_interval=0.1,
    )
    assert r.processes == 2
    assert r.requests == 400 and r.status_counts == {201: 400}
    assert r.histogram.count == 400
    assert sum(p.count for p in r.timeline) == 400
    created = [i for i in get_json(server + "/ids") if i.startswith("mp-")]
    assert sorted(created) == sorted(f"mp-{i}" for i in range(400))  # unique across processes
    counts = [c for _, c, _ in progress]
    assert counts == sorted(counts)
    assert_consistent(r)


def test_open_loop_in_two_processes_interleaves_the_schedule(server):
    r = run_open(server + "/ok", rate=200, duration=1.0, processes=2, connections=4)
    assert r.processes == 2
    assert r.planned == 200
    assert r.requests + r.dropped == 200
    assert r.uncorrected.count == r.histogram.count == r.requests
    assert_consistent(r)


def test_a_load_process_that_dies_fails_the_run_naming_it_and_leaves_nothing_running(server):
    import multiprocessing
    import os
    import signal

    from conductor_perf.measure.workers import WorkerError

    def factory(i: int) -> Request:
        if i == 5:  # index 5 belongs to the second process (indices interleave over processes)
            os.kill(os.getpid(), signal.SIGKILL)
        return Request("GET", "/ok")

    with pytest.raises(WorkerError, match=r"^load: worker load-1 \(pid \d+\) died: killed by SIGKILL"):
        run_closed(server, factory, workers=2, processes=2, duration=30, max_requests=1000)
    assert not [p for p in multiprocessing.active_children() if p.is_alive()]


def test_reports_of_separate_runs_combine_into_one_exact_result(server):
    from conductor_perf.measure.workers import WorkerReport

    a = run_closed(server + "/ok", workers=2, duration=30, max_requests=120)
    b = run_closed(server + "/ok", workers=2, duration=30, max_requests=80)
    moved = [WorkerReport.from_json(r.reports[0].to_json()) for r in (a, b)]  # e.g. two Robot workers
    both = load.combine_reports("closed", server + "/ok", moved, workers=4, connections=4)
    assert both.requests == 200 and both.status_counts == {200: 200} and both.processes == 2
    expected = a.histogram.copy().merge(b.histogram)
    assert both.histogram.summary() == expected.summary()
    assert sum(p.count for p in both.timeline) == 200
    assert_consistent(both)


def test_progress_callback_in_process(server):
    seen: list[tuple[float, int, float]] = []
    run_closed(
        server + "/ok", workers=2, duration=0.8, on_progress=lambda *a: seen.append(a), progress_interval=0.2
    )
    assert seen
    elapsed = [e for e, _, _ in seen]
    assert elapsed == sorted(elapsed)
    assert all(c >= 0 and rate >= 0 for _, c, rate in seen)


def test_broken_progress_callback_does_not_break_the_run(server):
    def boom(*_):
        raise RuntimeError("printer broke")

    with pytest.warns(RuntimeWarning, match="progress disabled"):
        r = run_closed(server + "/ok", workers=1, duration=0.6, on_progress=boom, progress_interval=0.1)
    assert r.requests > 0


# ---------------------------------------------------------------------------------------------
# self-check
# ---------------------------------------------------------------------------------------------
def test_self_check_flags_cpu_over_budget_as_invalid(server):
    r = run_closed(server + "/ok", workers=2, duration=30, max_requests=200, cpu_budget_percent=0.0)
    assert r.saturated
    assert "CPU core" in r.saturation_reason and "budget 0 %" in r.saturation_reason


def test_self_check_generous_budgets_do_not_flag(server):
    r = run_open(server + "/ok", rate=50, duration=0.5, cpu_budget_percent=101, lag_budget_ms=10_000)
    assert not r.saturated and r.saturation_reason == ""
    assert r.errors == 0 and r.requests >= 1


def result_with(**kw) -> LoadResult:
    base = dict(
        model="open",
        url="http://127.0.0.1:1/",
        requests=100,
        ok=100,
        errors=0,
        duration_s=1.0,
        histogram=LatencyHistogram(),
        uncorrected=LatencyHistogram(),
        lag=LatencyHistogram(),
        offered_rate=1000.0,
        planned=1000,
        dispatched=1000,
        cpu_percent=10.0,
    )
    base.update(kw)
    return LoadResult(**base)


def test_self_check_rules():
    r = result_with(dispatched=500)
    load._self_check(r)
    assert (
        r.saturated
        and "offered rate not reached" in r.saturation_reason
        and "500 of 1000" in r.saturation_reason
    )

    lag = LatencyHistogram()
    for _ in range(100):
        lag.record_ms(50)
    r = result_with(lag=lag)
    load._self_check(r)
    assert r.saturated and "scheduling lag p99 50.0 ms" in r.saturation_reason

    r = result_with()
    load._self_check(r)
    assert not r.saturated


def test_open_loop_uses_precise_select_timers_only_within_select_limits(monkeypatch):
    import selectors

    spec = load._Spec("open", "127.0.0.1", 1, None, Request(), 1.0, 1, 1.0, None, workers=8, rate=10.0)
    loop = load._event_loop_for(spec)
    try:
        assert isinstance(loop._selector, selectors.SelectSelector)
    finally:
        loop.close()
    monkeypatch.setattr(load, "_highest_fd", lambda: 2000)  # descriptors beyond select()'s reach
    loop = load._event_loop_for(spec)
    try:
        assert not isinstance(loop._selector, selectors.SelectSelector)
    finally:
        loop.close()


def test_summary_and_describe_fields():
    r = result_with(late=10, dropped=5)
    s = r.summary()
    assert (
        s["count"] == 100 and s["rate"] == 100.0 and s["late_percent"] == 1.0 and s["dropped_percent"] == 0.5
    )
    assert s["p99"] is None  # nothing recorded: no fake zeros
    assert "open loop" in r.describe()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        serve()


def test_rate_timeline_scales_or_drops_the_cut_off_last_second() -> None:
    from conductor_perf.measure.load import TimelinePoint

    points = [TimelinePoint(s, 500, 1.0, 2.0) for s in range(10)]
    long_tail = result_with(duration_s=10.6, timeline=[*points, TimelinePoint(10, 300, 1.0, 2.0)])
    assert long_tail.rate_timeline()[-1] == [10, pytest.approx(500.0)]  # 300 in 0.6 s: 500 req/s, not a drop
    short_tail = result_with(duration_s=10.02, timeline=[*points, TimelinePoint(10, 10, 1.0, 2.0)])
    assert [s for s, _ in short_tail.rate_timeline()] == list(range(10))  # 0.02 s of a second: left out
    assert all(rate == 500 for _, rate in short_tail.rate_timeline())
