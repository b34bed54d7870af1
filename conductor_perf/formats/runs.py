"""conductor-loop's run storage: layout, run ids, ``run-info.yaml``, atomic writes, locked updates.

Layout (as conductor-loop 0.76 writes it)::

    <root>/<project>/<task>/TASK.md, DONE, TASK-MESSAGE-BUS.md
    <root>/<project>/<task>/runs/<run_id>/run-info.yaml, prompt.md, agent-stdout.txt,
                                          agent-stderr.txt, output.md

``run-info.yaml`` keys are written in yaml.v3 struct order with the real omission rules; writes are
atomic (temp file in the same directory, fsync, chmod 0644, rename) and read-modify-write updates
hold an exclusive ``flock`` on the sidecar ``run-info.yaml.lock`` (polled up to 5 s).
"""

from __future__ import annotations

import fcntl
import itertools
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from .bus import _second_parts, format_rfc3339nano, parse_rfc3339
from .locking import flock_until
from .yamlio import parse_flat, scalar

RUN_INFO = "run-info.yaml"
TASK_MD = "TASK.md"
DONE = "DONE"
RUNS_DIR = "runs"
STDOUT = "agent-stdout.txt"
STDERR = "agent-stderr.txt"
PROMPT = "prompt.md"
OUTPUT = "output.md"

ZERO_TIME = "0001-01-01T00:00:00Z"
UPDATE_LOCK_TIMEOUT_S = 5.0
UPDATE_LOCK_POLL_S = 0.010

STATUS_RUNNING, STATUS_COMPLETED, STATUS_FAILED = "running", "completed", "failed"

_PROJECT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_TASK_ID = re.compile(r"^task-\d{8}-\d{6}-[a-z0-9](?:[a-z0-9-]{1,48}[a-z0-9])$")


class StorageError(Exception):
    """A run directory or run-info file could not be read or written."""


class InvalidId(StorageError, ValueError):
    """An id that the API or the runner rejects."""


def check_path_id(kind: str, value: str) -> str:
    """The API's own id check: non-empty, no path separators, no ``..`` (returns the id)."""
    if not value or not value.strip():
        raise InvalidId(f"{kind} is required")
    if "/" in value or "\\" in value:
        raise InvalidId(f"{kind} must not contain path separators")
    if ".." in value:
        raise InvalidId(f"{kind} must not contain '..'")
    return value


def check_project_id(value: str) -> str:
    """The runner's project id rule: lowercase letters, digits, hyphens, alphanumeric at both ends."""
    check_path_id("project_id", value)
    if not _PROJECT_ID.match(value):
        raise InvalidId(
            f"invalid project_id {value!r}: use lowercase letters, digits and hyphens, "
            "starting and ending with a letter or digit"
        )
    return value


def is_canonical_task_id(value: str) -> bool:
    """Whether ``value`` follows ``task-YYYYMMDD-HHMMSS-<slug>``."""
    return bool(_TASK_ID.match(value))


def canonical_task_id(slug: str, now_ns: int | None = None) -> str:
    """A canonical task id ``task-<YYYYMMDD>-<HHMMSS>-<slug>`` for the current UTC time."""
    sec = (time.time_ns() if now_ns is None else now_ns) // 1_000_000_000
    return f"task-{_second_parts(sec)[1]}-{slug}"


class RunIdGenerator:
    """Run ids ``<YYYYMMDD>-<HHMMSS>0000-<pid>-<seq>`` (UTC; ``0000`` is a literal)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._seq = itertools.count(1)

    def next(self, now_ns: int | None = None) -> str:
        """A new run id; the per-process sequence never resets."""
        sec = (time.time_ns() if now_ns is None else now_ns) // 1_000_000_000
        return f"{_second_parts(sec)[1]}0000-{self.pid}-{next(self._seq)}"


# --------------------------------------------------------------------------- layout


def task_dir(root: str | os.PathLike[str], project_id: str, task_id: str) -> Path:
    """``<root>/<project>/<task>``."""
    return Path(root) / project_id / task_id


def run_dir(root: str | os.PathLike[str], project_id: str, task_id: str, run_id: str) -> Path:
    """``<root>/<project>/<task>/runs/<run_id>``."""
    return task_dir(root, project_id, task_id) / RUNS_DIR / run_id


def write_task_md(task: Path, prompt: str) -> bool:
    """Write ``TASK.md`` only if absent (never overwritten). Returns whether it was written."""
    task.mkdir(parents=True, exist_ok=True)
    text = prompt if prompt.endswith("\n") else prompt + "\n"
    try:
        fd = os.open(task / TASK_MD, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return True


def allocate_run_dir(runs_dir: str, run_id: str) -> str:
    """Create ``runs/<run_id>`` (or ``<run_id>-<digits>`` when taken, as the real server does); returns the id."""
    try:
        os.mkdir(os.path.join(runs_dir, run_id), 0o755)
        return run_id
    except FileExistsError:
        for _ in range(100):
            alt = f"{run_id}-{secrets.randbelow(10**10)}"
            try:
                os.mkdir(os.path.join(runs_dir, alt), 0o700)
                return alt
            except FileExistsError:
                continue
        raise


def prepare_task(task_dir: str, prompt: str, run_id: str) -> str:
    """The file work of POST /api/v1/tasks before its 201: task dir, ``TASK.md``, ``runs/<run_id>``.

    Returns the run id actually taken (see :func:`allocate_run_dir`).
    """
    write_task_md(Path(task_dir), prompt)  # creates the project and task directories when missing
    runs_dir = os.path.join(task_dir, RUNS_DIR)
    try:
        os.mkdir(runs_dir)
    except FileExistsError:
        if not os.path.isdir(runs_dir):
            raise
    return allocate_run_dir(runs_dir, run_id)


def mark_done(task: Path) -> None:
    """Create the empty ``DONE`` marker of a task."""
    (task / DONE).touch()


def is_done(task: Path) -> bool:
    """Whether the task has its ``DONE`` marker."""
    return (task / DONE).exists()


def iter_run_info_paths(root: str | os.PathLike[str]) -> Iterator[Path]:
    """Every ``<root>/*/*/runs/*/run-info.yaml`` (the real server's glob)."""
    root = Path(root)
    try:
        projects = list(os.scandir(root))
    except FileNotFoundError:
        return
    for p in projects:
        if not p.is_dir() or p.name.startswith((".", "_")):
            continue
        for t in os.scandir(p.path):
            runs = os.path.join(t.path, RUNS_DIR)
            if not t.is_dir() or not os.path.isdir(runs):
                continue
            for r in os.scandir(runs):
                info = os.path.join(r.path, RUN_INFO)
                if os.path.isfile(info):
                    yield Path(info)


# --------------------------------------------------------------------------- run-info model


@dataclass(slots=True)
class RunInfo:
    """``run-info.yaml`` in yaml.v3 field order. Times are nanoseconds (0 = Go's zero time)."""

    run_id: str = ""
    project_id: str = ""
    task_id: str = ""
    agent: str = ""
    version: int = 1
    parent_run_id: str = ""
    previous_run_id: str = ""
    process_ownership: str = ""
    pid: int = 0
    pgid: int = 0
    start_time_ns: int = 0
    end_time_ns: int = 0
    exit_code: int = -1
    status: str = STATUS_RUNNING
    cwd: str = ""
    prompt_path: str = ""
    output_path: str = ""
    stdout_path: str = ""
    stderr_path: str = ""
    commandline: str = ""
    error_summary: str = ""
    agent_version: str = ""

    @property
    def start_time(self) -> str:
        """RFC3339Nano start time."""
        return _time_text(self.start_time_ns)

    @property
    def end_time(self) -> str:
        """RFC3339Nano end time (``0001-01-01T00:00:00Z`` while running)."""
        return _time_text(self.end_time_ns)

    @property
    def finished(self) -> bool:
        """Whether the run has an end time."""
        return self.end_time_ns != 0

    def to_yaml(self) -> str:
        """Serialize exactly as the real server does (key order, omitempty, quoting)."""
        out = [f"version: {self.version}\n", f"run_id: {scalar(self.run_id)}\n"]
        if self.parent_run_id:
            out.append(f"parent_run_id: {scalar(self.parent_run_id)}\n")
        if self.previous_run_id:
            out.append(f"previous_run_id: {scalar(self.previous_run_id)}\n")
        out.append(f"project_id: {scalar(self.project_id)}\n")
        out.append(f"task_id: {scalar(self.task_id)}\n")
        out.append(f"agent: {scalar(self.agent)}\n")
        if self.process_ownership:
            out.append(f"process_ownership: {scalar(self.process_ownership)}\n")
        out.append(f"pid: {self.pid}\n")
        out.append(f"pgid: {self.pgid}\n")
        out.append(f"start_time: {self.start_time}\n")
        out.append(f"end_time: {self.end_time}\n")
        out.append(f"exit_code: {self.exit_code}\n")
        out.append(f"status: {scalar(self.status)}\n")
        for key in (
            "cwd",
            "prompt_path",
            "output_path",
            "stdout_path",
            "stderr_path",
            "commandline",
            "error_summary",
        ):
            value = getattr(self, key)
            if value:
                out.append(f"{key}: {scalar(value)}\n")
        out.append(f"agent_version: {scalar(self.agent_version)}\n")
        return "".join(out)

    @classmethod
    def from_yaml(cls, text: str, path: str | os.PathLike[str] | None = None) -> RunInfo:
        """Parse tolerantly like the real readers (unknown keys ignored, ids from the path).

        Raises :class:`StorageError` for text that is not a YAML mapping or has bad typed values.
        """
        try:
            data = parse_flat(text)
        except ValueError as exc:
            raise StorageError(f"invalid run-info: {exc}") from exc
        info = cls()
        names = {f.name for f in fields(cls)}
        try:
            for key, value in data.items():
                if not isinstance(value, str):
                    continue
                if key in ("version", "pid", "pgid", "exit_code"):
                    setattr(info, key, int(value) if value else 0)
                elif key in ("start_time", "end_time"):
                    setattr(info, key + "_ns", _parse_time(value))
                elif key in names:
                    setattr(info, key, value)
        except ValueError as exc:
            raise StorageError(f"invalid run-info value: {exc}") from exc
        if path is not None:
            parts = Path(path).parts
            if len(parts) >= 5:
                info.run_id = info.run_id or parts[-2]
                info.task_id = info.task_id or parts[-4]
                info.project_id = info.project_id or parts[-5]
        if not info.status:
            info.status = "unknown"
        return info


def _time_text(ns: int) -> str:
    return format_rfc3339nano(ns) if ns else ZERO_TIME


def _parse_time(text: str) -> int:
    if not text or text.startswith("0001-01-01"):
        return 0
    return parse_rfc3339(text)


# --------------------------------------------------------------------------- file operations


def atomic_write(path: str | os.PathLike[str], data: bytes | str, *, fsync: bool = True) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same dir, fsync, chmod 0644, rename."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    stem, dot, ext = path.name.partition(".")
    tmp = path.with_name(
        f"{stem}.{secrets.randbelow(10**10)}.{ext}.tmp" if dot else f"{stem}.{secrets.randbelow(10**10)}.tmp"
    )
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view) :]
            if fsync:
                os.fsync(fd)
            os.fchmod(fd, 0o644)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_run_info(path: str | os.PathLike[str], info: RunInfo, *, fsync: bool = True) -> None:
    """Atomically write a ``run-info.yaml``."""
    atomic_write(path, info.to_yaml(), fsync=fsync)


def read_run_info(path: str | os.PathLike[str]) -> RunInfo:
    """Read a ``run-info.yaml`` without a lock (as the real readers do)."""
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except FileNotFoundError as exc:
        raise StorageError(f"run-info not found: {path}") from exc
    return RunInfo.from_yaml(text, path)


def _lock_sidecar(lock_path: Path, deadline: float, timeout: float) -> int:
    """Lock the sidecar file, making sure the locked inode is still the one at ``lock_path``.

    Holders delete the lock file after use (as the real server does), so a waiter may end up
    holding a lock on an unlinked inode while a newcomer locks a fresh file; re-checking the inode
    after locking closes that race.
    """
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                locked = flock_until(fd, deadline, max_pause=UPDATE_LOCK_POLL_S)
            except OSError as exc:
                raise StorageError(f"lock {lock_path}: {exc}") from exc
            if not locked:
                raise StorageError(f"timed out after {timeout:g} s waiting for {lock_path}")
            try:
                same = os.stat(lock_path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)


def update_run_info(
    path: str | os.PathLike[str],
    change: Callable[[RunInfo], None],
    *,
    timeout: float = UPDATE_LOCK_TIMEOUT_S,
    fsync: bool = True,
) -> RunInfo:
    """Read-modify-write under an exclusive flock on the sidecar ``run-info.yaml.lock``."""
    path = Path(path)
    lock_path = path.with_name(path.name + ".lock")
    deadline = time.monotonic() + timeout
    fd = _lock_sidecar(lock_path, deadline, timeout)
    try:
        try:
            info = read_run_info(path)
            change(info)
            write_run_info(path, info, fsync=fsync)
        finally:
            # the real server deletes the lock file after use; unlink while still holding the lock
            try:
                os.unlink(lock_path)
            except FileNotFoundError:
                pass
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
    return info


def create_run(
    root: str | os.PathLike[str],
    info: RunInfo,
    *,
    fsync: bool = True,
) -> Path:
    """Create ``runs/<run_id>/`` and its ``run-info.yaml`` (the storage library's CreateRun).

    Returns the run directory. The run id, project and task must be set.
    """
    for kind in ("project_id", "task_id", "run_id"):
        check_path_id(kind, getattr(info, kind))
    directory = run_dir(root, info.project_id, info.task_id, info.run_id)
    directory.mkdir(parents=True, exist_ok=True)
    write_run_info(directory / RUN_INFO, info, fsync=fsync)
    return directory


def now_ns() -> int:
    """Current UTC time in nanoseconds."""
    return time.time_ns()
