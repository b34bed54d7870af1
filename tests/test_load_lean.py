"""The closed loop's lean connections against answers the fast path does not frame by itself.

A raw asyncio server answers each path differently (chunked, Content-Length with Connection:
close, HTTP/1.0, a body until close, a stalled answer, a keep-alive connection the server drops
silently, bytes after the answer); every request must be counted once with the right status,
and a run always ends. Nothing here depends on machine speed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading

import pytest

from conductor_perf.measure.load import run_closed
from conductor_perf.measure.rawhttp import Request

ANSWERS = {
    b"/chunked": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    b"/close": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    b"/http10": b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    b"/until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close",
    b"/garbage": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
    b"/error": b"HTTP/1.1 503 Service Unavailable\r\nCONTENT-LENGTH: 4\r\n\r\nbusy",
    b"/ok": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    b"/split": b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789",
}
CLOSES = {b"/close", b"/http10", b"/until-close", b"/garbage"}


@pytest.fixture(scope="module")
def raw_server():
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict[str, object] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                path = head.split(b" ", 2)[1]
                if path == b"/stall":
                    await asyncio.sleep(30)
                    return
                if path == b"/drop-idle" and served:
                    return  # a stale keep-alive connection: closed without an answer
                answer = ANSWERS.get(path, ANSWERS[b"/ok"])
                if path == b"/split":  # the head and the body in separate packets
                    writer.write(answer[:-6])
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    writer.write(answer[-6:])
                elif path == b"/head":
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n")
                else:
                    writer.write(answer)
                await writer.drain()
                served += 1
                if path in CLOSES:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        box["port"] = server.sockets[0].getsockname()[1]
        box["server"] = server
        ready.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(main()), loop.run_forever()), daemon=True)
    thread.start()
    ready.wait(10)
    yield f"http://127.0.0.1:{box['port']}"

    async def shutdown() -> None:
        box["server"].close()  # type: ignore[attr-defined]
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout=10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)


@pytest.mark.parametrize("path", ["/chunked", "/close", "/http10", "/until-close", "/garbage", "/split", "/ok"])
def test_every_answer_kind_is_counted_once(raw_server: str, path: str) -> None:
    r = run_closed(raw_server + path, workers=2, duration=30, max_requests=40, timeout=10)
    assert (r.requests, r.ok, r.errors) == (40, 40, 0), r.error_samples
    assert r.status_counts == {200: 40}
    assert r.histogram.count == 40


def test_error_statuses_keep_their_reason_and_body(raw_server: str) -> None:
    r = run_closed(raw_server + "/error", workers=1, duration=30, max_requests=5)
    assert r.status_counts == {503: 5} and r.errors == 5
    assert r.error_samples == ["HTTP 503 Service Unavailable: busy"]


def test_head_requests_read_no_body(raw_server: str) -> None:
    r = run_closed(raw_server, Request("HEAD", "/head"), workers=1, duration=30, max_requests=5, timeout=5)
    assert (r.requests, r.ok) == (5, 5), r.error_samples


def test_a_stale_keep_alive_connection_is_retried_once_not_counted(raw_server: str) -> None:
    r = run_closed(raw_server + "/drop-idle", workers=1, duration=30, max_requests=10, timeout=5)
    assert (r.requests, r.ok, r.errors) == (10, 10, 0), r.error_samples


def test_a_stalled_answer_times_out_and_the_run_ends(raw_server: str) -> None:
    r = run_closed(raw_server + "/stall", workers=2, duration=0.2, timeout=0.5)
    assert r.requests == 2 and r.errors == 2
    assert set(r.exceptions) == {"TimeoutError"}
    assert r.histogram.count == 2 and r.histogram.percentile_ms(50) >= 500  # recorded at the time given up


def test_a_run_cancelled_after_its_server_died_stops_reconnecting_quietly() -> None:
    """A caller cancels the load after the SUT died (the goroutine dump): no connection goes on
    reconnecting to the dead server, and no refused connect is left to be logged as never retrieved."""

    async def main() -> tuple[list[str], list[object]]:
        from conductor_perf.measure.load import closed_loop

        problems: list[object] = []
        asyncio.get_running_loop().set_exception_handler(lambda _loop, ctx: problems.append(ctx.get("message")))
        writers: list[asyncio.StreamWriter] = []

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writers.append(writer)
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                while True:
                    await reader.readuntil(b"\r\n\r\n")
                    writer.write(ANSWERS[b"/ok"])
                    await writer.drain()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        load = asyncio.create_task(closed_loop(f"http://127.0.0.1:{port}/", workers=8, duration=60, timeout=5))
        await asyncio.sleep(0.3)
        server.close()  # the server dies: its connections close, reconnects are refused
        for w in writers:
            w.transport.abort()
        await asyncio.sleep(0.3)
        load.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await load
        left = []
        for _ in range(5):  # a connection that waited to retry would start another reconnect meanwhile
            await asyncio.sleep(0.05)
            left += [t.get_coro().__qualname__ for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        await server.wait_closed()
        return left, problems

    left, problems = asyncio.run(main())
    gc.collect()
    assert left == [] and problems == []
