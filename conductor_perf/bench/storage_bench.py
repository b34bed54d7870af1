"""Run storage benchmarks at file level, through the shared run storage implementation.

* :func:`creation_rate`: the seed's ``TestRunCreationThroughput`` — one writer creates runs
  (directory + fsynced atomic ``run-info.yaml``) for distinct task ids for a fixed time; runs/s and
  per-run latency (target > 100 runs/s and < 10 ms).
* :func:`creation_burst`: N runs created at once by N threads (burst latency).
* :func:`seed_history`: fill a root with completed runs so later measurements see history.
* :func:`read_cost` / :func:`write_cost`: run-info read and atomic write latency.
* :func:`concurrent_read_write`: writers update one run-info while readers read it; counts torn
  or unparsable reads (must be 0).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..formats import runs
from ..measure.histogram import LatencyHistogram
from ..measure.workers import WorkerContext, WorkerPool, WorkerReport, merge_reports

ProgressFn = Callable[[float, int, float], None]


@dataclass
class CreationResult:
    """Run creation figures."""

    runs: int
    duration_s: float
    rate: float
    latency: dict[str, float]
    histogram: str = ""
    history: int = 0
    timeline: list[tuple[float, int]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return asdict(self)


def _info(project: str, task: str, run_id: str) -> runs.RunInfo:
    now = time.time_ns()
    return runs.RunInfo(run_id=run_id, project_id=project, task_id=task, agent="codex", version=0,
                        pid=0, pgid=0, start_time_ns=now, status=runs.STATUS_RUNNING)  # fmt: skip


def remove_created(root: str | os.PathLike[str], project: str, prefix: str, count: int) -> None:
    """Remove the task folders ``<prefix>-0 .. <prefix>-<count-1>`` a creation benchmark made.

    Those runs are never finished (``running``, pid 0): a real conductor-loop walks every run on each
    list/status read and rewrites each ``running`` run-info it meets (fsynced), so leaving thousands
    of them behind would slow every later suite that reads the API (seen: GET /api/v1/status from
    94 to 1.6 req/s after two quick runs). Best effort: a folder that cannot be removed is left.
    """
    for i in range(count):
        shutil.rmtree(runs.task_dir(root, project, f"{prefix}-{i}"), ignore_errors=True)


class RateTimeline:
    """Runs created so far: a point once a second (the rate chart) and ``on_progress`` every ``progress_every`` s.

    Example::

        tl = RateTimeline(time.monotonic(), on_progress, 2.0)
        tl.tick(time.monotonic(), runs_so_far)
        tl.points   # [(1.0, 812), (2.0, 1630), ...]
    """

    def __init__(self, start: float, on_progress: ProgressFn | None = None, progress_every: float = 2.0) -> None:
        self.start = start
        self.points: list[tuple[float, int]] = []
        self.on_progress = on_progress
        self.progress_every = progress_every
        self._last = self._last_progress = start

    def tick(self, now: float, n: int) -> None:
        """``n`` runs created by ``now`` (``time.monotonic()``)."""
        if now - self._last >= 1.0:
            self.points.append((round(now - self.start, 3), n))
            self._last = now
        if self.on_progress and now - self._last_progress >= self.progress_every:
            self.on_progress(now - self.start, n, n / (now - self.start))
            self._last_progress = now


def creation_rate(
    root: str | os.PathLike[str],
    *,
    duration: float = 5.0,
    project: str = "perf-storage",
    max_runs: int = 1_000_000,
    on_progress: ProgressFn | None = None,
    progress_every: float = 2.0,
    remove: bool = True,
) -> CreationResult:
    """Create runs one after another for ``duration`` seconds; rate = runs / duration.

    ``remove``: delete the created task folders afterwards (see :func:`remove_created`).
    """
    ids = runs.RunIdGenerator()
    hist = LatencyHistogram()
    perf = time.perf_counter_ns
    start = time.monotonic()
    stop = start + duration
    timeline = RateTimeline(start, on_progress, progress_every)
    n = 0
    prefix = f"task-rate-{os.getpid()}-{time.time_ns() % 10**9}"
    try:
        while n < max_runs:
            now = time.monotonic()
            if now >= stop:
                break
            t0 = perf()
            runs.create_run(root, _info(project, f"{prefix}-{n}", ids.next()))
            hist.record_us((perf() - t0) / 1000)
            n += 1
            timeline.tick(now, n)
    finally:
        if remove:
            remove_created(root, project, prefix, n + 1)
    return CreationResult(runs=n, duration_s=duration, rate=n / duration, latency=hist.summary(),
                          histogram=hist.encode(), timeline=timeline.points)  # fmt: skip


def creation_burst(
    root: str | os.PathLike[str], *, count: int = 100, project: str = "perf-storage", remove: bool = True
) -> CreationResult:
    """Create ``count`` runs at once from ``count`` threads released together; per-run latency.

    ``remove``: delete the created task folders afterwards (see :func:`remove_created`).
    """
    ids = runs.RunIdGenerator()
    hist = LatencyHistogram()
    lock = threading.Lock()
    barrier = threading.Barrier(count, timeout=30)
    prefix = f"task-burst-{os.getpid()}-{time.time_ns() % 10**9}"
    errors: list[str] = []

    def one(i: int) -> None:
        try:
            barrier.wait()
            t0 = time.perf_counter_ns()
            runs.create_run(root, _info(project, f"{prefix}-{i}", ids.next()))
            us = (time.perf_counter_ns() - t0) / 1000
            with lock:
                hist.record_us(us)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(str(exc))

    start = time.perf_counter()
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    wall = time.perf_counter() - start
    if remove:
        remove_created(root, project, prefix, count)
    if errors:
        raise RuntimeError(f"{len(errors)} of {count} run creations failed: {errors[0]}")
    return CreationResult(runs=count, duration_s=wall, rate=count / wall if wall else 0.0,
                          latency=hist.summary(), histogram=hist.encode())  # fmt: skip


def seed_history(
    root: str | os.PathLike[str], *, runs_count: int = 1000, project: str = "perf-history"
) -> int:
    """Create ``runs_count`` completed runs (one task each, with TASK.md and DONE). Returns the count."""
    ids = runs.RunIdGenerator()
    stamp = time.time_ns() % 10**9
    for i in range(runs_count):
        task = f"task-hist-{stamp}-{i}"
        tdir = runs.task_dir(root, project, task)
        runs.write_task_md(tdir, "history seed")
        info = _info(project, task, ids.next())
        info.status, info.exit_code, info.end_time_ns = runs.STATUS_COMPLETED, 0, time.time_ns()
        runs.create_run(root, info, fsync=False)
        runs.mark_done(tdir)
    return runs_count


def read_cost(path: str | os.PathLike[str], *, iterations: int = 2000) -> dict[str, float]:
    """Latency of reading one run-info.yaml (summary in ms)."""
    hist = LatencyHistogram()
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        runs.read_run_info(path)
        hist.record_us((time.perf_counter_ns() - t0) / 1000)
    return hist.summary()


def write_cost(
    path: str | os.PathLike[str], *, iterations: int = 500, fsync: bool = True
) -> dict[str, float]:
    """Latency of an atomic (temp + fsync + rename) run-info.yaml write (summary in ms)."""
    info = runs.read_run_info(path)
    hist = LatencyHistogram()
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        runs.write_run_info(path, info, fsync=fsync)
        hist.record_us((time.perf_counter_ns() - t0) / 1000)
    return hist.summary()


@dataclass
class ReadWriteResult:
    """Concurrent read/write figures."""

    reads: int
    writes: int
    torn_reads: int
    duration_s: float

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        return asdict(self)


def _rw_reader(share: tuple[str, float, str], ctx: WorkerContext) -> WorkerReport:
    path, duration, expect_agent = share
    reads = torn = 0
    stop_at = ctx.wait_start() + duration
    while time.time() < stop_at:
        try:
            info = runs.read_run_info(path)
            if (
                info.agent != expect_agent
                or not info.run_id
                or info.status not in ("running", "completed")
            ):
                torn += 1
        except runs.StorageError:
            torn += 1
        reads += 1
    return WorkerReport(ctx.name, counts={"reads": reads, "torn": torn})


def _rw_writer(share: tuple[str, float, str], ctx: WorkerContext) -> WorkerReport:
    path, duration, _ = share
    writes = 0
    stop_at = ctx.wait_start() + duration
    while time.time() < stop_at:
        runs.update_run_info(path, _flip, fsync=False)
        writes += 1
    return WorkerReport(ctx.name, counts={"writes": writes})


def _rw_worker(share: tuple[str, float, str], ctx: WorkerContext) -> WorkerReport:
    return (_rw_reader if ctx.name.startswith("reader") else _rw_writer)(share, ctx)


def _flip(info: runs.RunInfo) -> None:
    info.status = runs.STATUS_COMPLETED if info.status == runs.STATUS_RUNNING else runs.STATUS_RUNNING
    info.pid += 1


def concurrent_read_write(
    root: str | os.PathLike[str], *, readers: int = 4, writers: int = 2, duration: float = 3.0
) -> ReadWriteResult:
    """Readers (processes) read one run-info while writers update it under the lock; count torn reads."""
    info = _info("perf-storage", f"task-rw-{time.time_ns() % 10**9}", runs.RunIdGenerator().next())
    info.cwd = "/" + "x" * 2000  # a file larger than one small write makes torn reads possible
    path = str(runs.create_run(root, info) / runs.RUN_INFO)
    names = [f"reader-{i}" for i in range(readers)] + [f"writer-{i}" for i in range(writers)]
    with WorkerPool(_rw_worker, [(path, duration, "codex")] * len(names), name="run-info read/write",
                    names=names) as pool:  # fmt: skip
        merged = merge_reports(pool.run(duration + 30))
    return ReadWriteResult(reads=merged.count("reads"), writes=merged.count("writes"),
                           torn_reads=merged.count("torn"), duration_s=duration)  # fmt: skip


def run_info_path(root: str | os.PathLike[str]) -> Path:
    """Create one run and return its run-info.yaml path (a fixture for read/write costs)."""
    info = _info("perf-storage", f"task-fixture-{time.time_ns() % 10**9}", runs.RunIdGenerator().next())
    return runs.create_run(root, info) / runs.RUN_INFO
