"""Reference conductor under a burst of task submissions: queued launches, one shared ``--version``,
per-iteration audit hand-over. Assertions are about order and counts, never about speed."""

from __future__ import annotations

import asyncio
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from conductor_perf.formats import bus, runs
from conductor_perf.reference import agents as agents_mod
from conductor_perf.reference.agents import AgentManager, TaskLoop
from conductor_perf.reference.app import Metrics
from conductor_perf.reference.audit import AuditWriter
from conductor_perf.reference.config import AgentConfig, ReferenceConfig
from conductor_perf.reference.index import RunEntry, RunIndex
from conductor_perf.reference.serverlog import ServerLog
from conductor_perf.reference.testing import ServerThread

BURST = 20
TIMEOUT = 30.0


def _manager(tmp_path: Path, busy) -> AgentManager:  # noqa: ANN001
    async def post(path: str, msg: bus.Message) -> str:
        return "msg"

    cfg = ReferenceConfig(root=tmp_path / "root")
    return AgentManager(cfg, RunIndex(cfg.root), ServerLog(tmp_path / "log"), executor=ThreadPoolExecutor(1),
                        post=post, metrics=Metrics(), conductor_url=lambda: "", on_run_changed=lambda e, s: None,
                        busy=busy)  # fmt: skip


def _loop_spec(tmp_path: Path, n: int) -> TaskLoop:
    task_dir = str(tmp_path / "root" / "p" / f"t{n}")
    return TaskLoop(project_id="p", task_id=f"t{n}", task_dir=task_dir, prompt="x",
                    agent=AgentConfig(name="codex", type="codex"), environment={}, working_dir=task_dir,
                    first_run=RunEntry(f"r{n}", "p", f"t{n}", os.path.join(task_dir, "runs", f"r{n}")))  # fmt: skip


def _run_with_fake_loops(mgr: AgentManager, body) -> list[str]:  # noqa: ANN001
    """Run ``body(mgr, started)`` on a fresh event loop with task loops that only record their start."""
    started: list[str] = []

    async def fake_loop(tl: TaskLoop) -> None:
        started.append(tl.task_id)
        mgr.loops.discard(tl)

    mgr._run_loop = fake_loop  # type: ignore[method-assign]
    asyncio.run(asyncio.wait_for(body(mgr, started), TIMEOUT))
    return started


def test_queued_loops_start_once_requests_are_quiet(tmp_path: Path) -> None:
    busy = {"on": True}
    mgr = _manager(tmp_path, lambda quiet: busy["on"])

    async def body(m: AgentManager, started: list[str]) -> None:
        m.start(_loop_spec(tmp_path, 1))
        m.start(_loop_spec(tmp_path, 2))
        assert started == [] and m.metrics.active_runs == 2  # queued, counted as active at once
        await asyncio.sleep(0)
        assert started == []
        busy["on"] = False
        while len(started) < 2:
            await asyncio.sleep(0.001)

    assert _run_with_fake_loops(mgr, body) == ["t1", "t2"]  # in submission order


def test_sustained_requests_cannot_hold_launches_back(tmp_path: Path) -> None:
    mgr = _manager(tmp_path, lambda quiet: True)  # a request always "just arrived"

    async def body(m: AgentManager, started: list[str]) -> None:
        m.start(_loop_spec(tmp_path, 1))
        while not started:
            await asyncio.sleep(0.005)

    assert _run_with_fake_loops(mgr, body) == ["t1"]


def test_shutdown_drops_queued_loops_as_failed(tmp_path: Path) -> None:
    mgr = _manager(tmp_path, lambda quiet: True)

    async def body(m: AgentManager, started: list[str]) -> None:
        m.start(_loop_spec(tmp_path, 1))
        await m.shutdown(grace=0.1)
        await asyncio.sleep(agents_mod.LAUNCH_MAX_DELAY_S + 0.05)

    assert _run_with_fake_loops(mgr, body) == []
    assert not mgr.loops
    assert (mgr.metrics.active_runs, mgr.metrics.failed_runs) == (0, 1)


def test_concurrent_loops_share_one_version_run(tmp_path: Path) -> None:
    mgr = _manager(tmp_path, lambda quiet: False)
    calls: list[str] = []

    async def fake_version(path: str) -> str:
        calls.append(path)
        await asyncio.sleep(0.01)
        return "codex-cli 0.1.0-stub"

    mgr._run_version = fake_version  # type: ignore[method-assign]
    cli = str(Path(agents_mod.__file__).parent / "stub" / "codex")

    async def body() -> list[str]:
        return list(await asyncio.gather(*(mgr.agent_version(cli) for _ in range(10))))

    assert asyncio.run(body()) == ["codex-cli 0.1.0-stub"] * 10
    assert calls == [cli]
    assert asyncio.run(mgr.agent_version(cli)) == "codex-cli 0.1.0-stub"  # cached (a finished future)
    assert calls == [cli]


def test_audit_records_of_one_iteration_are_one_write(tmp_path: Path) -> None:
    writer = AuditWriter(tmp_path)

    async def submit() -> tuple[int, int]:
        for i in range(5):
            writer.submit({"request_id": f"r{i}", "payload": {"token": "secret", "n": i}})
        before = writer._queue.qsize()
        await asyncio.sleep(0)
        return before, writer._queue.qsize()

    assert asyncio.run(submit()) == (0, 1)
    writer.submit({"request_id": "off-loop"})  # no running loop: handed over at once
    assert writer._queue.qsize() == 2
    writer.submit({"request_id": "bad", "payload": {"x": object()}})  # not JSON: counted, never blocks
    writer.start()
    assert writer.flush(timeout=5)
    writer.close()
    lines = [json.loads(line) for line in Path(writer.path).read_text().splitlines()]
    assert [r["request_id"] for r in lines] == ["r0", "r1", "r2", "r3", "r4", "off-loop"]
    assert lines[0]["payload"] == {"n": 0, "token": "[REDACTED]"}
    assert writer.errors == 1


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory):
    """A burst of concurrent POST /api/v1/tasks; yields (root, server, responses, checks made at 201)."""
    root = tmp_path_factory.mktemp("launch") / "root"
    cfg = ReferenceConfig(root=root, log_file=root.parent / "server.log")
    with ServerThread(cfg) as srv:
        version_runs: list[str] = []
        agents = srv.server.agents
        real = agents._run_version

        async def counting(path: str) -> str:
            version_runs.append(path)
            return await real(path)

        agents._run_version = counting

        async def post_all() -> list[tuple[httpx.Response, bool, bool]]:
            async with httpx.AsyncClient(base_url=srv.url, timeout=20) as client:
                async def one(i: int) -> tuple[httpx.Response, bool, bool]:
                    resp = await client.post("api/v1/tasks", json={
                        "project_id": "burst", "task_id": f"task-20260101-000000-b{i}", "agent_type": "codex",
                        "prompt": f"burst {i}", "config": {"STUB_SLEEP_MS": "0"}})  # fmt: skip
                    body = resp.json()
                    task = root / "burst" / body["task_id"]
                    return resp, (task / "runs" / body["run_id"]).is_dir(), (task / runs.TASK_MD).is_file()

                return list(await asyncio.gather(*(one(i) for i in range(BURST))))

        results = asyncio.run(post_all())
        yield root, srv, results, version_runs


def test_burst_state_exists_when_201_is_returned(burst) -> None:  # noqa: ANN001
    root, srv, results, _ = burst
    assert [r.status_code for r, _, _ in results] == [201] * BURST
    assert all(run_dir and task_md for _, run_dir, task_md in results)
    run_ids = [r.json()["run_id"] for r, _, _ in results]
    assert len(set(run_ids)) == BURST
    srv.server.audit.flush()
    audit = (root / "_audit" / "form-submissions.jsonl").read_text()
    assert all(f'"run_id":"{rid}"' in audit for rid in run_ids)


def test_burst_runs_complete_with_one_version_run(burst) -> None:  # noqa: ANN001
    root, _, results, version_runs = burst
    deadline = time.monotonic() + TIMEOUT
    pending = [r.json() for r, _, _ in results]
    while pending and time.monotonic() < deadline:
        pending = [b for b in pending if not _finished(root, b)]
        time.sleep(0.05)
    assert not pending, f"{len(pending)} runs did not finish"
    assert len(version_runs) == 1
    body = results[0][0].json()
    types = [m.type for m in bus.read(root / "burst" / body["task_id"] / bus.TASK_BUS)]
    assert types[:3] == ["INFO", bus.RUN_START, bus.RUN_STOP]


def _finished(root: Path, body: dict) -> bool:
    path = root / "burst" / body["task_id"] / "runs" / body["run_id"] / runs.RUN_INFO
    try:
        return runs.read_run_info(path).status in ("completed", "failed")
    except runs.StorageError:
        return False
