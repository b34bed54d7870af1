"""SSE benchmarks: stamps, delivery checks, result figures, and end to end against the reference conductor."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from conductor_perf import target as sut
from conductor_perf.bench import sse_bench as sb
from conductor_perf.bench.sse_bench import (
    ClientRecord,
    Delivery,
    SSEResult,
    Stamp,
    check_delivery,
    parse_stamp,
)
from conductor_perf.measure.histogram import LatencyHistogram

# --------------------------------------------------------------------------------------------
# stamps and latency
# --------------------------------------------------------------------------------------------


def test_stamp_round_trips_through_a_run_stream_event_and_a_message_event() -> None:
    text = sb.stamp("a1b2c3", "event", 7, 1_732_010_000_123_456_789)
    assert text == "sse-perf a1b2c3 event 7 1732010000123456789"
    log_data = json.dumps({"run_id": "r", "stream": "stdout", "line": text, "timestamp": "x"})
    msg_data = json.dumps({"msg_id": "MSG-1", "type": "PROGRESS", "body": text})
    for data in (text, log_data, msg_data):
        assert parse_stamp(data, "a1b2c3") == Stamp("event", 7, 1_732_010_000_123_456_789)


def test_parse_stamp_ignores_other_tokens_and_unstamped_events() -> None:
    assert parse_stamp(sb.stamp("aaaaaa", "primer", 1, 5), "bbbbbb") is None
    assert parse_stamp("{}", "aaaaaa") is None
    assert parse_stamp('{"body":"conductor-perf bus history message 3"}', "aaaaaa") is None
    assert parse_stamp(sb.stamp("aaaaaa", "end", 50, 9), None) == Stamp("end", 50, 9)


def test_stamp_rejects_a_token_the_pattern_cannot_read_back() -> None:
    with pytest.raises(ValueError):
        sb.stamp("Not ok", "event", 1, 1)


def test_stub_lines_before_the_warm_up_are_primers_and_later_lines_are_numbered_from_one() -> None:
    data = '{"run_id":"r","stream":"stdout","line":"line %d 1700000000000000000","timestamp":"t"}'
    assert parse_stamp(data % 10, None, stub_warmup=10) == Stamp("primer", 10, 1_700_000_000_000_000_000)
    assert parse_stamp(data % 11, None, stub_warmup=10) == Stamp("event", 1, 1_700_000_000_000_000_000)
    assert parse_stamp('{"line":"something else"}', None, stub_warmup=10) is None


def test_latency_is_receive_time_minus_the_embedded_send_time() -> None:
    assert sb.latency_us(1_000_000_000, 1_004_500_000) == 4500.0
    assert sb.latency_us(10, 10) == 0.0


# --------------------------------------------------------------------------------------------
# delivery checks
# --------------------------------------------------------------------------------------------


def test_every_event_once_in_order_is_complete() -> None:
    d = check_delivery([1, 2, 3], [1, 2, 3])
    assert d == Delivery(expected=3, received=3, missing=0, duplicated=0, out_of_order=0, unexpected=0)
    assert d.complete


def test_missing_duplicated_and_unexpected_events_are_counted_apart() -> None:
    d = check_delivery([1, 2, 3, 4], [1, 1, 3, 9, 3])
    assert (d.missing, d.duplicated, d.out_of_order, d.unexpected) == (2, 2, 0, 1)
    assert not d.complete


@pytest.mark.parametrize(
    ("received", "out_of_order"),
    [([2, 1, 3], 1), ([3, 1, 2], 2), ([1, 3, 2, 4], 1), ([4, 3, 2, 1], 3), ([1, 2, 4], 0)],
)
def test_out_of_order_counts_events_that_arrive_after_a_later_one(
    received: list[int], out_of_order: int
) -> None:
    assert check_delivery([1, 2, 3, 4], received).out_of_order == out_of_order


def test_expected_order_is_the_given_order_not_numeric_order() -> None:
    # concurrent writers: the bus file order decides, not the sequence numbers
    assert check_delivery([3, 1, 2], [3, 1, 2]).complete
    assert check_delivery([3, 1, 2], [1, 2, 3]).out_of_order == 1


def test_a_client_that_received_nothing_misses_everything() -> None:
    assert check_delivery([1, 2], []).missing == 2
    assert check_delivery([], []).complete


def test_clients_are_split_evenly_over_processes() -> None:
    assert sb.split(100, 1) == [100]
    assert sb.split(100, 3) == [34, 33, 33]
    assert sb.split(2, 4) == [1, 1]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------


def _record(status: int, seqs: list[int], lat_ms: list[float] | None = None) -> ClientRecord:
    lat = lat_ms or [1.0] * len(seqs)
    return ClientRecord(status=status, ready=status == 200, done=status == 200, seqs=seqs,
                        sent_ns=[s * 20_000_000 for s in seqs], latency_us=[v * 1000 for v in lat])  # fmt: skip


def _result(records: list[ClientRecord], *, stream: str = "run", context: str = "", lag_ms: float = 1.0,
            cpu: float = 10.0) -> SSEResult:  # fmt: skip
    hist, lag = LatencyHistogram(), LatencyHistogram()
    for r in records:
        for us in r.latency_us:
            hist.record_us(us)
    lag.record_ms(lag_ms)
    return SSEResult(context=context, stream=stream, path="/p", mode="m", clients=len(records), processes=1,
                     expected=[1, 2, 3], records=records, histogram=hist, lag=lag, client_cpu_percent=cpu,
                     ready_s=0.1, send_s=0.1, drain_s=0.1, events_sent=3)  # fmt: skip


def test_refused_clients_are_counted_as_refused_not_as_missing_events() -> None:
    r = _result([_record(200, [1, 2, 3]), _record(429, []), _record(0, [])])
    assert (r.accepted, r.refused, r.failed) == (1, 1, 1)
    assert len(r.deliveries) == 2  # the 429 is reported by the refusal figure
    assert r.missing == 3 and r.complete_clients == 1


def test_figure_names_follow_the_fact_line_for_a_single_client() -> None:
    r = _result([_record(200, [1, 2, 3])])
    assert r.metric("delivery latency p95") == "sse log delivery latency p95"
    many = _result(
        [_record(200, [1, 2, 3])] * 2, stream="messages", context="100 clients on a 1000-message bus"
    )
    assert many.metric("events missing") == "sse message events missing, 100 clients on a 1000-message bus"


def test_latency_series_shows_each_event_for_one_client_and_median_and_slowest_for_many() -> None:
    one = _result([_record(200, [1, 2, 3], [1.0, 2.0, 3.0])])
    assert one.latency_series() == {"latency": [[0.0, 1.0], [0.02, 2.0], [0.04, 3.0]]}
    many = _result([_record(200, [1, 2, 3], [1.0, 1.0, 1.0]), _record(200, [1, 2, 3], [3.0, 5.0, 7.0])])
    series = many.latency_series()
    assert series["median of clients"] == [[0.0, 2.0], [0.02, 3.0], [0.04, 4.0]]
    assert series["slowest client"] == [[0.0, 3.0], [0.02, 5.0], [0.04, 7.0]]


def test_slow_clients_are_flagged_so_a_missed_target_is_not_blamed_on_the_server() -> None:
    assert _result([_record(200, [1, 2, 3])]).saturation_reason == ""
    lagging = _result([_record(200, [1, 2, 3])], lag_ms=50.0)
    assert "lag p99" in lagging.saturation_reason
    busy = _result([_record(200, [1, 2, 3])], cpu=99.0)
    assert "99 % of a CPU core" in busy.saturation_reason


# --------------------------------------------------------------------------------------------
# end to end against the reference conductor (a separate process, so client processes can fork)
# --------------------------------------------------------------------------------------------
MAX_CLIENTS = 4


@pytest.fixture(scope="module")
def conductor() -> Iterator[sut.Target]:
    target = sut.start_embedded(root=tempfile.mkdtemp(prefix="sse-bench-"),
                                extra_args=["--max-clients-per-run", str(MAX_CLIENTS)])  # fmt: skip
    try:
        yield target
    finally:
        target.stop()


def _hist_count_matches_records(r: SSEResult) -> bool:
    return r.histogram.count == sum(len(rec.latency_us) for rec in r.records)


def test_log_lines_reach_every_admitted_client_and_the_rest_are_refused(conductor: sut.Target) -> None:
    r = sb.measure_log_delivery(conductor, lines=10, clients=MAX_CLIENTS + 2, interval_s=0.01, timeout_s=20,
                                processes=2)  # fmt: skip
    assert (r.accepted, r.refused, r.failed) == (MAX_CLIENTS, 2, 0)
    assert "max clients reached for run" in r.refusal_samples()[0]
    assert r.expected == list(range(1, 11))
    assert r.complete_clients == MAX_CLIENTS and r.missing == r.duplicated == r.out_of_order == 0
    assert r.summary()["count"] == 10 * MAX_CLIENTS and _hist_count_matches_records(r)
    assert r.processes == 2
    assert not any("still running" in n for n in r.notes)  # the stub run was stopped


def test_without_a_runs_root_the_stub_prints_the_timestamped_lines(conductor: sut.Target) -> None:
    external = dataclasses.replace(conductor, root=None, process=None)
    r = sb.measure_log_delivery(external, lines=5, clients=2, interval_s=0.01, timeout_s=20)
    assert r.mode == sb._StubSource.mode
    assert r.complete_clients == 2 and r.summary()["count"] == 10


def test_messages_on_a_bus_with_history_reach_every_client_in_file_order(conductor: sut.Target) -> None:
    project, task = sb.new_bus_task()
    assert sb.seed_bus_history(conductor, project, task, 30, writers=3) == 30
    r = sb.measure_message_delivery(conductor, project, task, messages=8, clients=5, interval_s=0.01,
                                    history=30, timeout_s=20)  # fmt: skip
    assert r.label == "sse message delivery, 5 clients on a 30-message bus"
    assert r.expected == list(range(1, 9)) and r.bus_lost == 0
    assert r.complete_clients == 5 and r.summary()["count"] == 40


def test_messages_in_flight_from_several_writers_arrive_in_bus_order_exactly_once(
    conductor: sut.Target,
) -> None:
    project, task = sb.new_bus_task("flight")
    r = sb.measure_messages_in_flight(conductor, project, task, messages=120, clients=3, writers=4, timeout_s=20,
                                      processes=2)  # fmt: skip
    assert sorted(r.expected) == list(range(1, 121)) and r.bus_lost == 0
    assert r.complete_clients == 3
    assert (r.missing, r.duplicated, r.out_of_order, r.unexpected) == (0, 0, 0, 0)
    assert _hist_count_matches_records(r)


def test_only_loopback_targets_get_sse_load() -> None:
    remote = sut.Target(kind=sut.EXTERNAL, url="http://192.0.2.1:8080/")
    with pytest.raises(ValueError, match="loopback"):
        sb.measure_log_delivery(remote, lines=1)


# --------------------------------------------------------------------------------------------
# against a server with the real conductor-loop's run-stream habits (docs/conductor-loop.md, SSE)
# --------------------------------------------------------------------------------------------
REAL_LIKE_SERVER = r"""
import asyncio, json, os, sys
from aiohttp import web

root, limit = sys.argv[1], int(sys.argv[2])
runs, subs, tails = {}, {}, {}

async def post_task(req):
    body = await req.json()
    rid = f"20260101-0000000000-1-{len(runs) + 1}"
    d = os.path.join(root, body["project_id"], body["task_id"], "runs", rid)
    os.makedirs(d)
    open(os.path.join(d, "agent-stdout.txt"), "ab").close()
    runs[rid] = {"task": body["task_id"], "status": "running", "path": os.path.join(d, "agent-stdout.txt")}
    return web.json_response({"project_id": body["project_id"], "task_id": body["task_id"], "run_id": rid,
                              "status": "started"}, status=201)

async def get_run(req):
    run = runs.get(req.match_info["rid"])
    if run is None:
        return web.json_response({"error": {"code": "NOT_FOUND", "message": "run not found"}}, status=404)
    return web.json_response({"run_id": req.match_info["rid"], "status": run["status"]})

async def delete_task(req):
    stopped = [r for r in runs.values() if r["task"] == req.match_info["tid"] and r["status"] == "running"]
    for r in stopped:
        r["status"] = "failed"
    return web.json_response({"stopped_runs": len(stopped)}, status=202)

async def tail(rid):
    path, pos, s = runs[rid]["path"], os.path.getsize(runs[rid]["path"]), 0  # no backlog
    while True:
        await asyncio.sleep(0.005)
        if os.path.getsize(path) <= pos:
            continue
        with open(path, "rb") as f:
            f.seek(pos)
            data = f.read()
        cut = data.rfind(b"\n") + 1
        pos += cut
        for line in data[:cut].splitlines():
            s += 1
            payload = json.dumps({"run_id": rid, "stream": "stdout", "line": line.decode()}, separators=(",", ":"))
            for q in list(subs.get(rid, [])):
                q.put_nowait(f"id: s={s};e=0\nevent: log\ndata: {payload}\n\n".encode())

async def stream(req):
    rid = req.match_info["rid"]
    queues = subs.setdefault(rid, [])
    if len(queues) >= limit:
        return web.json_response({"error": {"code": "TOO_MANY_REQUESTS", "message": "max clients reached for run"}},
                                 status=429)
    q = asyncio.Queue()
    queues.append(q)
    if rid not in tails:
        tails[rid] = asyncio.ensure_future(tail(rid))
    try:
        chunk = await q.get()  # no status line, no headers until the first event
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(req)
        while True:
            await resp.write(chunk)
            chunk = await q.get()
    finally:
        queues.remove(q)

async def main():
    app = web.Application()
    app.router.add_post("/api/v1/tasks", post_task)
    app.router.add_get("/api/v1/runs/{rid}", get_run)
    app.router.add_delete("/api/v1/tasks/{tid}", delete_task)
    app.router.add_get("/api/v1/runs/{rid}/stream", stream)
    runner = web.AppRunner(app, handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture
def real_like(tmp_path: Path) -> Iterator[sut.Target]:
    script = tmp_path / "real_like.py"
    script.write_text(REAL_LIKE_SERVER)
    root = tmp_path / "root"
    root.mkdir()
    proc = subprocess.Popen([sys.executable, str(script), str(root), "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield sut.Target(kind=sut.EXTERNAL, url=f"http://127.0.0.1:{port}/", root=root)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_primers_subscribe_clients_whose_headers_are_withheld_and_429s_are_counted(
    real_like: sut.Target,
) -> None:
    r = sb.measure_log_delivery(real_like, lines=5, clients=4, interval_s=0.01, timeout_s=10)
    assert (r.accepted, r.refused, r.failed) == (2, 2, 0)
    assert r.complete_clients == 2 and r.summary()["count"] == 10
    assert r.notes == []
