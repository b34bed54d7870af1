"""measure/sse.py: the async SSE client (withheld headers, timestamps, resume, errors, shared sessions)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from conductor_perf.formats import runs
from conductor_perf.measure.sse import SSEClient, SSEStatusError, StreamEnded, collect
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sseclient") / "root"


@pytest.fixture(scope="module")
def srv(root: Path):
    with ServerThread(ReferenceConfig(root=root, heartbeat_interval_s=30, log_file=root.parent / "log")) as s:
        yield s


def make_run(root: Path, n: int) -> tuple[runs.RunInfo, Path]:
    info = runs.RunInfo(run_id=f"run-client-{n}", project_id="proj-c", task_id=f"task-{n}", agent="codex",
                        start_time_ns=time.time_ns(), status="running")  # fmt: skip
    return info, runs.create_run(root, info)


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def test_events_timestamps_and_resume(srv: ServerThread, root: Path) -> None:
    info, run_dir = make_run(root, 1)
    url = srv.url + f"api/v1/runs/{info.run_id}/stream"

    async def scenario() -> None:
        client = SSEClient(url, connect_timeout=2, headers_timeout=5)
        await client.connect()
        assert client.status == 200 and client.response_headers["Content-Type"] == "text/event-stream"
        status = await client.next_event(10)
        assert status.event == "status" and status.json()["status"] == "running"
        before = time.time_ns()
        append(run_dir / "agent-stdout.txt", b"a\n")
        ev = await client.next_matching("log", 10)
        assert ev.id == "s=1;e=0" and ev.json()["line"] == "a"
        assert before <= ev.received_ns <= time.time_ns()
        assert client.last_event_id == "s=1;e=0"
        await client.close()
        await asyncio.sleep(0.2)  # the server drops its tailer with the last subscriber
        append(run_dir / "agent-stdout.txt", b"b\nc\n")
        client = SSEClient(url, last_event_id="s=1;e=0")
        await client.connect()
        replay = [await client.next_event(10), await client.next_event(10)]
        assert [(e.id, e.json()["line"]) for e in replay] == [("s=2;e=0", "b"), ("s=3;e=0", "c")]
        assert (await client.next_event(10)).event == "status"
        await client.reconnect()
        assert client.connects == 2
        assert (await client.next_event(10)).event == "status"  # nothing behind the cursor: status only
        with pytest.raises(TimeoutError):
            await client.next_event(0.2)
        await client.close()

    asyncio.run(scenario())


def test_status_error_carries_the_envelope(srv: ServerThread) -> None:
    async def scenario() -> None:
        with pytest.raises(SSEStatusError) as err:
            await SSEClient(srv.url + "api/v1/runs/missing/stream").connect()
        assert err.value.status == 404
        assert err.value.json() == {"error": {"code": "NOT_FOUND", "message": "run not found"}}

    asyncio.run(scenario())


async def _withholding_server(delay: float, body: bytes, close: bool) -> tuple[asyncio.AbstractServer, int]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await asyncio.sleep(delay)  # like the real server: nothing until the first event
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
        writer.write(b"%x\r\n%s\r\n" % (len(body), body))
        if close:
            writer.write(b"0\r\n\r\n")
        await writer.drain()
        if close:
            writer.close()
        else:
            await asyncio.sleep(5)

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


def test_withheld_headers_are_tolerated_with_a_short_connect_timeout() -> None:
    async def scenario() -> None:
        server, port = await _withholding_server(1.0, b"event: heartbeat\ndata: {}\n\n", close=True)
        try:
            url = f"http://127.0.0.1:{port}/stream"
            async with SSEClient(url, connect_timeout=0.3, headers_timeout=5) as client:
                assert (client.headers_received_ns - client.request_sent_ns) / 1e9 >= 0.9
                ev = await client.next_event(5)
                assert (ev.event, ev.data, ev.id) == ("heartbeat", "{}", None)
                with pytest.raises(StreamEnded):
                    await client.next_event(5)
            with pytest.raises(TimeoutError):
                await SSEClient(url, connect_timeout=0.1, headers_timeout=0.2).connect()
        finally:
            server.close()

    asyncio.run(scenario())


def test_async_iteration_ends_with_the_stream() -> None:
    async def scenario() -> None:
        server, port = await _withholding_server(0, b"id: 1\ndata: a\n\nid: 2\ndata: b\n\n", close=True)
        try:
            async with SSEClient(f"http://127.0.0.1:{port}/") as client:
                got = [ev.data async for ev in client]
            assert got == ["a", "b"]
            assert client.last_event_id == "2"
            events = await collect(f"http://127.0.0.1:{port}/", 1, timeout=5)
            assert events[0].data == "a"
        finally:
            server.close()

    asyncio.run(scenario())


def test_many_clients_share_one_session(srv: ServerThread, root: Path) -> None:
    info, run_dir = make_run(root, 2)
    url = srv.url + f"api/v1/runs/{info.run_id}/stream"

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            clients = [SSEClient(url, session=session) for _ in range(20)]
            await asyncio.gather(*(c.connect() for c in clients))
            await asyncio.gather(*(c.next_matching("status", 10) for c in clients))
            append(run_dir / "agent-stdout.txt", b"x\n")
            got = await asyncio.gather(*(c.next_matching("log", 10) for c in clients))
            assert {e.id for e in got} == {"s=1;e=0"}
            for c in clients:
                await c.close()
            assert not session.closed

    asyncio.run(scenario())
