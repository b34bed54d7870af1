"""Concurrent agents and the task load test, end to end through the REST API.

:func:`submit_tasks` sends N ``POST /api/v1/tasks`` at once (each with its own canonical task id and
the stub agent's behaviour in ``config``) and records each request's latency and status;
:func:`wait_for_runs` then waits, bounded, until every returned run is ``completed`` or ``failed``.
Completion is read from ``run-info.yaml`` under the runs root when it is known (no load on the
server while it works) and from ``GET /api/v1/runs/{id}`` otherwise; a run appears a few ms after
its 201 (404 until then), exactly as on the real server.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx

from ..formats import runs
from ..measure.gcpause import collector_paused
from ..measure.histogram import LatencyHistogram
from ..measure.rawhttp import HttpConnection, HttpProtocolError, Request
from ..target import Target, is_loopback

ProgressFn = Callable[[float, int, float], None]
FINISHED = ("completed", "failed")


@dataclass
class Submission:
    """One POST /api/v1/tasks."""

    project_id: str
    task_id: str
    status: int
    latency_ms: float
    run_id: str = ""
    error: str = ""


@dataclass
class RunOutcome:
    """A run as observed at the end."""

    run_id: str
    task_id: str
    status: str
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        """The run's own duration (start to end of the agent process)."""
        return max(0.0, (self.end_ns - self.start_ns) / 1e9)


@dataclass
class AgentsResult:
    """What an N-agent run measured."""

    agents: int
    submitted: int
    accepted: int
    completed: int
    failed: int
    unfinished: int
    wall_s: float
    submit_latency: dict[str, float]
    submit_histogram: str
    run_durations_s: list[float]
    statuses: dict[int, int]
    timeline: list[list[float]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def median_run_s(self) -> float:
        """Median per-run duration in seconds (NaN when no run finished)."""
        return statistics.median(self.run_durations_s) if self.run_durations_s else float("nan")

    def run_percentile_s(self, q: float) -> float:
        """Per-run duration percentile (nearest rank) in seconds."""
        data = sorted(self.run_durations_s)
        if not data:
            return float("nan")
        k = max(0, min(len(data) - 1, int(round(q / 100 * len(data) + 0.5)) - 1))
        return data[k]

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        d = asdict(self)
        d["median_run_s"] = self.median_run_s
        d["p95_run_s"] = self.run_percentile_s(95)
        return d


def stub_config(
    *, sleep_ms: int = 10, lines: int = 0, line_delay_ms: int = 0, exit_code: int = 0
) -> dict[str, str]:
    """The ``config`` map (agent environment) that drives the stub agent."""
    cfg = {"STUB_SLEEP_MS": str(sleep_ms), "PERF_STUB_SLEEP_MS": str(sleep_ms)}
    if lines:
        cfg["STUB_STDOUT_LINES"] = str(lines)
    if line_delay_ms:
        cfg["STUB_LINE_DELAY_MS"] = str(line_delay_ms)
    if exit_code:
        cfg["STUB_EXIT_CODE"] = str(exit_code)
    return cfg


async def _submit_all(target: Target, bodies: list[dict[str, object]], timeout: float) -> list[Submission]:
    """Send every body at once over pre-opened keep-alive connections (one each).

    Connections are opened before the start line so the burst measures the server's handling of
    the requests, and the light raw client keeps the generator from being the bottleneck (an
    httpx client spent ~4 ms of CPU per request here, which a burst of 100 turned into 0.5 s).
    Each connection first carries one ``GET /api/v1/health``: a connect returns once the kernel
    completed the handshake, before the server's loop accepted the socket, and accepting 100 of
    them delayed the first POST by up to 15 ms, which was counted as latency of the burst.
    Latency runs from handing the request to the socket to the last response byte.
    """
    if not is_loopback(target.url):
        raise ValueError(f"load is only sent to loopback addresses, not {target.url}")
    host, port = target.host, target.port
    conns = [HttpConnection(host, port) for _ in bodies]
    await asyncio.wait_for(asyncio.gather(*(c.connect() for c in conns)), timeout)
    headers = target.auth_headers() or None
    health = Request("GET", "/api/v1/health", headers=headers)
    await asyncio.wait_for(asyncio.gather(*(c.request(health, timeout=timeout) for c in conns)), timeout)
    start = asyncio.Event()

    async def one(conn: HttpConnection, body: dict[str, object]) -> Submission:
        req = Request.json("POST", "/api/v1/tasks", body, headers)
        await start.wait()
        t0 = time.monotonic()
        try:
            resp = await conn.request(req, timeout=timeout)
        except (OSError, TimeoutError, HttpProtocolError) as exc:
            return Submission(str(body["project_id"]), str(body["task_id"]), 0, (time.monotonic() - t0) * 1000, "",
                              f"{type(exc).__name__}: {exc}")  # fmt: skip
        ms = (resp.done_at - resp.sent_at) * 1000
        run_id, err = "", ""
        if resp.status == 201:
            try:
                run_id = str(resp.json().get("run_id", ""))
            except ValueError:
                err = f"201 with a body that is not JSON: {resp.text[:120]}"
        else:
            err = f"HTTP {resp.status}: {resp.text.strip()[:200]}"
        return Submission(str(body["project_id"]), str(body["task_id"]), resp.status, ms, run_id, err)

    try:
        tasks = [asyncio.create_task(one(c, b)) for c, b in zip(conns, bodies, strict=True)]
        await asyncio.sleep(0)  # let every request reach the start line
        start.set()
        return await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


def submit_tasks(
    target: Target,
    count: int,
    *,
    project: str = "perf-agents",
    slug: str = "agent",
    config: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> list[Submission]:
    """POST ``count`` tasks at once (released together); returns one :class:`Submission` each."""
    stamp = f"{time.time_ns() % 10**6:06d}"
    bodies = [
        {
            "project_id": project,
            "task_id": runs.canonical_task_id(f"{slug}-{stamp}-{i}"),
            "agent_type": "codex",
            "prompt": f"conductor-perf {slug} task {i}: print a few lines and finish.",
            "config": dict(config or stub_config()),
        }
        for i in range(count)
    ]
    with collector_paused():
        return asyncio.run(_submit_all(target, bodies, timeout))


def _read_outcome(target: Target, sub: Submission, client: httpx.Client | None) -> RunOutcome | None:
    """The run's state if it is finished, else None."""
    if target.root is not None:
        path = runs.run_dir(target.root, sub.project_id, sub.task_id, sub.run_id) / runs.RUN_INFO
        try:
            info = runs.read_run_info(path)
        except runs.StorageError:
            return None
        if info.status in FINISHED and info.end_time_ns:
            return RunOutcome(sub.run_id, sub.task_id, info.status, info.start_time_ns, info.end_time_ns)
        return None
    assert client is not None
    resp = client.get(f"/api/v1/runs/{sub.run_id}")
    if resp.status_code != 200:
        return None
    data = resp.json()
    if data.get("status") not in FINISHED:
        return None
    from ..formats.bus import parse_rfc3339

    return RunOutcome(sub.run_id, sub.task_id, data["status"], parse_rfc3339(data["start_time"]),
                      parse_rfc3339(data["end_time"]))  # fmt: skip


def wait_for_runs(
    target: Target,
    submissions: list[Submission],
    *,
    timeout: float = 300.0,
    poll: float = 0.05,
    on_progress: ProgressFn | None = None,
    progress_every: float = 5.0,
) -> tuple[list[RunOutcome], list[Submission]]:
    """Wait until every accepted run finished or ``timeout``; returns (finished, unfinished)."""
    pending = [s for s in submissions if s.status == 201 and s.run_id]
    done: list[RunOutcome] = []
    start = time.monotonic()
    last = start
    client = None if target.root is not None else httpx.Client(base_url=target.url, headers=target.auth_headers(),
                                                                timeout=10)  # fmt: skip
    try:
        while pending and time.monotonic() - start < timeout:
            still = []
            for sub in pending:
                outcome = _read_outcome(target, sub, client)
                if outcome is None:
                    still.append(sub)
                else:
                    done.append(outcome)
            pending = still
            now = time.monotonic()
            if on_progress and now - last >= progress_every:
                on_progress(now - start, len(done), len(done) / (now - start))
                last = now
            if pending:
                time.sleep(poll if target.root is not None else max(poll, 0.2))
    finally:
        if client is not None:
            client.close()
    return done, pending


def run_agents(
    target: Target,
    count: int,
    *,
    sleep_ms: int = 10,
    timeout: float = 300.0,
    project: str = "perf-agents",
    on_progress: ProgressFn | None = None,
) -> AgentsResult:
    """Start ``count`` stub agents at once and wait until all finished; wall time from first POST."""
    t0 = time.time_ns()
    subs = submit_tasks(
        target, count, project=project, slug=f"n{count}", config=stub_config(sleep_ms=sleep_ms)
    )
    done, pending = wait_for_runs(target, subs, timeout=timeout, on_progress=on_progress)
    end_ns = max((o.end_ns for o in done), default=time.time_ns())
    if pending:
        end_ns = time.time_ns()
    return summarize(count, subs, done, pending, t0, end_ns)


def summarize(count: int, subs: list[Submission], done: list[RunOutcome], pending: list[Submission],
              t0_ns: int, end_ns: int) -> AgentsResult:  # fmt: skip
    """Build an :class:`AgentsResult` from submissions and outcomes."""
    hist = LatencyHistogram()
    statuses: dict[int, int] = {}
    for s in subs:
        hist.record_ms(s.latency_ms)
        statuses[s.status] = statuses.get(s.status, 0) + 1
    timeline = sorted([[(o.start_ns - t0_ns) / 1e9, (o.end_ns - t0_ns) / 1e9] for o in done])
    return AgentsResult(
        agents=count,
        submitted=len(subs),
        accepted=sum(1 for s in subs if s.status == 201),
        completed=sum(1 for o in done if o.status == "completed"),
        failed=sum(1 for o in done if o.status == "failed"),
        unfinished=len(pending),
        wall_s=(end_ns - t0_ns) / 1e9,
        submit_latency=hist.summary(),
        submit_histogram=hist.encode(),
        run_durations_s=[o.duration_s for o in done],
        statuses=statuses,
        timeline=timeline,
        errors=[s.error for s in subs if s.error][:5],
    )


def task_dirs(target: Target, subs: list[Submission]) -> list[Path]:
    """Task folders of the submissions (needs the runs root)."""
    root = target.require_root()
    return [runs.task_dir(root, s.project_id, s.task_id) for s in subs]
