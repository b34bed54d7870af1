"""Run creation measured through the server: task submissions to an instance with task launch disabled.

The file-level benchmarks of :mod:`conductor_perf.bench.storage_bench` time this suite's own
writer on the SUT's disk. How fast the *server* creates runs is a different figure: here each run
is one ``POST /api/v1/tasks`` (a distinct task each, one after another like the seed's method)
to an instance started with ``--disable-task-start``, timed from the send until the run's
directory ``<root>/<project>/<task>/runs/<run_id>/`` exists.

What such an instance does (conductor-loop 0.76 ``handleTaskCreate``; the reference conductor
the same): it validates the request, creates the task directory and ``TASK.md``, the ``runs``
folder and the run directory (the run id it answers with), and writes the audit record, all
before it answers 201; it launches nothing. It writes **no** ``run-info.yaml``: the real server
writes that file only when it spawns the agent (after running ``<agent> --version``), so a
submission timed until run-info.yaml exists would time an agent's launch, not run creation.
The figure therefore stops at the run directory, and :attr:`ServerCreationResult.run_info_written`
counts the run-info files found afterwards (0 on both servers), so a server that starts writing
one at submission is seen.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..formats import runs
from ..measure.histogram import LatencyHistogram
from ..measure.rawhttp import HttpConnection, Request
from ..target import Target
from .storage_bench import CreationResult, ProgressFn, RateTimeline

PROJECT = "perf-server-runs"
DISABLE_FLAG = "--disable-task-start"


@dataclass
class ServerCreationResult(CreationResult):
    """:class:`~conductor_perf.bench.storage_bench.CreationResult` of submissions, plus what was checked.

    Attributes:
        statuses: HTTP status -> count of the submissions.
        run_dirs_missing: 201 answers whose run directory did not appear within the timeout.
        run_info_written: run directories with a ``run-info.yaml`` after the measurement.
        errors: the first few failures, one line each.
    """

    statuses: dict[int, int] = field(default_factory=dict)
    run_dirs_missing: int = 0
    run_info_written: int = 0
    errors: list[str] = field(default_factory=list)


def _body(task_id: str) -> dict[str, str]:
    return {"project_id": PROJECT, "task_id": task_id, "agent_type": "codex", "prompt": "run creation benchmark"}


async def _until_dir(path: Path, deadline: float) -> bool:
    while not path.is_dir():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(0.0005)
    return True


async def _submit(target: Target, root: Path, *, duration: float, max_runs: int, timeout: float,
                  on_progress: ProgressFn | None, progress_every: float) -> ServerCreationResult:  # fmt: skip
    headers = target.auth_headers() or None
    conn = HttpConnection(target.host, target.port)
    hist = LatencyHistogram()
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    created: list[Path] = []
    missing = 0
    stamp = f"{time.time_ns() % 10**6:06d}"
    perf = time.perf_counter_ns
    await conn.connect()  # the connection is not part of any run's time
    start = time.monotonic()
    timeline = RateTimeline(start, on_progress, progress_every)
    n = 0
    try:
        while n < max_runs and time.monotonic() - start < duration:
            task_id = runs.canonical_task_id(f"srv{stamp}-{n}")
            req = Request.json("POST", "/api/v1/tasks", _body(task_id), headers)
            t0 = perf()
            try:
                resp = await conn.request(req, timeout=timeout)
            except (OSError, TimeoutError, ConnectionError) as exc:
                statuses[0] += 1
                if len(errors) < 5:
                    errors.append(f"POST /api/v1/tasks: {type(exc).__name__}: {exc}")
                break  # a dead or hung server: stop, the figure says how many were created
            statuses[resp.status] += 1
            run_id = ""
            if resp.status == 201:
                try:
                    run_id = str(resp.json().get("run_id") or "")
                except ValueError:
                    run_id = ""
            if not run_id:
                if len(errors) < 5:
                    errors.append(f"POST /api/v1/tasks answered {resp.status}: {resp.text[:160]}")
                continue
            run_dir = runs.run_dir(root, PROJECT, task_id, run_id)
            if not await _until_dir(run_dir, time.monotonic() + timeout):
                missing += 1
                if len(errors) < 5:
                    errors.append(f"run {run_id}: no directory {run_dir} within {timeout:g} s of the 201")
                continue
            hist.record_us((perf() - t0) / 1000)
            created.append(run_dir)
            n += 1
            timeline.tick(time.monotonic(), n)
    finally:
        await conn.close()
    wall = time.monotonic() - start
    span = max(duration, wall) if n < max_runs else wall
    written = sum(1 for d in created if (d / runs.RUN_INFO).exists())
    return ServerCreationResult(runs=n, duration_s=span, rate=n / span if span else 0.0, latency=hist.summary(),
                                histogram=hist.encode(), timeline=timeline.points, statuses=dict(statuses),
                                run_dirs_missing=missing, run_info_written=written, errors=errors)  # fmt: skip


def creation_through_server(
    target: Target,
    *,
    duration: float = 5.0,
    max_runs: int = 1_000_000,
    timeout: float = 10.0,
    on_progress: ProgressFn | None = None,
    progress_every: float = 2.0,
) -> ServerCreationResult:
    """Submit tasks one after another for ``duration`` seconds; each timed until its run directory exists.

    ``target`` must be an instance started with ``--disable-task-start`` whose runs root is
    ``target.root`` on this machine (see the module doc). rate = runs / duration.

    Example::

        r = creation_through_server(launch_disabled, duration=5)
        r.rate, r.latency["p95"]      # runs/s, ms

    Raises:
        ValueError: the target has no runs root here.
    """
    if target.root is None:
        raise ValueError(f"the instance at {target.url} has no runs root on this machine to check run directories")
    return asyncio.run(_submit(target, Path(target.root), duration=duration, max_runs=max_runs, timeout=timeout,
                               on_progress=on_progress, progress_every=progress_every))  # fmt: skip


def sibling_dir(root: str | os.PathLike[str], name: str) -> Path:
    """``<root>/../<name>``, created: a folder beside a runs root, on the same file system.

    Raises:
        OSError: it cannot be created there, or it is on another file system than ``root`` (the
            root is a mount point), so its figures would be of a different disk.
    """
    root_path = Path(root).resolve()
    path = root_path.parent / name
    path.mkdir(parents=True, exist_ok=True)
    if os.stat(path).st_dev != os.stat(root_path).st_dev:
        raise OSError(f"{path} is not on the file system of the runs root {root_path} (a mount point)")
    return path
