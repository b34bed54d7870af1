"""Reference conductor SSE: exact bytes and headers, resume, limits, bursts, message and all-runs streams."""

from __future__ import annotations

import itertools
import json
import os
import queue
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest

from conductor_perf.formats import bus, runs
from conductor_perf.formats.sse import Event, SSEParser
from conductor_perf.reference.config import ReferenceConfig
from conductor_perf.reference.testing import ServerThread

_ids = itertools.count(1)
TIMEOUT = 20.0


class RawSSE:
    """A raw-socket SSE client: exact header bytes, chunked decoding, parsed events on a queue."""

    def __init__(self, port: int, path: str, headers: dict[str, str] | None = None) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n{extra}\r\n".encode())
        self.head = b""
        self.raw_body = b""
        self.events: queue.Queue[Event | None] = queue.Queue()
        self.headers_at = 0.0
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        self.headers_at = time.monotonic()
        self.head, _, rest = buf.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1]) if self.head else 0
        self._rest = rest
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def header(self, name: str) -> str | None:
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.decode().partition(": ")
            if k.lower() == name.lower():
                return v
        return None

    def _read(self) -> None:
        parser = SSEParser()
        buf = self._rest
        try:
            while True:
                while True:  # decode as many chunks as buffered
                    line_end = buf.find(b"\r\n")
                    if line_end < 0:
                        break
                    size = int(buf[:line_end].split(b";")[0], 16)
                    if len(buf) < line_end + 2 + size + 2:
                        break
                    data = buf[line_end + 2:line_end + 2 + size]
                    buf = buf[line_end + 2 + size + 2:]
                    if size == 0:
                        self.events.put(None)
                        return
                    self.raw_body += data
                    for ev in parser.feed(data):
                        self.events.put(ev)
                chunk = self.sock.recv(65536)
                if not chunk:
                    self.events.put(None)
                    return
                buf += chunk
        except OSError:
            self.events.put(None)

    def next(self, timeout: float = TIMEOUT, skip_heartbeats: bool = True) -> Event:
        deadline = time.monotonic() + timeout
        while True:
            ev = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            if ev is None:
                raise EOFError("stream ended")
            if skip_heartbeats and ev.event == "heartbeat":
                continue
            return ev

    def take(self, n: int, timeout: float = TIMEOUT) -> list[Event]:
        return [self.next(timeout) for _ in range(n)]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("sse") / "root"


@pytest.fixture(scope="module")
def srv(root: Path):
    cfg = ReferenceConfig(root=root, restart_delay_s=0.05, heartbeat_interval_s=30, max_clients_per_run=3,
                          discovery_interval_ms=100, log_file=root.parent / "server.log")  # fmt: skip
    with ServerThread(cfg) as s:
        yield s


def synthetic_run(root: Path, status: str = "running") -> runs.RunInfo:
    n = next(_ids)
    info = runs.RunInfo(run_id=f"20260101-0000000000-1-{n}", project_id="proj-s", task_id=f"task-{n}",
                        agent="codex", start_time_ns=time.time_ns(), status=status)  # fmt: skip
    runs.create_run(root, info)
    return info


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as fh:
        fh.write(data)


def log_data(info: runs.RunInfo, stream: str, line: str) -> dict:
    return {"run_id": info.run_id, "project_id": info.project_id, "task_id": info.task_id, "stream": stream,
            "line": line}  # fmt: skip


def strip_ts(ev: Event) -> dict:
    data = json.loads(ev.data)
    assert data.pop("timestamp").endswith("Z")
    return data


def test_run_stream_headers_initial_status_and_log_ids(srv: ServerThread, root: Path) -> None:
    info = synthetic_run(root)
    started = time.monotonic()
    s = RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream")
    try:
        assert s.headers_at - started < 20  # heartbeat is 30 s: headers are not withheld until it
        assert s.head.startswith(b"HTTP/1.1 200 OK\r\n")
        for name, value in (("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache"),
                            ("Connection", "keep-alive"), ("X-Accel-Buffering", "no"),
                            ("Transfer-Encoding", "chunked")):  # fmt: skip
            assert s.header(name) == value
        assert s.header("X-Request-Id")
        first = s.next()
        status = (f'{{"run_id":"{info.run_id}","project_id":"proj-s","task_id":"{info.task_id}",'
                  '"status":"running","exit_code":-1}')  # fmt: skip
        assert s.raw_body == f"event: status\ndata: {status}\n\n".encode()
        assert (first.event, first.id) == ("status", None)
        run_dir = runs.run_dir(root, info.project_id, info.task_id, info.run_id)
        append(run_dir / "agent-stdout.txt", b"one\ntwo\r\nthr")
        evs = s.take(2)
        assert [(e.event, e.id) for e in evs] == [("log", "s=1;e=0"), ("log", "s=2;e=0")]
        assert [strip_ts(e) for e in evs] == [log_data(info, "stdout", "one"), log_data(info, "stdout", "two")]
        assert b'data: {"run_id":"' + info.run_id.encode() + b'","project_id":"proj-s"' in s.raw_body
        append(run_dir / "agent-stdout.txt", b"ee\n")
        third = s.next()  # stdout and stderr are separate files: no order between them unless we wait
        assert (third.id, strip_ts(third)["line"]) == ("s=3;e=0", "three")
        append(run_dir / "agent-stderr.txt", b"oops\n")
        err = s.next()
        assert (err.id, strip_ts(err)) == ("s=3;e=1", log_data(info, "stderr", "oops"))
        second = RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream")
        try:
            assert json.loads(second.next().data)["status"] == "running"  # every subscriber gets the status
        finally:
            second.close()
        resume = RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream", {"Last-Event-ID": "s=1;e=0"})
        try:
            replay = resume.take(3)
            assert [(e.event, e.id) for e in replay] == [("log", "s=2;e=0"), ("log", "s=3;e=0"), ("log", "s=3;e=1")]
            assert resume.next().event == "status"
        finally:
            resume.close()
        info.status, info.exit_code, info.end_time_ns = "completed", 0, time.time_ns()
        append(run_dir / "agent-stdout.txt", b"last\n")
        runs.write_run_info(run_dir / "run-info.yaml", info)
        last, done = s.take(2)
        assert strip_ts(last)["line"] == "last"
        assert json.loads(done.data) == {"run_id": info.run_id, "project_id": "proj-s", "task_id": info.task_id,
                                         "status": "completed", "exit_code": 0}  # fmt: skip
    finally:
        s.close()


def test_unknown_run_is_404_json_with_sse_headers(srv: ServerThread) -> None:
    s = RawSSE(srv.running.port, "/api/v1/runs/no-such-run/stream")
    try:
        assert s.status == 404
        assert s.header("Content-Type") == "application/json"
        assert s.header("Cache-Control") == "no-cache"
    finally:
        s.close()
    assert httpx.get(srv.url + "api/v1/runs/no-such-run/stream", timeout=10).json() == {
        "error": {"code": "NOT_FOUND", "message": "run not found"}}


def test_client_limit_per_run_answers_429(srv: ServerThread, root: Path) -> None:
    info = synthetic_run(root)
    streams = [RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream") for _ in range(3)]
    try:
        for s in streams:
            assert s.next().event == "status"
        resp = httpx.get(srv.url + f"api/v1/runs/{info.run_id}/stream", timeout=10)
        assert resp.status_code == 429
        assert resp.text == '{"error":{"code":"TOO_MANY_REQUESTS","message":"max clients reached for run"}}\n'
    finally:
        for s in streams:
            s.close()
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:  # closed clients free their slots
        with httpx.stream("GET", srv.url + f"api/v1/runs/{info.run_id}/stream", timeout=10) as resp:
            if resp.status_code == 200:
                break
        time.sleep(0.05)
    else:
        raise AssertionError("slots were not released")


def test_burst_of_2000_lines_is_delivered_completely(srv: ServerThread, root: Path) -> None:
    info = synthetic_run(root)
    s = RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream")
    try:
        assert s.next().event == "status"
        run_dir = runs.run_dir(root, info.project_id, info.task_id, info.run_id)
        append(run_dir / "agent-stdout.txt", b"".join(b"line %d\n" % i for i in range(1, 2001)))
        evs = s.take(2000)
        assert [e.id for e in evs] == [f"s={i};e=0" for i in range(1, 2001)]
        assert json.loads(evs[-1].data)["line"] == "line 2000"
    finally:
        s.close()


def test_heartbeat_event(tmp_path: Path) -> None:
    cfg = ReferenceConfig(root=tmp_path / "root", heartbeat_interval_s=0.2, log_file=tmp_path / "log")
    with ServerThread(cfg) as srv:
        s = RawSSE(srv.running.port, "/api/v1/messages/stream?project_id=hb")
        try:
            ev = s.next(skip_heartbeats=False)
            assert (ev.event, ev.data, ev.id) == ("heartbeat", "{}", None)
            assert s.raw_body.startswith(b"event: heartbeat\ndata: {}\n\n")
        finally:
            s.close()


def post(srv: ServerThread, project: str, body: str, **extra: str) -> str:
    resp = httpx.post(srv.url + "api/v1/messages", json={"project_id": project, "body": body, **extra}, timeout=10)
    assert resp.status_code == 201
    return resp.json()["msg_id"]


def test_message_stream_hydration_resume_and_live(srv: ServerThread, root: Path) -> None:
    project = f"msgs-{os.getpid()}"
    ids = [post(srv, project, f"m{i}", task_id="t") for i in range(25)]
    path = f"/api/v1/messages/stream?project_id={project}&task_id=t"
    s = RawSSE(srv.running.port, path)
    try:
        hydrated = s.take(20)
        assert [e.id for e in hydrated] == ids[5:]
        assert hydrated[0].event == "message"
        first = json.loads(hydrated[0].data)
        assert list(first) == ["msg_id", "timestamp", "type", "project_id", "task_id", "body"]
        assert first["body"] == "m5\n" and json.loads(hydrated[-1].data)["body"] == "m24"
        live_id = post(srv, project, "live <b>", task_id="t")
        live = s.next()
        assert live.id == live_id and json.loads(live.data)["body"] == "live <b>"
        assert "\\u003cb\\u003e" in live.data
        external = bus.Message(type="FACT", project_id=project, task_id="t", body="from another process",
                               parents=[bus.Parent("MSG-parent", "k")])  # fmt: skip
        bus.append(root / project / "t" / bus.TASK_BUS, external)
        ext = s.next()
        assert ext.id == external.msg_id and json.loads(ext.data)["parents"] == ["MSG-parent"]
    finally:
        s.close()
    resume = RawSSE(srv.running.port, path, {"Last-Event-ID": ids[2]})
    try:
        assert [e.id for e in resume.take(24)] == ids[3:] + [live_id, external.msg_id]
    finally:
        resume.close()
    unknown = RawSSE(srv.running.port, path, {"Last-Event-ID": "MSG-unknown"})
    try:
        assert len(unknown.take(20)) == 20
    finally:
        unknown.close()
    empty = RawSSE(srv.running.port, "/api/v1/messages/stream?project_id=nothing-here")
    try:
        assert empty.status == 200  # headers are sent although there is nothing to hydrate
        assert httpx.get(srv.url + "api/v1/messages/stream", timeout=10).status_code == 400
    finally:
        empty.close()


def test_all_runs_stream_sees_first_lines_of_new_runs(srv: ServerThread, root: Path) -> None:
    s = RawSSE(srv.running.port, "/api/v1/runs/stream/all")
    try:
        assert s.status == 200
        task = f"task-20260101-000000-all{os.getpid()}"
        resp = httpx.post(srv.url + "api/v1/tasks", timeout=10, json={
            "project_id": "proj-all", "task_id": task, "agent_type": "codex", "prompt": "x",
            "config": {"STUB_STDOUT_TEXT": "first|second|third"}})  # fmt: skip
        run_id = resp.json()["run_id"]
        lines: list[str] = []
        stderr: list[str] = []
        statuses: list[str] = []
        deadline = time.monotonic() + TIMEOUT
        while "completed" not in statuses and time.monotonic() < deadline:
            ev = s.next()
            data = json.loads(ev.data)
            if data["run_id"] != run_id:
                continue
            if ev.event == "log":
                (lines if data["stream"] == "stdout" else stderr).append(data["line"])
            elif ev.event == "status":
                statuses.append(data["status"])
        assert lines == ["first", "second", "third"]
        assert [line.split(":")[0] for line in stderr] == ["conductor-perf stub env", "conductor-perf stub done"]
        assert statuses[-1] == "completed"
        external = synthetic_run(root)
        run_dir = runs.run_dir(root, external.project_id, external.task_id, external.run_id)
        append(run_dir / "agent-stdout.txt", b"early\n")
        seen = []
        while not seen:
            ev = s.next()
            data = json.loads(ev.data)
            if data["run_id"] == external.run_id and ev.event == "log":
                seen.append(data["line"])
        assert seen == ["early"]
    finally:
        s.close()


def test_run_stream_of_a_stub_agent_ends_with_completion_after_last_line(srv: ServerThread) -> None:
    task = f"task-20260101-000000-live{os.getpid()}"
    resp = httpx.post(srv.url + "api/v1/tasks", timeout=10, json={
        "project_id": "proj-live", "task_id": task, "agent_type": "codex", "prompt": "x",
        "config": {"STUB_START_DELAY_MS": "300", "STUB_STDOUT_LINES": "5", "STUB_LINE_DELAY_MS": "20"}})  # fmt: skip
    run_id = resp.json()["run_id"]
    deadline = time.monotonic() + TIMEOUT
    while httpx.get(srv.url + f"api/v1/runs/{run_id}", timeout=10).status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    # a cursor behind stdout replays the lines the agent wrote before the stream was open (on a loaded
    # machine the subscription can come after the stub's 300 ms start delay): no race with the agent
    s = RawSSE(srv.running.port, f"/api/v1/runs/{run_id}/stream", headers={"Last-Event-ID": "s=0;e=999999"})
    try:
        evs = []
        while not evs or evs[-1].event != "status" or json.loads(evs[-1].data)["status"] == "running":
            evs.append(s.next())
        logs = [json.loads(e.data)["line"] for e in evs if e.event == "log" and json.loads(e.data)["stream"] == "stdout"]
        assert [line.split()[:2] for line in logs] == [["line", str(i)] for i in range(1, 6)]
        assert json.loads(evs[-1].data)["status"] == "completed"  # the completion comes after the last line
    finally:
        s.close()


def test_a_stalled_subscriber_is_disconnected_not_skipped(tmp_path: Path) -> None:
    cfg = ReferenceConfig(root=tmp_path / "root", max_queued_events=50, log_file=tmp_path / "log")
    with ServerThread(cfg) as srv:
        info = synthetic_run(tmp_path / "root")
        run_dir = runs.run_dir(tmp_path / "root", info.project_id, info.task_id, info.run_id)
        stalled = socket.create_connection(("127.0.0.1", srv.running.port), timeout=TIMEOUT)
        stalled.sendall(f"GET /api/v1/runs/{info.run_id}/stream HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        healthy = RawSSE(srv.running.port, f"/api/v1/runs/{info.run_id}/stream")
        try:
            assert healthy.next().event == "status"
            line = b"x" * 200 + b"\n"
            total = 0
            deadline = time.monotonic() + TIMEOUT
            while httpx.get(srv.url + "api/v1/debug/runtime", timeout=10).json()["subscribers"] > 1:
                assert time.monotonic() < deadline, "the stalled subscriber was never dropped"
                append(run_dir / "agent-stdout.txt", line * 500)
                total += 500
                for _ in range(500):  # the healthy client keeps up and misses nothing
                    healthy.next()
            # what the stalled client did receive is a gap-free prefix, so it can resume from its last id
            stalled.settimeout(5)
            data = b""
            while True:
                try:
                    chunk = stalled.recv(1 << 20)
                except OSError:
                    break
                if not chunk:
                    break
                data += chunk
            ids = [int(part.split(b";")[0]) for part in data.split(b"id: s=")[1:]]
            assert ids == list(range(1, len(ids) + 1)) and len(ids) < total
        finally:
            healthy.close()
            stalled.close()
