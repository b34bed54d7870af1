"""Documented behaviours conductor-loop 0.76 breaks and the reference conductor reproduces on purpose.

The reference keeps the real server's wire behaviour wherever the suites' figures or a client's
parsing could depend on it, so it reproduces these departures from conductor-loop's documentation
(``docs/api-behaviour.md``) instead of fixing them. Each key is the rule's anchor there. The
acceptance suite still checks the documented behaviour: against the embedded conductor a failure
of one of these rules is reported as skipped with the evidence; against any other SUT it fails.

Example::

    >>> "exit-code-zero" in REPRODUCED
    True
"""

from __future__ import annotations

from collections.abc import Callable

REFERENCE_ONLY_ROUTE = "/api/v1/debug/runtime"
"""A route only the reference conductor serves (its README: "Reference-only extension"); conductor-loop
answers it 404. How a SUT shows it is the reference, whether embedded or behind its ``run-agent`` wrapper."""

REPRODUCED: dict[str, str] = {
    "exit-code-zero": "a completed run's JSON leaves exit_code out when it is 0 (Go's omitempty); the "
    "reference answers the same bytes",
    "message-body": "a message followed by another reads back with one extra trailing newline (the blank "
    "separator line joins its body); the reference parses bus files with the same rules",
    "message-stream": "a new message-stream subscriber without Last-Event-ID gets the last 20 messages, not "
    "the whole bus; the reference hydrates the same way, which the SSE fan-out figures depend on",
    "task-list-filter": "GET /api/v1/tasks ignores project_id and lists every task; the reference lists the "
    "same way",
    "task-status": "a finished task reports all_finished, not completed; the reference reports the same",
    "metrics-runs": "the run counters count task loops: a task whose only run failed but which ends with DONE "
    "counts as completed; the reference counts the same way",
}


def is_reference(get_json: Callable[[str], tuple[int, object]]) -> bool:
    """Whether the SUT is the reference conductor: ``get_json(path)`` (status, parsed body) of its
    reference-only route answers 200 with the runtime figures.

    Example::

        is_reference(lambda path: http_json(target.endpoint(path), headers=target.auth_headers()))
    """
    try:
        status, body = get_json(REFERENCE_ONLY_ROUTE)
    except Exception:  # noqa: BLE001 - a SUT that cannot answer is not shown to be the reference
        return False
    return status == 200 and isinstance(body, dict) and "asyncio_tasks" in body
