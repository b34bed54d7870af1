"""CPU and memory hot spots of the embedded reference conductor, under scalene.

scalene cannot attach to a running process, and its overhead (-14 % throughput CPU-only, -56 %
with memory profiling, :mod:`conductor_perf.measure.profile`) makes a profiled server useless for
target figures. :func:`profile_reference` therefore starts a **separate** reference conductor
under scalene on a free loopback port with its own runs root, drives a short representative load
through the public API, stops it with SIGINT (which makes scalene write its JSON) and turns the
profile into ``hotspots.md``:

* API traffic: a closed loop of ``GET /api/v1/status``, ``/api/v1/tasks``, ``/api/v1/runs``,
  ``/api/v1/messages`` and ``POST /api/v1/messages`` in turn;
* ``agents`` stub agents that print a few lines (``POST /api/v1/tasks``, waited for);
* one SSE client on the message stream of the posted bus, reading until the load ends.

:func:`write_hotspots` is the file step alone (scalene JSON in, Markdown out), usable on any profile.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import os
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conductor_perf

from ..formats import runs
from ..measure.load import closed_loop
from ..measure.profile import (
    Hotspot,
    hotspots_markdown,
    parse_scalene,
    scalene_summary,
    scalene_unavailable_reason,
    start_profiled,
    stop_profiled,
)
from ..measure.rawhttp import Request
from ..measure.sse import SSEClient, follow
from ..target import (
    EMBEDDED,
    Target,
    check_url,
    read_first_line,
    stop_process_tree,
    wait_healthy,
)
from ..wording import plural
from . import agents_bench

PROFILE_SUT_DIR = "profile-sut"
"""Folder of the profiled conductor (its runs root and log) under the output folder."""
PACKAGE_DIR = Path(conductor_perf.__file__).resolve().parent
PROFILE_PROJECT = "perf-profile"
JSON_NAME = "hotspots.scalene.json"
MARKDOWN_NAME = "hotspots.md"
READ_PATHS = ("/api/v1/status", "/api/v1/tasks", "/api/v1/runs")
#: how to read scalene's figures for this server (added under the table)
READING_NOTES = (
    "Reading the table: time in code that is not profiled (aiohttp, asyncio, the standard library) is"
    " charged to the nearest profiled caller, for the event loop the `asyncio.run(...)` line of"
    " `__main__.main`. scalene charges a background thread that waits inside a C call (`queue.get`,"
    " a lock) as native time, so such a line in a worker thread (the audit writer's `queue.get`) is"
    " mostly waiting, not work. Import lines carry start-up cost only.",
)


@dataclass
class HotspotReport:
    """The outcome of a profiled run.

    Attributes:
        json_path: scalene's full JSON profile.
        markdown_path: the Markdown table written from it.
        hotspots: every line with CPU time or memory, ranked by CPU (Python + native).
        own_hotspots: those in conductor_perf's own files with CPU time.
        summary: :func:`~conductor_perf.measure.profile.scalene_summary` of the profile.
        load: what the load did (requests, ok, agents completed, SSE events, seconds).
        elapsed_s: wall time from start to the profile being readable.
        errors: what went wrong in the load (the profile is still written).
    """

    json_path: Path
    markdown_path: Path
    hotspots: list[Hotspot]
    own_hotspots: list[Hotspot]
    summary: dict[str, Any]
    load: dict[str, Any] = field(default_factory=dict)
    elapsed_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self, top: int = 10) -> dict[str, Any]:
        """Plain dict for JSON with the ``top`` hot spots."""
        return {"json_path": str(self.json_path), "markdown_path": str(self.markdown_path),
                "top": [h.to_dict() for h in self.hotspots[:top]], "own_count": len(self.own_hotspots),
                "summary": self.summary, "load": self.load, "elapsed_s": self.elapsed_s,
                "errors": self.errors}  # fmt: skip


def is_own(h: Hotspot, package_dir: Path = PACKAGE_DIR) -> bool:
    """Whether a hot spot is in conductor_perf's own code and used CPU."""
    if h.cpu_percent <= 0:
        return False
    try:
        Path(h.file).resolve().relative_to(package_dir)
    except (ValueError, OSError):
        return False
    return True


def write_hotspots(
    json_path: str | os.PathLike[str],
    markdown_path: str | os.PathLike[str],
    *,
    top: int = 10,
    title: str = "CPU hot spots of the embedded reference conductor",
    notes: Sequence[str] = (),
) -> tuple[list[Hotspot], str]:
    """Parse a scalene JSON profile and write the top ``top`` hot spots as Markdown.

    Example::

        spots, text = write_hotspots("results/r1/hotspots.scalene.json", "results/r1/hotspots.md")

    Args:
        json_path: scalene's ``-o`` file.
        markdown_path: where the Markdown goes (its folder is created).
        top: rows in the table.
        title: the heading.
        notes: extra lines after the table (what load was profiled, where the JSON is).

    Returns:
        (every hot spot ranked by CPU, the Markdown text written).

    Raises:
        ValueError: the JSON is not a scalene profile.
    """
    spots = parse_scalene(json_path, sort_by="cpu")
    summary = scalene_summary(json_path)
    text = write_markdown(markdown_path, hotspots_markdown(spots, top, title=title, summary=summary,
                                                           root=PACKAGE_DIR.parent), notes)  # fmt: skip
    return spots, text


def write_markdown(path: str | os.PathLike[str], table: str, notes: Sequence[str] = ()) -> str:
    """Write a hot-spot table and the lines after it (its folder is created); returns the text written."""
    text = table + ("\n" + "\n".join(notes) + "\n" if notes else "")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text


def hotspots_html(hotspots: Sequence[Hotspot], top: int = 10) -> str:
    """An HTML table of the top hot spots (for log.html)."""
    head = ("<tr><th>#</th><th>location</th><th>function</th><th>CPU %</th><th>Python %</th>"
            "<th>native %</th><th>system %</th><th>peak MB</th><th>code</th></tr>")  # fmt: skip
    rows = []
    for i, h in enumerate(hotspots[:top], start=1):
        loc = h.file
        with contextlib.suppress(ValueError, OSError):
            loc = str(Path(h.file).resolve().relative_to(PACKAGE_DIR.parent))
        rows.append(
            f"<tr><td>{i}</td><td><code>{html.escape(loc)}:{h.line}</code></td>"
            f"<td>{html.escape(h.function or '?')}</td><td>{h.cpu_percent:.1f}</td><td>{h.cpu_python:.1f}</td>"
            f"<td>{h.cpu_native:.1f}</td><td>{h.cpu_system:.1f}</td><td>{h.peak_mb:.1f}</td>"
            f"<td><code>{html.escape(h.code[:80])}</code></td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="9">(no samples)</td></tr>')
    return '<table border="1" style="border-collapse: collapse">' + head + "".join(rows) + "</table>"


# -- the profiled server and its load ---------------------------------------------------------


async def _load_async(target: Target, duration_s: float, workers: int, agents: int) -> dict[str, Any]:
    headers = target.auth_headers() or None
    task_id = runs.canonical_task_id("profile-bus")
    kinds = len(READ_PATHS) + 2

    def make(i: int) -> Request:
        k = i % kinds
        if k < len(READ_PATHS):
            return Request("GET", READ_PATHS[k], None, headers)
        if k == len(READ_PATHS):
            return Request(
                "GET", f"/api/v1/messages?project_id={PROFILE_PROJECT}&task_id={task_id}", None, headers
            )
        body = {
            "project_id": PROFILE_PROJECT,
            "task_id": task_id,
            "type": "FACT",
            "body": f"profile message #{i}",
        }
        return Request.json("POST", "/api/v1/messages", body, headers)

    stop = asyncio.Event()
    client = SSEClient(target.endpoint(f"/api/v1/messages/stream?project_id={PROFILE_PROJECT}&task_id={task_id}"),
                       headers=target.auth_headers(), headers_timeout=duration_s + 10)  # fmt: skip
    follower = asyncio.create_task(follow(client, stop))
    agent_run = None
    if agents:
        agent_run = asyncio.create_task(asyncio.to_thread(agents_bench.run_agents, target, agents, sleep_ms=200,
                                                          timeout=duration_s + 30, project=PROFILE_PROJECT))  # fmt: skip
    try:
        # the message bus grows during the load, so GET /api/v1/messages gets dearer: bounded by duration
        result = await closed_loop(target.url, make, workers=workers, duration=duration_s, timeout=10)
    finally:
        stop.set()
        events = await follower
        agents_result = await agent_run if agent_run is not None else None
    return {"requests": result.requests, "ok": result.ok, "errors": result.errors,
            "rate": result.rate, "duration_s": result.duration_s, "sse_events": events,
            "agents": agents, "agents_completed": agents_result.completed if agents_result else 0}  # fmt: skip


def load_problems(load: dict[str, Any], agents: int) -> list[str]:
    """What went wrong in a :func:`run_representative_load` (failed requests, agents that did not complete)."""
    problems = []
    if load.get("errors"):
        problems.append(f"{load['errors']} of {load['requests']} API requests failed")
    if load.get("agents_completed", 0) < agents:
        problems.append(f"{load.get('agents_completed', 0)} of {plural(agents, 'agent')} completed")
    return problems


def load_note(load: dict[str, Any], duration_s: float, workers: int, agents: int, where: str) -> str:
    """The line under a hot-spot table saying what load was profiled (``where``: e.g. "under the profiler")."""
    return (f"Load: {duration_s:g} s of API reads and message posts over {plural(workers, 'connection')} "
            f"({plural(load.get('requests', 0), 'request')}, {load.get('rate', 0.0):.0f} req/s {where}), "
            f"{plural(agents, 'stub agent')}, one SSE client on the message stream "
            f"({plural(load.get('sse_events', 0), 'event')}).")  # fmt: skip


def run_representative_load(target: Target, *, duration_s: float = 10.0, workers: int = 4,
                            agents: int = 3) -> dict[str, Any]:  # fmt: skip
    """API reads and message posts (closed loop), ``agents`` stub agents and one SSE client, at once."""
    return asyncio.run(_load_async(target, duration_s, workers, agents))


def profile_reference(
    out_dir: str | os.PathLike[str],
    *,
    duration_s: float = 10.0,
    workers: int = 4,
    agents: int = 3,
    cpu_only: bool = False,
    top: int = 10,
    start_timeout: float = 30.0,
    stop_timeout: float = 30.0,
) -> HotspotReport:
    """Profile a separate embedded reference conductor under a short representative load.

    Writes ``<out_dir>/hotspots.scalene.json`` (scalene's full profile) and ``<out_dir>/hotspots.md``.
    The server gets its own runs root and log under ``<out_dir>/profile-sut/``.

    Example::

        report = profile_reference(Path("results/adhoc"), duration_s=10)
        report.own_hotspots[0].location   # e.g. ".../conductor_perf/reference/app.py:321"

    Args:
        out_dir: folder for the profile, the Markdown, the runs root and the server log.
        duration_s: how long the load runs.
        workers: connections of the API closed loop.
        agents: stub agents started during the load.
        cpu_only: profile CPU only (no memory columns, less overhead).
        top: rows of the Markdown table.
        start_timeout, stop_timeout: bounds of start-up and of writing the profile.

    Raises:
        RuntimeError: scalene is not available, or no profile was written.
        TargetError: the profiled server did not start.
    """
    reason = scalene_unavailable_reason()
    if reason:
        raise RuntimeError(reason)
    t0 = time.monotonic()
    out = Path(out_dir).resolve()
    sut_dir = out / PROFILE_SUT_DIR
    root = sut_dir / "root"
    root.mkdir(parents=True, exist_ok=True)
    json_path = out / JSON_NAME
    log_path = sut_dir / "conductor.log"
    # scalene follows child processes and then may not write its profile on SIGINT: the profiled
    # conductor does its task-creation file work on the loop instead of in its helper process
    args = ["--root", str(root), "--host", "127.0.0.1", "--port", "0", "--log-file", str(log_path),
            "--no-file-helper"]  # fmt: skip
    env = dict(os.environ)
    env.setdefault("HOME", str(root))
    with open(sut_dir / "conductor.stderr", "ab") as err:
        proc = start_profiled("conductor_perf.reference", args, json_path, cpu_only, stdout=subprocess.PIPE,
                              stderr=err, stdin=subprocess.DEVNULL, env=env)  # fmt: skip
    errors: list[str] = []
    load: dict[str, Any] = {}
    try:
        url = read_first_line(proc, start_timeout, name="profiled conductor")
        target = Target(kind=EMBEDDED, url=check_url(url), root=root, pid=proc.pid)
        wait_healthy(target, start_timeout)
        load = run_representative_load(target, duration_s=duration_s, workers=workers, agents=agents)
        errors += load_problems(load, agents)
    finally:
        written = stop_profiled(proc, json_path, timeout=stop_timeout)
        if proc.poll() is None:
            stop_process_tree(proc.pid, timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()
    if not written:
        raise RuntimeError(f"scalene wrote no profile to {json_path} within {stop_timeout:g} s of SIGINT")
    notes = [load_note(load, duration_s, workers, agents, "under the profiler"), "", *READING_NOTES, "", f"Full scalene profile: `{JSON_NAME}` (view with `scalene view --cli {JSON_NAME}`)."]  # fmt: skip
    spots, _ = write_hotspots(json_path, out / MARKDOWN_NAME, top=top, notes=notes)
    if not spots:
        errors.append(f"scalene took no samples: its profile {json_path.name} is empty")
    return HotspotReport(json_path=json_path, markdown_path=out / MARKDOWN_NAME, hotspots=spots,
                         own_hotspots=[h for h in spots if is_own(h)], summary=scalene_summary(json_path),
                         load=load, elapsed_s=time.monotonic() - t0, errors=errors)  # fmt: skip
