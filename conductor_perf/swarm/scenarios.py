"""What one worker's share of each swarm scenario is, and what the coordinator makes of the shares.

A scenario has three parts, all here so the Robot libraries stay thin:

* :func:`make_spec` (coordinator): the spec every worker reads from the board -- the window, the
  bus task the writers share, the endpoint, each worker's number of tasks or SSE clients;
* :func:`run_share` (worker): one worker's load, held at the swarm's start barrier by ``gate``
  (the worker's connections and files are ready before it), returning a
  :class:`~conductor_perf.measure.workers.WorkerReport`: counts, HDR histograms in their
  compressed encoding, ``timeline/<second>`` counts for the per-worker rate chart and per-item
  records (the writer number, the submitted runs, each SSE client);
* the coordinator's figures of the merged reports: :func:`load_result` (HTTP scenarios, through
  :func:`~conductor_perf.measure.load.combine_reports`), :func:`bus_integrity`,
  :func:`task_runs`, :func:`worker_rates`.

Scenarios: ``bus`` (file-level appends to one task bus, conductor-loop's own protocol; the workers
need the SUT's runs root), ``bus-http`` (``POST /api/v1/messages`` to one task bus), ``api``
(closed loop on one endpoint), ``tasks`` (a burst of task submissions, then every run completes),
``sse`` (subscribers of one task bus's message stream; the coordinator posts the stamped messages).
"""

from __future__ import annotations

import math
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..bench import agents_bench, api_bench, bus_bench
from ..formats import bus, runs
from ..measure import load
from ..measure.histogram import LatencyHistogram
from ..measure.workers import MergedReports, WorkerReport
from ..target import Target

__all__ = [
    "SCENARIOS",
    "ProgressBox",
    "bus_integrity",
    "load_result",
    "make_spec",
    "run_share",
    "split",
    "task_runs",
    "worker_rates",
]

SCENARIOS = ("bus", "bus-http", "api", "tasks", "sse")
PROJECT = "perf-swarm"
GATE_TIMEOUT_S = 120.0
"""The longest a worker's prepared load waits at the swarm's barrier (the barrier's own timeout is shorter)."""

Gate = Callable[[], object]


class ProgressBox:
    """What a worker has done so far, read by its heartbeat thread (``{"messages": 1234}``)."""

    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def split(total: int, parts: int) -> list[int]:
    """``total`` as evenly as possible over ``parts`` (the first ones get the remainder)."""
    base, extra = divmod(int(total), int(parts))
    return [base + (1 if i < extra else 0) for i in range(int(parts))]


def make_spec(scenario: str, *, workers: int, duration_s: float = 10.0, path: str = "/api/v1/health",
              connections: int = 1, tasks: int = 100, work_ms: int = 10, timeout_s: float = 120.0,
              clients: int = 100, messages: int = 50, interval_s: float = 0.02) -> dict[str, Any]:  # fmt: skip
    """The spec of one swarm run (JSON-friendly); only the keys the scenario uses matter.

    Args:
        scenario: one of :data:`SCENARIOS`.
        workers: how many workers share the load.
        duration_s: the window (``bus``, ``bus-http``, ``api``).
        path, connections: the endpoint and each worker's connections (``api``; ``bus-http``
            uses ``connections`` too).
        tasks, work_ms, timeout_s: tasks submitted in all, each stub agent's work, and how long
            their runs may take (``tasks``); ``timeout_s`` also bounds SSE waits.
        clients, messages, interval_s: SSE subscribers in all, stamped messages and their pace (``sse``).
    """
    if scenario not in SCENARIOS:
        raise ValueError(f"unknown swarm scenario {scenario!r}: use one of {', '.join(SCENARIOS)}")
    if workers < 1:
        raise ValueError(f"a swarm needs at least one worker, got {workers}")
    if not duration_s > 0:
        raise ValueError(f"the window must be positive, got {duration_s}")
    spec: dict[str, Any] = {"scenario": scenario, "workers": workers, "duration_s": float(duration_s),
                            "token": secrets.token_hex(3)}  # fmt: skip
    if scenario == "bus":
        spec.update(project=PROJECT, task=runs.canonical_task_id(f"swarm-bus-{spec['token']}"))
    elif scenario == "bus-http":
        spec.update(project=api_bench.MESSAGE_PROJECT, task=api_bench.new_message_task(), connections=connections)
    elif scenario == "api":
        spec.update(method="GET", path=path, connections=connections)
    elif scenario == "tasks":
        if tasks < workers:
            raise ValueError(f"{tasks} tasks cannot be shared by {workers} workers")
        spec.update(project=f"{PROJECT}-tasks", tasks=tasks, per_worker=split(tasks, workers), work_ms=work_ms,
                    timeout_s=timeout_s)  # fmt: skip
    else:  # sse
        if clients < workers:
            raise ValueError(f"{clients} SSE clients cannot be shared by {workers} workers")
        spec.update(project=f"{PROJECT}-sse", task=runs.canonical_task_id(f"swarm-sse-{spec['token']}"),
                    clients=clients, per_worker=split(clients, workers), messages=messages,
                    interval_s=interval_s, timeout_s=timeout_s)  # fmt: skip
    return spec


def _seconds_timeline(samples: list[tuple[float, int]], duration_s: float) -> dict[str, int]:
    """``timeline/<s>`` counts per whole second from cumulative ``(elapsed, total)`` samples."""

    def at(t: float) -> float:
        prev_t, prev_n = 0.0, 0
        for st, sn in samples:
            if st >= t:
                if st == prev_t:
                    return float(sn)
                return prev_n + (sn - prev_n) * (t - prev_t) / (st - prev_t)
            prev_t, prev_n = st, sn
        return float(prev_n)

    out: dict[str, int] = {}
    for sec in range(math.ceil(duration_s)):
        end = min(duration_s, sec + 1.0)
        out[f"timeline/{sec}"] = max(0, round(at(end)) - round(at(float(sec))))
    return out


# --------------------------------------------------------------------------------------------
# one worker's share
# --------------------------------------------------------------------------------------------
def run_share(target: Target, spec: Mapping[str, Any], index: int, *, gate: Gate,
              progress: ProgressBox | None = None) -> WorkerReport:  # fmt: skip
    """Run worker ``index``'s share of ``spec`` against ``target``; ``gate`` is the swarm's start barrier."""
    box = progress if progress is not None else ProgressBox()
    scenario = spec["scenario"]
    if scenario == "bus":
        return _bus_share(target, spec, index, gate, box)
    if scenario in ("bus-http", "api"):
        return _http_share(target, spec, index, gate, box)
    if scenario == "tasks":
        return _tasks_share(target, spec, index, gate, box)
    if scenario == "sse":
        from .sse_share import run_sse_share  # imported here: sse_share builds on this module's names

        return run_sse_share(target, spec, index, gate, box)
    raise ValueError(f"unknown swarm scenario {scenario!r}")


def bus_path(target: Target, spec: Mapping[str, Any]):
    """The task bus file the ``bus`` scenario's writers share (needs the runs root)."""
    root = target.require_root()
    path = bus.task_bus_path(root, spec["project"], spec["task"])
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _bus_share(target: Target, spec: Mapping[str, Any], index: int, gate: Gate, box: ProgressBox) -> WorkerReport:
    path = bus_path(target, spec)
    duration = float(spec["duration_s"])

    def tick(elapsed: float, total: int, rate: float) -> None:
        box.values["messages"] = total

    result = bus_bench.write_throughput(path, writers=1, duration=duration, mode="threads",
                                        project_id=spec["project"], task_id=spec["task"], check=False,
                                        on_progress=tick, progress_every=bus_bench.TICK_S, first_writer=index,
                                        start_gate=gate, gate_timeout=GATE_TIMEOUT_S)  # fmt: skip
    counts = {"messages": result.messages, **_seconds_timeline(result.timeline, duration)}
    return WorkerReport("", counts=counts, histograms={"append": result.histogram},
                        maxima={"duration_s": duration}, records=[{"writer": index, "messages": result.messages}],
                        cpu_s=result.cpu_s, wall_s=duration)  # fmt: skip


def _http_share(target: Target, spec: Mapping[str, Any], index: int, gate: Gate, box: ProgressBox) -> WorkerReport:
    if spec["scenario"] == "bus-http":
        request: load.RequestSpec = api_bench.message_factory(target, spec["task"], writer=index)
    else:
        request = api_bench.endpoint_request(target, spec.get("method", "GET"), spec["path"])

    def tick(elapsed: float, requests: int, rate: float) -> None:
        box.values["requests"] = requests

    result = load.run_closed(target.url, request, workers=int(spec.get("connections", 1)),
                             duration=float(spec["duration_s"]), on_progress=tick, progress_interval=0.25,
                             start_gate=gate, gate_timeout=GATE_TIMEOUT_S)  # fmt: skip
    report = result.reports[0]
    report.records = [{"writer": index, "ok": result.ok}]
    return report


def _tasks_share(target: Target, spec: Mapping[str, Any], index: int, gate: Gate, box: ProgressBox) -> WorkerReport:
    count = int(spec["per_worker"][index])
    subs = agents_bench.submit_tasks(target, count, project=spec["project"], slug=f"swarm-w{index}",
                                     config=agents_bench.stub_config(sleep_ms=int(spec["work_ms"])),
                                     start_gate=gate)  # fmt: skip
    hist = LatencyHistogram()
    counts: dict[str, int] = {"submitted": len(subs)}
    samples: list[str] = []
    for s in subs:
        hist.record_us(s.latency_ms * 1000)
        counts[f"status/{s.status}"] = counts.get(f"status/{s.status}", 0) + 1
        if s.error and len(samples) < 5 and s.error not in samples:
            samples.append(s.error)
    box.values["submitted"] = len(subs)
    records = [{"project_id": s.project_id, "task_id": s.task_id, "status": s.status, "run_id": s.run_id,
                "latency_ms": round(s.latency_ms, 3), "error": s.error} for s in subs]  # fmt: skip
    return WorkerReport("", counts=counts, histograms={"submission": hist.encode()}, samples=samples,
                        records=records)  # fmt: skip


# --------------------------------------------------------------------------------------------
# the coordinator's figures
# --------------------------------------------------------------------------------------------
def load_result(spec: Mapping[str, Any], url: str, merged: MergedReports) -> load.LoadResult:
    """One :class:`~conductor_perf.measure.load.LoadResult` of an HTTP scenario's reports (exact merge)."""
    connections = int(spec.get("connections", 1)) * merged.expected
    return load.combine_reports("closed", url, merged.reports, workers=connections, connections=connections)


def bus_integrity(target: Target, spec: Mapping[str, Any], merged: MergedReports) -> bus_bench.Integrity:
    """The ``bus`` scenario's task bus checked against every writer's count (each message once, none torn)."""
    expected = {int(r["writer"]): int(r["messages"]) for r in merged.records}
    return bus_bench.check_integrity(bus_path(target, spec), expected)


def http_bus_integrity(target: Target, spec: Mapping[str, Any], merged: MergedReports) -> bus_bench.Integrity:
    """The ``bus-http`` scenario's task bus: every acknowledged message once, none torn (needs the root)."""
    return api_bench.posted_integrity(target, spec["task"], merged.count("ok"))


def task_runs(target: Target, merged: MergedReports, *, timeout_s: float,
              on_progress: Callable[[float, int, float], None] | None = None
              ) -> tuple[list[agents_bench.RunOutcome], list[agents_bench.Submission], float]:  # fmt: skip
    """Wait until every accepted run of the ``tasks`` scenario finished; (finished, unfinished, seconds)."""
    subs = [agents_bench.Submission(str(r["project_id"]), str(r["task_id"]), int(r["status"]),
                                    float(r["latency_ms"]), str(r.get("run_id", "")), str(r.get("error", "")))
            for r in merged.records]  # fmt: skip
    t0 = time.monotonic()
    done, pending = agents_bench.wait_for_runs(target, subs, timeout=timeout_s, on_progress=on_progress)
    return done, pending, time.monotonic() - t0


def worker_rates(reports: list[WorkerReport]) -> dict[str, list[list[float]]]:
    """Each worker's ``timeline/<second>`` counts as a chart series ``{name: [[second, count], ...]}``."""
    out: dict[str, list[list[float]]] = {}
    for r in reports:
        points = sorted((int(k.split("/", 1)[1]), v) for k, v in r.counts.items()
                        if k.startswith("timeline/") and k.split("/", 1)[1].isdigit())  # fmt: skip
        if points:
            out[r.worker] = [[float(s), float(n)] for s, n in points]
    return out
