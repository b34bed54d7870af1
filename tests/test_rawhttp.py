"""The light HTTP/1.1 client: parser on exact bytes, exchanges and streams with a real aiohttp server."""

from __future__ import annotations

import asyncio
import json

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from conductor_perf.measure.rawhttp import (
    ConnectionClosedError,
    HttpConnection,
    HttpProtocolError,
    Request,
    ResponseParser,
    open_stream,
)


# ---------------------------------------------------------------------------------------------
# parser, byte-exact
# ---------------------------------------------------------------------------------------------
def feed_bytewise(parser: ResponseParser, data: bytes):
    result = None
    for i in range(len(data)):
        r = parser.feed(data[i : i + 1])
        if r is not None:
            assert result is None
            result = r
    return result


def test_parser_content_length_in_one_piece_and_byte_by_byte():
    raw = b'HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{"id":"a"}\n'
    whole = ResponseParser().feed(raw)
    bytewise = feed_bytewise(ResponseParser(), raw)
    for r in (whole, bytewise):
        assert (r.status, r.reason, r.body, r.keep_alive) == (201, "Created", b'{"id":"a"}\n', True)
        assert r.headers["content-type"] == "application/json"


def test_parser_chunked_with_extension_and_trailer():
    raw = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=x\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    r = feed_bytewise(ResponseParser(), raw)
    assert r.body == b"hello world"


def test_parser_skips_100_continue():
    raw = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    assert ResponseParser().feed(raw).body == b"ok"


def test_parser_read_until_close_and_http10():
    p = ResponseParser()
    assert p.feed(b"HTTP/1.0 200 OK\r\n\r\npart one, ") is None
    assert p.feed(b"part two") is None
    r = p.feed_eof()
    assert (r.body, r.keep_alive) == (b"part one, part two", False)


def test_parser_no_body_for_head_204_304():
    assert (
        ResponseParser(expect_body=False).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n").body == b""
    )
    assert ResponseParser().feed(b"HTTP/1.1 204 No Content\r\n\r\n").status == 204
    assert ResponseParser().feed(b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n").body == b""


def test_parser_connection_close_header():
    r = ResponseParser().feed(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert r.keep_alive is False


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/2 200 OK\r\n\r\n",
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nbroken header\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    ],
)
def test_parser_rejects_bad_responses(raw):
    with pytest.raises(HttpProtocolError):
        ResponseParser().feed(raw)


def test_parser_truncated_response_raises_connection_closed():
    p = ResponseParser()
    p.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
    with pytest.raises(ConnectionClosedError, match="middle"):
        p.feed_eof()
    with pytest.raises(ConnectionClosedError, match="before a response"):
        ResponseParser().feed_eof()


def test_request_encoding():
    r = Request.json("post", "/api/v1/tasks", {"id": "t-1"}, headers={"Authorization": "Bearer x"})
    data = r.encode("127.0.0.1:8080")
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /api/v1/tasks HTTP/1.1"
    assert b"Host: 127.0.0.1:8080" in lines
    assert b"Content-Type: application/json" in lines
    assert b"Authorization: Bearer x" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert json.loads(body) == {"id": "t-1"}
    assert (
        Request("GET", "/x").encode("h:1")
        == b"GET /x HTTP/1.1\r\nHost: h:1\r\nUser-Agent: conductor-perf\r\n\r\n"
    )
    with pytest.raises(ValueError):
        Request("GET", "/x\r\nEvil: 1").encode("h:1")
    with pytest.raises(ValueError):
        Request("GET", "/x", headers={"X": "a\r\nEvil: 1"}).encode("h:1")


def stream_bytewise(parser: ResponseParser, data: bytes) -> tuple[list, bytes]:
    heads, body = [], b""
    for i in range(len(data)):
        head = parser.feed(data[i : i + 1])
        if head is not None:
            heads.append(head)
        body += parser.take_body()
    return heads, body


@pytest.mark.parametrize(
    ("raw", "body"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n6\r\n world\r\n0\r\nT: 1\r\n\r\n",
         b"hello world"),
        (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", b"hello"),
        (b"HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", b""),
    ],
    ids=["chunked", "content-length-after-100", "no-body"],
)
def test_stream_mode_gives_the_head_once_and_the_body_in_pieces(raw: bytes, body: bytes):
    for parser, feed in ((ResponseParser(stream=True), stream_bytewise), (ResponseParser(stream=True), None)):
        if feed is None:
            heads = [parser.feed(raw)]
            got = parser.take_body()
        else:
            heads, got = feed(parser, raw)
        assert len(heads) == 1 and heads[0].body == b"" and heads[0].status in (200, 204)
        assert got == body and parser.done


def test_stream_mode_until_close_keeps_header_case_and_ends_at_eof():
    p = ResponseParser(stream=True)
    head = p.feed(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: a\n")
    assert head.headers == {"content-type": "text/event-stream"}
    assert p.raw_headers == [("Content-Type", "text/event-stream")]
    assert p.take_body() == b"data: a\n" and not p.done
    assert p.feed(b"\n") is None and p.take_body() == b"\n"
    assert p.feed_eof() is None and p.done


def test_stream_mode_cut_inside_a_chunk_is_a_closed_connection():
    p = ResponseParser(stream=True)
    p.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc")
    assert p.take_body() == b"abc"
    with pytest.raises(ConnectionClosedError, match="in the middle of a response"):
        p.feed_eof()
    with pytest.raises(HttpProtocolError):
        ResponseParser(stream=True).feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY")


# ---------------------------------------------------------------------------------------------
# against a real aiohttp server on 127.0.0.1
# ---------------------------------------------------------------------------------------------
def make_app() -> web.Application:
    async def health(_req):
        return web.json_response({"status": "ok"})

    async def tasks(req):
        try:
            doc = await req.json()
        except json.JSONDecodeError:
            return web.json_response({"error": "bad json"}, status=400)
        return web.json_response({"id": doc.get("id"), "created": True}, status=201)

    async def chunked(req):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        for part in (b"alpha,", b"beta,", b"gamma"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def close(_req):
        return web.Response(text="bye", headers={"Connection": "close"})

    async def slow(_req):
        await asyncio.sleep(2.0)
        return web.Response(text="late")

    async def empty(_req):
        return web.Response(status=204)

    async def big(req):
        resp = web.StreamResponse()
        resp.enable_chunked_encoding()
        await resp.prepare(req)
        for _ in range(64):
            await resp.write(b"x" * 32 * 1024)  # 2 MiB in all
        await resp.write_eof()
        return resp

    async def missing(_req):
        return web.json_response({"error": "not found"}, status=404)

    app = web.Application()
    app.router.add_get("/health", health)
    app.router.add_post("/tasks", tasks)
    app.router.add_get("/chunked", chunked)
    app.router.add_get("/close", close)
    app.router.add_get("/slow", slow)
    app.router.add_get("/empty", empty)
    app.router.add_get("/big", big)
    app.router.add_get("/missing", missing)
    return app


def with_server(test, **server_kwargs):
    async def runner():
        server = TestServer(make_app(), host="127.0.0.1", **server_kwargs)
        await server.start_server()
        try:
            await asyncio.wait_for(test(server.host, server.port), 20)
        finally:
            await server.close()

    asyncio.run(runner())


def test_keep_alive_json_get_and_post_201_400():
    async def test(host, port):
        conn = HttpConnection(host, port)
        r = await conn.request(Request("GET", "/health"), timeout=5)
        assert (r.status, r.json()) == (200, {"status": "ok"})
        for i in range(3):
            r = await conn.request(Request.json("POST", "/tasks", {"id": f"t-{i}"}), timeout=5)
            assert (r.status, r.json()) == (201, {"id": f"t-{i}", "created": True})
        r = await conn.request(
            Request("POST", "/tasks", b"{not json", {"Content-Type": "application/json"}), timeout=5
        )
        assert (r.status, r.json()) == (400, {"error": "bad json"})
        r = await conn.request(Request("GET", "/empty"), timeout=5)
        assert (r.status, r.body) == (204, b"")
        r = await conn.request(Request("HEAD", "/health"), timeout=5)
        assert (r.status, r.body) == (200, b"")
        assert conn.connects == 1  # all on one keep-alive connection
        assert conn.requests == 7
        await conn.close()

    with_server(test)


def test_chunked_response():
    async def test(host, port):
        conn = HttpConnection(host, port)
        for _ in range(2):
            r = await conn.request(Request("GET", "/chunked"), timeout=5)
            assert (r.status, r.body) == (200, b"alpha,beta,gamma")
            assert "chunked" in r.headers["transfer-encoding"]
        assert conn.connects == 1
        await conn.close()

    with_server(test)


def test_connection_close_then_reconnect():
    async def test(host, port):
        conn = HttpConnection(host, port)
        r = await conn.request(Request("GET", "/close"), timeout=5)
        assert (r.status, r.text, r.keep_alive) == (200, "bye", False)
        r = await conn.request(Request("GET", "/health"), timeout=5)
        assert r.status == 200
        assert conn.connects == 2
        await conn.close()

    with_server(test)


def test_timeout_aborts_and_connection_recovers():
    async def test(host, port):
        conn = HttpConnection(host, port)
        with pytest.raises(TimeoutError):
            await conn.request(Request("GET", "/slow"), timeout=0.2)
        assert not conn.connected
        r = await conn.request(Request("GET", "/health"), timeout=5)  # never the late /slow answer
        assert r.json() == {"status": "ok"}
        assert conn.connects == 2
        await conn.close()

    with_server(test)


async def _one_request_per_connection_server():
    """A raw server that answers the first request on a connection and closes on the second one
    without answering: what a client sees when a server drops an idle keep-alive connection just
    as the next request is sent."""

    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        try:
            await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_stale_keepalive_connection_is_retried_once_for_get_not_for_post():
    async def test():
        server = await _one_request_per_connection_server()
        port = server.sockets[0].getsockname()[1]
        try:
            conn = HttpConnection("127.0.0.1", port)
            for _ in range(3):
                r = await asyncio.wait_for(conn.request(Request("GET", "/x"), timeout=5), 10)
                assert r.body == b"ok"
            assert conn.connects == 3  # each stale connection replaced, transparently
            with pytest.raises(ConnectionClosedError):
                await asyncio.wait_for(conn.request(Request("POST", "/x", b"{}"), timeout=5), 10)
            await conn.close()
        finally:
            server.close()
            await server.wait_closed()

    asyncio.run(test())


def test_refused_connection_raises_oserror():
    async def test():
        server = TestServer(make_app(), host="127.0.0.1")
        await server.start_server()
        port = server.port
        await server.close()
        with pytest.raises(OSError):
            await HttpConnection("127.0.0.1", port).request(Request("GET", "/health"), timeout=2)

    asyncio.run(test())


def test_stream_reads_a_chunked_body_as_it_arrives_and_an_error_body_whole():
    async def test(host, port):
        stream = await open_stream(host, port, Request("GET", "/chunked"), head_timeout=5)
        assert stream.status == 200 and "chunked" in stream.headers["transfer-encoding"]
        parts = []
        while data := await stream.read(5):
            parts.append(data)
        assert b"".join(parts) == b"alpha,beta,gamma" and stream.ended
        assert await stream.read(5) == b""
        missing = await open_stream(host, port, Request("GET", "/missing"), head_timeout=5)
        assert (missing.status, json.loads(await missing.read_all(5))) == (404, {"error": "not found"})
        missing.close()

    with_server(test)


def test_stream_holds_back_a_reader_that_falls_behind_and_loses_nothing():
    async def test(host, port):
        stream = await open_stream(host, port, Request("GET", "/big"), head_timeout=5, high_water=64 * 1024)
        proto = stream._proto
        for _ in range(500):  # the server keeps writing while nothing is read
            if proto.paused:
                break
            await asyncio.sleep(0.01)
        assert proto.paused and proto.buffered <= 64 * 1024 + 256 * 1024  # bounded, not the whole 2 MiB
        total = 0
        while data := await stream.read(5):
            total += len(data)
        assert total == 2 * 1024 * 1024

    with_server(test)


def test_stream_head_timeout_and_read_timeout():
    async def test(host, port):
        with pytest.raises(TimeoutError, match="no response head within 0.2 s"):
            await open_stream(host, port, Request("GET", "/slow"), head_timeout=0.2)

    with_server(test)

    async def holding():
        async def handle(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            await writer.drain()
            await asyncio.sleep(3)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        try:
            stream = await open_stream("127.0.0.1", server.sockets[0].getsockname()[1], Request(), head_timeout=5)
            with pytest.raises(TimeoutError, match="no data within 0.1 s"):
                await stream.read(0.1)
            stream.close()
            assert await stream.read(1) == b""
        finally:
            server.close()

    asyncio.run(holding())
