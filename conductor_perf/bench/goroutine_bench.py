"""Peak goroutines (or asyncio tasks) of the SUT under load; for a Go SUT from its SIGQUIT stack dump.

conductor-loop exposes no goroutine count, but a Go process prints every goroutine's stack on
SIGQUIT (and exits): :func:`goroutines_under_load` builds the load up to its peak and takes the
dump there, mid-load, with everything open at once (:func:`at_peak_of_load` is the same load
with any other reading at the peak, e.g. the embedded conductor's task count):

1. ``agents`` stub agents that keep running (each a run with its process, output readers and
   watchers), waited for until every one is running;
2. ``sse_clients`` SSE clients following the first agent's log stream, waited for until connected;
3. a closed loop of API reads and message posts over ``connections`` connections;

then, ``dump_after_s`` into the closed loop, :func:`conductor_perf.measure.goroutines.goroutine_dump`.
The server is gone afterwards (the caller restarts it); its agents are killed with it. A server
that is still up after the reading gets its agents' tasks deleted (which stops them). Everything
this load creates is under the project ``perf-goroutines``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import httpx
import psutil

from ..measure.goroutines import GoroutineDump, goroutine_dump
from ..measure.load import closed_loop
from ..measure.rawhttp import Request
from ..measure.sse import SSEClient, follow
from ..target import Target
from . import agent_tasks, agents_bench

PROJECT = "perf-goroutines"
T = TypeVar("T")
READ_PATHS = ("/api/v1/tasks", "/api/v1/runs", "/api/v1/status")


@dataclass
class PeakLoad(Generic[T]):
    """A reading taken at the load's peak and what was open at that moment.

    Attributes:
        reading: what the ``at_peak`` function returned (a dump, a task count).
        agents_running: agents whose run was running when the dump was taken.
        sse_connected: SSE clients connected then.
        connections: connections of the API closed loop.
        requests_before_dump: API requests answered before the dump (the load was live).
        errors: what went wrong while building the load (the dump is still taken).
    """

    reading: T
    agents_running: int
    sse_connected: int
    connections: int
    requests_before_dump: int
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        reading = self.reading.to_dict() if hasattr(self.reading, "to_dict") else self.reading
        return {"reading": reading, "agents_running": self.agents_running,
                "sse_connected": self.sse_connected, "connections": self.connections,
                "requests_before_dump": self.requests_before_dump, "errors": self.errors}  # fmt: skip


def _running(target: Target, run_ids: list[str], timeout: float) -> int:
    """Wait until every run is ``running`` (or ``timeout``); returns how many are."""
    deadline = time.monotonic() + timeout
    running: set[str] = set()
    with httpx.Client(base_url=target.url, headers=target.auth_headers(), timeout=5) as client:
        while True:
            for rid in run_ids:
                if rid in running:
                    continue
                with contextlib.suppress(httpx.HTTPError, ValueError):
                    resp = client.get(f"/api/v1/runs/{rid}")
                    if resp.status_code == 200 and resp.json().get("status") == "running":
                        running.add(rid)
            if len(running) == len(run_ids) or time.monotonic() >= deadline:
                return len(running)
            time.sleep(0.1)


async def _peak(target: Target, at_peak: Callable[[], T], run_ids: list[str], *, sse_clients: int,
                connections: int, dump_after_s: float, timeout: float, errors: list[str]) -> tuple[T, int, int]:  # fmt: skip
    headers = target.auth_headers() or None
    stop = asyncio.Event()
    clients = [SSEClient(target.endpoint(f"/api/v1/runs/{run_ids[0]}/stream"), headers=target.auth_headers(),
                         headers_timeout=timeout) for _ in range(sse_clients if run_ids else 0)]  # fmt: skip
    ready = [asyncio.Event() for _ in clients]
    followers = [asyncio.create_task(follow(c, stop, connected=e)) for c, e in zip(clients, ready, strict=True)]
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), timeout)
    sse_connected = sum(1 for c in clients if c.status == 200)
    if sse_connected < len(clients):
        errors.append(f"{sse_connected} of {len(clients)} SSE clients connected")

    def make(i: int) -> Request:
        if i % 4 < 3:
            return Request("GET", READ_PATHS[i % 4], None, headers)
        body = {"project_id": PROJECT, "task_id": "task-goroutines-bus", "type": "FACT", "body": f"load #{i}"}
        return Request.json("POST", "/api/v1/messages", body, headers)

    answered = 0

    def count(_elapsed: float, done: int, _rate: float) -> None:
        nonlocal answered
        answered = done

    load = asyncio.create_task(closed_loop(target.url, make, workers=connections, duration=dump_after_s + timeout,
                                           timeout=5, on_progress=count, progress_interval=0.25))  # fmt: skip
    try:
        await asyncio.sleep(dump_after_s)
        if load.done():
            errors.append(f"the API load ended before the dump: {load.exception() or 'finished early'}")
        reading = await asyncio.to_thread(at_peak)
    finally:
        stop.set()
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await load
        await asyncio.gather(*followers, return_exceptions=True)
    return reading, sse_connected, answered


def at_peak_of_load(
    target: Target,
    at_peak: Callable[[], T],
    *,
    agents: int = 10,
    sse_clients: int = 5,
    connections: int = 4,
    dump_after_s: float = 3.0,
    timeout: float = 60.0,
) -> PeakLoad[T]:
    """Build the load to its peak (see the module doc), call ``at_peak()`` there and wind the load down.

    Example::

        peak = at_peak_of_load(target, lambda: read_task_count(target), agents=50, sse_clients=10)

    Args:
        target: the SUT.
        at_peak: called in a thread at the peak; what it returns is :attr:`PeakLoad.reading`.
        agents: stub agents running at the peak.
        sse_clients: SSE clients on the first agent's log stream.
        connections: connections of the API closed loop.
        dump_after_s: how long the API load runs before ``at_peak``.
        timeout: bound of each wait (agents running, clients connected, ``at_peak``).
    """
    errors: list[str] = []
    subs = agents_bench.submit_tasks(target, agents, project=PROJECT, slug="goroutines",
                                     config=agents_bench.stub_config(sleep_ms=int((timeout + dump_after_s) * 2000)),
                                     timeout=timeout) if agents else []  # fmt: skip
    run_ids = [s.run_id for s in subs if s.status == 201 and s.run_id]
    if len(run_ids) < agents:
        errors.append(f"{len(run_ids)} of {agents} agent tasks accepted")
    running = _running(target, run_ids, timeout) if run_ids else 0
    if running < len(run_ids):
        errors.append(f"{running} of {len(run_ids)} agent runs were running at the dump")
    try:
        reading, sse_connected, answered = asyncio.run(_peak(target, at_peak, run_ids, sse_clients=sse_clients,
                                                             connections=connections, dump_after_s=dump_after_s,
                                                             timeout=timeout, errors=errors))  # fmt: skip
    finally:
        if target.pid is None or psutil.pid_exists(target.pid):
            errors += agent_tasks.stop_tasks(target, [(PROJECT, s.task_id) for s in subs if s.status == 201])
    if answered == 0:
        errors.append("no API request was answered before the reading at the peak")
    return PeakLoad(reading=reading, agents_running=running, sse_connected=sse_connected, connections=connections,
                    requests_before_dump=answered, errors=errors)  # fmt: skip


def goroutines_under_load(
    target: Target,
    log_path: str | os.PathLike[str],
    *,
    agents: int = 10,
    sse_clients: int = 5,
    connections: int = 4,
    dump_after_s: float = 3.0,
    timeout: float = 60.0,
) -> PeakLoad[GoroutineDump]:
    """Build the load to its peak, SIGQUIT the SUT there and count the goroutines of its dump.

    Example::

        peak = goroutines_under_load(target, target.log_path, agents=50, sse_clients=10)
        peak.reading.count      # e.g. 412

    Args:
        target: an owned Go server (its ``pid`` on this machine); it exits.
        log_path: the file its stderr goes to.
        agents, sse_clients, connections, dump_after_s, timeout: the load, as in :func:`at_peak_of_load`.

    Raises:
        GoroutineDumpError: the dump could not be taken or read.
        ValueError: the target has no pid.
    """
    pid = target.pid
    if pid is None:
        raise ValueError(f"the SUT at {target.url} has no process on this machine to dump")
    return at_peak_of_load(target, lambda: goroutine_dump(pid, log_path, timeout), agents=agents,
                           sse_clients=sse_clients, connections=connections, dump_after_s=dump_after_s,
                           timeout=timeout)  # fmt: skip
