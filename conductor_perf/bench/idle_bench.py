"""Idle CPU: what one open log stream on a quiet run costs the server.

conductor-loop 0.76 spins about one CPU core for as long as a single SSE client follows a running
run, even when the agent writes nothing (docs/conductor-loop.md, Idle CPU: the status checker rewrites run-info, which
fires its own file watcher, which runs the checker again). A correct server costs nothing there.

:func:`measure_idle_stream_cpu` reproduces that situation through the public API:

1. start one stub agent that prints nothing and sleeps far longer than the window
   (``POST /api/v1/tasks``), and wait until its run is ``running``;
2. open one SSE client on ``GET /api/v1/runs/{run_id}/stream`` and wait for its response head;
3. after a short settle time, sample the server process (alone: the sleeping agent is a child and is
   not counted) every ``interval_s`` for ``window_s`` seconds while nothing is written;
4. stop the task with :func:`conductor_perf.bench.agent_tasks.stop_tasks` (``DELETE
   /api/v1/tasks/{task_id}`` writes ``DONE``, so the task loop does not start another run, and
   stops the run; bounded wait until no run of the task is running).

The figure is the server's mean CPU over the window in % of the whole machine (100 % = every core
busy), the unit of :mod:`conductor_perf.measure.monitor`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx

from ..measure.monitor import ProcessTreeSampler, ResourceSeries
from ..measure.sse import SSEClient, follow
from ..target import Target, is_loopback
from . import agent_tasks, agents_bench

IDLE_PROJECT = "perf-idle"
#: the stub sleeps this much longer than the window, so the run outlives the measurement
RUN_MARGIN_S = 120.0


@dataclass
class IdleCpuResult:
    """What :func:`measure_idle_stream_cpu` measured.

    Attributes:
        project_id, task_id, run_id: the long-lived run.
        window_s: the measured window, seconds.
        cpu_mean_pct: the server's mean CPU over the window, % of the machine.
        cpu_peak_pct: its highest sample, % of the machine.
        cpu_core_mean_pct: the mean in % of one core (what ``top`` shows).
        samples: number of samples in the window.
        events: events the SSE client received during the window, by name (``heartbeat``...).
        events_before: events received between connect and the window (the initial ``status``).
        stream_status: HTTP status of the stream (200 when open).
        run_status_after: the run's status once it was stopped (``failed``/``completed``; ``running``
            when it could not be stopped in time, ``unknown`` when the server did not answer).
        series: the samples, for charts.
        errors: what went wrong outside the measurement (stopping the run...).
    """

    project_id: str
    task_id: str
    run_id: str
    window_s: float
    cpu_mean_pct: float
    cpu_peak_pct: float
    cpu_core_mean_pct: float
    samples: int
    events: dict[str, int]
    events_before: dict[str, int]
    stream_status: int
    run_status_after: str
    series: ResourceSeries = field(repr=False)
    errors: list[str] = field(default_factory=list)

    def cpu_series(self) -> list[list[float]]:
        """``[[t_s, CPU % of the machine], ...]`` of the window."""
        return [[round(s.t_s, 3), s.cpu_machine_percent] for s in self.series.samples
                if s.cpu_machine_percent is not None]  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON (the series as columns)."""
        d = {k: v for k, v in asdict(self).items() if k != "series"}
        d["cpu_series"] = self.cpu_series()
        return d


def cpu_figures(series: ResourceSeries) -> tuple[float, float, float, int]:
    """(mean % of the machine, peak % of the machine, mean % of one core, samples) of a series.

    Samples without a CPU figure (none in a normal series) are left out; an empty series gives zeros.
    """
    machine = [s.cpu_machine_percent for s in series.samples if s.cpu_machine_percent is not None]
    core = [s.cpu_percent for s in series.samples if s.cpu_percent is not None]
    if not machine:
        return 0.0, 0.0, 0.0, 0
    # each sample covers its own window: weight by window length so a late sample does not skew the mean
    windows = [s.window_s or 0.0 for s in series.samples if s.cpu_machine_percent is not None]
    total = sum(windows)
    if total > 0:
        mean = sum(c * w for c, w in zip(machine, windows, strict=True)) / total
        core_mean = mean * series.ncpu
    else:
        mean = sum(machine) / len(machine)
        core_mean = sum(core) / len(core) if core else mean * series.ncpu
    return mean, max(machine), core_mean, len(machine)


async def _wait_running(http: httpx.AsyncClient, run_id: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    status = "missing"
    while time.monotonic() < deadline:
        resp = await http.get(f"/api/v1/runs/{run_id}")
        if resp.status_code == 200:
            status = str(resp.json().get("status", ""))
            if status == "running":
                return status
            if status in agents_bench.FINISHED:
                raise RuntimeError(f"run {run_id} ended ({status}) before the window: the stub did not wait")
        await asyncio.sleep(0.05)
    raise TimeoutError(f"run {run_id} not running within {timeout:g} s (last status: {status})")


async def _status(http: httpx.AsyncClient, run_id: str) -> str:
    """The run's status as served (``unknown`` without an answer)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        resp = await http.get(f"/api/v1/runs/{run_id}")
        if resp.status_code == 200:
            return str(resp.json().get("status", ""))
    return "unknown"


async def _measure(target: Target, window_s: float, interval_s: float, settle_s: float,
                   timeout: float) -> IdleCpuResult:  # fmt: skip
    assert target.pid is not None
    sleep_ms = int((window_s + settle_s + RUN_MARGIN_S) * 1000)
    subs = await asyncio.to_thread(agents_bench.submit_tasks, target, 1, project=IDLE_PROJECT, slug="idle-stream",
                                   config=agents_bench.stub_config(sleep_ms=sleep_ms), timeout=timeout)  # fmt: skip
    sub = subs[0]
    if sub.status != 201 or not sub.run_id:
        raise RuntimeError(f"POST /api/v1/tasks answered {sub.status}: {sub.error}")
    errors: list[str] = []
    async with httpx.AsyncClient(base_url=target.url, headers=target.auth_headers(), timeout=10) as http:
        client = SSEClient(target.endpoint(f"/api/v1/runs/{sub.run_id}/stream"), headers=target.auth_headers(),
                           headers_timeout=timeout)  # fmt: skip
        try:
            await _wait_running(http, sub.run_id, timeout)
            await client.connect()
            before: Counter[str] = Counter()
            stop_before = asyncio.Event()
            reader = asyncio.create_task(follow(client, stop_before, connect=False, counts=before))
            await asyncio.sleep(settle_s)  # the stream's start-up (initial status) is not part of the window
            stop_before.set()
            await reader
            during: Counter[str] = Counter()
            stop = asyncio.Event()
            reader = asyncio.create_task(follow(client, stop, connect=False, counts=during))
            sampler = ProcessTreeSampler(target.pid, interval=interval_s).start()
            try:
                await asyncio.sleep(window_s)  # the measured quiet window
            finally:
                series = sampler.stop()
                stop.set()
                await reader
        finally:
            await client.close()
            errors += await asyncio.to_thread(agent_tasks.stop_tasks, target, [(IDLE_PROJECT, sub.task_id)],
                                              timeout=timeout)  # fmt: skip
            status_after = await _status(http, sub.run_id)
    mean, peak, core_mean, n = cpu_figures(series)
    return IdleCpuResult(project_id=IDLE_PROJECT, task_id=sub.task_id, run_id=sub.run_id, window_s=window_s,
                         cpu_mean_pct=mean, cpu_peak_pct=peak, cpu_core_mean_pct=core_mean, samples=n,
                         events=dict(during), events_before=dict(before), stream_status=client.status,
                         run_status_after=status_after, series=series, errors=errors)  # fmt: skip


def measure_idle_stream_cpu(
    target: Target,
    *,
    window_s: float = 5.0,
    interval_s: float = 0.5,
    settle_s: float = 0.5,
    timeout: float = 30.0,
) -> IdleCpuResult:
    """The server's CPU while one SSE client follows a running run that writes nothing.

    Example::

        r = measure_idle_stream_cpu(target, window_s=5)
        r.cpu_mean_pct   # % of the machine; ~0 on a correct server, ~50 on 2 cores for 0.76

    Args:
        target: the SUT; its process must be visible here (``target.pid``).
        window_s: the measured quiet window, seconds.
        interval_s: sampling interval (CPU resolution is 10 ms per sample: 2 % of a core at 0.5 s).
        settle_s: time between the stream's opening and the window.
        timeout: bound of each wait (run start, stream head, run stop).

    Raises:
        ValueError: no pid, a bad window, or the SUT is not on loopback.
        RuntimeError, TimeoutError: the run could not be started or streamed.
    """
    if target.pid is None:
        raise ValueError(f"the SUT's process is not visible on this machine ({target.url}): cannot sample it")
    if window_s <= 0 or interval_s <= 0:
        raise ValueError(f"window_s and interval_s must be > 0, got {window_s} and {interval_s}")
    if not is_loopback(target.url):
        raise ValueError(f"load is only sent to loopback addresses, not {target.url}")
    return asyncio.run(_measure(target, window_s, interval_s, settle_s, timeout))
