"""Concurrent agents and the task load test, end to end through the REST API.

:func:`submit_tasks` sends N ``POST /api/v1/tasks`` at once (each with its own canonical task id and
the stub agent's behaviour in ``config``) and records each request's latency and status;
:func:`wait_for_runs` then waits, bounded, until every returned run is ``completed`` or ``failed``
and its task is done. Completion is read from ``run-info.yaml`` under the runs root when it is
known (no load on the server while it works) and from ``GET /api/v1/runs/{id}`` otherwise; a run
appears a few ms after its 201 (404 until then), exactly as on the real server. A wait that cannot
succeed (tasks that restart because their agent never marks them done, runs that never start)
stops the tasks and fails within about a minute with the reason (:mod:`.agent_tasks`).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import httpx

from ..formats import runs
from ..formats.agentenv import StubReport
from ..measure.gcpause import collector_paused
from ..measure.histogram import LatencyHistogram
from ..measure.rawhttp import HttpConnection, HttpProtocolError, Request
from ..target import Target, is_loopback
from . import agent_tasks

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
    report: StubReport | None = None
    """The stub's report on its environment (read for the first finished run of a wait only)."""

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
    report: StubReport | None = None

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


async def _submit_all(target: Target, bodies: list[dict[str, object]], timeout: float,
                      start_gate: Callable[[], object] | None = None) -> list[Submission]:  # fmt: skip
    """Send every body at once over pre-opened keep-alive connections (one each).

    Connections are opened before the start line so the burst measures the server's handling of
    the requests, and the light raw client keeps the generator from being the bottleneck (an
    httpx client spent ~4 ms of CPU per request here, which a burst of 100 turned into 0.5 s).
    Each connection first carries one ``GET /api/v1/health``: a connect returns once the kernel
    completed the handshake, before the server's loop accepted the socket, and accepting 100 of
    them delayed the first POST by up to 15 ms, which was counted as latency of the burst.
    Latency runs from handing the request to the socket to the last response byte. A
    ``start_gate`` (called in a thread once every connection is warm) holds the burst back, e.g.
    until the other processes of a swarm are ready too.
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
        if start_gate is not None:
            await asyncio.get_running_loop().run_in_executor(None, start_gate)
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
    start_gate: Callable[[], object] | None = None,
) -> list[Submission]:
    """POST ``count`` tasks at once (released together, after ``start_gate`` returns when given);
    returns one :class:`Submission` each."""
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
        return asyncio.run(_submit_all(target, bodies, timeout, start_gate))


def _observe(target: Target, sub: Submission, client: httpx.Client | None) -> tuple[bool, RunOutcome | None]:
    """(whether the run started, its outcome once it finished)."""
    if target.root is not None:
        path = runs.run_dir(target.root, sub.project_id, sub.task_id, sub.run_id) / runs.RUN_INFO
        try:
            info = runs.read_run_info(path)
        except runs.StorageError:
            return False, None
        if info.status in FINISHED and info.end_time_ns:
            return True, RunOutcome(sub.run_id, sub.task_id, info.status, info.start_time_ns, info.end_time_ns)
        return True, None
    assert client is not None
    try:
        resp = client.get(f"/api/v1/runs/{sub.run_id}")
        data = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return False, None
    if not isinstance(data, dict):
        return False, None
    if data.get("status") not in FINISHED:
        return True, None
    from ..formats.bus import parse_rfc3339

    return True, RunOutcome(sub.run_id, sub.task_id, data["status"], parse_rfc3339(data["start_time"]),
                            parse_rfc3339(data["end_time"]))  # fmt: skip


def wait_for_runs(
    target: Target,
    submissions: list[Submission],
    *,
    timeout: float = 300.0,
    poll: float = 0.05,
    on_progress: ProgressFn | None = None,
    progress_every: float = 5.0,
    stall_timeout: float = agent_tasks.STALL_S,
) -> tuple[list[RunOutcome], list[Submission]]:
    """Wait until every accepted run finished and its task is done, or ``timeout``; returns (finished, unfinished).

    A wait that cannot succeed ends early with :class:`~conductor_perf.bench.agent_tasks.AgentTaskError`
    naming the reason, after every task of ``submissions`` not yet done was stopped through the API:

    * a task whose run ended is still not done :data:`~conductor_perf.bench.agent_tasks.DONE_GRACE_S`
      later, or the server started a second run for it (its agent never created ``DONE``: the
      server would restart it again and again);
    * no run started or ended for ``stall_timeout`` seconds (runs that never start: e.g. the
      server cannot find the agent).

    On ``timeout`` the unfinished tasks are stopped as well and returned as unfinished. The first
    finished run carries the stub's report on its environment (:attr:`RunOutcome.report`).
    """
    pending = [s for s in submissions if s.status == 201 and s.run_id]
    done: list[RunOutcome] = []
    unverified: dict[str, tuple[Submission, float]] = {}  # run id -> (submission, when seen finished)
    started: set[str] = set()
    start = time.monotonic()
    last = last_change = start
    progress = (0, 0)
    client = httpx.Client(base_url=target.url, headers=target.auth_headers(), timeout=10)
    try:
        while (pending or unverified) and time.monotonic() - start < timeout:
            still = []
            for sub in pending:
                began, outcome = _observe(target, sub, client if target.root is None else None)
                if began:
                    started.add(sub.run_id)
                if outcome is None:
                    still.append(sub)
                    continue
                if not done:
                    outcome.report = agent_tasks.read_stub_report(target, sub.project_id, sub.task_id, sub.run_id)
                done.append(outcome)
                unverified[sub.run_id] = (sub, time.monotonic())
            pending = still
            for run_id, (sub, ended) in list(unverified.items()):
                check = agent_tasks.check_task(target, sub.project_id, sub.task_id, client)
                if check is not None and check.done:
                    del unverified[run_id]
                elif check is not None and (check.runs > 1 or time.monotonic() - ended > agent_tasks.DONE_GRACE_S):
                    others = [(s.project_id, s.task_id) for s in [*pending, *(u for u, _ in unverified.values())]]
                    agent_tasks.fail_not_done(target, sub.project_id, sub.task_id, sub.run_id, check,
                                              [(sub.project_id, sub.task_id), *others])  # fmt: skip
            now = time.monotonic()
            if (len(started), len(done)) != progress:
                progress, last_change = (len(started), len(done)), now
            elif pending and now - last_change > stall_timeout:
                _fail_stalled(target, submissions, pending, started, unverified, stall_timeout)
            if on_progress and now - last >= progress_every:
                on_progress(now - start, len(done), len(done) / (now - start))
                last = now
            if pending or unverified:
                time.sleep(poll if target.root is not None else max(poll, 0.2))
    finally:
        client.close()
    leftover = [*pending, *(sub for sub, _ in unverified.values())]
    agent_tasks.stop_tasks(target, [(s.project_id, s.task_id) for s in leftover])
    return done, pending


def _fail_stalled(target: Target, submissions: list[Submission], pending: list[Submission], started: set[str],
                  unverified: dict[str, tuple[Submission, float]], stall: float) -> None:  # fmt: skip
    """Stop every unfinished task, then raise AgentTaskError saying what made no progress."""
    accepted = sum(1 for s in submissions if s.status == 201 and s.run_id)
    never = [s for s in pending if s.run_id not in started]
    running = [s for s in pending if s.run_id in started]
    parts = []
    if never:
        parts.append(f"{len(never)} of {accepted} runs never started (no run-info.yaml, e.g. run {never[0].run_id} "
                     "of task " + f"{never[0].project_id}/{never[0].task_id}): is the stub `codex` first on the "
                     "server's PATH and the `codex` agent in its config? The server's log says why")  # fmt: skip
    if running:
        parts.append(f"{len(running)} of {accepted} runs still running, e.g. {running[0].run_id}")
    tasks = [(s.project_id, s.task_id) for s in [*pending, *(u for u, _ in unverified.values())]]
    message = f"no agent run started or ended for {stall:g} s: {'; '.join(parts)}"
    raise agent_tasks.AgentTaskError(message + agent_tasks.stop_unfinished(target, tasks))


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
    done, pending = wait_for_runs(target, subs, timeout=timeout, on_progress=on_progress,
                                  stall_timeout=stall_bound(sleep_ms))  # fmt: skip
    end_ns = max((o.end_ns for o in done), default=time.time_ns())
    if pending:
        end_ns = time.time_ns()
    return summarize(count, subs, done, pending, t0, end_ns)


def stall_bound(work_ms: float) -> float:
    """How long a wait on runs that each work ``work_ms`` may see no run start or end: a minute beyond
    twice the work, so a slow run is never taken for a stalled one."""
    return agent_tasks.STALL_S + 2 * max(0.0, work_ms) / 1000


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
        report=next((o.report for o in done if o.report is not None), None),
    )
