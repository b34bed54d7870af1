"""Leak verdicts of the SUT over repeated, identical workload cycles (target: no memory or goroutine leaks).

Method (see :mod:`conductor_perf.measure.leak` for the statistics). One **cycle** is the same small
mix of everything the server does, run through its public API:

1. ``agents`` stub agents started at once with ``POST /api/v1/tasks`` (each prints a few lines and
   works ``agent_work_ms``), waited for until every run ended;
2. ``sse_clients`` clients that connect to the message stream of the cycle's task bus, read the
   hydration and ``sse_events`` live messages, and disconnect;
3. a burst of ``messages`` ``POST /api/v1/messages`` to that bus (closed loop, ``message_writers``
   connections) that feeds those clients;
4. ``api_reads`` list reads (``GET /api/v1/status``, ``/api/v1/runs``, ``/api/v1/tasks``).

After each cycle the server is left **idle**: once it has no agent process left, nothing is sent for
``idle_s`` seconds, then one **idle point** is sampled (:func:`conductor_perf.measure.monitor.sample_once`):
memory (USS, else PSS, else RSS), OS threads, open fds and TCP sockets; for a Go build whose log
holds the runtime's scheduler trace (the suite starts one that way), also its live goroutines, and
its *busy* OS threads in place of all of them: the Go runtime keeps the threads it made parked for
reuse and never ends them, so their count is the high-water mark of blocking system calls, not a
leak (:func:`conductor_perf.measure.goroutines.next_sched_snapshot`). A warm-up cycle comes first
(caches, the thread pool and the allocator's arenas fill up there); its idle point is the
**baseline**. Then ``cycles`` measured cycles (K >= 6 recommended) give K idle points per resource,
and :func:`~conductor_perf.measure.leak.leak_verdict` decides per resource: ``leak`` when the
Theil-Sen slope is significant (one-sided Mann-Kendall, ``alpha``) and the fitted growth exceeds the
tolerance, or when the level does not return to within the tolerance of the baseline.

A soak (:func:`run_leak_cycles` with ``duration_s``) repeats cycles until the duration has passed
(at least ``cycles`` of them), the same verdicts over more points.

The first cycle whose workload fails ends the run (its errors say why; a verdict over a failing
workload proves nothing), so a server that cannot serve the workload costs one cycle, not all of
them: agent tasks that never finish fail the cycle within about a minute
(:func:`conductor_perf.bench.agents_bench.wait_for_runs`), and agent processes still alive
``timeout_s`` after a cycle whose tasks are all done end the run as well.

Each cycle uses fresh task ids, so the server's history grows by ``agents + 1`` tasks a cycle
(a task bus per cycle, because a server may cache a bus's parsed messages: one ever-growing bus
would grow that cache with every cycle). A server that indexes its history in memory keeps some
memory per run for good (the reference conductor about 10 KB per task and run, measured over 200
runs); :attr:`LeakTolerances.memory_per_run_kb` allows for it, so a long soak does not call
history a leak, while a leak per request (hundreds of requests a cycle) still stands out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import psutil

from ..formats import runs
from ..measure import goroutines
from ..measure.leak import LeakVerdict, leak_verdict
from ..measure.load import closed_loop
from ..measure.monitor import MIB, sample_once
from ..measure.rawhttp import Request
from ..measure.sse import SSEClient, SSEError
from ..reference.filehelper import HELPER_MODULE
from ..target import Target, is_loopback
from ..wording import plural
from . import agents_bench

LEAK_PROJECT = "perf-leak"
API_READ_PATHS = ("/api/v1/status", "/api/v1/runs", "/api/v1/tasks")
#: the resources judged, in report order: (name, unit)
RESOURCES: tuple[tuple[str, str], ...] = (
    ("memory", "MB"),
    ("threads", "threads"),
    ("goroutines", "goroutines"),
    ("open fds", "fds"),
    ("tcp connections", "sockets"),
)
MIN_CYCLES = 3
MAX_CYCLES = 10_000

CycleCallback = Callable[["CycleReport"], None]


@dataclass(frozen=True)
class Workload:
    """One leak cycle's workload (every cycle identical).

    Attributes:
        agents: stub agents started at once.
        agent_work_ms: how long each stub works (sleeps) after printing ``agent_lines`` lines.
        agent_lines: stdout lines each stub prints.
        messages: ``POST /api/v1/messages`` in the burst.
        message_writers: connections the burst is sent over (closed loop).
        sse_clients: message-stream clients that connect, read and disconnect.
        sse_events: live messages each SSE client reads before it disconnects.
        api_reads: list reads (status, runs, tasks in turn).
        timeout_s: bound of each step of a cycle.
    """

    agents: int = 3
    agent_work_ms: int = 200
    agent_lines: int = 5
    messages: int = 200
    message_writers: int = 4
    sse_clients: int = 5
    sse_events: int = 10
    api_reads: int = 20
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        for name in ("agents", "messages", "sse_clients", "api_reads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.message_writers < 1:
            raise ValueError(f"message_writers must be >= 1, got {self.message_writers}")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {self.timeout_s}")

    @property
    def requests_per_cycle(self) -> int:
        """HTTP requests one cycle sends (for sizing a leaking test double)."""
        return self.agents + 1 + self.messages + self.sse_clients + self.api_reads


@dataclass(frozen=True)
class LeakTolerances:
    """Allowed growth per resource over the cycles (and above the baseline at the end).

    Attributes:
        memory_mb: memory (USS/PSS/RSS) in MB.
        memory_per_run_kb: memory a server may keep per run it has in its history (its in-memory
            index of tasks and runs), KB. The memory tolerance grows by this much for every agent
            run the measured cycles created: history is not a leak, but it grows with every cycle.
        threads: OS threads (a Go build's busy ones, when its scheduler trace is read).
        goroutines: live goroutines of a Go build (from its scheduler trace).
        open_fds: open file descriptors.
        tcp_connections: TCP sockets of the server (all states).
        alpha: significance level of the Mann-Kendall trend test.
    """

    memory_mb: float = 10.0
    memory_per_run_kb: float = 0.0
    threads: float = 2.0
    goroutines: float = 10.0
    open_fds: float = 4.0
    tcp_connections: float = 2.0
    alpha: float = 0.05

    def of(self, resource: str, runs_created: int = 0) -> float:
        """The tolerance of one of :data:`RESOURCES` after ``runs_created`` agent runs."""
        memory = self.memory_mb + self.memory_per_run_kb * max(0, runs_created) / 1024
        return {"memory": memory, "threads": self.threads, "goroutines": self.goroutines, "open fds": self.open_fds,
                "tcp connections": self.tcp_connections}[resource]  # fmt: skip


@dataclass
class CycleReport:
    """What one cycle did and the idle point after it.

    Attributes:
        index: 0 for the warm-up, then 1..K.
        warmup: whether this is the warm-up cycle.
        t_s: seconds since the first cycle started, at the idle point.
        workload_s: seconds the workload took.
        agents_completed: runs that ended ``completed``.
        messages_ok: messages answered 201.
        sse_events: live message events the SSE clients received in total.
        api_reads_ok: list reads answered 200.
        errors: what went wrong in the workload (empty when everything worked).
        idle: the idle-point sample (:func:`~conductor_perf.measure.monitor.sample_once`).
        values: the judged resources at the idle point (``{"memory": MB, "threads": n, ...}``).
    """

    index: int
    warmup: bool
    t_s: float
    workload_s: float
    agents_completed: int
    messages_ok: int
    sse_events: int
    api_reads_ok: int
    errors: list[str] = field(default_factory=list)
    idle: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


@dataclass
class LeakRun:
    """The outcome of :func:`run_leak_cycles`.

    Attributes:
        workload: what each cycle did.
        tolerances: the tolerances applied.
        memory_basis: ``uss``, ``pss`` or ``rss``: which memory figure the verdict uses.
        baseline: the warm-up cycle (its idle point is the baseline).
        cycles: the measured cycles, in order.
        verdicts: per resource, the verdict over the measured idle points.
        duration_s: wall time of the whole run.
        runs_created: agent runs the measured cycles created (history the memory tolerance allows for).
    """

    workload: Workload
    tolerances: LeakTolerances
    memory_basis: str
    baseline: CycleReport
    cycles: list[CycleReport]
    verdicts: dict[str, LeakVerdict]
    duration_s: float
    runs_created: int = 0

    @property
    def leaking(self) -> list[str]:
        """Names of the resources whose verdict is ``leak``."""
        return [name for name, v in self.verdicts.items() if v.leaked]

    @property
    def workload_errors(self) -> list[str]:
        """Every workload error of every cycle (warm-up included), prefixed with the cycle."""
        return [f"cycle {c.index}: {e}" for c in [self.baseline, *self.cycles] for e in c.errors]

    @property
    def threads_basis(self) -> str:
        """Which threads were judged: ``busy`` (a Go build's scheduler trace) or ``os`` (all OS threads)."""
        return "busy" if any(c.idle.get("busy_threads") is not None for c in self.cycles) else "os"

    def series(self, resource: str) -> list[float]:
        """The idle-point values of one resource over the measured cycles (missing values dropped)."""
        return [float(v) for c in self.cycles if (v := c.values.get(resource)) is not None]

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"workload": asdict(self.workload), "tolerances": asdict(self.tolerances),
                "memory_basis": self.memory_basis, "baseline": self.baseline.to_dict(),
                "cycles": [c.to_dict() for c in self.cycles],
                "verdicts": {k: v.to_dict() for k, v in self.verdicts.items()},
                "leaking": self.leaking, "duration_s": self.duration_s,
                "runs_created": self.runs_created}  # fmt: skip


# -- idle points ------------------------------------------------------------------------------


def memory_basis(sample: dict[str, Any]) -> str:
    """Which memory figure of a sample the verdict uses: ``uss``, else ``pss``, else ``rss``."""
    for basis in ("uss", "pss"):
        if sample.get(f"{basis}_bytes") is not None:
            return basis
    return "rss"


def resource_values(sample: dict[str, Any], basis: str | None = None) -> dict[str, float | None]:
    """The judged resources of one idle-point sample: memory in MB (``basis``), threads, goroutines, fds, sockets.

    Threads are the busy ones of a Go build's scheduler trace when the sample has them
    (``busy_threads``), else all OS threads; goroutines only come from that trace.
    """
    basis = basis or memory_basis(sample)
    mem = sample.get(f"{basis}_bytes")
    busy = sample.get("busy_threads")
    return {
        "memory": None if mem is None else mem / MIB,
        "threads": busy if busy is not None else sample.get("threads"),
        "goroutines": sample.get("goroutines"),
        "open fds": sample.get("open_fds"),
        "tcp connections": sample.get("tcp_connections"),
    }


def wait_until_quiet(pid: int, *, timeout: float = 30.0, poll: float = 0.05) -> bool:
    """Wait until the process has no live agent processes (the file helper aside); False on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        if not agent_processes(pid):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(poll)


def agent_processes(pid: int) -> list[str]:
    """The live processes below ``pid`` other than the server's own helper, as ``pid command`` texts.

    Raises:
        ProcessLookupError: there is no process ``pid`` (or it ended).
    """
    try:
        proc = psutil.Process(pid)
    except psutil.NoSuchProcess as exc:
        raise ProcessLookupError(f"no process with pid {pid}") from exc
    try:
        kids = [k for k in proc.children(recursive=True)
                if k.status() != psutil.STATUS_ZOMBIE and not _is_service_process(k)]  # fmt: skip
    except psutil.NoSuchProcess as exc:
        if not proc.is_running():
            raise ProcessLookupError(f"process {pid} ended") from exc
        return ["(a child ended while listing)"]  # look again
    except psutil.Error:
        return ["(children not readable)"]
    out = []
    for k in kids:
        try:
            out.append(f"{k.pid} {' '.join(k.cmdline())[:80] or k.name()}")
        except psutil.Error:
            out.append(f"{k.pid}")
    return out


def _is_service_process(proc: psutil.Process) -> bool:
    """The embedded conductor's own long-lived helper (it lives as long as the server; not an agent)."""
    try:
        return HELPER_MODULE in proc.cmdline()
    except psutil.Error:
        return False


def idle_point(
    pid: int, *, idle_s: float, quiet_timeout: float = 30.0, cpu_window: float = 0.2,
    sched_log: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Wait for the server's agents to end, leave it idle for ``idle_s`` seconds, then sample it.

    The sample also says whether the server was quiet (``quiet``: no agent left before the window);
    when it was not, the sample is taken at once and ``agents_left`` lists the processes. With
    ``sched_log`` (a Go build's log with its scheduler trace) the sample also holds ``goroutines``,
    ``busy_threads`` and ``sched_threads`` from the first trace block printed after the window.
    """
    quiet = wait_until_quiet(pid, timeout=quiet_timeout)
    if not quiet:  # a server that never gets idle: no point waiting for the window too
        sample = sample_once(pid, cpu_window=cpu_window)
        sample["quiet"] = False
        sample["agents_left"] = agent_processes(pid)
        return sample
    time.sleep(max(0.0, idle_s))  # the idle window itself: nothing to wait for, the server is left alone
    offset = None if sched_log is None else goroutines.log_size(sched_log)
    sample = sample_once(pid, cpu_window=cpu_window)
    sample["quiet"] = quiet
    if sched_log is not None and offset is not None:
        snap = goroutines.next_sched_snapshot(sched_log, offset)
        sample.update(goroutines=snap.goroutines, busy_threads=snap.busy_threads, sched_threads=snap.threads,
                      goroutine_states=dict(snap.states.most_common(8)))  # fmt: skip
    return sample


# -- the workload -----------------------------------------------------------------------------


def _stamp() -> str:
    return uuid.uuid4().hex[:8]


async def _sse_reader(client: SSEClient, events: int, timeout: float) -> tuple[int, str]:
    """Read ``events`` message events (hydration skipped by id) within ``timeout``; (count, error)."""
    got = 0
    deadline = time.monotonic() + timeout
    try:
        while got < events:
            ev = await client.next_event(max(0.0, deadline - time.monotonic()))
            if ev.event == "message" and "leak burst" in ev.data:
                got += 1
    except (TimeoutError, SSEError) as exc:
        return got, f"SSE client read {got} of {plural(events, 'message')}: {exc}"
    finally:
        await client.close()
    return got, ""


async def _cycle_async(target: Target, w: Workload, index: int) -> CycleReport:
    t0 = time.monotonic()
    errors: list[str] = []
    project, headers = LEAK_PROJECT, target.auth_headers()
    task_id = runs.canonical_task_id(f"leak-bus-{index}-{_stamp()}")
    async with httpx.AsyncClient(base_url=target.url, headers=headers, timeout=w.timeout_s) as http:
        # one message first: the stream then has something to hydrate, so even a server that withholds
        # the response head until the first event (conductor-loop 0.76) answers the clients at once
        opening = await http.post("/api/v1/messages", json={"project_id": project, "task_id": task_id,
                                                            "type": "INFO", "body": "leak cycle opens"})  # fmt: skip
        if opening.status_code != 201:
            errors.append(f"POST /api/v1/messages answered {opening.status_code}: {opening.text[:120]}")
        agents = asyncio.create_task(asyncio.to_thread(_agents, target, w, index))
        stream_url = target.endpoint(f"/api/v1/messages/stream?project_id={project}&task_id={task_id}")
        clients = [SSEClient(stream_url, headers=headers, connect_timeout=5.0, headers_timeout=w.timeout_s)
                   for _ in range(w.sse_clients)]  # fmt: skip
        connected = await asyncio.gather(*(c.connect() for c in clients), return_exceptions=True)
        readers = []
        for client, outcome in zip(clients, connected, strict=True):
            if isinstance(outcome, BaseException):
                errors.append(f"SSE connect failed: {outcome}")
                await client.close()
            else:
                want = min(w.sse_events, w.messages)
                readers.append(asyncio.create_task(_sse_reader(client, want, w.timeout_s)))
        messages_ok = 0
        if w.messages:
            headers_or_none = headers or None

            def make(i: int) -> Request:
                body = {"project_id": project, "task_id": task_id, "type": "FACT", "body": f"leak burst #{i}"}
                return Request.json("POST", "/api/v1/messages", body, headers_or_none)

            burst = await closed_loop(target.url, make, workers=min(w.message_writers, w.messages),
                                      duration=w.timeout_s, max_requests=w.messages, timeout=w.timeout_s)  # fmt: skip
            messages_ok = burst.ok
            if burst.ok < w.messages:
                errors.append(f"message burst: {burst.ok} of {w.messages} answered 2xx "
                              f"({burst.status_counts}, {burst.error_samples[:2]})")  # fmt: skip
        sse_events = 0
        for count, err in await asyncio.gather(*readers):
            sse_events += count
            if err:
                errors.append(err)
        reads_ok = 0
        for i in range(w.api_reads):
            path = API_READ_PATHS[i % len(API_READ_PATHS)]
            try:
                resp = await http.get(path)
            except httpx.HTTPError as exc:
                errors.append(f"GET {path}: {type(exc).__name__}: {exc}")
                continue
            if resp.status_code == 200:
                reads_ok += 1
            else:
                errors.append(f"GET {path} answered {resp.status_code}")
        completed, agent_errors = await agents
        errors += agent_errors
    return CycleReport(index=index, warmup=index == 0, t_s=0.0, workload_s=time.monotonic() - t0,
                       agents_completed=completed, messages_ok=messages_ok, sse_events=sse_events,
                       api_reads_ok=reads_ok, errors=errors)  # fmt: skip


def _agents(target: Target, w: Workload, index: int) -> tuple[int, list[str]]:
    if not w.agents:
        return 0, []
    subs = agents_bench.submit_tasks(target, w.agents, project=LEAK_PROJECT, slug=f"leak-{index}-{_stamp()}",
                                     config=agents_bench.stub_config(sleep_ms=w.agent_work_ms, lines=w.agent_lines),
                                     timeout=w.timeout_s)  # fmt: skip
    done, pending = agents_bench.wait_for_runs(target, subs, timeout=w.timeout_s,
                                               stall_timeout=min(w.timeout_s, agents_bench.stall_bound(w.agent_work_ms)))  # fmt: skip
    errors = [f"task submission: {s.error}" for s in subs if s.error][:3]
    completed = sum(1 for o in done if o.status == "completed")
    if completed < w.agents:
        errors.append(f"agents: {completed} of {w.agents} completed ({len(pending)} unfinished)")
    return completed, errors


def run_cycle(target: Target, workload: Workload, index: int = 1) -> CycleReport:
    """Run one cycle's workload against the SUT (no idle point); returns what it did.

    Raises:
        ValueError: the SUT is not on loopback.
    """
    if not is_loopback(target.url):
        raise ValueError(f"load is only sent to loopback addresses, not {target.url}")
    return asyncio.run(_cycle_async(target, workload, index))


# -- verdicts ---------------------------------------------------------------------------------


def leak_verdicts(baseline: dict[str, float | None], points: list[dict[str, float | None]],
                  tolerances: LeakTolerances, runs_created: int = 0) -> dict[str, LeakVerdict]:  # fmt: skip
    """One :func:`~conductor_perf.measure.leak.leak_verdict` per resource of :data:`RESOURCES`.

    Args:
        baseline: the resources at the idle point after the warm-up cycle.
        points: the resources at each measured idle point, in cycle order.
        tolerances: allowed growth per resource.
        runs_created: agent runs the measured cycles created (widens the memory tolerance by
            ``tolerances.memory_per_run_kb`` each).

    Resources missing from a sample (e.g. TCP sockets not readable) are left out of the series; a
    resource with fewer than 2 values gets no verdict.
    """
    out: dict[str, LeakVerdict] = {}
    for name, unit in RESOURCES:
        ys = [float(v) for p in points if (v := p.get(name)) is not None]
        if len(ys) < 2:
            continue
        base = baseline.get(name)
        out[name] = leak_verdict(ys, baseline=None if base is None else float(base),
                                 tolerance_abs=tolerances.of(name, runs_created), alpha=tolerances.alpha, name=name,
                                 unit=unit)  # fmt: skip
    return out


def run_leak_cycles(
    target: Target,
    cycles: int = 6,
    *,
    workload: Workload | None = None,
    tolerances: LeakTolerances | None = None,
    idle_s: float = 2.0,
    duration_s: float | None = None,
    on_cycle: CycleCallback | None = None,
) -> LeakRun:
    """A warm-up cycle, then ``cycles`` identical cycles with an idle point after each; leak verdicts.

    Example::

        run = run_leak_cycles(target, 6, workload=Workload(agents=3, messages=200), idle_s=2)
        run.leaking          # [] when nothing leaks
        run.verdicts["memory"].message

    Args:
        target: the SUT; its process must be visible on this machine (``target.pid``).
        cycles: measured cycles K (at least 3; 6 or more recommended); with ``duration_s`` the minimum.
        workload: what each cycle does (default :class:`Workload`).
        tolerances: allowed growth per resource (default :class:`LeakTolerances`).
        idle_s: the idle window before each idle point, seconds.
        duration_s: soak: keep running cycles until this many seconds have passed.
        on_cycle: called after each cycle's idle point (progress output).

    Raises:
        ValueError: fewer than 3 cycles, no pid, or the SUT is not on loopback.
        ProcessLookupError: the SUT's process ended.
    """
    if cycles < MIN_CYCLES:
        raise ValueError(f"a leak verdict needs at least {MIN_CYCLES} measured cycles, got {cycles}")
    if target.pid is None:
        raise ValueError(f"the SUT's process is not visible on this machine ({target.url}): cannot sample it")
    w = workload or Workload()
    tol = tolerances or LeakTolerances()
    sched_log = target.log_path if goroutines.has_schedtrace(target.log_path) else None
    start = time.monotonic()
    basis: str | None = None
    reports: list[CycleReport] = []
    index = 0
    while True:
        report = run_cycle(target, w, index)
        report.idle = idle_point(target.pid, idle_s=idle_s, quiet_timeout=w.timeout_s, sched_log=sched_log)
        if not report.idle.get("quiet"):
            left = report.idle.get("agents_left") or []
            report.errors.append(f"agent processes still alive {w.timeout_s:g} s after the cycle, although every "
                                 f"task of it was done: {', '.join(left[:3]) or 'none listed'}"
                                 + (f" and {len(left) - 3} more" if len(left) > 3 else ""))  # fmt: skip
        basis = basis or memory_basis(report.idle)
        report.values = resource_values(report.idle, basis)
        report.t_s = time.monotonic() - start
        reports.append(report)
        if on_cycle is not None:
            with contextlib.suppress(Exception):  # progress output must never break the measurement
                on_cycle(report)
        measured = len(reports) - 1
        if report.errors:
            break  # a verdict over a failing workload proves nothing: stop now, not after every cycle
        if measured >= MAX_CYCLES:
            break
        if measured >= cycles and (duration_s is None or time.monotonic() - start >= duration_s):
            break
        index += 1
    baseline, measured_reports = reports[0], reports[1:]
    runs_created = sum(r.agents_completed for r in measured_reports)
    verdicts = leak_verdicts(baseline.values, [r.values for r in measured_reports], tol, runs_created)
    return LeakRun(workload=w, tolerances=tol, memory_basis=basis or "rss", baseline=baseline,
                   cycles=measured_reports, verdicts=verdicts, duration_s=time.monotonic() - start,
                   runs_created=runs_created)  # fmt: skip


def verdict_table(run: LeakRun) -> list[dict[str, Any]]:
    """One row per resource: baseline, first/last/median idle level, slope, growth, tolerance, p, verdict."""
    rows = []
    for name, unit in RESOURCES:
        v = run.verdicts.get(name)
        ys = run.series(name)
        if v is None or not ys:
            continue
        rows.append({"resource": name, "unit": unit, "baseline": run.baseline.values.get(name),
                     "first": ys[0], "last": ys[-1], "median": statistics.median(ys),
                     "slope_per_cycle": v.slope_per_cycle, "fitted_growth": v.total_growth,
                     "observed_growth": v.observed_growth, "tolerance": v.tolerance, "p_value": v.p_value,
                     "verdict": v.verdict, "reasons": ", ".join(v.reasons)})  # fmt: skip
    return rows
