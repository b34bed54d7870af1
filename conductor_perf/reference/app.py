"""The embedded reference conductor: an aiohttp application that speaks conductor-loop 0.76's API.

:func:`create_app` builds the application from a :class:`~conductor_perf.reference.config.ReferenceConfig`.
On the wire it matches the real server (docs/conductor-loop.md, docs/api-behaviour.md): the same routes and methods,
the error envelope ``{"error":{"code","message"[,"details"]}}``, 405 JSON on API routes and
``text/plain`` on ``/healthz``/``/metrics``, ``404 page not found`` for unknown paths, an
``X-Request-Id`` on every response, Go-encoded JSON (``\\u003c``..., trailing newline), the 1 MiB
body limit and Go's decoder errors, the 401 shape and exempt routes, ``/metrics`` names, the audit
file and ``request_completed`` log lines.

Where the real server has defects the reference does the correct thing (documented in the README):
list endpoints use an in-memory index and never rewrite run-info; project ids the runner would
reject (not ``[a-z0-9-]``) and unknown agent types get 400 instead of a silent 201;
``conductor_messagebus_appends_total`` counts; SSE is handled by :mod:`.streams`.

Reference-only extension: ``GET /api/v1/debug/runtime`` returns
``{"asyncio_tasks","threads","open_streams","subscribers","pid","asyncio_tasks_peak","watches",
"index_watching"}`` (the real server has no such route; suites use it to check for leaks).
"""

from __future__ import annotations

import asyncio
import functools
import os
import random
import stat as _stat
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import Any

from aiohttp import web

from ..formats import bus, runs
from ..formats.bus import Message, format_rfc3339nano
from ..formats.runs import ZERO_TIME, InvalidId, check_project_id
from . import godecode, gojson
from .agents import AgentManager, TaskLoop
from .audit import AuditWriter
from .config import ReferenceConfig
from .errors import METHOD_NOT_ALLOWED, ApiError, bad_request, conflict, internal, not_found
from .filehelper import FileHelper
from .index import RunEntry, RunIndex, TaskEntry, join_runs_json
from .serverlog import ServerLog
from .streams import STREAM_RESPONSE, StreamHub
from .watch import WatchHub

CONDUCTOR_KEY = web.AppKey("conductor", object)
FORCE_CLOSE = web.RequestKey("force_close", bool)

JSON_TYPE = "application/json"
TEXT_TYPE = "text/plain; charset=utf-8"
REQUEST_ID = "X-Request-Id"
SSE_ERROR_HEADERS = {"Cache-Control": "no-cache", "Connection": "keep-alive", "X-Accel-Buffering": "no"}

AUTH_EXEMPT = frozenset(("/api/v1/health", "/api/v1/version", "/metrics", "/healthz"))
UNAUTHORIZED_BODY = b'{"error":"unauthorized","message":"valid API key required"}'

INDEX_HTML = (b"<!doctype html><html><head><meta charset=\"utf-8\"><title>conductor</title></head>"
              b"<body><p>conductor reference server</p></body></html>\n")  # fmt: skip


def validate_identifier(value: str, name: str) -> str:
    """The API's id check (docs/conductor-loop.md, Identifiers): non-blank, no ``/``, ``\\`` or ``..`` (also percent-encoded)."""
    trimmed = value.strip()
    if not trimmed:
        raise bad_request(f"{name} is required")
    decoded = urllib.parse.unquote(trimmed) if "%" in trimmed else trimmed
    if "/" in decoded or "\\" in decoded:
        raise bad_request(f"{name} must not contain path separators")
    if ".." in decoded:
        raise bad_request(f"{name} must not contain ..")
    if "\x00" in decoded:
        raise bad_request(f"{name} must not contain NUL")
    if len(decoded) > 255 // 4 and len(decoded.encode("utf-8", "surrogatepass")) > 255:
        # a directory name: the real server lets it reach the file system and answers 500
        raise bad_request(f"{name} is too long (at most 255 bytes)")
    return value


def go_clean_path(path: str) -> str:
    """Go's ``path.Clean`` as ServeMux applies it (a trailing slash is kept)."""
    if not path.startswith("/"):
        path = "/" + path
    out: list[str] = []
    for part in path.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if out:
                out.pop()
            continue
        out.append(part)
    cleaned = "/" + "/".join(out)
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def go_float(value: float) -> str:
    """Go's ``%g`` (``strconv.FormatFloat(f, 'g', -1, 64)``): shortest digits, exponent form below
    1e-4 and from 1e6 up -- the format of ``conductor_uptime_seconds``."""
    if value == 0:
        return "0"
    sign, digit_tuple, exp = Decimal(repr(float(value))).as_tuple()
    digits = "".join(map(str, digit_tuple)).rstrip("0") or "0"
    assert isinstance(exp, int)
    exp += len("".join(map(str, digit_tuple))) - len(digits)
    x = len(digits) + exp - 1  # decimal exponent of the leading digit
    neg = "-" if sign else ""
    if x < -4 or x >= 6:
        mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
        return f"{neg}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if exp >= 0:
        return neg + digits + "0" * exp
    point = len(digits) + exp
    if point > 0:
        return f"{neg}{digits[:point]}.{digits[point:]}"
    return f"{neg}0.{'0' * -point}{digits}"


class Metrics:
    """The counters behind ``/metrics`` (conductor-loop 0.76's counter names)."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.active_runs = 0
        self.completed_runs = 0
        self.failed_runs = 0
        self.bus_appends = 0
        self.queued_runs = 0
        self.requests: dict[tuple[str, int], int] = {}

    def record(self, method: str, status: int) -> None:
        """Count one request."""
        key = (method, status)
        self.requests[key] = self.requests.get(key, 0) + 1

    def render(self) -> str:
        """Prometheus text format 0.0.4, in the real server's layout."""
        uptime = time.monotonic() - self.start
        out = [
            "# HELP conductor_uptime_seconds Server uptime in seconds\n# TYPE conductor_uptime_seconds gauge\n"
            f"conductor_uptime_seconds {go_float(uptime)}\n\n",
            "# HELP conductor_active_runs_total Currently active (running) agent runs\n"
            f"# TYPE conductor_active_runs_total gauge\nconductor_active_runs_total {self.active_runs}\n\n",
            "# HELP conductor_completed_runs_total Total completed agent runs since startup\n"
            f"# TYPE conductor_completed_runs_total counter\nconductor_completed_runs_total {self.completed_runs}\n\n",
            "# HELP conductor_failed_runs_total Total failed agent runs since startup\n"
            f"# TYPE conductor_failed_runs_total counter\nconductor_failed_runs_total {self.failed_runs}\n\n",
            "# HELP conductor_messagebus_appends_total Total message bus append operations\n"
            "# TYPE conductor_messagebus_appends_total counter\n"
            f"conductor_messagebus_appends_total {self.bus_appends}\n\n",
            "# HELP conductor_queued_runs_total Runs currently waiting for a concurrency slot\n"
            f"# TYPE conductor_queued_runs_total gauge\nconductor_queued_runs_total {self.queued_runs}\n\n",
            "# HELP conductor_api_requests_total Total API requests by method and status\n"
            "# TYPE conductor_api_requests_total counter\n",
        ]  # fmt: skip
        for (method, status), count in sorted(self.requests.items(), key=lambda kv: f"{kv[0][0]}:{kv[0][1]}"):
            out.append(f'conductor_api_requests_total{{method="{method}",status="{status}"}} {count}\n')
        return "".join(out)


def burn_cpu(microseconds: int) -> int:
    """Busy-loop until this thread has used ``microseconds`` of CPU time (``--slowdown-us``); returns
    the nanoseconds it used. A CPU clock, not a wall clock: a thread preempted by a neighbour still
    does the whole amount of work, so the slowdown is the same on a quiet and on a busy machine."""
    start = time.thread_time_ns()
    end = start + microseconds * 1000
    now = start
    while now < end:
        now = time.thread_time_ns()
    return now - start


def _json(status: int, body: bytes, rid: str) -> web.Response:
    return web.Response(status=status, body=body, headers={"Content-Type": JSON_TYPE, REQUEST_ID: rid})


def _text(status: int, text: str, rid: str) -> web.Response:
    return web.Response(status=status, body=text.encode(),
                        headers={"Content-Type": TEXT_TYPE, "X-Content-Type-Options": "nosniff", REQUEST_ID: rid})


async def _drop_server_header(request: web.Request, response: web.StreamResponse) -> None:
    # Go's net/http sends no Server header
    response.headers.popall("Server", None)


class ConductorServer:
    """State of one reference conductor: config, index, agents, streams, metrics, log, audit."""

    def __init__(self, cfg: ReferenceConfig, *, log: ServerLog | None = None) -> None:
        self.cfg = cfg
        self.root = str(cfg.root)
        self.real_root = os.path.realpath(self.root)
        self.log = log or ServerLog(cfg.log_file)
        self.metrics = Metrics()
        self.watcher = WatchHub(max(0.005, cfg.fallback_poll_interval_ms / 1000))
        self.index = RunIndex(self.root, self.watcher)
        self.executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="conductor-io")
        self.files = FileHelper(self.log)
        self.audit = AuditWriter(self.root, fsync=cfg.audit_fsync)
        self.port = cfg.port
        self.host = cfg.host
        self.started_ns = time.time_ns()
        self._started_mono = time.monotonic()
        self.inflight = 0
        self.submitting = 0  # POST /api/v1/tasks being answered
        self.last_request = 0.0  # time.monotonic() of the latest request
        self.tasks_peak = 0
        self._sampler: asyncio.Task | None = None
        self._dirs: set[str] = set()
        self.streams = StreamHub(self)
        self.agents = AgentManager(cfg, self.index, self.log, executor=self.executor, post=self.post_message,
                                   metrics=self.metrics, conductor_url=self.conductor_url,
                                   on_run_changed=self.streams.run_changed, busy=self.busy)  # fmt: skip
        self._exact: dict[str, Any] = {
            "/api/v1/health": self.h_health,
            "/api/v1/version": self.h_version,
            "/api/v1/status": self.h_status,
            "/api/v1/tasks": self.h_tasks,
            "/api/v1/runs": self.h_runs,
            "/api/v1/runs/stream/all": self.h_all_runs_stream,
            "/api/v1/messages": self.h_messages,
            "/api/v1/messages/stream": self.h_message_stream,
            "/api/v1/debug/runtime": self.h_debug_runtime,
        }
        self.health_body = gojson.encode({"status": "ok"})
        self.version_body = gojson.encode({"version": cfg.version})

    # ------------------------------------------------------------------ lifecycle

    async def on_startup(self, app: web.Application) -> None:
        """Create the root, start the audit writer and the stream hub."""
        os.makedirs(self.root, exist_ok=True)
        self.real_root = os.path.realpath(self.root)
        self.audit.start()
        if self.cfg.file_helper:
            await self.files.start()
        self.watcher.start()
        await self.streams.start()

    async def on_shutdown(self, app: web.Application) -> None:
        """Close open streams and stop agents (runs before the HTTP server waits for handlers)."""
        await self.streams.close_all()
        await self.agents.shutdown()

    async def on_cleanup(self, app: web.Application) -> None:
        """Flush the audit file and the log; stop worker threads."""
        await self.streams.stop()
        self.watcher.close()
        await asyncio.get_running_loop().run_in_executor(None, self.audit.close)
        self.executor.shutdown(wait=False, cancel_futures=True)  # a thread stuck on a foreign bus lock must not hold the exit
        await self.files.close()
        self.log.close()

    def busy(self, quiet_s: float) -> bool:
        """Whether task submissions are still being answered or a request arrived within ``quiet_s``.

        Agents launch when this is false: a burst of submissions gets its 201s before its agents start.
        """
        return self.submitting > 0 or time.monotonic() - self.last_request < quiet_s

    def conductor_url(self) -> str:
        """``http://<loopback>:<port>`` for ``JRUN_CONDUCTOR_URL``."""
        host = self.host if self.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    # ------------------------------------------------------------------ dispatch

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        """Every request: request id, CORS/OPTIONS, auth, Go mux routing, errors, log, metrics."""
        self.inflight += 1
        self.last_request = time.monotonic()
        if self._sampler is None:
            self._sampler = asyncio.get_running_loop().create_task(self._sample_tasks())
        try:
            return await self._dispatch(request)
        finally:
            self.inflight -= 1

    async def _sample_tasks(self) -> None:
        """Track the peak number of asyncio tasks while requests or streams are open (no timer when idle)."""
        try:
            while True:
                self.tasks_peak = max(self.tasks_peak, len(asyncio.all_tasks()))
                if self.inflight <= 0 and not self.streams.open_streams:
                    return
                await asyncio.sleep(1.0)
        finally:
            self._sampler = None

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        start = time.perf_counter_ns()
        rid = request.headers.get("X-Request-ID", "").strip() or (
            f"req-{time.time_ns()}-{random.getrandbits(48):012x}")  # fmt: skip
        method = request.method
        raw = request.raw_path
        qpos = raw.find("?")
        raw_path = raw if qpos < 0 else raw[:qpos]
        path = urllib.parse.unquote(raw_path) if "%" in raw_path else raw_path
        if self.cfg.slowdown_us and path.startswith("/api/"):
            burn_cpu(self.cfg.slowdown_us)
        try:
            resp = await self._route(request, method, path, rid)
        except ApiError as err:
            resp = _json(err.status, err.body(), rid)
        except web.HTTPException:
            raise
        except asyncio.CancelledError:
            # the client went away (handler cancellation): an open stream still gets its log line
            stream = request.get(STREAM_RESPONSE)
            if stream is not None:
                self._completed(request, stream, rid, method, path, qpos, start)
            raise
        except Exception as exc:  # noqa: BLE001 - one bad request must not take the server down
            self.log.event("ERROR", "api", "request_error", request_id=rid, path=path, error=repr(exc))
            resp = _json(500, ApiError(500, "INTERNAL", "internal error").body(), rid)
        if self.cfg.cors_origins:
            self.apply_cors(request, resp)
        if request.get(FORCE_CLOSE):
            resp.force_close()
        self._completed(request, resp, rid, method, path, qpos, start)
        return resp

    def _completed(self, request: web.Request, resp: web.StreamResponse, rid: str, method: str, path: str,
                   qpos: int, start: int) -> None:  # fmt: skip
        """Count the request and write its ``request_completed`` line."""
        status = resp.status
        self.metrics.record(method, status)
        query = request.rel_url.query if qpos >= 0 else None
        project_id = task_id = run_id = ""
        if query:
            project_id = query.get("project_id", "").strip()
            task_id = query.get("task_id", "").strip()
            run_id = query.get("run_id", "").strip()
        if not run_id and path.startswith("/api/v1/runs/"):
            run_id = path[13:].strip("/").split("/", 1)[0]
        elif not task_id and path.startswith("/api/v1/tasks/"):
            task_id = path[14:].strip("/").split("/", 1)[0]
        nbytes = (resp.content_length or 0) if isinstance(resp, web.Response) else getattr(resp, "sse_bytes", 0)
        self.log.request(rid, method, path, status, nbytes, (time.perf_counter_ns() - start) // 1_000_000,
                         project_id, task_id, run_id)  # fmt: skip

    def apply_cors(self, request: web.Request, resp: web.StreamResponse) -> None:
        """CORS headers when ``Origin`` matches ``api.cors_origins`` (before the response is prepared)."""
        if not self.cfg.cors_origins:
            return
        origin = request.headers.get("Origin", "").strip()
        if not origin or resp.prepared:
            return
        origins = [o.strip() for o in self.cfg.cors_origins if o.strip()]
        if "*" in origins:
            allowed = "*"
        elif origin in origins:
            allowed = origin
        else:
            return
        resp.headers["Access-Control-Allow-Origin"] = allowed
        resp.headers.add("Vary", "Origin")
        resp.headers["Access-Control-Allow-Methods"] = "GET,POST,DELETE,OPTIONS"
        resp.headers["Access-Control-Allow-Headers"] = "Content-Type, Authorization, X-Request-ID, X-Conductor-Client"
        resp.headers["Access-Control-Expose-Headers"] = "X-Request-ID"

    async def _route(self, request: web.Request, method: str, path: str, rid: str) -> web.StreamResponse:
        if method == "OPTIONS":
            return web.Response(status=204, headers={REQUEST_ID: rid})
        key = self.cfg.api_key
        if key and path not in AUTH_EXEMPT and not path.startswith("/ui/"):
            headers = request.headers
            auth = headers.get("Authorization", "")
            if not ((auth.startswith("Bearer ") and auth[7:] == key) or headers.get("X-API-Key") == key):
                return web.Response(status=401, body=UNAUTHORIZED_BODY, headers={
                    "Content-Type": JSON_TYPE, "WWW-Authenticate": 'Bearer realm="conductor"', REQUEST_ID: rid})
        cleaned = go_clean_path(path)
        if cleaned != path:
            query = request.rel_url.query_string
            location = cleaned + ("?" + query if query else "")
            body = f'<a href="{location}">Moved Permanently</a>.\n\n'.encode() if method in ("GET", "HEAD") else b""
            return web.Response(status=301, body=body, headers={
                "Location": location, "Content-Type": "text/html; charset=utf-8", REQUEST_ID: rid})
        handler = self._exact.get(path)
        if handler is not None:
            return await handler(request, method, rid)
        if path == "/healthz":
            return self.h_healthz(method, rid)
        if path == "/metrics":
            return self.h_metrics(method, rid)
        if path.startswith("/api/v1/tasks/"):
            return await self.h_task_by_id(request, method, path, rid)
        if path.startswith("/api/v1/runs/"):
            return await self.h_run_by_id(request, method, path, rid)
        if path.startswith("/api/projects/"):
            segments = [s for s in path[len("/api/projects/"):].split("/") if s]
            if len(segments) == 6 and segments[1] == "tasks" and segments[3] == "runs" and segments[5] == "file":
                return self.h_run_file(request, method, segments[0], segments[2], segments[4], rid)
        if path == "/" or path == "/ui/":
            return web.Response(status=200, body=INDEX_HTML, headers={
                "Content-Type": "text/html; charset=utf-8", REQUEST_ID: rid})
        if path == "/ui":
            return web.Response(status=301, body=b'<a href="/ui/">Moved Permanently</a>.\n\n', headers={
                "Location": "/ui/", "Content-Type": "text/html; charset=utf-8", REQUEST_ID: rid})
        return _text(404, "404 page not found\n", rid)

    # ------------------------------------------------------------------ helpers

    async def _read_body(self, request: web.Request) -> bytes:
        """At most 1 MiB of the body (Go's LimitReader); the rest is left unread and the connection closed."""
        length = request.content_length
        if length is not None and length <= godecode.MAX_BODY:
            return await request.read()
        chunks: list[bytes] = []
        total = 0
        while total <= godecode.MAX_BODY:
            chunk = await request.content.readany()
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        data = b"".join(chunks)
        if len(data) > godecode.MAX_BODY:
            request[FORCE_CLOSE] = True  # the unread rest of the body is not drained: close afterwards
            data = data[: godecode.MAX_BODY]
        return data

    async def _decode(self, request: web.Request, schema: godecode.Schema) -> dict[str, Any]:
        body = await self._read_body(request)
        try:
            return godecode.decode(body, schema)
        except godecode.DecodeError as exc:
            raise bad_request(str(exc)) from None

    def _within_root(self, *parts: str) -> str:
        """``root/parts...``, refusing a component that is a symlink or not a directory.

        The ids were validated already (no separators, no ``..``), so the only way out of the root
        is a symlink: each existing component under the (resolved) root is ``lstat``-ed -- two
        syscalls per request instead of a full ``realpath``.
        """
        path = self.root
        for part in parts:
            path = os.path.join(path, part)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                break  # created by us as a plain directory
            except OSError as exc:
                raise bad_request(f"invalid path component {part[:40]!r}: {exc.strerror}") from None
            if not _stat.S_ISDIR(st.st_mode):
                raise bad_request("path escapes the root directory" if _stat.S_ISLNK(st.st_mode)
                                  else f"{part!r} is not a directory")  # fmt: skip
        return os.path.join(self.root, *parts)

    def _makedirs(self, path: str) -> None:
        if path not in self._dirs or not os.path.isdir(path):
            os.makedirs(path, exist_ok=True)
            if len(self._dirs) > 100_000:
                self._dirs.clear()
            self._dirs.add(path)

    async def post_message(self, path: str, msg: Message, on_success: Any = None) -> str:
        """Append one message (event-loop fast path, worker thread when the lock is busy) and notify streams.

        ``on_success()`` runs once the message is in the file -- also when the awaiting request was
        cancelled meanwhile (client gone), so the audit record of an appended message is never lost.
        """
        bus.prepare(msg)
        data = bus.serialize(msg)

        def appended() -> None:
            self.metrics.bus_appends += 1
            self.streams.bus_appended(path)
            if on_success is not None:
                on_success()

        if bus.append_nowait(path, data):
            appended()
            return msg.msg_id
        fut = asyncio.get_running_loop().run_in_executor(
            self.executor, functools.partial(bus.append_prepared, path, data))  # fmt: skip
        fut.add_done_callback(lambda f: appended() if not f.cancelled() and f.exception() is None else None)
        await asyncio.shield(fut)
        return msg.msg_id

    def audit_record(self, request: web.Request, rid: str, endpoint: str, payload: dict[str, Any], *,
                     project_id: str = "", task_id: str = "", run_id: str = "", message_id: str = "") -> None:  # fmt: skip
        """Queue one audit line (Go field order of ``formSubmissionAuditRecord``)."""
        record: dict[str, Any] = {
            "timestamp": format_rfc3339nano(time.time_ns()), "request_id": rid, "correlation_id": rid,
            "method": request.method, "path": request.path, "endpoint": endpoint,
        }  # fmt: skip
        peer = request.transport.get_extra_info("peername") if request.transport else None
        if peer:
            host, port = peer[0], peer[1]
            record["remote_addr"] = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        for key, value in (("project_id", project_id), ("task_id", task_id), ("run_id", run_id),
                           ("message_id", message_id)):  # fmt: skip
            if value.strip():
                record[key] = value.strip()
        if payload:
            record["payload"] = payload
        self.audit.submit(record)

    # ------------------------------------------------------------------ simple routes

    async def h_health(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        return _json(200, self.health_body, rid)

    async def h_version(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        return _json(200, self.version_body, rid)

    def h_healthz(self, method: str, rid: str) -> web.Response:
        if method != "GET":
            return _text(405, "method not allowed\n", rid)
        uptime = round(time.monotonic() - self._started_mono)
        return _json(200, f'{{"status":"ok","uptime":"{_go_duration(uptime)}"}}'.encode(), rid)

    def h_metrics(self, method: str, rid: str) -> web.Response:
        if method != "GET":
            return _text(405, "method not allowed\n", rid)
        return web.Response(status=200, body=self.metrics.render().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4", REQUEST_ID: rid})

    async def h_debug_runtime(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        tasks = len(asyncio.all_tasks())
        self.tasks_peak = max(self.tasks_peak, tasks)
        body = {"asyncio_tasks": tasks, "threads": threading.active_count(),
                "open_streams": self.streams.open_streams, "subscribers": self.streams.subscriber_count(),
                "pid": os.getpid(), "asyncio_tasks_peak": self.tasks_peak, "watches": self.watcher.counts(),
                "index_watching": self.index.watching}  # fmt: skip
        return _json(200, gojson.encode(body), rid)

    async def h_status(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        active = sorted(self.index.active_runs(), key=lambda e: (e.info.start_time_ns, e.run_id))  # type: ignore[union-attr]
        running = [{"project_id": e.info.project_id, "task_id": e.info.task_id, "run_id": e.info.run_id,
                    "agent": e.info.agent, "started": e.info.start_time} for e in active if e.info]  # fmt: skip
        body = {"active_runs_count": len(running), "uptime_seconds": time.monotonic() - self._started_mono,
                "configured_agents": self.cfg.configured_agents, "version": self.cfg.version,
                "running_tasks": running}  # fmt: skip
        return _json(200, gojson.encode(body), rid)

    # ------------------------------------------------------------------ tasks

    async def h_tasks(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method == "GET":
            self.index.refresh()
            tasks = sorted(self.index.iter_tasks(), key=lambda t: (t.project_id, t.task_id))
            body = '{"tasks":[' + ",".join(self._task_summary(t) for t in tasks) + "]}\n"
            return _json(200, body.encode(), rid)
        if method == "POST":
            self.submitting += 1
            try:
                return await self._task_create(request, rid)
            finally:
                self.submitting -= 1
        raise METHOD_NOT_ALLOWED

    def _task_summary(self, task: TaskEntry, with_runs: bool = False) -> str:
        """``TaskResponse`` JSON (``runs`` only for GET /tasks/{id}, omitted when empty)."""
        status = "all_finished" if task.done else "idle"
        last = 0
        running = failed = False
        task_runs = self.index.task_runs(task)
        for entry in task_runs:
            info = entry.info
            assert info is not None
            candidate = info.end_time_ns or info.start_time_ns
            last = max(last, candidate)
            if info.end_time_ns == 0:
                running = True
            elif info.status == runs.STATUS_FAILED:
                failed = True
        if running:
            status = "partial_failure" if failed else "running"
        if not last:
            last = task.task_md_mtime_ns
        out: dict[str, Any] = {"project_id": task.project_id, "task_id": task.task_id, "status": status,
                               "last_activity": format_rfc3339nano(last) if last else ZERO_TIME}  # fmt: skip
        text = gojson.marshal(out)
        if with_runs and task_runs:
            text = text[:-1] + ',"runs":' + join_runs_json(task_runs) + "}"
        return text

    async def _task_create(self, request: web.Request, rid: str) -> web.Response:
        req = await self._decode(request, godecode.TASK_CREATE)
        project_id = req.get("project_id", "")
        task_id = req.get("task_id", "")
        validate_identifier(project_id, "project_id")
        validate_identifier(task_id, "task_id")
        agent_type = req.get("agent_type", "")
        if not agent_type.strip():
            raise bad_request("agent_type is required")
        prompt = req.get("prompt", "")
        if not prompt.strip():
            raise bad_request("prompt is required")
        if "thread_parent" in req:
            raise bad_request("thread_parent is not supported by the reference conductor")
        if "process_import" in req:
            raise bad_request("process_import is not supported by the reference conductor")
        try:
            check_project_id(project_id)
        except InvalidId as exc:
            raise bad_request(str(exc)) from None
        agent = self.agents.select_agent(agent_type)
        if agent is None:
            raise bad_request(f"unknown agent_type {agent_type!r}: configured agents are "
                              f"{', '.join(self.cfg.configured_agents) or '(none)'}")  # fmt: skip
        project_root = req.get("project_root", "").strip()
        if project_root.startswith("~/"):
            project_root = os.path.join(os.path.expanduser("~"), project_root[2:])
        if project_root and not os.path.exists(project_root):
            raise bad_request(f"project_root does not exist: {project_root}")
        depends_on: list[str] = []
        if "depends_on" in req:
            seen: set[str] = set()
            for dep in req["depends_on"]:
                dep = dep.strip()
                if not dep or dep in seen:
                    continue
                validate_identifier(dep, "depends_on")
                if dep == task_id:
                    raise bad_request("task cannot depend on itself")
                seen.add(dep)
                depends_on.append(dep)
        attach_mode = req.get("attach_mode", "").strip() or "create"
        if attach_mode not in ("create", "attach", "resume"):
            raise bad_request(f'invalid attach_mode "{attach_mode}": must be create, attach, or resume')
        task_dir = self._within_root(project_id, task_id)
        try:
            # in the file helper process: the loop answers other requests meanwhile
            run_id = await self.files.prepare_task(task_dir, prompt, self.agents.run_ids.next())
        except OSError as exc:
            raise internal(f"create task directory: {exc.strerror or exc}") from None
        entry = self.index.add_run_dir(project_id, task_id, run_id, managed=self.cfg.start_tasks)
        payload: dict[str, Any] = {"project_id": project_id, "task_id": task_id, "agent_type": agent_type,
                                   "prompt": prompt, "attach_mode": attach_mode}  # fmt: skip
        if req.get("config"):
            payload["config"] = req["config"]
        if project_root:
            payload["project_root"] = project_root
        if depends_on:
            payload["depends_on"] = depends_on
        self.audit_record(request, rid, "POST /api/v1/tasks", payload, project_id=project_id, task_id=task_id,
                          run_id=run_id)  # fmt: skip
        if self.cfg.start_tasks and not self.agents.closing:
            self.agents.start(TaskLoop(project_id=project_id, task_id=task_id, task_dir=task_dir, prompt=prompt,
                                       agent=agent, environment=dict(req.get("config") or {}),
                                       working_dir=os.path.abspath(project_root or task_dir), first_run=entry,
                                       resume=attach_mode == "resume", depends_on=depends_on))  # fmt: skip
        body: dict[str, Any] = {"project_id": project_id, "task_id": task_id, "run_id": run_id, "status": "started"}
        if depends_on:
            body["depends_on"] = depends_on
        return _json(201, gojson.encode(body), rid)

    def _one_task(self, request: web.Request, task_id: str) -> TaskEntry:
        project_id = request.rel_url.query.get("project_id", "").strip()
        validate_identifier(task_id, "task_id")
        if project_id:
            validate_identifier(project_id, "project_id")
        found = self.index.find_task(task_id, project_id)
        if not found:
            raise not_found("task not found")
        if len(found) > 1:
            raise conflict("multiple tasks found", {"task_id": task_id})
        return found[0]

    async def h_task_by_id(self, request: web.Request, method: str, path: str, rid: str) -> web.Response:
        segments = [s for s in path[len("/api/v1/tasks/"):].split("/") if s]
        if len(segments) != 1:
            raise not_found("task not found")
        task_id = segments[0]
        if method == "GET":
            task = self._one_task(request, task_id)
            return _json(200, (self._task_summary(task, with_runs=True) + "\n").encode(), rid)
        if method == "DELETE":
            task = self._one_task(request, task_id)
            try:
                with open(os.path.join(task.path, runs.DONE), "wb"):
                    pass
            except OSError as exc:
                raise internal(f"write DONE: {exc.strerror or exc}") from None
            task.done = True
            stopped = self.agents.stop_task(task.project_id, task.task_id)
            self.audit_record(request, rid, "DELETE /api/v1/tasks/{task_id}", {"stopped_runs": stopped},
                              project_id=task.project_id, task_id=task.task_id)  # fmt: skip
            return _json(202, gojson.encode({"stopped_runs": stopped}), rid)
        raise METHOD_NOT_ALLOWED

    # ------------------------------------------------------------------ runs

    async def h_runs(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        entries = self.index.all_runs()
        if not entries:
            return _json(200, b'{"runs":null}\n', rid)
        return _json(200, ('{"runs":' + join_runs_json(entries) + "}\n").encode(), rid)

    async def h_run_by_id(self, request: web.Request, method: str, path: str, rid: str) -> web.StreamResponse:
        segments = [s for s in path[len("/api/v1/runs/"):].split("/") if s]
        if not segments:
            raise not_found("run not found")
        run_id = segments[0]
        if len(segments) == 1:
            if method != "GET":
                raise METHOD_NOT_ALLOWED
            entry = self._one_run(run_id, ambiguous=internal("get run"))
            return _json(200, (entry.response_json() + "\n").encode(), rid)
        if len(segments) == 2:
            action = segments[1]
            if action == "info":
                if method != "GET":
                    raise METHOD_NOT_ALLOWED
                entry = self._one_run(run_id, ambiguous=conflict("multiple runs found", {"run_id": run_id}))
                try:
                    with open(entry.info_path, "rb") as fh:
                        data = fh.read()
                except OSError:
                    raise not_found("run not found") from None
                return web.Response(status=200, body=data, headers={"Content-Type": "application/x-yaml",
                                                                     REQUEST_ID: rid})  # fmt: skip
            if action == "stop":
                if method != "POST":
                    raise METHOD_NOT_ALLOWED
                return self._run_stop(request, run_id, rid)
            if action == "stream":
                if method != "GET":
                    raise METHOD_NOT_ALLOWED
                return await self.streams.serve_run(request, run_id, rid)
        raise not_found("run not found")

    def _one_run(self, run_id: str, *, ambiguous: ApiError) -> RunEntry:
        entries = self.index.get_runs(run_id.strip())
        if not entries:
            raise not_found("run not found")
        if len(entries) > 1:
            raise ambiguous
        return entries[0]

    def _run_stop(self, request: web.Request, run_id: str, rid: str) -> web.Response:
        entry = self._one_run(run_id, ambiguous=internal("get run"))
        info = entry.info
        assert info is not None
        if info.end_time_ns:
            raise conflict("run already finished", {"run_id": run_id})
        if info.process_ownership.strip().lower() == "external":
            raise conflict("run is externally owned and cannot be stopped by conductor", {"run_id": run_id})
        live = self.agents.live.get(entry.run_id)
        pgid = live.pgid if live is not None else info.pgid
        if pgid <= 0:
            raise internal("stop run")
        try:
            os.killpg(pgid, 15)
        except (ProcessLookupError, PermissionError):
            raise internal("stop run") from None
        self.audit_record(request, rid, "POST /api/v1/runs/{run_id}/stop", {"pgid": pgid},
                          project_id=info.project_id, task_id=info.task_id, run_id=info.run_id)  # fmt: skip
        return _json(202, gojson.encode({"status": "stopping"}), rid)

    def h_run_file(self, request: web.Request, method: str, project_id: str, task_id: str, run_id: str,
                   rid: str) -> web.Response:  # fmt: skip
        """``GET /api/projects/{p}/tasks/{t}/runs/{r}/file?name=stdout|stderr|prompt|output.md``.

        The one route of the project-centric API the reference serves (the rest answers
        ``404 page not found``): ``{"content","modified","name","size_bytes"}`` of one run file,
        ``name`` defaulting to ``stdout``; 404 ``run not found`` unless the run (with its run-info)
        belongs to that project and task, 404 ``unknown file: X`` / ``file not found: X``.
        """
        validate_identifier(project_id, "project_id")
        validate_identifier(task_id, "task_id")
        entries = [e for e in self.index.get_runs(run_id.strip())
                   if e.project_id == project_id and e.task_id == task_id and e.info is not None]  # fmt: skip
        if not entries:
            raise not_found("run not found")
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        info = entries[0].info
        assert info is not None
        name = request.rel_url.query.get("name", "") or "stdout"
        paths = {"stdout": info.stdout_path, "stderr": info.stderr_path, "prompt": info.prompt_path,
                 "output.md": info.output_path or (os.path.join(os.path.dirname(info.stdout_path), "output.md")
                                                   if info.stdout_path else "")}  # fmt: skip
        if name not in paths:
            raise not_found(f"unknown file: {name}")
        file_path = paths[name]
        if not file_path:
            raise not_found(f"file path not set for {name}")
        real = os.path.realpath(file_path)
        if real != self.real_root and not real.startswith(self.real_root + os.sep):
            raise ApiError(403, "FORBIDDEN", "run file path is outside the root directory")
        try:
            with open(file_path, "rb") as fh:
                data = fh.read()
                mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
        except FileNotFoundError:
            raise not_found(f"file not found: {name}") from None
        except OSError:
            raise internal("read file") from None
        body = {"content": data.decode("utf-8", "replace"), "modified": format_rfc3339nano(mtime_ns),
                "name": name, "size_bytes": len(data)}  # fmt: skip
        return _json(200, gojson.encode(body), rid)

    # ------------------------------------------------------------------ messages

    def _bus_query(self, request: web.Request) -> tuple[str, str, str]:
        """(project_id, task_id, bus path) of a message list/stream query; 400 for a bad id."""
        query = request.rel_url.query
        project_id = query.get("project_id", "").strip()
        if not project_id:
            raise bad_request("project_id is required")
        validate_identifier(project_id, "project_id")
        task_id = query.get("task_id", "").strip()
        if task_id:
            validate_identifier(task_id, "task_id")
        return project_id, task_id, self._bus_path(project_id, task_id)

    def _bus_path(self, project_id: str, task_id: str) -> str:
        if task_id:
            return os.path.join(self._within_root(project_id, task_id), bus.TASK_BUS)
        return os.path.join(self._within_root(project_id), bus.PROJECT_BUS)

    async def h_messages(self, request: web.Request, method: str, rid: str) -> web.Response:
        if method == "POST":
            return await self._message_post(request, rid)
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        project_id, task_id, path = self._bus_query(request)
        after = request.rel_url.query.get("after", "").strip()
        try:
            messages = await self.streams.read_bus(path)
            if after:
                messages = bus.after(messages, after)
        except bus.MessageNotFound:
            raise not_found("message id not found") from None
        except (bus.BusError, OSError):
            raise internal("read message bus") from None
        body = '{"messages":[' + ",".join(gojson.marshal(message_response(m)) for m in messages) + "]}\n"
        return _json(200, body.encode("utf-8", "replace"), rid)

    async def _message_post(self, request: web.Request, rid: str) -> web.Response:
        req = await self._decode(request, godecode.POST_MESSAGE)
        project_id = req.get("project_id", "")
        validate_identifier(project_id, "project_id")
        body = req.get("body", "")
        if not body.strip():
            raise bad_request("body is required")
        task_id = req.get("task_id", "").strip()
        if task_id:
            validate_identifier(task_id, "task_id")
        path = self._bus_path(project_id, task_id)
        try:
            self._makedirs(os.path.dirname(path))
        except OSError as exc:
            raise internal(f"create message bus directory: {exc.strerror or exc}") from None
        msg = Message(type=req.get("type", "").strip() or "USER", project_id=project_id, task_id=task_id,
                      run_id=req.get("run_id", "").strip(), body=body)  # fmt: skip
        payload: dict[str, Any] = {"project_id": project_id}
        if task_id:
            payload["task_id"] = task_id
        if req.get("run_id"):
            payload["run_id"] = req["run_id"]
        if req.get("type"):
            payload["type"] = req["type"]
        payload["body"] = body

        def audit() -> None:
            self.audit_record(request, rid, "POST /api/v1/messages", payload, project_id=project_id,
                              task_id=task_id, message_id=msg.msg_id)  # fmt: skip

        try:
            msg_id = await self.post_message(path, msg, audit)
        except bus.BusError as exc:
            self.log.event("ERROR", "api", "request_error", request_id=rid, code="INTERNAL",
                           message="append message", error=str(exc))  # fmt: skip
            raise internal("append message") from None
        return _json(201, gojson.encode({"msg_id": msg_id, "timestamp": format_rfc3339nano(msg.ts_ns)}), rid)

    # ------------------------------------------------------------------ streams

    async def h_all_runs_stream(self, request: web.Request, method: str, rid: str) -> web.StreamResponse:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        return await self.streams.serve_all(request, rid)

    async def h_message_stream(self, request: web.Request, method: str, rid: str) -> web.StreamResponse:
        if method != "GET":
            raise METHOD_NOT_ALLOWED
        project_id, task_id, path = self._bus_query(request)
        return await self.streams.serve_messages(request, path, rid)


def message_response(m: Message) -> dict[str, Any]:
    """``MessageResponse`` of GET /api/v1/messages (Go field names for parents/links, as conductor-loop 0.76 answers)."""
    out: dict[str, Any] = {"msg_id": m.msg_id, "timestamp": format_rfc3339nano(m.ts_ns) if m.ts_ns else ZERO_TIME,
                           "type": m.type, "project_id": m.project_id}  # fmt: skip
    if m.task_id:
        out["task_id"] = m.task_id
    if m.run_id:
        out["run_id"] = m.run_id
    if m.issue_id:
        out["issue_id"] = m.issue_id
    if m.parents:
        out["parents"] = [{"MsgID": p.msg_id, "Kind": p.kind, "Meta": dict(sorted(p.meta.items())) or None}
                          for p in m.parents]  # fmt: skip
    if m.links:
        out["links"] = [{"URL": link.url, "Label": link.label, "Kind": link.kind} for link in m.links]
    if m.meta:
        out["meta"] = dict(sorted(m.meta.items()))
    out["body"] = m.body
    return out


def _go_duration(seconds: int) -> str:
    """Go's ``time.Duration.String()`` for whole seconds (``0s``, ``5s``, ``1m5s``, ``2h0m0s``)."""
    if seconds <= 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h{m}m{s}s"
    if m:
        return f"{m}m{s}s"
    return f"{s}s"


def create_app(config: ReferenceConfig, *, log: ServerLog | None = None) -> web.Application:
    """The aiohttp application of one reference conductor (its state is ``app[CONDUCTOR_KEY]``)."""
    server = ConductorServer(config, log=log)
    app = web.Application(client_max_size=godecode.MAX_BODY * 64, handler_args={"access_log": None})
    app[CONDUCTOR_KEY] = server
    app.router.add_route("*", "/{tail:.*}", server.dispatch)
    app.on_response_prepare.append(_drop_server_header)
    app.on_startup.append(server.on_startup)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    return app


def server_of(app: web.Application) -> ConductorServer:
    """The :class:`ConductorServer` behind an application made by :func:`create_app`."""
    return app[CONDUCTOR_KEY]  # type: ignore[return-value]
