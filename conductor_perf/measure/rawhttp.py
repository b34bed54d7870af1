"""A light HTTP/1.1 keep-alive client over an asyncio ``Protocol``, built for load generation.

General-purpose clients spend most of their CPU on features a load generator does not need (on this
kind of machine httpx with 10 writers was CPU-bound near 700 requests/s where a raw socket client
reached about 4,000). This client does only what a load test needs, and does it correctly:

* one request at a time per :class:`HttpConnection` (no pipelining), keep-alive, reconnect on close;
* request bytes built once per :class:`Request` and host (static requests cost one ``write``);
* responses framed by ``Content-Length``, ``Transfer-Encoding: chunked`` or connection close;
  ``1xx`` interim responses skipped; no body for ``HEAD``, ``204`` and ``304``;
* a per-request timeout that aborts the connection (a late response can never be read as the
  answer to the next request);
* streamed responses (:func:`open_stream`): the head as soon as it arrives, then the body as it
  comes (chunked, ``Content-Length`` or until close), with back-pressure on a reader that falls
  behind -- what an SSE client needs (:mod:`conductor_perf.measure.sse`).

Example::

    conn = HttpConnection("127.0.0.1", 8080)
    resp = await conn.request(Request.json("POST", "/api/v1/tasks", {"id": "t-1"}), timeout=5)
    assert resp.status == 201, resp.body
    await conn.close()
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_monotonic = time.monotonic

MAX_HEAD_BYTES = 64 * 1024
"""A response head (status line and headers) larger than this is a protocol error."""

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
"""Methods retried once on a fresh connection when a reused keep-alive connection was closed by the
server before any response byte arrived."""


class HttpProtocolError(Exception):
    """The server sent something that is not a valid HTTP/1.x response."""


class ConnectionClosedError(ConnectionError):
    """The server closed the connection before the response was complete."""


@dataclass(frozen=True, eq=False)
class Request:
    """One HTTP request: method, path (with query), optional body and extra headers.

    ``Host``, ``Content-Length`` and ``User-Agent`` are added by :meth:`encode`.
    """

    method: str = "GET"
    path: str = "/"
    body: bytes | None = None
    headers: Mapping[str, str] | None = None
    _cache: dict[str, bytes] = field(default_factory=dict, init=False, repr=False, compare=False)

    @classmethod
    def json(cls, method: str, path: str, obj: Any, headers: Mapping[str, str] | None = None) -> Request:
        """A request whose body is ``obj`` as compact JSON, with ``Content-Type: application/json``."""
        hdrs = {"Content-Type": "application/json"}
        if headers:
            hdrs.update(headers)
        body = json.dumps(obj, separators=(",", ":")).encode()
        return cls(method.upper(), path, body, hdrs)

    def encode(self, host: str) -> bytes:
        """The request as bytes on the wire for the ``Host`` header value ``host`` (cached)."""
        cached = self._cache.get(host)
        if cached is not None:
            return cached
        method = self.method.upper()
        if not self.path.startswith("/") or any(c in self.path for c in " \r\n"):
            raise ValueError(f"request path must start with '/' and contain no spaces: {self.path!r}")
        lines = [f"{method} {self.path} HTTP/1.1", f"Host: {host}"]
        names = set()
        for name, value in (self.headers or {}).items():
            if any(c in name + value for c in "\r\n"):
                raise ValueError(f"header {name!r} contains a line break")
            names.add(name.lower())
            lines.append(f"{name}: {value}")
        if "user-agent" not in names:
            lines.append("User-Agent: conductor-perf")
        body = self.body or b""
        if "content-length" not in names and (body or method in ("POST", "PUT", "PATCH")):
            lines.append(f"Content-Length: {len(body)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        self._cache[host] = data
        return data


@dataclass(slots=True)
class Response:
    """A complete HTTP response. Header names are lower case; repeated headers are joined by ``, ``.

    ``sent_at`` and ``done_at`` are ``time.monotonic()`` readings taken when the request bytes were
    handed to the socket and when the last response byte was parsed (inside the read callback, so
    the wait for the caller's task to be resumed is not counted, as in wrk).
    """

    status: int
    reason: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool
    sent_at: float = 0.0
    done_at: float = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds from handing the request to the socket to the last response byte."""
        return self.done_at - self.sent_at

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body decoded as UTF-8 (with replacement characters for bad bytes)."""
        return self.body.decode("utf-8", "replace")


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILER, _UNTIL_EOF, _DONE, _CHUNK_END = range(8)


class ResponseParser:
    """Incremental parser of one HTTP/1.x response (pure, no I/O).

    Args:
        expect_body: ``False`` for a response to ``HEAD`` (no body whatever the headers say).
        stream: hand out the body as it arrives instead of in one piece (see below).

    Feed bytes with :meth:`feed`; it returns the :class:`Response` once complete, else ``None``.
    Bytes after the response are kept in :attr:`rest`. Call :meth:`feed_eof` when the peer closed.

    With ``stream=True`` :meth:`feed` returns the response *head* (a :class:`Response` with an
    empty body) once, as soon as the head is complete; the body bytes decoded so far are taken
    with :meth:`take_body`, and :attr:`done` tells when the body is complete. The header lines
    as sent (names not lower-cased) are in :attr:`raw_headers`.
    """

    __slots__ = (
        "_buf",
        "_state",
        "_expect_body",
        "_status",
        "_reason",
        "_headers",
        "_keep_alive",
        "_remaining",
        "_body",
        "rest",
        "received_any",
        "_stream",
        "raw_headers",
    )

    def __init__(self, expect_body: bool = True, *, stream: bool = False):
        self._stream = stream
        #: stream mode: the header lines as sent, ``[(name, value), ...]``
        self.raw_headers: list[tuple[str, str]] = []
        self._buf = bytearray()
        self._state = _HEAD
        self._expect_body = expect_body
        self._status = 0
        self._reason = ""
        self._headers: dict[str, str] = {}
        self._keep_alive = True
        self._remaining = 0
        self._body = bytearray()
        self.rest = b""
        #: whether any byte of a response has arrived
        self.received_any = False

    @property
    def done(self) -> bool:
        """Whether the whole response (head and body) has been parsed."""
        return self._state == _DONE

    def take_body(self) -> bytes:
        """Stream mode: the body bytes decoded since the last call (``b""`` when none)."""
        if not self._body:
            return b""
        data = bytes(self._body)
        self._body.clear()
        return data

    def feed(self, data: bytes) -> Response | None:
        """Add received bytes; return the response when it is complete (stream mode: its head, once)."""
        if data:
            self.received_any = True
            self._buf += data
        return self._advance_stream() if self._stream else self._advance()

    def feed_eof(self) -> Response | None:
        """The peer closed: complete a read-until-close body, or raise :class:`ConnectionClosedError`."""
        if self._stream:
            head = self._advance_stream()
            if self._state in (_UNTIL_EOF, _DONE):
                self._state = _DONE
                return head
            where = "before a response" if not self.received_any else "in the middle of a response"
            raise ConnectionClosedError(f"server closed the connection {where}")
        resp = self._advance()
        if resp is not None:
            return resp
        if self._state == _UNTIL_EOF:
            self._body += self._buf
            self._buf.clear()
            self._state = _DONE
            return self._response(keep_alive=False)
        where = "before a response" if not self.received_any else "in the middle of a response"
        raise ConnectionClosedError(f"server closed the connection {where}")

    def _response(self, keep_alive: bool | None = None) -> Response:
        self.rest = bytes(self._buf)
        self._buf.clear()
        ka = self._keep_alive if keep_alive is None else keep_alive
        return Response(self._status, self._reason, self._headers, bytes(self._body), ka)

    def _advance(self) -> Response | None:  # noqa: C901 - a state machine reads best in one place
        buf = self._buf
        while True:
            state = self._state
            if state == _HEAD:
                interim = self._read_head()
                if interim is None:
                    return None
                if interim:
                    continue  # a 1xx interim response: read the next head
                if self._state == _DONE:
                    return self._response()
            elif state == _LENGTH:
                n = self._remaining
                if len(buf) < n:
                    return None
                self._body += buf[:n]
                del buf[:n]
                self._state = _DONE
                return self._response()
            elif state == _CHUNK_SIZE:
                if not self._chunk_size():
                    return None
            elif state == _CHUNK_DATA:
                n = self._remaining
                if len(buf) < n + 2:
                    return None
                if buf[n : n + 2] != b"\r\n":
                    raise HttpProtocolError("chunk data not followed by CRLF")
                self._body += buf[:n]
                del buf[: n + 2]
                self._state = _CHUNK_SIZE
            elif state == _TRAILER:
                if not self._trailer_line():
                    return None
                if self._state == _DONE:
                    return self._response()
            elif state == _UNTIL_EOF:
                self._body += buf
                buf.clear()
                return None
            else:  # _DONE
                return None

    def _read_head(self) -> bool | None:
        """Parse the next response head in the buffer (the body state is set): ``None`` while it is not
        complete, ``True`` for a 1xx interim response (another head follows), ``False`` for the final one."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes")
            return None
        text = bytes(buf[:end]).decode("latin-1")
        del buf[: end + 4]
        return self._parse_head(text)

    def _chunk_size(self) -> bool:
        """Read a chunk-size line (the next state is set); ``False`` when it is not complete yet."""
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > 4096:
                raise HttpProtocolError("chunk size line too long")
            return False
        line = bytes(buf[:end]).split(b";", 1)[0].strip()
        del buf[: end + 2]
        try:
            size = int(line, 16)
        except ValueError:
            raise HttpProtocolError(f"bad chunk size {line!r}") from None
        if size < 0:
            raise HttpProtocolError(f"bad chunk size {line!r}")
        if size == 0:
            self._state = _TRAILER
        else:
            self._remaining = size
            self._state = _CHUNK_DATA
        return True

    def _trailer_line(self) -> bool:
        """Skip one trailer line (the empty one ends the response); ``False`` when it is not complete yet."""
        buf = self._buf
        end = buf.find(b"\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                raise HttpProtocolError("trailer too long")
            return False
        del buf[: end + 2]
        if end == 0:
            self._state = _DONE
        return True

    def _advance_stream(self) -> Response | None:  # noqa: C901 - the same state machine, body in pieces
        buf = self._buf
        head = None
        while True:
            state = self._state
            if state == _HEAD:
                interim = self._read_head()
                if interim is None:
                    return head
                if interim:
                    continue  # a 1xx interim response: read the next head
                head = Response(self._status, self._reason, self._headers, b"", self._keep_alive)
            elif state in (_LENGTH, _CHUNK_DATA):
                if not buf:
                    return head
                n = min(len(buf), self._remaining)
                self._body += buf[:n]
                del buf[:n]
                self._remaining -= n
                if not self._remaining:
                    self._state = _DONE if state == _LENGTH else _CHUNK_END
            elif state == _CHUNK_END:
                if len(buf) < 2:
                    return head
                if buf[:2] != b"\r\n":
                    raise HttpProtocolError("chunk data not followed by CRLF")
                del buf[:2]
                self._state = _CHUNK_SIZE
            elif state == _CHUNK_SIZE:
                if not self._chunk_size():
                    return head
            elif state == _TRAILER:
                if not self._trailer_line():
                    return head
            elif state == _UNTIL_EOF:
                self._body += buf
                buf.clear()
                return head
            else:  # _DONE
                self.rest = bytes(buf)
                buf.clear()
                return head

    def _parse_head(self, head: str) -> bool:
        """Parse a status line and headers; set the body state. Returns True for a 1xx response."""
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise HttpProtocolError(f"bad status line {lines[0][:100]!r}")
        try:
            status = int(parts[1])
        except ValueError:
            raise HttpProtocolError(f"bad status code in {lines[0][:100]!r}") from None
        if not 100 <= status <= 999:
            raise HttpProtocolError(f"bad status code in {lines[0][:100]!r}")
        headers: dict[str, str] = {}
        raw: list[tuple[str, str]] = []
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpProtocolError(f"bad header line {line[:100]!r}")
            key = name.strip().lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
            if self._stream:
                raw.append((name.strip(), value))
        if 100 <= status < 200 and status != 101:
            return True
        self._status = status
        self._reason = parts[2] if len(parts) > 2 else ""
        self._headers = headers
        self.raw_headers = raw
        conn = headers.get("connection", "").lower()
        if parts[0] == "HTTP/1.0":
            self._keep_alive = "keep-alive" in conn
        else:
            self._keep_alive = "close" not in conn
        te = headers.get("transfer-encoding", "").lower()
        if not self._expect_body or status in (204, 304) or status == 101:
            self._state = _DONE
        elif "chunked" in te:
            self._state = _CHUNK_SIZE
        elif "content-length" in headers:
            try:
                n = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise HttpProtocolError(f"bad Content-Length {headers['content-length']!r}") from None
            if n < 0:
                raise HttpProtocolError(f"bad Content-Length {n}")
            self._remaining = n
            self._state = _LENGTH if n else _DONE
        else:
            self._keep_alive = False
            self._state = _UNTIL_EOF
        return False


class _ClientProtocol(asyncio.Protocol):
    """Feeds received bytes to the parser of the request in flight and resolves its future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.waiter: asyncio.Future[Response] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        arrived = _monotonic()  # before parsing: the bytes are here now
        parser, waiter = self.parser, self.waiter
        if parser is None or waiter is None or waiter.done():
            # unsolicited bytes: nobody asked; the connection cannot be trusted any more
            self._abort()
            return
        try:
            resp = parser.feed(data)
        except Exception as exc:  # protocol error
            waiter.set_exception(exc)
            self._abort()
            return
        if resp is not None:
            resp.done_at = arrived
            if parser.rest:
                resp.keep_alive = False  # pipelining garbage: do not reuse
            waiter.set_result(resp)

    def eof_received(self) -> bool:
        self._finish_on_close(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._finish_on_close(exc)

    def _finish_on_close(self, exc: Exception | None) -> None:
        self.closed = True
        parser, waiter = self.parser, self.waiter
        if waiter is None or waiter.done() or parser is None:
            return
        try:
            resp = parser.feed_eof()
        except Exception as err:
            if exc is not None:
                err.__cause__ = exc
            waiter.set_exception(err)
        else:
            resp.done_at = _monotonic()  # type: ignore[union-attr]
            waiter.set_result(resp)  # type: ignore[arg-type]

    def _abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class HttpConnection:
    """One keep-alive HTTP/1.1 connection to ``host:port`` that reconnects when needed.

    Args:
        host: server address (the caller decides what is allowed; the load generator allows
            loopback only).
        port: server port.
        connect_timeout: seconds allowed for a TCP connect.

    Requests on one connection are sequential: do not call :meth:`request` concurrently on the
    same object (the load generator gives each worker its own connection).
    """

    def __init__(self, host: str, port: int, *, connect_timeout: float = 5.0):
        self.host = host
        self.port = port
        self.connect_timeout = connect_timeout
        self.host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._proto: _ClientProtocol | None = None
        self._busy = False
        #: TCP connections opened so far (1 + reconnects)
        self.connects = 0
        #: requests answered on this object
        self.requests = 0

    @property
    def connected(self) -> bool:
        """Whether a usable connection is open now."""
        p = self._proto
        return p is not None and not p.closed and p.transport is not None and not p.transport.is_closing()

    async def connect(self) -> None:
        """Open the TCP connection now (otherwise the first request opens it)."""
        if self.connected:
            return
        loop = asyncio.get_running_loop()
        _, proto = await asyncio.wait_for(
            loop.create_connection(_ClientProtocol, self.host, self.port), self.connect_timeout
        )
        self._proto = proto
        self.connects += 1

    async def request(
        self, req: Request | bytes, *, timeout: float | None = 30.0, head: bool = False
    ) -> Response:
        """Send one request and return the complete response.

        Args:
            req: a :class:`Request`, or request bytes already encoded for this host.
            timeout: seconds for the whole exchange (send to last body byte); on expiry the
                connection is aborted and ``TimeoutError`` raised. ``None``: no limit.
            head: set when ``req`` is raw bytes of a ``HEAD`` request (no body is read).

        Raises:
            TimeoutError, ConnectionError (including :class:`ConnectionClosedError`),
            HttpProtocolError, OSError.
        """
        if self._busy:
            raise RuntimeError("HttpConnection.request called while another request is in flight")
        if isinstance(req, Request):
            data = req.encode(self.host_header)
            head = req.method.upper() == "HEAD"
            method = req.method.upper()
        else:
            data = req
            method = data[: data.find(b" ")].decode("latin-1", "replace").upper()
        self._busy = True
        try:
            return await self._exchange(data, head, method, timeout)
        finally:
            self._busy = False

    async def _exchange(self, data: bytes, head: bool, method: str, timeout: float | None) -> Response:
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        for attempt in (0, 1):
            reused = self.connected
            if not reused:
                if deadline is None:
                    await self.connect()
                else:
                    left = deadline - loop.time()
                    if left <= 0:
                        raise TimeoutError(f"request timed out after {timeout} s (connecting)")
                    try:
                        await asyncio.wait_for(self.connect(), left)
                    except TimeoutError:
                        raise TimeoutError(f"request timed out after {timeout} s (connecting)") from None
            proto = self._proto
            assert proto is not None and proto.transport is not None
            parser = ResponseParser(expect_body=not head)
            waiter: asyncio.Future[Response] = loop.create_future()
            proto.parser, proto.waiter = parser, waiter
            handle = None
            if deadline is not None:
                handle = loop.call_at(deadline, _expire, waiter, timeout)
            sent_at = _monotonic()
            proto.transport.write(data)
            try:
                resp = await waiter
            except ConnectionClosedError:
                self._drop()
                if attempt == 0 and reused and not parser.received_any and method in IDEMPOTENT_METHODS:
                    continue  # a stale keep-alive connection: retry once on a fresh one
                raise
            except BaseException:
                self._drop()
                raise
            finally:
                if handle is not None:
                    handle.cancel()
                proto.parser = proto.waiter = None
            resp.sent_at = sent_at
            self.requests += 1
            if not resp.keep_alive:
                self._drop()
            return resp
        raise AssertionError("unreachable")  # pragma: no cover

    def _drop(self) -> None:
        p = self._proto
        self._proto = None
        if p is not None and p.transport is not None:
            p.closed = True
            p.transport.abort()

    async def close(self) -> None:
        """Close the connection (idempotent)."""
        p = self._proto
        self._proto = None
        if p is not None and p.transport is not None:
            p.closed = True
            p.transport.close()


def _expire(waiter: asyncio.Future[Response], timeout: float | None) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError(f"request timed out after {timeout} s"))


# --------------------------------------------------------------------------------------------
# streamed responses
# --------------------------------------------------------------------------------------------
STREAM_HIGH_WATER = 256 * 1024
"""A stream stops reading from its socket while this many body bytes wait for the reader."""


class _StreamProtocol(asyncio.Protocol):
    """Feeds a stream-mode parser; hands out the head once and body bytes as they are decoded."""

    def __init__(self, parser: ResponseParser, high_water: int) -> None:
        self.parser = parser
        self.high_water = high_water
        self.transport: asyncio.Transport | None = None
        self.head: asyncio.Future[Response] = asyncio.get_running_loop().create_future()
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.paused = False
        self.ended = False
        self.error: BaseException | None = None
        self.waiter: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.ended:
            return
        try:
            head = self.parser.feed(data)
        except Exception as exc:  # protocol error: the stream cannot be trusted any more
            self._fail(exc)
            if self.transport is not None:
                self.transport.abort()
            return
        self._take(head)
        if self.parser.done:
            self.ended = True
            if self.transport is not None:
                self.transport.close()
        elif self.buffered > self.high_water and not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True
        self._wake()

    def _take(self, head: Response | None) -> None:
        if head is not None and not self.head.done():
            self.head.set_result(head)
        body = self.parser.take_body()
        if body:
            self.chunks.append(body)
            self.buffered += len(body)

    def eof_received(self) -> bool:
        self._finish(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(exc)

    def _finish(self, exc: Exception | None) -> None:
        if not self.ended:
            try:
                self._take(self.parser.feed_eof())
            except Exception as err:
                if exc is not None:
                    err.__cause__ = exc
                self._fail(err)
                return
            self.ended = True
        if not self.head.done():
            self.head.set_exception(ConnectionClosedError("server closed the connection before a response"))
        self._wake()

    def _fail(self, exc: BaseException) -> None:
        self.error = exc
        self.ended = True
        if not self.head.done():
            self.head.set_exception(exc)
        self._wake()

    def _wake(self) -> None:
        w = self.waiter
        if w is not None and not w.done():
            w.set_result(None)


class HttpStream:
    """A response read as it arrives: the head at once, then :meth:`read` body bytes until ``b""``.

    Attributes:
        status, reason, headers: from the head (header names lower case).
        raw_headers: the header lines as sent, ``[(name, value), ...]``.
        sent_at: ``time.monotonic()`` when the request was handed to the socket.
    """

    def __init__(self, proto: _StreamProtocol, head: Response, sent_at: float) -> None:
        self._proto = proto
        self.status = head.status
        self.reason = head.reason
        self.headers = head.headers
        self.raw_headers = list(proto.parser.raw_headers)
        self.sent_at = sent_at

    @property
    def ended(self) -> bool:
        """Whether the body is complete (or the connection gone) and every byte has been read."""
        return self._proto.ended and not self._proto.chunks

    async def read(self, timeout: float | None = None) -> bytes:
        """The body bytes that arrived since the last call, waiting for some; ``b""`` at the end.

        Raises:
            TimeoutError: nothing arrived within ``timeout`` seconds (the stream stays usable).
            ConnectionClosedError, HttpProtocolError, OSError: the stream broke.
        """
        p = self._proto
        loop = asyncio.get_running_loop()
        while not p.chunks:
            if p.error is not None:
                raise p.error
            if p.ended:
                return b""
            fut: asyncio.Future[None] = loop.create_future()
            p.waiter = fut
            handle = None if timeout is None else loop.call_later(timeout, _expire_read, fut, timeout)
            try:
                await fut
            finally:
                p.waiter = None
                if handle is not None:
                    handle.cancel()
        data = p.chunks.popleft() if len(p.chunks) == 1 else b"".join(p.chunks)
        p.chunks.clear()
        p.buffered = 0
        if p.paused and p.transport is not None:
            p.paused = False
            p.transport.resume_reading()
        return data

    async def read_all(self, timeout: float) -> bytes:
        """The rest of the body (for a short answer such as an error envelope), within ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        parts = []
        while True:
            left = deadline - loop.time()
            if left <= 0:
                raise TimeoutError(f"body not complete within {timeout:g} s")
            data = await self.read(left)
            if not data:
                return b"".join(parts)
            parts.append(data)

    def close(self) -> None:
        """Close the connection (idempotent)."""
        t = self._proto.transport
        self._proto.ended = True
        if t is not None and not t.is_closing():
            t.close()


def _expire_read(fut: asyncio.Future[None], timeout: float) -> None:
    if not fut.done():
        fut.set_exception(TimeoutError(f"no data within {timeout:g} s"))


async def open_stream(host: str, port: int, request: Request, *, connect_timeout: float = 5.0,
                      head_timeout: float | None = None, high_water: int = STREAM_HIGH_WATER,
                      receive_buffer: int | None = None) -> HttpStream:  # fmt: skip
    """Connect, send ``request`` and return as soon as the response head arrived.

    Args:
        host, port: the server (the caller decides what is allowed).
        request: the request; its body, if any, is sent at once.
        connect_timeout: seconds for the TCP connect (``TimeoutError``).
        head_timeout: seconds from sending to the complete head (``TimeoutError``); ``None``: no limit.
        high_water: body bytes kept for a reader that falls behind before the socket is paused
            (0: nothing more is read from the socket until the reader asks).
        receive_buffer: the socket's kernel receive buffer (``SO_RCVBUF``), set before the
            connect; a small one with ``high_water=0`` makes a subscriber that holds the server back.

    Raises:
        TimeoutError, OSError (e.g. connection refused), ConnectionClosedError, HttpProtocolError.
    """
    loop = asyncio.get_running_loop()
    parser = ResponseParser(expect_body=request.method.upper() != "HEAD", stream=True)
    try:
        if receive_buffer is None:
            transport, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _StreamProtocol(parser, high_water), host, port), connect_timeout
            )
        else:
            sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
                sock.setblocking(False)
                await asyncio.wait_for(loop.sock_connect(sock, (host, port)), connect_timeout)
                transport, proto = await loop.create_connection(lambda: _StreamProtocol(parser, high_water),
                                                                sock=sock)  # fmt: skip
            except BaseException:
                sock.close()
                raise
    except TimeoutError:
        raise TimeoutError(f"connect to {host}:{port} timed out after {connect_timeout:g} s") from None
    host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        sent_at = _monotonic()
        transport.write(request.encode(host_header))
        try:
            head = await asyncio.wait_for(proto.head, head_timeout)
        except TimeoutError:
            raise TimeoutError(f"no response head within {head_timeout:g} s") from None
    except BaseException:
        transport.abort()
        raise
    return HttpStream(proto, head, sent_at)
