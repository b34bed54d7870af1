"""Behaviours of a real conductor-loop server that the suites' own code must survive (not the reference's)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from conductor_perf.bench import reliability, security, storage_bench
from conductor_perf.formats import runs
from conductor_perf.measure.histogram import LatencyHistogram


def test_burst_message_without_any_delivered_line_names_it() -> None:
    # conductor-loop drops a subscriber that falls 128 events behind: a burst can reach no fast
    # subscriber at all, and the empty histogram's summary then holds None
    lost = reliability.Delivery(name="subscriber 1", expected=2000, received=0, missing=2000, duplicated=0,
                                out_of_order=0)  # fmt: skip
    burst = reliability.SseBurst(lines=2000, run_id="r", fast=[lost], slow=[], latency=LatencyHistogram().summary(),
                                 histogram="", connected=0)  # fmt: skip
    assert "no line delivered" in burst.message()
    assert burst.lost == 2000


def test_a_client_lost_before_the_burst_keeps_the_reason() -> None:
    class _Gone:
        status = 200

    assert asyncio.run(reliability._failed(_Gone(), "stream lost during the backlog")) == (
        True, "stream lost during the backlog")  # fmt: skip
    assert asyncio.run(reliability._failed(_Gone())) == (True, "not connected (HTTP 200)")


def test_the_long_cursor_case_first_creates_the_bus_it_reads() -> None:
    # conductor-loop answers 200 {"messages":[]} for a missing bus before it looks at the cursor
    c = security.case("long-after-cursor")
    assert c.prepare is not None
    method, path, body = c.prepare
    assert (method, path) == ("POST", "/api/v1/messages")
    sent = json.loads(body)
    assert sent["project_id"] == "perf-badinput" and "task_id" not in sent and sent["body"].strip()
    assert "project_id=perf-badinput&" in c.path and "task_id" not in c.path


def test_creation_benchmarks_leave_no_never_finished_runs_behind(tmp_path: Path) -> None:
    # a real conductor-loop walks (and rewrites every running) run on each list read: thousands of
    # leftover 'running' runs from these benchmarks slowed the API suite's reads 60-fold
    rate = storage_bench.creation_rate(tmp_path, duration=0.2, max_runs=30)
    burst = storage_bench.creation_burst(tmp_path, count=10)
    assert rate.runs > 0 and burst.runs == 10
    assert list(runs.iter_run_info_paths(tmp_path)) == []
    assert list((tmp_path / "perf-storage").iterdir()) == []
