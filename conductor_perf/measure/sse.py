"""An async Server-Sent Events client for measurements (:mod:`conductor_perf.measure.rawhttp` streams +
:mod:`conductor_perf.formats.sse`).

What it is built for:

* **withheld headers** -- conductor-loop 0.76 sends no status line or headers until the first
  event, which can be the first heartbeat 30 s later (docs/conductor-loop.md, SSE). The TCP connect has its own
  short ``connect_timeout``; the wait for the response head has a separate, long
  ``headers_timeout``, so a correct client does not fail against the real server;
* **receive timestamps** -- every event carries ``received_ns`` (``time.time_ns()`` taken when
  the bytes that completed it arrived), for delivery-latency measurements;
* **resume** -- :meth:`SSEClient.reconnect` reconnects with ``Last-Event-ID`` set to the last id
  received (``s=N;e=M`` for run streams, a message id for message streams);
* **many clients** -- each client is one light connection (no session, no pool): hundreds share
  one event loop; :meth:`SSEClient.close` closes only the client's own connection;
* **any framing** -- the body is read as it arrives, chunked, with a ``Content-Length`` or until
  the server closes (an HTTP/1.0-style stream), with back-pressure when the reader falls behind.

Example::

    async with SSEClient(url + "api/v1/runs/" + run_id + "/stream", api_key=key) as sse:
        async for ev in sse:
            if ev.event == "log":
                latency_ms = (ev.received_ns - sent_ns) / 1e6
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..formats.sse import SSEParser
from .rawhttp import STREAM_HIGH_WATER, HttpProtocolError, HttpStream, Request, open_stream

__all__ = ["ReceivedEvent", "SSEClient", "SSEError", "SSEStatusError", "StreamEnded", "collect", "follow"]


class SSEError(Exception):
    """The stream could not be opened or broke."""


class SSEStatusError(SSEError):
    """The server answered with a status other than 200 (e.g. 404 ``run not found``, 429 limit)."""

    def __init__(self, status: int, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}: {body.strip()[:200]}")
        self.status = status
        self.body = body
        self.headers = dict(headers)

    def json(self) -> Any:
        """The body parsed as JSON (the error envelope)."""
        return json.loads(self.body)


class StreamEnded(SSEError, EOFError):
    """The server ended the response (or the connection dropped)."""


@dataclass(slots=True)
class ReceivedEvent:
    """One event with the wall-clock time (ns) at which its last byte arrived."""

    event: str
    data: str
    id: str | None  # noqa: A003
    received_ns: int
    retry: int | None = None

    def json(self) -> Any:
        """``data`` parsed as JSON."""
        return json.loads(self.data)


def _split_url(url: str) -> tuple[str, int, str]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise SSEError(f"SSE client needs an http:// URL with a host, got {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname, parts.port or 80, path


class SSEClient:
    """One SSE connection with reconnect/resume support.

    Args:
        url: absolute ``http://`` URL of the stream (re-read at each connect, so a reconnect can
            follow a restarted server to a new address).
        headers: extra request headers.
        api_key: sent as ``Authorization: Bearer <key>`` when non-empty.
        last_event_id: ``Last-Event-ID`` for the first connect (later reconnects use the last id seen).
        connect_timeout: seconds for the TCP connect.
        headers_timeout: seconds to wait for the response head after the request was sent (the real
            server withholds it until its first event -- up to one heartbeat interval).
        read_timeout: seconds without any byte before :meth:`next_event` raises ``TimeoutError``
            (``None`` = wait for ever; per-call timeouts are given to :meth:`next_event`).
        read_ahead: bytes read from the socket ahead of :meth:`next_event` before reading pauses.
        receive_buffer: the socket's kernel receive buffer (``SO_RCVBUF``) when set. With
            ``read_ahead=0`` and a small buffer, a client that does not call :meth:`next_event`
            holds the server back like a slow subscriber on a slow link.
    """

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None, api_key: str = "",
                 last_event_id: str | None = None, connect_timeout: float = 5.0, headers_timeout: float = 60.0,
                 read_timeout: float | None = None, read_ahead: int = STREAM_HIGH_WATER,
                 receive_buffer: int | None = None) -> None:  # fmt: skip
        self.url = url
        self.read_ahead = read_ahead
        self.receive_buffer = receive_buffer
        self.headers = dict(headers or {})
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.connect_timeout = connect_timeout
        self.headers_timeout = headers_timeout
        self.read_timeout = read_timeout
        self._stream: HttpStream | None = None
        self._parser = SSEParser()
        if last_event_id:
            self._parser.last_event_id = last_event_id
        self._pending: deque[ReceivedEvent] = deque()
        self.status = 0
        """HTTP status of the current connection (0 before :meth:`connect`)."""
        self.response_headers: dict[str, str] = {}
        self.request_sent_ns = 0
        """``time.time_ns()`` just before the request was sent."""
        self.headers_received_ns = 0
        """``time.time_ns()`` when the response head arrived."""
        self.events_received = 0
        self.bytes_received = 0
        self.connects = 0
        self.ended = False

    @property
    def last_event_id(self) -> str:
        """The last event id seen (what a reconnect sends as ``Last-Event-ID``)."""
        return self._parser.last_event_id

    @property
    def connected(self) -> bool:
        """Whether a response is open."""
        return self._stream is not None and not self.ended

    async def connect(self) -> None:
        """Open the stream; raises :class:`SSEStatusError` for a non-200 answer, ``TimeoutError`` on time-outs."""
        host, port, path = _split_url(self.url)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache", **self.headers}
        if self._parser.last_event_id:
            headers["Last-Event-ID"] = self._parser.last_event_id
        request = Request("GET", path, headers=headers)
        self.request_sent_ns = time.time_ns()
        try:
            stream = await open_stream(host, port, request, connect_timeout=self.connect_timeout,
                                       head_timeout=self.connect_timeout + self.headers_timeout,
                                       high_water=self.read_ahead, receive_buffer=self.receive_buffer)  # fmt: skip
        except TimeoutError as exc:
            if str(exc).startswith("connect to"):
                raise TimeoutError(f"connect to {self.url} timed out after {self.connect_timeout:g} s") from exc
            raise TimeoutError(f"no response head from {self.url} within "
                               f"{self.connect_timeout + self.headers_timeout:g} s") from None  # fmt: skip
        except (ConnectionError, HttpProtocolError) as exc:
            if isinstance(exc, ConnectionRefusedError):
                raise SSEError(f"cannot connect to {self.url}: {exc}") from exc
            raise SSEError(f"request to {self.url} failed: {exc}") from exc
        except OSError as exc:
            raise SSEError(f"cannot connect to {self.url}: {exc}") from exc
        self.headers_received_ns = time.time_ns()
        self.status = stream.status
        self.response_headers = dict(stream.raw_headers)
        if stream.status != 200:
            try:
                body = (await stream.read_all(self.headers_timeout)).decode("utf-8", "replace")
            except (TimeoutError, OSError, HttpProtocolError):
                body = ""
            stream.close()
            raise SSEStatusError(stream.status, body, self.response_headers)
        self._stream = stream
        self.ended = False
        self.connects += 1

    async def next_event(self, timeout: float | None = None) -> ReceivedEvent:
        """The next event; ``TimeoutError`` when none arrives in ``timeout`` (default ``read_timeout``),
        :class:`StreamEnded` when the server closes the stream."""
        if self._pending:
            return self._pending.popleft()
        stream = self._stream
        if stream is None:
            raise SSEError("not connected")
        limit = self.read_timeout if timeout is None else timeout
        deadline = None if limit is None else time.monotonic() + limit
        while not self._pending:
            if self.ended:
                raise StreamEnded("stream ended")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"no event within {limit:g} s")
            try:
                chunk = await stream.read(remaining)
            except TimeoutError:
                raise TimeoutError(f"no event within {limit:g} s") from None
            except (OSError, HttpProtocolError) as exc:
                self.ended = True
                raise StreamEnded(f"stream broke: {exc}") from exc
            if not chunk:
                self.ended = True
                raise StreamEnded("stream ended")
            now = time.time_ns()
            self.bytes_received += len(chunk)
            for ev in self._parser.feed(chunk):
                self._pending.append(ReceivedEvent(ev.event, ev.data, ev.id, now, ev.retry))
                self.events_received += 1
        return self._pending.popleft()

    async def next_matching(self, event: str, timeout: float) -> ReceivedEvent:
        """The next event named ``event`` (others are skipped) within ``timeout`` seconds in total."""
        deadline = time.monotonic() + timeout
        while True:
            ev = await self.next_event(max(0.0, deadline - time.monotonic()))
            if ev.event == event:
                return ev

    def __aiter__(self) -> AsyncIterator[ReceivedEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ReceivedEvent]:
        while True:
            try:
                yield await self.next_event()
            except StreamEnded:
                return

    async def _drop_response(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self._pending.clear()
        self._parser.reset()

    async def reconnect(self) -> None:
        """Drop the current connection and connect again with ``Last-Event-ID`` = :attr:`last_event_id`."""
        await self._drop_response()
        await self.connect()

    async def close(self) -> None:
        """Close the connection."""
        await self._drop_response()
        self.ended = True

    async def __aenter__(self) -> SSEClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def follow(client: SSEClient, stop: asyncio.Event, *, connect: bool = True,
                 connected: asyncio.Event | None = None, counts: Counter[str] | None = None) -> int:
    """Read a stream's events until ``stop`` is set or the stream ends; returns how many were read.

    With ``connect`` the client is connected first (``connected`` is set once it is open, or once
    it could not be: see ``client.status``) and closed at the end; without it the caller owns the
    open client. ``counts`` counts the events by name. Never raises for the stream's own failures.

    Example::

        stop = asyncio.Event()
        reader = asyncio.create_task(follow(SSEClient(url), stop))
        ...
        stop.set()
        events = await reader
    """
    got = 0
    try:
        if connect:
            await client.connect()
            if connected is not None:
                connected.set()
        while not stop.is_set():
            try:
                ev = await client.next_event(0.25)
            except TimeoutError:
                continue
            got += 1
            if counts is not None:
                counts[ev.event] += 1
    except (SSEError, TimeoutError, OSError):
        pass
    finally:
        if connect:
            if connected is not None:
                connected.set()
            await client.close()
    return got


async def collect(url: str, count: int, *, timeout: float, event: str | None = None,
                  **kwargs: Any) -> list[ReceivedEvent]:  # fmt: skip
    """Connect, gather ``count`` events (only those named ``event`` if given) within ``timeout`` s, close."""
    out: list[ReceivedEvent] = []
    deadline = time.monotonic() + timeout
    async with SSEClient(url, **kwargs) as client:
        while len(out) < count:
            ev = await client.next_event(max(0.0, deadline - time.monotonic()))
            if event is None or ev.event == event:
                out.append(ev)
    return out
