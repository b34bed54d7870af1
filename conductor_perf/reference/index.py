"""In-memory index of the tasks and runs under the root, kept fresh without O(history) re-reads.

The real server walks the whole tree, parses every ``run-info.yaml`` and rewrites running ones on
every list request (docs/conductor-loop.md, History). The reference keeps one index:

* runs this server writes are updated in memory when they are written (no re-read);
* anything written by other processes (file-level benchmarks create ``runs/`` directly) is found
  by :meth:`RunIndex.refresh`:

  - with the server's inotify watcher (the normal case) the index watches the root, every project
    directory, every task directory, every ``runs/`` directory and the directories of external
    runs that are not finished yet; events mark entries dirty and a refresh touches only those,
    so a list request costs O(changes), not O(history);
  - without inotify (or after a watch could not be added) it stat-scans: a directory is listed
    again only when its mtime changed (or is too recent to trust, the file-system clock being
    coarse) and a ``run-info.yaml`` is re-read only when its (inode, size, mtime) changed;

  finished external runs are not re-checked;
* nothing is ever written on read.

Each run caches its ``RunResponse`` JSON, so list endpoints join cached fragments.
"""

from __future__ import annotations

import os
import stat as _stat
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..formats.runs import DONE, RUN_INFO, RUNS_DIR, TASK_MD, RunInfo, StorageError, read_run_info
from . import gojson

if TYPE_CHECKING:  # pragma: no cover
    from .watch import Watch, WatchHub

# A directory whose mtime is this close to "now" may change again within the same clock tick.
RECENT_NS = 50_000_000

_IN_CREATE, _IN_DELETE, _IN_MOVED_FROM, _IN_MOVED_TO = 0x100, 0x200, 0x40, 0x80
_IN_CLOSE_WRITE, _IN_ATTRIB = 0x8, 0x4
LIST_MASK = _IN_CREATE | _IN_DELETE | _IN_MOVED_FROM | _IN_MOVED_TO
RUN_MASK = LIST_MASK | _IN_CLOSE_WRITE | _IN_ATTRIB
_TASK_NAMES = frozenset((TASK_MD, DONE, RUNS_DIR))


@dataclass(slots=True, eq=False)
class RunEntry:
    """One run directory ``<root>/<project>/<task>/runs/<run_id>``."""

    run_id: str
    project_id: str
    task_id: str
    dir: str  # noqa: A003
    info: RunInfo | None = None
    sig: tuple[int, int, int] | None = None
    managed: bool = False
    _json: str | None = None
    watch: Watch | None = None
    announced: bool = False

    @property
    def info_path(self) -> str:
        """Absolute path of ``run-info.yaml``."""
        return os.path.join(self.dir, RUN_INFO)

    @property
    def active(self) -> bool:
        """A run with run-info and no end time (the real server's "active")."""
        return self.info is not None and self.info.end_time_ns == 0

    def response_json(self) -> str:
        """The ``RunResponse`` JSON (cached until the info changes)."""
        if self._json is None:
            self._json = gojson.marshal(run_response(self.info)) if self.info else "null"
        return self._json

    def set_info(self, info: RunInfo | None, sig: tuple[int, int, int] | None = None) -> None:
        """Replace the cached info."""
        self.info = info
        self.sig = sig
        self._json = None


@dataclass(slots=True, eq=False)
class TaskEntry:
    """One task directory ``<root>/<project>/<task>``."""

    project_id: str
    task_id: str
    path: str
    has_task_md: bool = False
    task_md_mtime_ns: int = 0
    done: bool = False
    dir_mtime: int = -1
    runs_mtime: int = -1
    runs: dict[str, RunEntry] = field(default_factory=dict)
    watch: Watch | None = None
    runs_watch: Watch | None = None


@dataclass(slots=True, eq=False)
class ProjectEntry:
    """One project directory."""

    project_id: str
    path: str
    mtime: int = -1
    tasks: dict[str, TaskEntry] = field(default_factory=dict)
    watch: Watch | None = None


def run_response(info: RunInfo) -> dict[str, object]:
    """``RunResponse`` in Go field order: ``exit_code`` omitted when 0, empty strings omitted."""
    out: dict[str, object] = {
        "run_id": info.run_id,
        "project_id": info.project_id,
        "task_id": info.task_id,
        "status": info.status,
        "process_ownership": effective_ownership(info),
        "start_time": info.start_time,
        "end_time": info.end_time,
    }
    if info.exit_code:
        out["exit_code"] = info.exit_code
    if info.agent_version:
        out["agent_version"] = info.agent_version
    if info.error_summary:
        out["error_summary"] = info.error_summary
    return out


def effective_ownership(info: RunInfo) -> str:
    """``managed`` unless the run-info says ``external``."""
    return "external" if info.process_ownership.strip().lower() == "external" else "managed"


def _sig(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []


def _trusted(mtime: int, now: int) -> int:
    """The mtime to remember, or -1 when it is too recent to rule out a second change in the same tick."""
    return mtime if now - mtime > RECENT_NS else -1


class RunIndex:
    """The tasks and runs under ``root`` (layout ``<project>/<task>/runs/<run_id>``)."""

    def __init__(self, root: str | os.PathLike[str], watcher: WatchHub | None = None) -> None:
        self.root = os.fspath(root)
        self.projects: dict[str, ProjectEntry] = {}
        self.by_run: dict[str, list[RunEntry]] = {}
        self.active: set[RunEntry] = set()
        self.refreshes = 0
        self.full_scans = 0
        self._root_mtime = -1
        self._watcher = watcher
        self._root_watch: Watch | None = None
        self._reliable = False
        self._d_root = False
        self._d_projects: set[ProjectEntry] = set()
        self._d_tasks: set[TaskEntry] = set()
        self._d_runsdirs: set[TaskEntry] = set()
        self._d_runs: set[RunEntry] = set()
        self.appeared: list[RunEntry] = []
        """Runs whose run-info appeared since the consumer last emptied this list (while ``track_appeared``)."""
        self.track_appeared = False
        self.on_change: Callable[[], None] | None = None
        """Called when inotify marks part of the index dirty (a refresh would find something)."""

    @property
    def watching(self) -> bool:
        """Whether changes are tracked with inotify (refresh costs O(changes))."""
        return self._watcher is not None and self._watcher.using_inotify and self._reliable

    # ------------------------------------------------------------------ watches

    def _watch(self, path: str, callback, mask: int) -> Watch | None:  # noqa: ANN001
        w = self._watcher
        if w is None or not w.using_inotify:
            return None
        watch = w.watch(path, callback, mask, fallback=False)
        if not watch.ok:
            w.unwatch(watch)
            self._reliable = False  # e.g. watch limit reached: stat-scan from now on
            return None
        return watch

    def _unwatch(self, watch: Watch | None) -> None:
        if watch is not None and self._watcher is not None:
            self._watcher.unwatch(watch)

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _on_root(self, name: str | None) -> None:
        self._d_root = True
        self._changed()

    def _new_project(self, name: str) -> ProjectEntry:
        project = self.projects[name] = ProjectEntry(name, os.path.join(self.root, name))

        def changed(_n: str | None, p: ProjectEntry = project) -> None:
            self._d_projects.add(p)
            self._changed()

        project.watch = self._watch(project.path, changed, LIST_MASK)
        return project

    def _new_task(self, project: ProjectEntry, name: str) -> TaskEntry:
        task = project.tasks[name] = TaskEntry(project.project_id, name, os.path.join(project.path, name))

        def changed(n: str | None, t: TaskEntry = task) -> None:
            if n is None or n in _TASK_NAMES:
                self._d_tasks.add(t)
                self._changed()

        task.watch = self._watch(task.path, changed, LIST_MASK)
        return task

    def _watch_runs(self, task: TaskEntry) -> None:
        if task.runs_watch is None and self._watcher is not None:
            def changed(_n: str | None, t: TaskEntry = task) -> None:
                self._d_runsdirs.add(t)
                self._changed()

            task.runs_watch = self._watch(os.path.join(task.path, RUNS_DIR), changed, LIST_MASK)

    def _watch_run(self, entry: RunEntry) -> None:
        if entry.watch is None and not entry.managed:
            def changed(n: str | None, e: RunEntry = entry) -> None:
                if n is None or n == RUN_INFO:
                    self._d_runs.add(e)
                    self._changed()

            entry.watch = self._watch(entry.dir, changed, RUN_MASK)

    # ------------------------------------------------------------------ updates from this server

    def ensure_task(self, project_id: str, task_id: str) -> TaskEntry:
        """The entry of a task this server just created (TASK.md written)."""
        project = self.projects.get(project_id) or self._new_project(project_id)
        task = project.tasks.get(task_id) or self._new_task(project, task_id)
        if not task.has_task_md:
            task.has_task_md = True
            task.task_md_mtime_ns = time.time_ns()
        return task

    def add_run_dir(self, project_id: str, task_id: str, run_id: str, *, managed: bool = True) -> RunEntry:
        """Register a (pre)allocated run directory; it lists only once its info is set."""
        task = self.ensure_task(project_id, task_id)
        entry = self._add_run(task, run_id, managed)
        if not managed:
            self._watch_run(entry)  # someone else may write its run-info
        return entry

    def _add_run(self, task: TaskEntry, run_id: str, managed: bool) -> RunEntry:
        entry = task.runs.get(run_id)
        if entry is None:
            entry = RunEntry(run_id, task.project_id, task.task_id, os.path.join(task.path, RUNS_DIR, run_id),
                             managed=managed)  # fmt: skip
            task.runs[run_id] = entry
            self.by_run.setdefault(run_id, []).append(entry)
        if managed and not entry.managed:
            entry.managed = True
            self._unwatch(entry.watch)
            entry.watch = None
        return entry

    def put_info(self, entry: RunEntry, info: RunInfo) -> None:
        """Record the run-info this server just wrote for ``entry``."""
        entry.set_info(info)
        self._track(entry)

    def mark_done(self, project_id: str, task_id: str, done: bool = True) -> None:
        """Record the DONE marker of a task."""
        project = self.projects.get(project_id)
        task = project.tasks.get(task_id) if project else None
        if task is not None:
            task.done = done

    def _track(self, entry: RunEntry) -> None:
        if entry.active:
            self.active.add(entry)
        else:
            self.active.discard(entry)
        if entry.info is not None and not entry.announced:
            entry.announced = True
            if self.track_appeared:
                self.appeared.append(entry)

    # ------------------------------------------------------------------ reads

    def get_runs(self, run_id: str) -> list[RunEntry]:
        """Runs with this id that have a readable run-info (re-checked on disk; 0, 1 or several)."""
        entries = self.by_run.get(run_id)
        if not entries:
            self.refresh()
            entries = self.by_run.get(run_id)
            if not entries and not self.watching:
                self._probe_run(run_id)
                entries = self.by_run.get(run_id)
        found = []
        for entry in list(entries or ()):
            if self._check_run(entry):
                found.append(entry)
        return found

    def _probe_run(self, run_id: str) -> None:
        """Look for ``*/*/runs/<run_id>`` in the known tasks (a run dir in a runs dir not re-listed yet)."""
        for project in list(self.projects.values()):
            for task in list(project.tasks.values()):
                if run_id not in task.runs and os.path.isdir(os.path.join(task.path, RUNS_DIR, run_id)):
                    self._add_run(task, run_id, False)

    def _check_run(self, entry: RunEntry) -> bool:
        """Re-stat one run's info (a single stat; re-read only if it changed). False when gone/unreadable."""
        try:
            st = os.stat(entry.info_path)
        except (FileNotFoundError, NotADirectoryError):
            if entry.info is not None:  # deleted behind our back
                entry.set_info(None)
                self._track(entry)
            return False
        if entry.managed and entry.info is not None:
            return True
        sig = _sig(st)
        if sig != entry.sig or entry.info is None:
            self._read(entry, sig)
        if entry.info is not None and entry.info.end_time_ns and entry.watch is not None:
            self._unwatch(entry.watch)
            entry.watch = None
        return entry.info is not None

    def _read(self, entry: RunEntry, sig: tuple[int, int, int]) -> None:
        try:
            info = read_run_info(entry.info_path)
        except (StorageError, OSError, UnicodeDecodeError):
            entry.set_info(None, sig)
        else:
            entry.set_info(info, sig)
        self._track(entry)

    def _check_external(self, entry: RunEntry) -> None:
        """Refresh an external run's info; stop watching it once it is finished."""
        try:
            sig = _sig(os.stat(entry.info_path))
        except (FileNotFoundError, NotADirectoryError):
            if entry.info is not None:
                entry.set_info(None)
                self._track(entry)
            return
        if sig != entry.sig:
            self._read(entry, sig)
        if entry.info is not None and entry.info.end_time_ns and entry.watch is not None:
            self._unwatch(entry.watch)
            entry.watch = None

    def iter_tasks(self) -> Iterator[TaskEntry]:
        """Every task with a TASK.md (after :meth:`refresh`)."""
        for project in self.projects.values():
            for task in project.tasks.values():
                if task.has_task_md:
                    yield task

    def find_task(self, task_id: str, project_id: str = "") -> list[TaskEntry]:
        """Tasks with this id (in one project, or all projects) that have TASK.md."""
        if project_id:
            task = self.refresh_task(project_id, task_id)
            return [task] if task is not None and task.has_task_md else []
        self.refresh()
        return [t for t in self.iter_tasks() if t.task_id == task_id]

    def refresh_task(self, project_id: str, task_id: str) -> TaskEntry | None:
        """Bring one task up to date (``None`` when its directory does not exist)."""
        path = os.path.join(self.root, project_id, task_id)
        if not os.path.isdir(path):
            return None
        if self.watching:
            self.refresh()
            project = self.projects.get(project_id)
            task = project.tasks.get(task_id) if project else None
            if task is not None:
                return task
        project = self.projects.get(project_id) or self._new_project(project_id)
        task = project.tasks.get(task_id) or self._new_task(project, task_id)
        self._scan_task(task, time.time_ns(), force=True)
        return task

    def all_runs(self) -> list[RunEntry]:
        """Every run with run-info, sorted by run id (after :meth:`refresh`)."""
        self.refresh()
        runs = [e for entries in self.by_run.values() for e in entries if e.info is not None]
        runs.sort(key=lambda e: e.run_id)
        return runs

    def task_runs(self, task: TaskEntry) -> list[RunEntry]:
        """The runs of one task that have run-info, sorted by run id."""
        runs = [e for e in task.runs.values() if e.info is not None]
        runs.sort(key=lambda e: e.run_id)
        return runs

    def active_runs(self) -> list[RunEntry]:
        """Runs without an end time (after :meth:`refresh`)."""
        self.refresh()
        return [e for e in self.active if e.info is not None]

    # ------------------------------------------------------------------ refresh from disk

    def refresh(self) -> None:
        """Bring the index up to date with the disk (see the module docstring for the cost model)."""
        self.refreshes += 1
        w = self._watcher
        if w is not None and w.using_inotify:
            w.drain()  # events the loop has not dispatched yet (e.g. queued while this request was read)
            if self._root_watch is None:
                self._root_watch = self._watch(self.root, self._on_root, LIST_MASK)
            if self._reliable:
                self._incremental()
                return
            self._reliable = self._root_watch is not None  # a failed watch during the scan clears it
        self._full_scan()

    def _full_scan(self) -> None:
        self.full_scans += 1
        self._d_root = False
        self._d_projects.clear()
        self._d_tasks.clear()
        self._d_runsdirs.clear()
        self._d_runs.clear()
        now = time.time_ns()
        try:
            st = os.stat(self.root)
        except FileNotFoundError:
            return
        if st.st_mtime_ns != self._root_mtime:
            self._list_root()
            self._root_mtime = _trusted(st.st_mtime_ns, now)
        for project in list(self.projects.values()):
            self._scan_project(project, now, force=False)
            for task in list(project.tasks.values()):
                self._scan_task(task, now, force=False)
                for entry in list(task.runs.values()):
                    if not entry.managed and (entry.info is None or entry.info.end_time_ns == 0):
                        self._check_external(entry)

    def _incremental(self) -> None:
        now = time.time_ns()
        if self._d_root:
            self._d_root = False
            for project in self._list_root():
                self._scan_project(project, now, force=True)
                for task in list(project.tasks.values()):
                    self._scan_task(task, now, force=True)
        while self._d_projects:
            project = self._d_projects.pop()
            if self.projects.get(project.project_id) is project:
                for task in self._scan_project(project, now, force=True):
                    self._scan_task(task, now, force=True)
        while self._d_tasks:
            task = self._d_tasks.pop()
            if self._current(task):
                self._scan_task(task, now, force=True, runs_list=False)
        while self._d_runsdirs:
            task = self._d_runsdirs.pop()
            if self._current(task):
                self._list_runs(task, now)
        while self._d_runs:
            entry = self._d_runs.pop()
            if not entry.managed and entry.watch is not None:
                self._check_external(entry)

    def _current(self, task: TaskEntry) -> bool:
        project = self.projects.get(task.project_id)
        return project is not None and project.tasks.get(task.task_id) is task

    def _list_root(self) -> list[ProjectEntry]:
        names = set(_subdirs(self.root))
        added = [self._new_project(name) for name in sorted(names - self.projects.keys())]
        for name in self.projects.keys() - names:
            self._drop_project(name)
        return added

    def _scan_project(self, project: ProjectEntry, now: int, *, force: bool) -> list[TaskEntry]:
        """List a project's task directories (if changed); returns the new tasks."""
        try:
            st = os.stat(project.path)
        except (FileNotFoundError, NotADirectoryError):
            self._drop_project(project.project_id)
            return []
        if not force and st.st_mtime_ns == project.mtime:
            return []
        names = set(_subdirs(project.path))
        added = [self._new_task(project, name) for name in sorted(names - project.tasks.keys())]
        for name in project.tasks.keys() - names:
            self._drop_task(project, name)
        project.mtime = _trusted(st.st_mtime_ns, now)
        return added

    def _scan_task(self, task: TaskEntry, now: int, *, force: bool, runs_list: bool = True) -> None:
        """TASK.md and DONE (if the task dir changed), then the runs listing (if it changed)."""
        try:
            st = os.stat(task.path)
        except (FileNotFoundError, NotADirectoryError):
            return
        runs_path = os.path.join(task.path, RUNS_DIR)
        if force or st.st_mtime_ns != task.dir_mtime:
            try:
                md = os.stat(os.path.join(task.path, TASK_MD))
                task.has_task_md = _stat.S_ISREG(md.st_mode)
                task.task_md_mtime_ns = md.st_mtime_ns
            except (FileNotFoundError, NotADirectoryError):
                task.has_task_md = False
            task.done = os.path.exists(os.path.join(task.path, DONE))
            task.dir_mtime = _trusted(st.st_mtime_ns, now)
            if task.runs_watch is None and os.path.isdir(runs_path):
                self._watch_runs(task)
                runs_list = True
                force = True
        if runs_list:
            try:
                rst = os.stat(runs_path)
            except (FileNotFoundError, NotADirectoryError):
                return
            if force or rst.st_mtime_ns != task.runs_mtime:
                self._list_runs(task, now, rst)

    def _list_runs(self, task: TaskEntry, now: int, rst: os.stat_result | None = None) -> None:
        runs_path = os.path.join(task.path, RUNS_DIR)
        if rst is None:
            try:
                rst = os.stat(runs_path)
            except (FileNotFoundError, NotADirectoryError):
                return
        names = set(_subdirs(runs_path))
        for name in sorted(names - task.runs.keys()):
            entry = self._add_run(task, name, False)
            self._watch_run(entry)
            self._check_external(entry)
        for name in task.runs.keys() - names:
            self._drop_run(task, name)
        task.runs_mtime = _trusted(rst.st_mtime_ns, now)

    def _drop_project(self, name: str) -> None:
        project = self.projects.pop(name, None)
        if project is not None:
            self._unwatch(project.watch)
            for task_name in list(project.tasks):
                self._drop_task(project, task_name)

    def _drop_task(self, project: ProjectEntry, name: str) -> None:
        task = project.tasks.pop(name, None)
        if task is not None:
            self._unwatch(task.watch)
            self._unwatch(task.runs_watch)
            for run_id in list(task.runs):
                self._drop_run(task, run_id)

    def _drop_run(self, task: TaskEntry, run_id: str) -> None:
        entry = task.runs.pop(run_id, None)
        if entry is None:
            return
        self._unwatch(entry.watch)
        entry.watch = None
        self.active.discard(entry)
        entries = self.by_run.get(run_id)
        if entries:
            entries[:] = [e for e in entries if e is not entry]
            if not entries:
                del self.by_run[run_id]


def join_runs_json(entries: Iterable[RunEntry]) -> str:
    """``[RunResponse,...]`` from cached fragments."""
    return "[" + ",".join(e.response_json() for e in entries) + "]"
