"""The reference conductor's file worker: results, errors and ordering come back to the loop."""

from __future__ import annotations

import asyncio
import os
import threading

import pytest

from conductor_perf.reference.fileworker import FileWorker


def test_results_and_errors_come_back_to_the_awaiting_coroutine() -> None:
    async def scenario() -> None:
        worker = FileWorker()
        worker.start(asyncio.get_running_loop())
        try:
            assert await worker.run(lambda a, b: a + b, 2, 3) == 5
            with pytest.raises(FileExistsError):
                await worker.run(os.mkdir, "/")
        finally:
            worker.close()

    asyncio.run(scenario())


def test_jobs_run_off_the_loop_thread_and_a_burst_keeps_its_order(tmp_path) -> None:
    seen: list[tuple[int, str]] = []

    def job(i: int) -> int:
        os.mkdir(tmp_path / f"d{i}")
        seen.append((i, threading.current_thread().name))
        return i

    async def scenario() -> list[int]:
        worker = FileWorker(name="files-under-test")
        worker.start(asyncio.get_running_loop())
        try:
            return await asyncio.gather(*(worker.run(job, i) for i in range(50)))
        finally:
            worker.close()

    assert asyncio.run(scenario()) == list(range(50))
    assert [i for i, _ in seen] == list(range(50))
    assert {name for _, name in seen} == {"files-under-test"}
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"d{i}" for i in range(50))


def test_before_start_a_job_runs_inline() -> None:
    async def scenario() -> tuple[str, str]:
        worker = FileWorker()
        name = await worker.run(lambda: threading.current_thread().name)
        return name, threading.current_thread().name

    inner, outer = asyncio.run(scenario())
    assert inner == outer


def test_a_cancelled_waiter_does_not_break_the_others() -> None:
    gate = threading.Event()

    async def scenario() -> int:
        worker = FileWorker()
        worker.start(asyncio.get_running_loop())
        try:
            first = worker.run(gate.wait, 5)
            second = worker.run(lambda: 7)
            first.cancel()
            gate.set()
            return await asyncio.wait_for(second, 5)
        finally:
            worker.close()

    assert asyncio.run(scenario()) == 7
