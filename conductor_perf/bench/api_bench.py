"""REST API workloads for the load generator: what to send, and checks of what arrived.

The generator itself is :mod:`conductor_perf.measure.load`; this module builds its requests for
conductor-loop's endpoints (auth headers included) and checks that posted messages all arrived.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

from ..formats import bus, runs
from ..measure.rawhttp import Request
from ..target import Target
from .bus_bench import Integrity, scan

MESSAGE_PROJECT = "perf-api"


def endpoint_request(target: Target, method: str, path: str) -> Request:
    """A fixed request (GET/DELETE without a body) to ``path`` with the SUT's auth headers."""
    return Request(
        method.upper(), path if path.startswith("/") else "/" + path, None, target.auth_headers() or None
    )


def message_factory(target: Target, task_id: str, *, writer: int = 0) -> Callable[[int], Request]:
    """``f(i)`` -> POST /api/v1/messages whose body is unique per index (checkable afterwards)."""
    headers = target.auth_headers() or None
    run_id = f"writer-{writer}"

    def make(i: int) -> Request:
        body = {"project_id": MESSAGE_PROJECT, "task_id": task_id, "run_id": run_id, "type": "FACT",
                "body": f"perf test message w{writer} #{i}"}  # fmt: skip
        return Request.json("POST", "/api/v1/messages", body, headers)

    return make


def task_count(target: Target, timeout: float = 30.0) -> int:
    """How many tasks ``GET /api/v1/tasks`` lists now (the history a list-endpoint test runs with)."""
    resp = httpx.get(target.url.rstrip("/") + "/api/v1/tasks", headers=target.auth_headers(), timeout=timeout)
    resp.raise_for_status()
    return len(resp.json().get("tasks") or [])


def new_message_task() -> str:
    """A fresh canonical task id for a message-posting run."""
    return runs.canonical_task_id("api-messages")


def posted_integrity(target: Target, task_id: str, acknowledged: int) -> Integrity:
    """Check the task bus after a posting run (needs the runs root).

    Every acknowledged (201) message must be there exactly once and none torn. Request indices
    are not known per status, so ``lost`` is ``acknowledged`` minus the distinct messages found;
    a request still in flight when the run stopped may add one more message, which is not an error.
    """
    root = target.require_root()
    seen, torn, _ = scan(bus.task_bus_path(root, MESSAGE_PROJECT, task_id))
    duplicated = sum(c - 1 for c in seen.values() if c > 1)
    distinct = len(seen)
    return Integrity(expected=acknowledged, found=distinct, lost=max(0, acknowledged - distinct),
                     duplicated=duplicated, torn=torn)  # fmt: skip
