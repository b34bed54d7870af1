"""measure/sse.py: the async SSE client (withheld headers, timestamps, resume, errors, many clients, framings)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest

from conductor_perf.formats import runs
from conductor_perf.measure.sse import SSEClient, SSEStatusError, StreamEnded, collect, follow
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


def test_many_clients_on_one_loop_each_close_only_their_own_connection(srv: ServerThread, root: Path) -> None:
    info, run_dir = make_run(root, 2)
    url = srv.url + f"api/v1/runs/{info.run_id}/stream"

    async def scenario() -> None:
        clients = [SSEClient(url) for _ in range(20)]
        await asyncio.gather(*(c.connect() for c in clients))
        await asyncio.gather(*(c.next_matching("status", 10) for c in clients))
        append(run_dir / "agent-stdout.txt", b"x\n")
        got = await asyncio.gather(*(c.next_matching("log", 10) for c in clients))
        assert {e.id for e in got} == {"s=1;e=0"}
        for c in clients[:10]:
            await c.close()
        append(run_dir / "agent-stdout.txt", b"y\n")
        rest = await asyncio.gather(*(c.next_matching("log", 10) for c in clients[10:]))
        assert {e.id for e in rest} == {"s=2;e=0"} and all(c.connected for c in clients[10:])
        for c in clients[10:]:
            await c.close()

    asyncio.run(scenario())


async def _raw_server(response: bytes, *, hold: bool = False) -> tuple[asyncio.AbstractServer, int]:
    """A server that answers every request with ``response`` split into single bytes, then closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for i in range(len(response)):
            writer.write(response[i : i + 1])
            await writer.drain()
        if hold:
            await asyncio.sleep(5)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


_EVENTS = b"id: 1\ndata: a\n\nevent: log\r\ndata: b\r\n\r\n"
_SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"


def _chunked(body: bytes, cuts: list[int]) -> bytes:
    parts = [body[a:b] for a, b in zip([0, *cuts], [*cuts, len(body)], strict=True)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"


@pytest.mark.parametrize(
    "framing",
    [
        b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" + _EVENTS,
        _SSE_HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + _chunked(_EVENTS, [9, 30]),
        _SSE_HEAD + b"Content-Length: %d\r\n\r\n" % len(_EVENTS) + _EVENTS,
    ],
    ids=["until-close", "chunked", "content-length"],
)
def test_events_are_parsed_whatever_the_framing_and_however_the_bytes_arrive(framing: bytes) -> None:
    async def scenario() -> None:
        server, port = await _raw_server(framing)
        try:
            async with SSEClient(f"http://127.0.0.1:{port}/s") as client:
                got = [(ev.event, ev.data, ev.id) async for ev in client]
            assert got == [("message", "a", "1"), ("log", "b", None)]
            assert client.response_headers["Content-Type"] == "text/event-stream"
        finally:
            server.close()

    asyncio.run(scenario())


def test_a_stream_cut_inside_a_chunk_ends_as_broken() -> None:
    async def scenario() -> None:
        cut = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"10\r\ndata: a\n\n")  # fmt: skip
        server, port = await _raw_server(cut)
        try:
            async with SSEClient(f"http://127.0.0.1:{port}/s") as client:
                assert (await client.next_event(5)).data == "a"
                with pytest.raises(StreamEnded, match="stream broke"):
                    await client.next_event(5)
        finally:
            server.close()

    asyncio.run(scenario())


def test_connection_refused_and_a_bad_url_are_sse_errors() -> None:
    import socket

    from conductor_perf.measure.sse import SSEError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed

    async def scenario() -> None:
        with pytest.raises(SSEError, match="cannot connect to"):
            await SSEClient(f"http://127.0.0.1:{port}/s").connect()
        with pytest.raises(SSEError, match="needs an http:// URL"):
            await SSEClient("https://127.0.0.1/s").connect()

    asyncio.run(scenario())


def test_follow_reads_until_stopped_counts_by_name_and_says_when_it_could_not_connect(srv: ServerThread,
                                                                                      root: Path) -> None:  # fmt: skip
    info, run_dir = make_run(root, 90)
    url = srv.url + f"api/v1/runs/{info.run_id}/stream"

    async def scenario() -> tuple[int, Counter[str], bool, int, bool]:
        stop, connected, counts = asyncio.Event(), asyncio.Event(), Counter()
        client = SSEClient(url, connect_timeout=2, headers_timeout=5)
        reader = asyncio.create_task(follow(client, stop, connected=connected, counts=counts))
        await asyncio.wait_for(connected.wait(), 10)
        append(run_dir / "agent-stdout.txt", b"a\nb\n")
        while counts["log"] < 2:
            await asyncio.sleep(0.02)
        stop.set()
        got = await asyncio.wait_for(reader, 10)
        refused, gone = asyncio.Event(), SSEClient("http://127.0.0.1:9/", connect_timeout=2)
        nothing = await asyncio.wait_for(follow(gone, asyncio.Event(), connected=refused), 10)
        return got, counts, client.status == 200, nothing, refused.is_set() and gone.status == 0

    got, counts, opened, nothing, refused = asyncio.run(scenario())
    assert opened and counts["log"] == 2 and counts["status"] == 1 and got == sum(counts.values())
    assert nothing == 0 and refused
