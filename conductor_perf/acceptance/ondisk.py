"""What the SUT wrote under its runs root, against what it served (the acceptance checks that need the root).

Each check reads the file conductor-loop's documentation names (run-info.yaml, a run's files,
``DONE``, a bus file) and raises :class:`~conductor_perf.acceptance.behaviour.NotAsDocumented`
citing the rule, with ``evidence`` (the request and the answer) when the caller gives it.

Example::

    path, data, info = read_run_info(root, "acceptance", task_id, run_id)
    check_served_runs(root, {"run_id": run_id, ...})
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..formats import bus, runs
from ..formats.runs import RunInfo, StorageError
from . import behaviour
from .evidence import excerpt

Root = str | os.PathLike[str]

RUN_FILES = {"output.md": runs.OUTPUT, "stdout": runs.STDOUT, "stderr": runs.STDERR, "prompt": runs.PROMPT}
"""The run-file route's ``name`` values and the files under the run folder they serve."""


def read_run_info(root: Root, project_id: str, task_id: str, run_id: str) -> tuple[Path, bytes, RunInfo]:
    """The run's run-info.yaml: (path, bytes, parsed); a departure (run-info-agrees) when it cannot be read."""
    path = runs.run_dir(root, project_id, task_id, run_id) / runs.RUN_INFO
    try:
        data = path.read_bytes()
        return path, data, RunInfo.from_yaml(data.decode("utf-8", "replace"), path)
    except (OSError, StorageError) as exc:
        raise behaviour.departure(f"{path} cannot be read as run-info: {exc}", "run-info-agrees") from None


def check_served_runs(root: Root, body: Mapping[str, Any], *, evidence: str = "") -> int:
    """Every field of the served run(s) (a run, or a task with ``runs``) equals run-info.yaml on disk.

    Returns how many runs were compared; a departure (run-info-agrees) for an answer holding no run
    or any field that differs.
    """
    served = [body] if "run_id" in body else body.get("runs") or []
    if not served:
        raise behaviour.departure("the answer holds no run", "run-info-agrees", evidence)
    problems = []
    for run in served:
        _, _, info = read_run_info(root, run.get("project_id", ""), run.get("task_id", ""), run.get("run_id", ""))
        problems += behaviour.run_disagreements(run, info, where=f"run {run.get('run_id')}")
    if problems:
        raise behaviour.departure("; ".join(problems), "run-info-agrees", evidence)
    return len(served)


def check_info_file(root: Root, project_id: str, task_id: str, run_id: str, content: bytes, *,
                    evidence: str = "") -> None:  # fmt: skip
    """The info route's body is byte for byte the run's run-info.yaml (rule run-info-agrees)."""
    path, data, _ = read_run_info(root, project_id, task_id, run_id)
    if content != data:
        raise behaviour.departure(f"the body differs from {path} ({len(data)} bytes: {excerpt(data, 300)})",
                                  "run-info-agrees", evidence)  # fmt: skip


def check_run_file(root: Root, served: Mapping[str, Any], project_id: str, task_id: str, run_id: str,
                   name: str = "output.md", *, evidence: str = "") -> None:  # fmt: skip
    """The run-file route's ``content`` and ``size_bytes`` are those of the file on disk (rule run-file)."""
    if name not in RUN_FILES:
        raise ValueError(f"unknown run file {name!r}: use one of {', '.join(RUN_FILES)}")
    path = runs.run_dir(root, project_id, task_id, run_id) / RUN_FILES[name]
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise behaviour.departure(f"{path} cannot be read: {exc}", "run-file") from None
    if served.get("content") != data.decode("utf-8", "replace") or served.get("size_bytes") != len(data):
        raise behaviour.departure(f"content/size_bytes differ from {path} ({len(data)} bytes: {excerpt(data, 300)})",
                                  "run-file", evidence)  # fmt: skip


def check_done(root: Root, project_id: str, task_id: str) -> Path:
    """The task's ``DONE`` marker exists (rule task-delete); returns its path."""
    path = runs.task_dir(root, project_id, task_id) / runs.DONE
    if not path.is_file():
        raise behaviour.departure(f"{path} does not exist", "task-delete")
    return path


def posted(answers: Sequence[Mapping[str, Any]]) -> list[behaviour.Posted]:
    """What the acceptance suites' ``Post Message`` returned (the fields posted plus the 201's ``msg_id`` and
    ``timestamp``), as :class:`~conductor_perf.acceptance.behaviour.Posted` messages."""
    return [behaviour.Posted(msg_id=a["msg_id"], timestamp=a["timestamp"], type=a.get("type") or "USER",
                             project_id=a["project_id"], task_id=a.get("task_id", ""), run_id=a.get("run_id", ""),
                             body=a["body"]) for a in answers]  # fmt: skip


def check_bus_file(root: Root, project_id: str, task_id: str, answers: Sequence[Mapping[str, Any]]) -> tuple[Path, int]:
    """The task's bus file (the project's without ``task_id``) holds each posted message once, in posting
    order, in the documented format (rule bus-file); returns (its path, its size in bytes)."""
    path = bus.task_bus_path(root, project_id, task_id) if task_id else bus.project_bus_path(root, project_id)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise behaviour.departure(f"{path} cannot be read: {exc}", "bus-file") from None
    problems = behaviour.bus_file_problems(data, posted(answers))
    if problems:
        raise behaviour.departure(f"{path}: " + "; ".join(problems), "bus-file")
    return path, len(data)
