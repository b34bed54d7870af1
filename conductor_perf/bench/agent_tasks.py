"""Whether agent tasks can finish on this SUT: done checks, the stub's report, stopping tasks.

A conductor-loop task ends only when its agent creates ``DONE`` in the task folder; otherwise the
server starts the agent again (a new run about every second, up to 100 times). A suite that only
waits for runs to end would never notice: the runs do end, but the tasks go on restarting and fill
the runs root (40,000 runs in 7 minutes were seen against a build whose agent environment the stub
did not know). So every wait on agent runs (:func:`conductor_perf.bench.agents_bench.wait_for_runs`)
also checks each task once its run ended (:func:`check_task`): a task that is not done within
:data:`DONE_GRACE_S`, or that started a second run, fails the wait at once with the reason
(:class:`AgentTaskError`), read from the stub's report on its environment
(:func:`read_stub_report`), after its tasks were stopped through the API (:func:`stop_tasks`), so
the tests after it meet a quiet server. :func:`wait_until_done` is the same check for one task
whose run ended (the acceptance suites' tasks).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NoReturn

import httpx

from ..formats import agentenv, runs
from ..formats.agentenv import StubReport
from ..target import Target

DONE_GRACE_S = 3.0
"""How long after a task's run ended ``DONE`` may still be missing before the task counts as not done.

The stub creates ``DONE`` before it exits and the server records the run's end after the exit, so a
done task has ``DONE`` when its run is seen finished; the server looks for it right then and starts
the next run a restart delay (1 s) later. The grace only absorbs a slow file system."""
STALL_S = 60.0
"""How long a wait on agent runs goes on while no run starts or ends before it gives up with the reason."""
STOP_TIMEOUT_S = 15.0
"""How long stopped tasks may take until none of their runs is running (SIGTERM ends the stub at once)."""
STOP_SETTLE_S = 0.5
"""A stopped task counts as stopped once it has had no running and no new run for this long: the run a
task loop was starting when ``DONE`` appeared is spawned within milliseconds."""
DONE_STATUSES = ("all_finished", "completed")
"""A task's status in ``GET /api/v1/tasks/{id}`` once it is done: conductor-loop 0.76 answers ``all_finished``,
its documentation ``completed``."""
REPORT_BYTES = 4096
"""The stub writes its report first; this much of ``agent-stderr.txt`` holds it."""


class AgentTaskError(RuntimeError):
    """Agent tasks cannot finish on this SUT; the message says why and which tasks were stopped.

    Attributes:
        report: the stub's report on its environment, when it could be read.
    """

    ROBOT_SUPPRESS_NAME = True  # Robot shows the message alone

    def __init__(self, message: str, report: StubReport | None = None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class TaskCheck:
    """A task's state after its run ended.

    Attributes:
        done: ``DONE`` exists (or the API says ``all_finished``).
        runs: runs the task has so far (a second one means the server restarted it).
    """

    done: bool
    runs: int


def _task_url(project_id: str, task_id: str) -> tuple[str, dict[str, str]]:
    return f"/api/v1/tasks/{task_id}", {"project_id": project_id}


def check_task(target: Target, project_id: str, task_id: str, client: httpx.Client | None = None) -> TaskCheck | None:
    """Whether a task is done and how many runs it has; ``None`` when that cannot be read now.

    With the runs root: ``DONE`` in the task folder and the run folders with a ``run-info.yaml``.
    Without it: ``GET /api/v1/tasks/{id}`` (status ``all_finished``, its ``runs``); ``client`` is
    then required.
    """
    if target.root is not None:
        task = runs.task_dir(target.root, project_id, task_id)
        try:
            names = os.listdir(task / runs.RUNS_DIR)
        except OSError:
            names = []
        count = sum(1 for n in names if os.path.exists(task / runs.RUNS_DIR / n / runs.RUN_INFO))
        return TaskCheck(done=runs.is_done(task), runs=count)
    if client is None:
        raise ValueError("without the runs root, check_task needs an HTTP client")
    path, params = _task_url(project_id, task_id)
    try:
        resp = client.get(path, params=params)
        body = resp.json() if resp.status_code == 200 else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    return TaskCheck(done=body.get("status") in DONE_STATUSES, runs=len(body.get("runs") or []))


def read_stub_report(target: Target, project_id: str, task_id: str, run_id: str) -> StubReport | None:
    """The stub's report on its environment from the run's ``agent-stderr.txt`` (needs the runs root).

    ``None`` without the runs root, when the file is missing, or when it holds no report (an agent
    other than the conductor-perf stub ran).
    """
    if target.root is None:
        return None
    path = runs.run_dir(target.root, project_id, task_id, run_id) / runs.STDERR
    try:
        with open(path, "rb") as fh:
            text = fh.read(REPORT_BYTES).decode("utf-8", "replace")
    except OSError:
        return None
    return agentenv.parse_stub_report(text, source=str(path))


def not_done_message(target: Target, project_id: str, task_id: str, run_id: str, check: TaskCheck,
                     report: StubReport | None) -> str:  # fmt: skip
    """``task P/T restarted N times: its agent never marked it done; <why>`` for a task left undone."""
    if check.runs > 1:
        what = f"task {project_id}/{task_id} restarted {check.runs - 1} time{'s' if check.runs > 2 else ''}"
    else:
        what = f"task {project_id}/{task_id} ended its run {run_id} without being done"
    why = agentenv.not_done_reason(report)
    if not why:
        if target.root is None:
            why = ("the stub's report on its environment is in the run's agent-stderr.txt "
                   "(give CONDUCTOR_ROOT to have it read)")  # fmt: skip
        else:
            why = ("the run's agent-stderr.txt has no report of the conductor-perf stub: is its folder "
                   "first on the server's PATH?")  # fmt: skip
    return f"{what}: its agent never marked it done; {why}"


def wait_until_done(target: Target, project_id: str, task_id: str, run_id: str, *, grace: float = DONE_GRACE_S,
                    poll: float = 0.1) -> TaskCheck:  # fmt: skip
    """Once a task's run ``run_id`` has ended: wait until the task is done, at most ``grace`` seconds.

    A task that is still not done then, or that the server started again (a second run), is stopped
    (:func:`stop_tasks`) and :class:`AgentTaskError` raised with the reason (:func:`fail_not_done`),
    instead of leaving it to restart again and again behind the tests that follow.

    Example::

        wait_until_done(target, "acceptance", "task-20260101-000000-a", "20260101-0000000000-1-1")
    """
    deadline = time.monotonic() + grace
    with httpx.Client(base_url=target.url, headers=target.auth_headers(), timeout=10) as client:
        while True:
            check = check_task(target, project_id, task_id, client)
            if check is not None and check.done:
                return check
            if check is not None and check.runs > 1 or time.monotonic() >= deadline:
                fail_not_done(target, project_id, task_id, run_id, check or TaskCheck(done=False, runs=1),
                              [(project_id, task_id)])  # fmt: skip
            time.sleep(poll)


def fail_not_done(target: Target, project_id: str, task_id: str, run_id: str, check: TaskCheck,
                  tasks: Iterable[tuple[str, str]]) -> NoReturn:  # fmt: skip
    """Stop ``tasks`` (the task not done and any other unfinished ones), then raise :class:`AgentTaskError`
    saying why the task is not done (:func:`not_done_message`) and what was stopped."""
    report = read_stub_report(target, project_id, task_id, run_id)
    message = not_done_message(target, project_id, task_id, run_id, check, report)
    raise AgentTaskError(message + stop_unfinished(target, tasks), report)


def stop_unfinished(target: Target, tasks: Iterable[tuple[str, str]]) -> str:
    """Stop ``tasks`` (:func:`stop_tasks`); returns ``"; stopped N unfinished task(s) ..."`` for a message."""
    todo = list(dict.fromkeys(tasks))
    problems = stop_tasks(target, todo)
    text = f"; stopped {len(todo)} unfinished task{'s' if len(todo) != 1 else ''} through DELETE /api/v1/tasks/{{id}}"
    return text + (f" ({'; '.join(problems[:3])})" if problems else "")


def stop_tasks(target: Target, tasks: Iterable[tuple[str, str]], *, timeout: float = STOP_TIMEOUT_S) -> list[str]:
    """Stop tasks through ``DELETE /api/v1/tasks/{id}`` (writes ``DONE``, ends their runs) and wait until
    they are quiet; returns the problems (empty when every task stopped).

    Quiet means no run running and no new run for :data:`STOP_SETTLE_S`: a task loop that checked
    for ``DONE`` just before the DELETE wrote it still starts the run it was about to start (the
    real server does the same), and that run must end too before the task counts as stopped.

    Example::

        problems = stop_tasks(target, [("perf-agents", "task-20260101-000000-a")])
    """
    todo = list(dict.fromkeys(tasks))
    problems: list[str] = []
    if not todo:
        return problems
    with httpx.Client(base_url=target.url, headers=target.auth_headers(), timeout=10) as client:
        for project_id, task_id in todo:
            path, params = _task_url(project_id, task_id)
            try:
                resp = client.delete(path, params=params)
            except httpx.HTTPError as exc:
                problems.append(f"DELETE {path}: {type(exc).__name__}: {exc}")
                continue
            if resp.status_code not in (200, 202, 204, 404):  # 404: the task never got its TASK.md
                problems.append(f"DELETE {path} answered {resp.status_code}: {resp.text.strip()[:120]}")
        deadline = time.monotonic() + timeout
        seen: dict[tuple[str, str], tuple[int, float]] = {}  # task -> (runs, quiet since)
        waiting = todo
        while waiting:
            now = time.monotonic()
            still = []
            for task in waiting:
                state = _run_state(target, *task, client)
                if state is None or state[0]:  # no answer, or a run still running
                    seen.pop(task, None)
                    still.append(task)
                    continue
                count, since = seen.get(task, (-1, now))
                if count != state[1]:
                    seen[task] = (state[1], now)  # a new run appeared (or the first look): quiet from now
                    still.append(task)
                elif now - since < STOP_SETTLE_S:
                    still.append(task)
            waiting = still
            if not waiting or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
    if waiting:
        problems.append(f"{len(waiting)} task(s) not confirmed stopped within {timeout:g} s "
                        f"(a run still running or no answer), e.g. {waiting[0][0]}/{waiting[0][1]}")  # fmt: skip
    return problems


def _run_state(target: Target, project_id: str, task_id: str, client: httpx.Client) -> tuple[bool, int] | None:
    """(whether a run of the task is running, how many run folders it has); ``None`` without an answer."""
    if target.root is not None:
        runs_dir = runs.task_dir(target.root, project_id, task_id) / runs.RUNS_DIR
        try:
            names = os.listdir(runs_dir)
        except OSError:
            return False, 0
        for name in names:
            try:
                info = runs.read_run_info(runs_dir / name / runs.RUN_INFO)
            except runs.StorageError:
                continue  # no run-info (yet): a run stopped before it started never gets one
            if info.end_time_ns == 0:
                return True, len(names)
        return False, len(names)
    path, params = _task_url(project_id, task_id)
    try:
        resp = client.get(path, params=params)
        body = resp.json() if resp.status_code in (200, 404) else None
    except (httpx.HTTPError, ValueError):
        return None
    if not isinstance(body, dict):
        return None
    task_runs = [r for r in (body.get("runs") or []) if isinstance(r, dict)]
    return any(r.get("status") == "running" for r in task_runs), len(task_runs)
