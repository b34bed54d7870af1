"""Server-Sent Events of the reference conductor: run streams, the all-runs stream, message streams.

Same wire format as conductor-loop 0.76 (docs/conductor-loop.md, SSE): named ``log`` / ``status`` /
``heartbeat`` / ``message`` events, ``id: s=N;e=M`` on log lines, ``id: <msg_id>`` on messages,
``Last-Event-ID`` resume with the real parsing rules, 20-message hydration, 429 JSON over the per-run
client limit. What the reference does differently (the real server's defects, section 13):

* headers are flushed when the stream opens, not with the first event;
* every new subscriber of a run gets the run's current ``status`` first (not only the first one);
* no line is ever dropped: one shared tailer per run reads appended bytes and puts each encoded
  event (built once) into a bounded per-subscriber queue; a subscriber that falls behind by more
  than ``max_queued_events`` is disconnected (it can resume with ``Last-Event-ID``), never skipped;
* before a final ``status`` the tailer drains the log files, so completion comes after the last line;
* ``/api/v1/runs/stream/all`` replays new runs from their first line (the real one tails them from
  the end at discovery and loses their first lines), and one shared discovery pass serves all clients;
* file changes come from ONE inotify instance for the server (:mod:`.watch`), so an idle stream
  costs no CPU; bus appends made by this server are pushed to message streams at once, appends by
  other processes are picked up from the file; the message feed parses only the new bytes.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict, deque
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, Protocol

from aiohttp import web

from ..formats import bus, runs
from ..formats.bus import Message, format_rfc3339nano
from ..formats.runs import RunInfo
from ..formats.sse import HEADERS as SSE_HEADERS
from ..formats.sse import encode_event
from . import gojson
from .config import ReferenceConfig
from .errors import ApiError, not_found
from .index import RunEntry, RunIndex

if TYPE_CHECKING:  # pragma: no cover
    from .watch import WatchHub

#: the open stream of a request, for the server's access log (bytes sent, forced close)
STREAM_RESPONSE = web.RequestKey("stream_response", web.StreamResponse)

HYDRATION_COUNT = 20
HEARTBEAT = encode_event("{}", "heartbeat")
READ_CHUNK = 4 * 1024 * 1024


def parse_cursor(raw: str) -> tuple[int, int]:
    """``Last-Event-ID`` of a run stream -> (stdout lines, stderr lines), the real server's rules.

    ``s=N;e=M`` (separators ``;`` ``,`` ``|``; keys ``s|stdout|out`` and ``e|stderr|err``; ``=`` or
    ``:``) or a bare integer N meaning both counters; anything unparsable counts as 0.
    """
    raw = raw.strip()
    if not raw:
        return 0, 0
    try:
        n = int(raw)
        return n, n
    except ValueError:
        pass
    s = e = 0
    for part in raw.replace(",", ";").replace("|", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, val = part.partition("=")
        if not sep:
            key, sep, val = part.partition(":")
        if not sep:
            continue
        try:
            num = int(val.strip())
        except ValueError:
            continue
        key = key.strip().lower()
        if key in ("s", "stdout", "out"):
            s = num
        elif key in ("e", "stderr", "err"):
            e = num
    return s, e


class Subscriber:
    """One open SSE response: a bounded queue of encoded events and a wake-up flag.

    Once the response is prepared, an event pushed while nothing is queued and the socket is not
    applying back-pressure is written to the transport at once (no task switch per subscriber,
    which is what makes a 1,000-client fan-out cheap); otherwise it is queued for the pump.
    """

    __slots__ = ("queue", "wake", "closed", "limit", "reason", "kind", "tails", "seen", "writer", "protocol",
                 "sent", "queued")  # fmt: skip

    def __init__(self, limit: int, kind: str) -> None:
        self.queue: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.closed = False
        self.limit = limit
        self.reason = ""
        self.kind = kind
        self.tails: set[RunTail] = set()
        self.seen: set[str] = set()
        self.writer: Any = None
        self.protocol: Any = None
        self.sent = 0
        self.queued = 0  # events (not chunks) waiting in the queue

    def push(self, data: bytes, events: int = 1) -> None:
        """Send or queue ``events`` encoded events.

        While the client's socket applies back-pressure, events queue up; a subscriber with more than
        ``limit`` events queued that way is disconnected (it can resume with ``Last-Event-ID``) --
        events are never skipped.
        """
        if self.closed:
            return
        writer = self.writer
        paused = False
        if writer is not None:
            paused = self.protocol._paused  # noqa: SLF001
            if not paused and not self.queue:
                try:
                    writer._write_chunked_payload(data)  # noqa: SLF001 - sync write, aiohttp pinned
                except (ConnectionError, RuntimeError):
                    self.close("client gone")
                    return
                self.sent += len(data)
                return
        if paused and self.queued + events > self.limit:
            self.close("too slow: queue limit reached")
            return
        self.queue.append(data)
        self.queued += events
        if not self.wake.is_set():
            self.wake.set()

    def attach(self, resp: web.StreamResponse) -> None:
        """Enable direct writes on a prepared chunked response (if this aiohttp has the hooks)."""
        writer = getattr(resp, "_payload_writer", None)
        protocol = getattr(writer, "_protocol", None)
        if (writer is not None and getattr(writer, "chunked", False) and hasattr(writer, "_write_chunked_payload")
                and hasattr(protocol, "_paused") and getattr(writer, "_compress", None) is None):  # fmt: skip
            self.writer, self.protocol = writer, protocol

    def close(self, reason: str = "") -> None:
        """End the stream (the pump returns); a connection stuck on a full socket is aborted."""
        if not self.closed:
            self.closed = True
            self.reason = reason
            self.wake.set()
            protocol = self.protocol
            if protocol is not None and protocol._paused:  # noqa: SLF001 - the pump waits on drain
                transport = protocol.transport
                if transport is not None:
                    transport.abort()


class _LogFile:
    __slots__ = ("path", "stream", "offset", "lines", "ino")

    def __init__(self, path: str, stream: str) -> None:
        self.path = path
        self.stream = stream
        self.offset = 0
        self.lines = 0
        self.ino = 0


def _count_complete_lines(path: str) -> tuple[int, int, int]:
    """(complete lines, offset after the last newline, inode) of a file; zeros when missing."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return 0, 0, 0
    try:
        ino = os.fstat(fd).st_ino
        count = 0
        pos = 0
        last_nl = 0
        while True:
            chunk = os.read(fd, READ_CHUNK)
            if not chunk:
                break
            n = chunk.count(b"\n")
            if n:
                count += n
                last_nl = pos + chunk.rindex(b"\n") + 1
            pos += len(chunk)
        return count, last_nl, ino
    finally:
        os.close(fd)


def _read_line_range(path: str, start: int, end: int) -> list[str]:
    """Lines ``start+1 .. end`` (1-based) of a file, without line terminators."""
    if end <= start:
        return []
    try:
        with open(path, "rb") as fh:
            out: list[str] = []
            for i, raw in enumerate(fh):
                if i >= end:
                    break
                if i >= start:
                    out.append(raw.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace"))
            return out
    except OSError:
        return []


class RunTail:
    """The shared tailer of one run while it has subscribers."""

    def __init__(self, hub: StreamHub, entry: RunEntry) -> None:
        self.hub = hub
        self.entry = entry
        self.run_id = entry.run_id
        self.subs: set[Subscriber] = set()
        self.files = (_LogFile(os.path.join(entry.dir, runs.STDOUT), "stdout"),
                      _LogFile(os.path.join(entry.dir, runs.STDERR), "stderr"))  # fmt: skip
        self.project_id = entry.project_id
        self.task_id = entry.task_id
        self.status: tuple[str, int] | None = None
        self.status_event = b""
        self.finished = False
        self.watch = None

    def start(self) -> None:
        """Count existing lines (no backlog: live events start at the current end), watch the directory."""
        for f in self.files:
            f.lines, f.offset, f.ino = _count_complete_lines(f.path)
        self.watch = self.hub.watcher.watch(self.entry.dir, self.on_change)
        self._load_status(self.entry.info if self.entry.info is not None else None)

    def stop(self) -> None:
        """Stop watching."""
        if self.watch is not None:
            self.hub.watcher.unwatch(self.watch)
            self.watch = None

    # -------------------------------------------------------------- subscribers

    def add(self, sub: Subscriber, cursor: tuple[int, int], *, from_start: bool = False) -> None:
        """Attach a subscriber: replay behind its cursor (or everything if ``from_start``), then status."""
        s_cur, e_cur = (0, 0) if from_start else cursor
        snapshot = (self.files[0].lines, self.files[1].lines)
        if from_start or ((s_cur or e_cur) and (s_cur < snapshot[0] or e_cur < snapshot[1])):
            s_pos, e_pos = s_cur, e_cur
            ts = format_rfc3339nano(time.time_ns())  # replay time, like the real server
            replay: list[bytes] = []
            if snapshot[0] > s_cur:
                for line in _read_line_range(self.files[0].path, s_cur, snapshot[0]):
                    s_pos += 1
                    replay.append(self._log_event("stdout", line, s_pos, e_pos, ts))
            if snapshot[1] > e_cur:
                for line in _read_line_range(self.files[1].path, e_cur, snapshot[1]):
                    e_pos += 1
                    replay.append(self._log_event("stderr", line, s_pos, e_pos, ts))
            if replay:
                sub.push(b"".join(replay), 0)  # bounded by the files: not counted against the queue limit
        if self.status_event:
            sub.push(self.status_event)
        self.subs.add(sub)
        sub.tails.add(self)

    def remove(self, sub: Subscriber) -> None:
        """Detach a subscriber; the tail stops with its last one."""
        self.subs.discard(sub)
        sub.tails.discard(self)
        if not self.subs:
            self.hub._drop_tail(self)

    # -------------------------------------------------------------- events

    def _log_event(self, stream: str, line: str, s: int, e: int, ts: str) -> bytes:
        payload: dict[str, Any] = {"run_id": self.run_id}
        if self.project_id:
            payload["project_id"] = self.project_id
        if self.task_id:
            payload["task_id"] = self.task_id
        payload["stream"] = stream
        payload["line"] = line
        payload["timestamp"] = ts
        return encode_event(gojson.marshal(payload), "log", f"s={s};e={e}")

    def on_change(self, name: str | None) -> None:
        """A directory entry changed: read new log lines and/or the status."""
        if name is None or name == runs.STDOUT or name == runs.STDERR:
            self.pump()
        if name is None or name == runs.RUN_INFO:
            if self.entry.managed and self.entry.info is not None:
                self.on_info(self.entry.info)
            else:
                self.on_info(None)

    def pump(self) -> None:
        """Deliver every complete line appended since the last read (both files)."""
        for f in self.files:
            self._read(f)

    def _read(self, f: _LogFile) -> None:
        try:
            fd = os.open(f.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            st = os.fstat(fd)
            if st.st_ino != f.ino:
                if f.ino:  # replaced: start over at its beginning
                    f.offset = 0
                f.ino = st.st_ino
            if st.st_size < f.offset:  # truncated
                f.offset = 0
            if st.st_size <= f.offset:
                return
            ts = format_rfc3339nano(time.time_ns())
            while True:
                data = os.pread(fd, READ_CHUNK, f.offset)
                if not data:
                    return
                cut = data.rfind(b"\n")
                if cut < 0:
                    if len(data) < READ_CHUNK:
                        return  # a partial line: wait for its newline
                    cut = len(data) - 1  # an over-long line: deliver it in pieces
                block = data[: cut + 1]
                f.offset += len(block)
                other = self.files[1] if f is self.files[0] else self.files[0]
                events = []
                for raw in block.split(b"\n")[:-1] if block.endswith(b"\n") else [block]:
                    f.lines += 1
                    line = raw[:-1] if raw.endswith(b"\r") else raw
                    text = line.decode("utf-8", "replace")
                    if f.stream == "stdout":
                        events.append(self._log_event("stdout", text, f.lines, other.lines, ts))
                    else:
                        events.append(self._log_event("stderr", text, other.lines, f.lines, ts))
                blob = events[0] if len(events) == 1 else b"".join(events)
                for sub in list(self.subs):  # one write per subscriber per read, however many lines
                    sub.push(blob, len(events))
                if len(data) < READ_CHUNK:
                    return
        finally:
            os.close(fd)

    def _load_status(self, info: RunInfo | None) -> bool:
        if info is None:
            try:
                info = runs.read_run_info(self.entry.info_path)
            except (runs.StorageError, OSError, UnicodeDecodeError):
                return False
        status = info.status.strip()
        exit_code = info.exit_code
        if not status and exit_code >= 0:
            status = runs.STATUS_COMPLETED
        if info.project_id.strip():
            self.project_id = info.project_id.strip()
        if info.task_id.strip():
            self.task_id = info.task_id.strip()
        if not status or (status, exit_code) == self.status:
            return False
        self.status = (status, exit_code)
        payload: dict[str, Any] = {"run_id": self.run_id}
        if self.project_id:
            payload["project_id"] = self.project_id
        if self.task_id:
            payload["task_id"] = self.task_id
        payload["status"] = status
        payload["exit_code"] = exit_code
        self.status_event = encode_event(gojson.marshal(payload), "status")
        self.finished = info.end_time_ns != 0
        return True

    def on_info(self, info: RunInfo | None) -> None:
        """The run-info changed: drain the logs first, then send a changed status to everyone."""
        self.pump()
        if self._load_status(info):
            for sub in list(self.subs):
                sub.push(self.status_event)
            if self.finished:
                # all-runs subscribers leave a finished run once its last lines and status are out
                for sub in [s for s in self.subs if s.kind == "all"]:
                    self.remove(sub)


class _Feed:
    """The shared reader of one bus file while message streams are open on it."""

    def __init__(self, hub: StreamHub, path: str) -> None:
        self.hub = hub
        self.path = path
        self.subs: set[Subscriber] = set()
        self.base = 0
        self.size = 0
        self.ino = 0
        self.last_id = ""
        self.watch = None

    def start(self) -> None:
        """Watch the bus file's directory (polled until it exists)."""
        self.watch = self.hub.watcher.watch(os.path.dirname(self.path), self.on_change)

    def stop(self) -> None:
        """Stop watching."""
        if self.watch is not None:
            self.hub.watcher.unwatch(self.watch)
            self.watch = None

    def on_change(self, name: str | None) -> None:
        """A directory entry changed: parse new bytes of the bus if it was the bus file."""
        if name is None or name == os.path.basename(self.path):
            self.poll()

    def _deliver(self, messages: list[Message]) -> None:
        if not messages or not self.subs:
            return
        blob = b"".join(message_event(m) for m in messages)
        for sub in list(self.subs):
            sub.push(blob, len(messages))

    def sync(self, messages: list[Message], offset: int, size: int, ino: int) -> None:
        """Adopt a full parse of the file (made for a new subscriber), delivering what is new."""
        if self.last_id:
            ids = [m.msg_id for m in messages]
            if self.last_id in ids:
                self._deliver(messages[ids.index(self.last_id) + 1:])
            else:
                self._deliver(messages[-HYDRATION_COUNT:])
        self.last_id = messages[-1].msg_id if messages else ""
        self.base, self.size, self.ino = offset, size, ino

    def poll(self) -> None:
        """Read and deliver messages appended since the last poll (file order, nothing twice)."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return
        try:
            st = os.fstat(fd)
            if st.st_ino == self.ino and st.st_size == self.size:
                return
            reset = st.st_ino != self.ino and self.ino != 0 or st.st_size < self.base
            base = 0 if reset else self.base
            chunks = []
            pos = base
            while True:
                chunk = os.pread(fd, READ_CHUNK, pos)
                if not chunk:
                    break
                chunks.append(chunk)
                pos += len(chunk)
            data = b"".join(chunks)
        finally:
            os.close(fd)
        messages, rel = bus.parse_tail(data)
        if reset:
            self.last_id = ""
            self._deliver(messages[-HYDRATION_COUNT:])
        elif self.last_id:
            idx = next((i for i, m in enumerate(messages) if m.msg_id == self.last_id), -1)
            if idx < 0:  # the file changed under us: re-hydrate like the real server
                self._deliver(messages[-HYDRATION_COUNT:])
            else:
                self._deliver(messages[idx + 1:])
        else:
            self._deliver(messages)
        if messages:
            self.last_id = messages[-1].msg_id
            self.base = base + rel
        self.size = base + len(data)
        self.ino = st.st_ino


def message_event(m: Message) -> bytes:
    """The ``message`` event of one bus message (``parents`` as id strings, no ``links``)."""
    payload: dict[str, Any] = {"msg_id": m.msg_id,
                               "timestamp": format_rfc3339nano(m.ts_ns or time.time_ns())}  # fmt: skip
    if m.type:
        payload["type"] = m.type
    if m.project_id:
        payload["project_id"] = m.project_id
    if m.task_id:
        payload["task_id"] = m.task_id
    if m.run_id:
        payload["run_id"] = m.run_id
    if m.issue_id:
        payload["issue_id"] = m.issue_id
    parents = [p.msg_id for p in m.parents if p.msg_id]
    if parents:
        payload["parents"] = parents
    if m.meta:
        payload["meta"] = dict(sorted(m.meta.items()))
    payload["body"] = m.body
    return encode_event(gojson.marshal(payload), "message", m.msg_id)


class _BusCache:
    """Parsed messages of one bus file, extended incrementally as the file grows."""

    __slots__ = ("ino", "size", "base", "messages")

    def __init__(self) -> None:
        self.ino = 0
        self.size = -1
        self.base = 0
        self.messages: list[Message] = []


def _read_from(path: str, offset: int) -> tuple[bytes, int, int]:
    """(bytes from ``offset`` to the end, file size, inode); raises FileNotFoundError."""
    bus.validate_bus_path(path)
    with open(path, "rb") as fh:
        st = os.fstat(fh.fileno())
        if st.st_size < offset:
            offset = 0
        fh.seek(offset)
        return fh.read(), st.st_size, st.st_ino


class StreamServer(Protocol):
    """What the streams need of the server (:class:`.app.ConductorServer`)."""

    cfg: ReferenceConfig
    watcher: WatchHub
    index: RunIndex
    executor: Executor

    def apply_cors(self, request: web.Request, resp: web.StreamResponse) -> None:
        """Add the CORS headers of the request's origin to an answer."""


class StreamHub:
    """All SSE state of one server: tails per run, feeds per bus file, the all-runs subscribers."""

    def __init__(self, server: StreamServer) -> None:
        self.server = server
        self.cfg = server.cfg
        self.watcher: WatchHub = server.watcher
        self.tails: dict[str, RunTail] = {}
        self.feeds: dict[str, _Feed] = {}
        self.all_subs: set[Subscriber] = set()
        self.subscribers: set[Subscriber] = set()
        self.open_streams = 0
        self._heartbeat: asyncio.Task | None = None
        self._discovery: asyncio.Task | None = None
        self._bus_cache: OrderedDict[str, _BusCache] = OrderedDict()
        self._bus_locks: dict[str, asyncio.Lock] = {}
        self._discover_soon = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Hook into the index (the heartbeat ticker starts with the first stream)."""
        self.server.index.on_change = self._index_changed

    def _index_changed(self) -> None:
        """Something changed on disk: with all-runs clients open, look for new runs right away."""
        if not self.all_subs:
            return
        if not self._discover_soon:
            self._discover_soon = True
            asyncio.get_running_loop().call_soon(self._discover_now)

    def _discover_now(self) -> None:
        """Attach every all-runs subscriber to runs that appeared since the last pass (from line 1)."""
        self._discover_soon = False
        index = self.server.index
        index.refresh()
        new, index.appeared = index.appeared, []
        if not self.all_subs:
            return
        for entry in new:
            if entry.info is None:
                continue
            for sub in list(self.all_subs):
                if entry.run_id not in sub.seen:
                    sub.seen.add(entry.run_id)
                    self._attach(entry, sub, (0, 0), from_start=True)

    async def close_all(self) -> None:
        """End every open stream (server shutdown)."""
        for sub in list(self.subscribers):
            sub.close("server shutting down")
        for _ in range(100):
            if not self.open_streams:
                break
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        """Stop background tasks and the watcher."""
        for task in (self._heartbeat, self._discovery):
            if task is not None:
                task.cancel()
        self._heartbeat = self._discovery = None
        for tail in list(self.tails.values()):
            tail.stop()
        for feed in list(self.feeds.values()):
            feed.stop()
        self.tails.clear()
        self.feeds.clear()

    def subscriber_count(self) -> int:
        """Open subscriptions (per-run, all-runs and message streams)."""
        return len(self.subscribers)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        try:
            while self.subscribers:
                await asyncio.sleep(self.cfg.heartbeat_interval_s)
                for sub in list(self.subscribers):
                    sub.push(HEARTBEAT)
        finally:
            self._heartbeat = None

    # ------------------------------------------------------------------ notifications from the server

    def run_changed(self, entry: RunEntry, started: bool) -> None:
        """This server wrote a run's run-info (``started``: it just appeared)."""
        tail = self.tails.get(entry.run_id)
        if tail is not None and tail.entry is entry:
            tail.on_info(entry.info)
        if started and self.all_subs:
            for sub in list(self.all_subs):
                if entry.run_id not in sub.seen:
                    sub.seen.add(entry.run_id)
                    self._attach(entry, sub, (0, 0), from_start=True)

    def bus_appended(self, path: str) -> None:
        """This server appended to a bus file: deliver to its message streams now."""
        feed = self.feeds.get(path)
        if feed is not None:
            feed.poll()

    # ------------------------------------------------------------------ run tails

    def _tail(self, entry: RunEntry) -> RunTail:
        tail = self.tails.get(entry.run_id)
        if tail is None or tail.entry is not entry:
            tail = RunTail(self, entry)
            tail.start()
            self.tails[entry.run_id] = tail
        return tail

    def _drop_tail(self, tail: RunTail) -> None:
        if self.tails.get(tail.run_id) is tail:
            del self.tails[tail.run_id]
        tail.stop()

    def _attach(self, entry: RunEntry, sub: Subscriber, cursor: tuple[int, int], *, from_start: bool) -> bool:
        existing = self.tails.get(entry.run_id)
        if existing is not None and len(existing.subs) >= self.cfg.max_clients_per_run:
            return False
        tail = self._tail(entry)
        tail.add(sub, cursor, from_start=from_start)
        if sub.kind == "all" and tail.finished:
            tail.remove(sub)  # replayed and finished: nothing more will come
        return True

    # ------------------------------------------------------------------ handlers

    def _error(self, err: Any, rid: str) -> web.Response:
        headers = {"Content-Type": "application/json", "Cache-Control": "no-cache", "Connection": "keep-alive",
                   "X-Accel-Buffering": "no", "X-Request-Id": rid}  # fmt: skip
        return web.Response(status=err.status, body=err.body(), headers=headers)

    async def _open(self, request: web.Request, rid: str, sub: Subscriber) -> web.StreamResponse:
        resp = web.StreamResponse(status=200, headers={**SSE_HEADERS, "X-Request-Id": rid})
        resp.sse_bytes = 0  # type: ignore[attr-defined]
        request[STREAM_RESPONSE] = resp
        self.server.apply_cors(request, resp)
        self.subscribers.add(sub)
        self.open_streams += 1
        self._ensure_heartbeat()
        try:
            await resp.prepare(request)
        except BaseException:
            self._closed(sub)
            raise
        sub.attach(resp)
        return resp

    def _closed(self, sub: Subscriber) -> None:
        sub.closed = True
        for tail in list(sub.tails):
            tail.remove(sub)
        self.all_subs.discard(sub)
        if not self.all_subs and self.server.index.track_appeared:
            self.server.index.track_appeared = False
            self.server.index.appeared.clear()
        if sub in self.subscribers:
            self.subscribers.discard(sub)
            self.open_streams -= 1
        for path, feed in list(self.feeds.items()):
            if sub in feed.subs:
                feed.subs.discard(sub)
                if not feed.subs:
                    feed.stop()
                    del self.feeds[path]

    async def _pump(self, resp: web.StreamResponse, sub: Subscriber) -> None:
        queue = sub.queue
        try:
            while True:
                if not queue:
                    if sub.closed:
                        return
                    sub.wake.clear()
                    await sub.wake.wait()
                    continue
                if sub.closed and sub.reason.startswith("too slow"):
                    return
                if len(queue) == 1:
                    chunk = queue[0]
                else:
                    chunk = b"".join(queue)
                    queue.clear()
                    queue.append(chunk)
                taken = sub.queued
                sub.sent += len(chunk)
                await resp.write(chunk)  # awaits the socket when it applies back-pressure
                queue.popleft()  # only now: direct writes must not overtake queued events
                sub.queued -= taken
        except (ConnectionError, RuntimeError):
            return
        finally:
            resp.sse_bytes = sub.sent  # type: ignore[attr-defined]
            sub.writer = None
            self._closed(sub)

    async def serve_run(self, request: web.Request, run_id: str, rid: str) -> web.StreamResponse:
        """GET /api/v1/runs/{id}/stream."""
        entries = self.server.index.get_runs(run_id.strip())
        if len(entries) != 1:
            return self._error(not_found("run not found"), rid)
        entry = entries[0]
        existing = self.tails.get(entry.run_id)
        if existing is not None and len(existing.subs) >= self.cfg.max_clients_per_run:
            return self._error(ApiError(429, "TOO_MANY_REQUESTS", "max clients reached for run"), rid)
        sub = Subscriber(self.cfg.max_queued_events, "run")
        cursor = parse_cursor(request.headers.get("Last-Event-ID", ""))
        self._tail(entry).add(sub, cursor)
        resp = await self._open(request, rid, sub)
        await self._pump(resp, sub)
        return resp

    async def serve_all(self, request: web.Request, rid: str) -> web.StreamResponse:
        """GET /api/v1/runs/stream/all."""
        sub = Subscriber(self.cfg.max_queued_events, "all")
        existing = self.server.index.all_runs()
        if not self.all_subs:  # start collecting new runs; everything current is in the snapshot
            self.server.index.appeared.clear()
            self.server.index.track_appeared = True
        for entry in existing:
            sub.seen.add(entry.run_id)
            if entry.active:
                self._attach(entry, sub, (0, 0), from_start=False)
            elif entry.info is not None:
                tail = self.tails.get(entry.run_id)
                if tail is not None and tail.status_event:
                    sub.push(tail.status_event)
                else:
                    sub.push(_status_event(entry))
        self.all_subs.add(sub)
        resp = await self._open(request, rid, sub)
        if self._discovery is None:
            self._discovery = asyncio.get_running_loop().create_task(self._discover())
        await self._pump(resp, sub)
        return resp

    async def _discover(self) -> None:
        """Find runs created by other processes while all-runs streams are open (one pass for all).

        With inotify the index reports changes at once (:meth:`_index_changed`); this periodic pass
        (``discovery_interval_ms``) covers the stat-scanning fallback.
        """
        try:
            while self.all_subs:
                await asyncio.sleep(self.cfg.discovery_interval_ms / 1000)
                if self.all_subs:
                    self._discover_now()
        finally:
            self._discovery = None

    async def serve_messages(self, request: web.Request, path: str, rid: str) -> web.StreamResponse:
        """GET /api/v1/messages/stream: hydration (last 20, or everything after Last-Event-ID), then live."""
        last_id = request.headers.get("Last-Event-ID", "").strip()
        sub = Subscriber(self.cfg.max_queued_events, "messages")
        feed = self.feeds.get(path)
        if feed is None:
            feed = self.feeds[path] = _Feed(self, path)
            feed.start()
        try:
            data, size, ino = _read_from(path, 0)
        except (FileNotFoundError, NotADirectoryError):
            data, size, ino = b"", 0, 0
        except (OSError, bus.BusError):
            data, size, ino = b"", 0, 0
        messages, offset = bus.parse_tail(data)
        feed.sync(messages, offset, size, ino)
        hydrate = messages[-HYDRATION_COUNT:]
        if last_id:
            ids = [m.msg_id for m in messages]
            if last_id in ids:
                hydrate = messages[ids.index(last_id) + 1:]
        if hydrate:
            sub.push(b"".join(message_event(m) for m in hydrate), 0)
        feed.subs.add(sub)
        resp = await self._open(request, rid, sub)
        await self._pump(resp, sub)
        return resp

    # ------------------------------------------------------------------ REST reads of a bus

    async def read_bus(self, path: str) -> list[Message]:
        """All messages of a bus file (the real reader's rules), parsing only bytes new since the last call."""
        lock = self._bus_locks.get(path)
        if lock is None:
            lock = self._bus_locks[path] = asyncio.Lock()
        async with lock:
            cache = self._bus_cache.get(path)
            if cache is None:
                cache = _BusCache()
            try:
                st = os.stat(path)
            except (FileNotFoundError, NotADirectoryError):
                self._bus_cache.pop(path, None)
                return []
            if st.st_ino == cache.ino and st.st_size == cache.size:
                self._bus_cache.move_to_end(path, last=True) if path in self._bus_cache else None
                return cache.messages
            reset = st.st_ino != cache.ino or st.st_size < cache.size
            base = 0 if reset else cache.base
            loop = asyncio.get_running_loop()
            if st.st_size - base > 1024 * 1024:
                data, size, ino = await loop.run_in_executor(self.server.executor, _read_from, path, base)
                messages, rel = await loop.run_in_executor(self.server.executor, bus.parse_tail, data)
            else:
                data, size, ino = _read_from(path, base)
                messages, rel = bus.parse_tail(data)
            if reset or base == 0:
                cache.messages = messages
            else:
                # the first re-parsed message is the previous last one (its body may have changed)
                keep = cache.messages
                if messages and keep and keep[-1].msg_id == messages[0].msg_id:
                    cache.messages = keep[:-1] + messages
                else:
                    cache.messages = keep + messages
            if messages:
                cache.base = base + rel
            cache.size, cache.ino = base + len(data), ino
            if size > 256 * 1024 * 1024:
                self._bus_cache.pop(path, None)
            else:
                self._bus_cache[path] = cache
                self._bus_cache.move_to_end(path)
                while len(self._bus_cache) > 64:
                    old, _ = self._bus_cache.popitem(last=False)
                    self._bus_locks.pop(old, None)
            return cache.messages


def _status_event(entry: RunEntry) -> bytes:
    info = entry.info
    assert info is not None
    status = info.status.strip() or (runs.STATUS_COMPLETED if info.exit_code >= 0 else "")
    payload: dict[str, Any] = {"run_id": entry.run_id}
    if info.project_id or entry.project_id:
        payload["project_id"] = info.project_id or entry.project_id
    if info.task_id or entry.task_id:
        payload["task_id"] = info.task_id or entry.task_id
    payload["status"] = status
    payload["exit_code"] = info.exit_code
    return encode_event(gojson.marshal(payload), "status")

