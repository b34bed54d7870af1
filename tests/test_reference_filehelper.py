"""The file helper process of the reference conductor and the task-creation file work it runs."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
from pathlib import Path

import httpx
import psutil
import pytest

from conductor_perf.formats import runs
from conductor_perf.reference.filehelper import HELPER_MODULE, FileHelper, serve
from conductor_perf.target import start_embedded


def test_prepare_task_creates_the_layout_and_keeps_an_existing_task_md(tmp_path: Path) -> None:
    task = tmp_path / "proj" / "task-1"
    assert runs.prepare_task(str(task), "do it", "20261129-0900000000-1-1") == "20261129-0900000000-1-1"
    assert (task / "TASK.md").read_text() == "do it\n"
    assert (task / "runs" / "20261129-0900000000-1-1").is_dir()
    again = runs.prepare_task(str(task), "other prompt", "20261129-0900000000-1-2")
    assert again == "20261129-0900000000-1-2"
    assert (task / "TASK.md").read_text() == "do it\n"  # never overwritten


def test_a_taken_run_id_gets_a_numeric_suffix(tmp_path: Path) -> None:
    (tmp_path / "runs" / "r-1").mkdir(parents=True)
    taken = runs.allocate_run_dir(str(tmp_path / "runs"), "r-1")
    prefix, _, digits = taken.rpartition("-")
    assert prefix == "r-1" and digits.isdigit() and (tmp_path / "runs" / taken).is_dir()


def test_serve_answers_each_job_line_and_reports_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    jobs = [
        [1, str(tmp_path / "p" / "t"), "prompt", "run-1"],
        [2, str(blocker / "t"), "prompt", "run-2"],
    ]
    src = io.BytesIO(b"not json\n" + b"".join(json.dumps(j).encode() + b"\n" for j in jobs))
    out = io.BytesIO()
    assert serve(src, out) == 0
    replies = [json.loads(line) for line in out.getvalue().splitlines()]
    assert replies[0] == ["ready"]
    assert replies[1] == [1, "run-1"]
    assert replies[2][:3] == [2, None, errno.ENOTDIR]
    assert (tmp_path / "p" / "t" / "runs" / "run-1").is_dir()


def test_the_helper_process_does_the_work_and_hands_errors_back(tmp_path: Path) -> None:
    async def scenario() -> None:
        helper = FileHelper()
        await helper.start()
        try:
            assert helper.running and helper.proc is not None and helper.proc.pid != os.getpid()
            ids = await asyncio.gather(*(helper.prepare_task(str(tmp_path / "p" / f"t{i}"), "go", f"r{i}")
                                         for i in range(20)))  # fmt: skip
            assert ids == [f"r{i}" for i in range(20)]
            (tmp_path / "file").write_text("x")
            with pytest.raises(NotADirectoryError):
                await helper.prepare_task(str(tmp_path / "file" / "t"), "go", "r")
        finally:
            await helper.close()
        assert not helper.running

    asyncio.run(scenario())
    assert all((tmp_path / "p" / f"t{i}" / "runs" / f"r{i}").is_dir() for i in range(20))


def test_without_a_helper_the_work_runs_inline(tmp_path: Path) -> None:
    async def scenario() -> str:
        helper = FileHelper()  # never started
        return await helper.prepare_task(str(tmp_path / "p" / "t"), "go", "r1")

    assert asyncio.run(scenario()) == "r1"
    assert (tmp_path / "p" / "t" / "runs" / "r1").is_dir()


def test_a_helper_that_died_is_replaced_by_the_inline_path(tmp_path: Path) -> None:
    async def scenario() -> str:
        helper = FileHelper()
        await helper.start()
        assert helper.proc is not None
        helper.proc.kill()
        await asyncio.wait_for(helper.proc.wait(), 5)
        try:
            return await helper.prepare_task(str(tmp_path / "p" / "t"), "go", "r1")
        finally:
            await helper.close()

    assert asyncio.run(scenario()) == "r1"


@pytest.mark.parametrize(("extra", "helpers"), [([], 1), (["--no-file-helper"], 0)])
def test_the_server_runs_one_helper_unless_told_not_to(tmp_path: Path, extra: list[str], helpers: int) -> None:
    target = start_embedded(root=tmp_path / "root", log_dir=tmp_path, extra_args=extra)
    try:
        kids = psutil.Process(target.pid).children(recursive=True)
        assert sum(HELPER_MODULE in k.cmdline() for k in kids) == helpers
        body = {"project_id": "p", "task_id": "t-1", "agent_type": "codex", "prompt": "x"}
        resp = httpx.post(target.url + "api/v1/tasks", json=body, timeout=10)
        assert resp.status_code == 201
        assert (tmp_path / "root" / "p" / "t-1" / "runs" / resp.json()["run_id"]).is_dir()
    finally:
        target.stop()


def test_once_the_helpers_answers_stop_jobs_run_inline(tmp_path: Path) -> None:
    async def scenario() -> str:
        helper = FileHelper()
        await helper.start()
        assert helper.proc is not None and helper._reader is not None
        helper.proc.kill()
        await asyncio.wait_for(asyncio.shield(helper._reader), 5)  # its stdout ended
        assert not helper.running
        try:
            return await asyncio.wait_for(helper.prepare_task(str(tmp_path / "p" / "t"), "go", "r1"), 2)
        finally:
            await helper.close()

    assert asyncio.run(scenario()) == "r1"
