"""A tiny misbehaving conductor for tests: an aiohttp server on a background thread.

It answers health and version like a conductor (so a suite can attach to it), then misbehaves on
purpose under ``/api/v1/runs/<case>`` and ``/api/v1/runs/<case>/stream``:

=================  ==============================================================================
case               answer
=================  ==============================================================================
``err500``         500 with an HTML page (the stream route: 500 with the JSON error envelope)
``html``           200 ``text/html`` instead of JSON (the stream route: instead of an event stream)
``hang``           nothing at all: no status line, ever
``cut``            ``Content-Length: 1000`` and 20 bytes, then the connection is closed
``drip``           a chunked body, one byte every 0.2 s, for ever
``closed``         the connection is closed without an answer
``ok``             200 with a run (the stream route: a run's whole stream, then it stays open)
``truncated``      (stream) a ``status`` running event, one ``log`` event, then the stream ends
``silent``         (stream) 200 ``text/event-stream`` and then nothing
=================  ==============================================================================

Example::

    with BadSut() as sut:
        requests.get(sut.url + "api/v1/runs/err500")
"""

from __future__ import annotations

import asyncio
import json
import threading

from aiohttp import web

RUN = {"run_id": "20260101-0000000000-1-1", "project_id": "p", "task_id": "t", "status": "completed",
       "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T00:00:01Z", "exit_code": 0}  # fmt: skip


def _json(status: int, body: object) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode() + b"\n", content_type="application/json")


async def _forever() -> None:
    while True:
        await asyncio.sleep(3600)


async def health(request: web.Request) -> web.Response:
    return _json(200, {"status": "ok"})


async def version(request: web.Request) -> web.Response:
    return _json(200, {"version": "misbehaving"})


async def run(request: web.Request) -> web.StreamResponse:
    case = request.match_info["case"]
    if case == "err500":
        return web.Response(status=500, text="<html><body><h1>Internal Server Error</h1></body></html>",
                            content_type="text/html")  # fmt: skip
    if case == "html":
        return web.Response(status=200, text="<!doctype html><p>a web page</p>", content_type="text/html")
    if case == "hang":
        await _forever()
    if case == "cut":
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.content_length = 1000
        await resp.prepare(request)
        await resp.write(b'{"run_id":"2026010100')
        await asyncio.sleep(0.05)
        assert request.transport is not None
        request.transport.close()
        return resp
    if case == "drip":
        resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for _ in range(3000):
            await resp.write(b" ")
            await asyncio.sleep(0.2)
        return resp
    if case == "closed":
        assert request.transport is not None
        request.transport.abort()
        await _forever()
    return _json(200, RUN)


async def stream(request: web.Request) -> web.StreamResponse:
    case = request.match_info["case"]
    if case == "err500":
        return _json(500, {"error": {"code": "INTERNAL", "message": "stream exploded"}})
    if case == "html":
        return web.Response(status=200, text="<!doctype html><p>not a stream</p>", content_type="text/html")
    if case == "hang":
        await _forever()
    resp = web.StreamResponse(status=200, headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await resp.prepare(request)
    if case == "silent":
        await _forever()
    status = {"run_id": RUN["run_id"], "status": "running", "exit_code": -1}
    await resp.write(b"event: status\ndata: " + json.dumps(status).encode() + b"\n\n")
    line = {"run_id": RUN["run_id"], "stream": "stdout", "line": "alpha", "timestamp": "2026-01-01T00:00:00Z"}
    await resp.write(b"id: s=1;e=0\nevent: log\ndata: " + json.dumps(line).encode() + b"\n\n")
    if case == "truncated":
        return resp  # the stream ends here, without the final status
    await resp.write(b'event: status\ndata: {"run_id":"' + RUN["run_id"].encode() + b'","status":"completed",'
                     b'"exit_code":0}\n\n')  # fmt: skip
    await _forever()
    return resp


def make_app() -> web.Application:
    """The misbehaving application."""
    app = web.Application()
    app.router.add_get("/api/v1/health", health)
    app.router.add_get("/api/v1/version", version)
    app.router.add_get("/api/v1/runs/{case}/stream", stream)
    app.router.add_get("/api/v1/runs/{case}", run)
    return app


class BadSut:
    """The misbehaving server on 127.0.0.1 (free port) on a daemon thread; ``url`` ends with ``/``."""

    def __init__(self) -> None:
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bad-sut", daemon=True)

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        runner = web.AppRunner(make_app(), shutdown_timeout=0.5, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}/"
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            await runner.cleanup()

    def __enter__(self) -> BadSut:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the misbehaving server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)
