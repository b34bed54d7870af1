"""The reference conductor's run index and watcher: external changes seen, O(changes) refresh, no polling when idle."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from conductor_perf.formats import runs
from conductor_perf.reference.index import RunIndex
from conductor_perf.reference.watch import WatchHub


def make(root: Path, project: str, task: str, run_id: str, status: str = "completed") -> runs.RunInfo:
    info = runs.RunInfo(run_id=run_id, project_id=project, task_id=task, agent="codex", start_time_ns=1,
                        end_time_ns=0 if status == "running" else 2, exit_code=-1 if status == "running" else 0,
                        status=status)  # fmt: skip
    runs.create_run(root, info, fsync=False)
    runs.write_task_md(runs.task_dir(root, project, task), "p")
    return info


def scenario(root: Path, index: RunIndex) -> None:
    make(root, "p1", "t1", "r1")
    assert [e.run_id for e in index.all_runs()] == ["r1"]
    make(root, "p1", "t2", "r2", status="running")
    make(root, "p2", "t1", "r3")
    assert [e.run_id for e in index.all_runs()] == ["r1", "r2", "r3"]
    assert [e.run_id for e in index.active_runs()] == ["r2"]
    # the external run finishes: a rewrite of its run-info is seen
    done = runs.read_run_info(root / "p1" / "t2" / "runs" / "r2" / "run-info.yaml")
    done.status, done.end_time_ns, done.exit_code = "failed", 3, 1
    runs.write_run_info(root / "p1" / "t2" / "runs" / "r2" / "run-info.yaml", done, fsync=False)
    assert index.active_runs() == []
    assert index.get_runs("r2")[0].info.status == "failed"
    (root / "p1" / "t1" / "DONE").touch()
    assert [t.done for t in index.find_task("t1", "p1")] == [True]
    assert len(index.find_task("t1")) == 2
    shutil.rmtree(root / "p2")
    assert [e.run_id for e in index.all_runs()] == ["r1", "r2"]
    assert index.get_runs("r3") == []
    (root / "p1" / "t2" / "runs" / "r9").mkdir()  # preallocated: not a run yet
    assert index.get_runs("r9") == []
    make(root, "p1", "t2", "r9")
    assert index.get_runs("r9")[0].info.status == "completed"


def test_stat_scanning_index_sees_external_changes(tmp_path: Path) -> None:
    index = RunIndex(tmp_path)
    scenario(tmp_path, index)
    assert not index.watching


def test_inotify_index_sees_external_changes_and_refreshes_incrementally(tmp_path: Path) -> None:
    async def run() -> None:
        hub = WatchHub()
        hub.start()
        try:
            if not hub.using_inotify:
                pytest.skip(f"inotify unavailable: {hub.inotify_error}")
            index = RunIndex(tmp_path, hub)
            scenario(tmp_path, index)
            assert index.watching and index.full_scans == 1
            before = hub.counts()["inotify_watches"]
            for i in range(50):
                make(tmp_path, "bulk", f"t{i}", f"b{i}")
            assert len(index.all_runs()) == 53
            assert index.full_scans == 1
            assert hub.counts()["inotify_watches"] == before + 1 + 50 * 2  # project, tasks, runs dirs
        finally:
            hub.close()

    asyncio.run(run())


def test_watch_hub_callbacks_and_polling_fallback(tmp_path: Path) -> None:
    async def run(use_inotify: bool) -> None:
        hub = WatchHub(poll_interval_s=0.01, use_inotify=use_inotify)
        hub.start()
        seen: list[str | None] = []
        got = asyncio.Event()

        def cb(name: str | None) -> None:
            seen.append(name)
            got.set()

        d = tmp_path / f"d{use_inotify}"
        w = hub.watch(str(d), cb)  # does not exist yet: polled until it appears
        d.mkdir()
        (d / "f.txt").write_text("x")
        await asyncio.wait_for(got.wait(), 5)
        got.clear()
        with open(d / "f.txt", "a") as fh:
            fh.write("more")
        deadline = time.monotonic() + 5
        while "f.txt" not in seen and time.monotonic() < deadline:
            await asyncio.wait_for(got.wait(), 5)
            got.clear()
        assert "f.txt" in seen
        hub.unwatch(w)
        assert hub.counts() == {"dirs": 0, "inotify_watches": 0, "polled_dirs": 0}
        await asyncio.sleep(0.05)
        assert hub._poll_task is None  # noqa: SLF001 - nothing polls once nothing is watched
        no_fallback = hub.watch(str(tmp_path / "missing"), cb, fallback=False)
        assert not no_fallback.ok and hub.counts()["polled_dirs"] == 0
        hub.close()

    asyncio.run(run(True))
    asyncio.run(run(False))


def _open_fds() -> dict[str, str]:
    """This process's open descriptors and what each points to."""
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue  # closed meanwhile (or the listing's own descriptor)
    return fds


def test_many_watches_share_one_inotify_instance(tmp_path: Path) -> None:
    async def run() -> None:
        hub = WatchHub()
        hub.start()
        fds_before = _open_fds()
        watches = []
        for i in range(300):
            d = tmp_path / f"w{i}"
            d.mkdir()
            watches.append(hub.watch(str(d), lambda n: None))
        # no watch opened a descriptor of its own: no new inotify instance, no watched folder held
        # open (other descriptors come and go with threads left by earlier tests in this process)
        new = {fd: target for fd, target in _open_fds().items() if fds_before.get(fd) != target}
        assert not [t for t in new.values() if "inotify" in t or t.startswith(str(tmp_path))], new
        for w in watches:
            hub.unwatch(w)
        hub.close()

    asyncio.run(run())
