"""Reliability checks: nothing lost under contention, no torn run-info, SSE delivery guarantees.

* :func:`bus_contention_file` / :func:`bus_contention_http`: many writers in several processes
  append to ONE task bus for a bounded time (file level with conductor-loop's own protocol, or
  through ``POST /api/v1/messages``); afterwards every message must be present exactly once, none
  torn, and the file must parse with the real reader's rules.
* :func:`run_info_atomicity`: writers update one ``run-info.yaml`` under the update lock while
  readers read it without a lock (as the real readers do) until at least ``min_reads`` reads; a
  read that does not parse or mixes two versions (:func:`check_run_info_text`) is torn. Updates
  count up a version number, so an update lost to a race is counted too.
* :func:`sse_burst`: a burst of lines appended at once to a running run's ``agent-stdout.txt``;
  every subscriber must receive every line in order; optional deliberately slow subscribers (they
  read nothing while the burst is delivered) must not delay the others.
* :func:`sse_resume_across_restart`: an SSE client on a run stream, the server killed and started
  again on the same runs root while lines keep being appended: the client resumes with
  ``Last-Event-ID`` and must miss no line.

All of them are bounded in time and use loopback only.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..formats import bus, runs
from ..formats.yamlio import parse_flat
from ..measure import load
from ..measure.histogram import LatencyHistogram
from ..measure.sse import SSEClient, SSEError, StreamEnded
from ..measure.workers import WorkerContext, WorkerPool, WorkerReport, merge_reports
from ..target import Target, TargetError, http_json
from ..wording import plural
from . import api_bench, bus_bench

PROJECT = "perf-reliability"

# ------------------------------------------------------------------------------ bus integrity


@dataclass
class BusContention:
    """Integrity figures of one contention run (``written`` = appended, or acknowledged over HTTP)."""

    driver: str
    writers: int
    processes: int
    duration_s: float
    written: int
    found: int
    lost: int
    duplicated: int
    torn: int
    foreign: int = 0
    rate: float = 0.0
    errors: int = 0
    parsed: int = 0
    api_count: int | None = None
    path: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or torn, and the API (when asked) saw what the file holds."""
        return (self.lost == 0 and self.duplicated == 0 and self.torn == 0
                and (self.api_count is None or self.api_count == self.parsed))  # fmt: skip

    def message(self) -> str:
        """One line with every count."""
        api = "" if self.api_count is None else f", GET /api/v1/messages returned {self.api_count}"
        return (f"bus contention ({self.driver}, {plural(self.writers, 'writer')} in {plural(self.processes, 'process')}, "
                f"{self.duration_s:g} s): written {self.written}, found {self.found}, lost {self.lost}, "
                f"duplicated {self.duplicated}, torn {self.torn}; the file parses to {plural(self.parsed, 'message')}{api}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


# one scanner of benchmark buses serves the throughput and the contention checks
count_bodies = bus_bench.count_bodies
scan_bus = bus_bench.scan_counts


def bus_contention_file(
    path: str | os.PathLike[str], *, writers: int = 16, duration: float = 5.0, max_messages_per_writer: int = 5_000,
    on_progress: Callable[[float, int, float], None] | None = None,
) -> BusContention:  # fmt: skip
    """``writers`` OS processes append to one bus file for ``duration`` s with conductor-loop's
    protocol (``O_APPEND`` + exclusive ``flock``); then every message is checked.

    Each writer stops early after ``max_messages_per_writer`` messages, which bounds the file
    (and the time the check takes) on a fast disk.
    """
    if writers < 1:
        raise ValueError("writers must be >= 1")
    result = bus_bench.write_throughput(path, writers=writers, duration=duration, mode="processes", check=False,
                                        max_messages_per_writer=max_messages_per_writer,
                                        on_progress=on_progress)  # fmt: skip
    seen, torn, foreign, parsed = scan_bus(path)
    lost = sum(1 for w, n in enumerate(result.per_writer) for i in range(n) if (w, i) not in seen)
    return BusContention(driver="file", writers=writers, processes=writers, duration_s=duration,
                         written=result.messages, found=sum(seen.values()), lost=lost,
                         duplicated=sum(c - 1 for c in seen.values() if c > 1), torn=torn, foreign=foreign,
                         rate=result.rate, parsed=parsed, path=os.fspath(path))  # fmt: skip


def bus_contention_http(
    target: Target, *, writers: int = 16, processes: int = 4, duration: float = 5.0,
    on_progress: Callable[[float, int, float], None] | None = None,
) -> BusContention:  # fmt: skip
    """``writers`` clients in ``processes`` OS processes POST /api/v1/messages to one task bus.

    Every acknowledged (201) message must then come back exactly once from
    ``GET /api/v1/messages`` and, when the runs root is known, from the bus file itself. Request
    indices are unique across processes; a request that failed (no 201) but was written anyway is
    not counted as lost or duplicated.
    """
    task_id = api_bench.new_message_task()
    result = load.run_closed(target.url, api_bench.message_factory(target, task_id), workers=writers,
                             processes=processes, duration=duration, on_progress=on_progress)  # fmt: skip
    status, body = http_json(target.endpoint(f"/api/v1/messages?project_id={api_bench.MESSAGE_PROJECT}"
                                             f"&task_id={task_id}"), timeout=30, headers=target.auth_headers())  # fmt: skip
    if status != 200 or not isinstance(body, dict):
        raise TargetError(f"GET /api/v1/messages answered HTTP {status} after the contention run")
    api_msgs = body.get("messages") or []
    seen, garbled, _ = count_bodies(str(m.get("body", "")) for m in api_msgs)
    notes: list[str] = []
    parsed = len(api_msgs)
    path = ""
    torn = garbled
    if target.root is not None:
        bus_path = bus.task_bus_path(target.root, api_bench.MESSAGE_PROJECT, task_id)
        path = str(bus_path)
        file_seen, file_torn, _, parsed = scan_bus(bus_path)
        torn = max(torn, file_torn)
        if file_seen != seen:
            notes.append(f"the file holds {sum(file_seen.values())} benchmark messages, the API returned "
                         f"{sum(seen.values())}")  # fmt: skip
            seen = file_seen
    else:
        notes.append("no runs root: checked through GET /api/v1/messages only")
    distinct = len(seen)
    return BusContention(
        driver="http", writers=writers, processes=processes, duration_s=duration, written=result.ok,
        found=distinct, lost=max(0, result.ok - distinct), duplicated=sum(c - 1 for c in seen.values() if c > 1),
        torn=torn, rate=result.rate, errors=result.errors, parsed=parsed, api_count=len(api_msgs), path=path,
        notes=notes,
    )  # fmt: skip


# ------------------------------------------------------------------------------ run-info atomicity

_CWD_UNIT = 250  # the cwd repeats the 8-digit version this often: a ~2 KB file, bigger than a small write
_REQUIRED_KEYS = ("version", "run_id", "project_id", "task_id", "agent", "pid", "pgid", "start_time",
                  "end_time", "exit_code", "status", "cwd", "commandline", "agent_version")  # fmt: skip


def _cwd_for(version: int) -> str:
    return "/" + f"{version:08d}" * _CWD_UNIT


def stamp_version(info: runs.RunInfo, version: int) -> None:
    """Write ``version`` into every field the checker compares (pid, pgid, cwd, commandline)."""
    info.pid = info.pgid = version
    info.cwd = _cwd_for(version)
    info.commandline = f"perf-write {version}"


def check_run_info_text(text: str) -> str:
    """``""`` when ``text`` is one whole version of the test's run-info, else why it is not.

    ``unparsable: ...`` when it is not a YAML mapping with every key; ``torn: ...`` when it parses
    but is cut short or mixes versions (pid, pgid, cwd and commandline must name the same one).
    """
    try:
        data = parse_flat(text)
    except ValueError as exc:
        return f"unparsable: {exc}"
    missing = [k for k in _REQUIRED_KEYS if k not in data]
    if missing:
        return f"unparsable: missing {', '.join(missing)}"
    if not text.endswith("\n") or not text.rstrip("\n").rsplit("\n", 1)[-1].startswith("agent_version:"):
        return "torn: the file does not end with its last key"
    try:
        info = runs.RunInfo.from_yaml(text)
    except runs.StorageError as exc:
        return f"unparsable: {exc}"
    version = info.pid
    if info.pgid != version or info.commandline != f"perf-write {version}" or info.cwd != _cwd_for(version):
        return f"torn: fields of different versions (pid {info.pid}, pgid {info.pgid}, {info.commandline!r})"
    if info.agent != "codex" or info.status not in (runs.STATUS_RUNNING, runs.STATUS_COMPLETED):
        return f"torn: agent {info.agent!r}, status {info.status!r}"
    return ""


@dataclass
class RunInfoAtomicity:
    """Concurrent run-info figures."""

    readers: int
    writers: int
    reads: int
    writes: int
    torn: int
    unparsable: int
    lost_updates: int
    duration_s: float
    min_reads: int
    samples: list[str] = field(default_factory=list)

    @property
    def bad_reads(self) -> int:
        """Torn plus unparsable reads."""
        return self.torn + self.unparsable

    def message(self) -> str:
        """One line with every count."""
        return (f"run-info atomicity: {plural(self.reads, 'read')} by {plural(self.readers, 'reader')}, {plural(self.writes, 'update')} by "
                f"{plural(self.writers, 'writer')} in {self.duration_s:.1f} s: torn {self.torn}, unparsable "
                f"{self.unparsable}, lost updates {self.lost_updates}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


@dataclass(frozen=True)
class _AtomicShare:
    path: str
    goal: int
    max_duration: float


def _atomic_reader(share: _AtomicShare, ctx: WorkerContext) -> WorkerReport:
    """Read the run-info without a lock in batches of 64 until the readers' shared goal or the deadline."""
    reads = torn = unparsable = 0
    samples: list[str] = []
    deadline = ctx.wait_start() + share.max_duration
    while not ctx.stop_requested() and time.time() < deadline:
        for _ in range(64):
            try:
                with open(share.path, encoding="utf-8") as fh:
                    text = fh.read()
            except (OSError, UnicodeDecodeError) as exc:
                text = f"<read failed: {exc}>"
            reason = check_run_info_text(text)
            reads += 1
            if reason:
                if reason.startswith("torn"):
                    torn += 1
                else:
                    unparsable += 1
                if len(samples) < 3:
                    samples.append(f"{reason} ({len(text)} bytes)")
        ctx.add("reads", 64)
        if ctx.total("reads") >= share.goal:
            ctx.request_stop()
    ctx.request_stop()  # a reader ends only at the goal or the deadline: the writers stop too
    return WorkerReport(ctx.name, counts={"reads": reads, "torn": torn, "unparsable": unparsable}, samples=samples)


def _atomic_writer(share: _AtomicShare, ctx: WorkerContext) -> WorkerReport:
    """Update the run-info under conductor-loop's lock, one version up each time, until told to stop."""
    writes = 0

    def bump(info: runs.RunInfo) -> None:
        stamp_version(info, info.pid + 1)
        info.status = runs.STATUS_COMPLETED if info.status == runs.STATUS_RUNNING else runs.STATUS_RUNNING

    deadline = ctx.wait_start() + share.max_duration
    while not ctx.stop_requested() and time.time() < deadline:
        runs.update_run_info(share.path, bump, fsync=False)
        writes += 1
    return WorkerReport(ctx.name, counts={"writes": writes})


def _atomic_worker(share: _AtomicShare, ctx: WorkerContext) -> WorkerReport:
    return (_atomic_reader if ctx.name.startswith("run-info-reader") else _atomic_writer)(share, ctx)


def run_info_atomicity(
    root: str | os.PathLike[str], *, readers: int = 4, writers: int = 2, min_reads: int = 100_000,
    max_duration: float = 60.0,
) -> RunInfoAtomicity:  # fmt: skip
    """Readers (processes) read one run-info without a lock while writers update it under the lock.

    Runs until the readers together made ``min_reads`` reads, or ``max_duration`` s passed.
    Writers use conductor-loop's update protocol (sidecar ``flock``, temp file, rename); each
    update raises the version by one, so ``lost_updates`` = updates made - versions gained. A
    reader or writer that fails, dies or hangs fails the check with a
    :class:`~conductor_perf.measure.workers.WorkerError` naming it.
    """
    if readers < 1 or writers < 1:
        raise ValueError("readers and writers must be >= 1")
    info = runs.RunInfo(run_id=runs.RunIdGenerator().next(), project_id=PROJECT, agent="codex", version=0,
                        task_id=runs.canonical_task_id(f"atomic-{os.getpid()}-{time.time_ns() % 10**6}"),
                        start_time_ns=time.time_ns(), status=runs.STATUS_RUNNING)  # fmt: skip
    stamp_version(info, 0)
    path = str(runs.create_run(root, info) / runs.RUN_INFO)
    names = [f"run-info-reader-{i}" for i in range(readers)] + [f"run-info-writer-{i}" for i in range(writers)]
    share = _AtomicShare(path, min_reads, max_duration)
    with WorkerPool(_atomic_worker, [share] * len(names), name="run-info atomicity", names=names,
                    counters=("reads",)) as pool:  # fmt: skip
        started = pool.start()
        merged = merge_reports(pool.collect(max_duration + 30), max_samples=3)
    duration = time.time() - started
    final = runs.read_run_info(path).pid
    writes = merged.count("writes")
    return RunInfoAtomicity(readers=readers, writers=writers, reads=merged.count("reads"), writes=writes,
                            torn=merged.count("torn"), unparsable=merged.count("unparsable"),
                            lost_updates=writes - final, duration_s=duration, min_reads=min_reads,
                            samples=merged.samples)  # fmt: skip


# ------------------------------------------------------------------------------ SSE delivery


def synthetic_running_run(root: str | os.PathLike[str], slug: str) -> runs.RunInfo:
    """A run with status ``running`` and pid 0 (never reconciled away) whose logs the test appends to."""
    task_id = runs.canonical_task_id(slug)
    runs.write_task_md(runs.task_dir(root, PROJECT, task_id), f"reliability check: {slug}")
    info = runs.RunInfo(run_id=runs.RunIdGenerator().next(), project_id=PROJECT, task_id=task_id, agent="codex",
                        start_time_ns=time.time_ns(), status=runs.STATUS_RUNNING, pid=0, pgid=0)  # fmt: skip
    run_dir = runs.create_run(root, info)
    (run_dir / runs.STDOUT).touch()
    (run_dir / runs.STDERR).touch()
    return info


def finish_run(root: str | os.PathLike[str], info: runs.RunInfo) -> None:
    """Mark a synthetic run completed (exit 0) so it stops counting as running."""

    def done(i: runs.RunInfo) -> None:
        i.status, i.exit_code, i.end_time_ns = runs.STATUS_COMPLETED, 0, time.time_ns()

    try:
        runs.update_run_info(
            runs.run_dir(root, info.project_id, info.task_id, info.run_id) / runs.RUN_INFO, done
        )
    except (runs.StorageError, OSError):
        pass


def append_lines(root: str | os.PathLike[str], info: runs.RunInfo, lines: list[str]) -> int:
    """Append ``lines`` to the run's ``agent-stdout.txt`` in ONE write; returns ``time.time_ns()`` before it."""
    path = runs.run_dir(root, info.project_id, info.task_id, info.run_id) / runs.STDOUT
    data = "".join(line + "\n" for line in lines).encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        at = time.time_ns()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    return at


@dataclass
class Delivery:
    """What one subscriber received of the expected lines."""

    name: str
    expected: int
    received: int = 0
    missing: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    ended_early: bool = False
    error: str = ""
    latency: dict[str, float] = field(default_factory=dict)

    @property
    def complete(self) -> bool:
        """Every expected line once, in order."""
        return self.missing == 0 and self.duplicated == 0 and self.out_of_order == 0


def judge_delivery(name: str, expected: list[str], received: Iterable[str]) -> Delivery:
    """Compare received line texts with the expected ones (which are distinct, in order)."""
    position = {text: i for i, text in enumerate(expected)}
    counts: Counter[str] = Counter()
    out_of_order = 0
    last = -1
    n = 0
    for text in received:
        if text not in position:
            continue
        n += 1
        counts[text] += 1
        if counts[text] == 1:
            if position[text] < last:
                out_of_order += 1
            last = max(last, position[text])
    return Delivery(name=name, expected=len(expected), received=n, missing=len(expected) - len(counts),
                    duplicated=sum(c - 1 for c in counts.values()), out_of_order=out_of_order)  # fmt: skip


@dataclass
class SseBurst:
    """Figures of one burst: per-subscriber deliveries and the fast subscribers' latency."""

    lines: int
    run_id: str
    fast: list[Delivery]
    slow: list[Delivery]
    latency: dict[str, float]
    histogram: str
    connected: int
    backlog: int = 0

    @property
    def lost(self) -> int:
        """Lines missing at the fast subscribers, summed."""
        return sum(d.missing for d in self.fast)

    @property
    def out_of_order(self) -> int:
        """Out-of-order or duplicated lines at the fast subscribers, summed."""
        return sum(d.out_of_order + d.duplicated for d in self.fast)

    def message(self) -> str:
        """One line per burst."""
        got = ", ".join(str(d.received) for d in self.fast)
        slow = "; slow: " + ", ".join(f"{d.received}{' (disconnected)' if d.ended_early else ''}" for d in self.slow) \
            if self.slow else ""  # fmt: skip
        p95, top = self.latency.get("p95"), self.latency.get("max")
        # no line at any fast subscriber: the histogram is empty and its summary holds None
        delivery = "no line delivered" if p95 is None or top is None else \
            f"delivery p95 {p95:.1f} ms, max {top:.1f} ms"  # fmt: skip
        return (f"SSE burst of {plural(self.lines, 'line')}: fast subscribers received {got} (lost {self.lost}, out of "
                f"order {self.out_of_order}); {delivery}{slow}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return {"lines": self.lines, "run_id": self.run_id, "connected": self.connected,
                "backlog": self.backlog, "fast": [asdict(d) for d in self.fast],
                "slow": [asdict(d) for d in self.slow],
                "latency_ms": self.latency}  # fmt: skip


def _stream_path(run_id: str) -> str:
    return f"/api/v1/runs/{run_id}/stream"


def _log_line(data: str) -> str | None:
    try:
        return str(json.loads(data).get("line"))
    except (ValueError, AttributeError):
        return None


SLOW_RECEIVE_BUFFER = 4096
"""A slow subscriber's kernel receive buffer (bytes): it fills at once, so the server must hold its lines."""


async def _collect(client: SSEClient, want: set[str], got: list[tuple[str, int]], deadline: float,
                   idle: float) -> tuple[bool, str]:  # fmt: skip
    """Read log events into ``got`` until every wanted line arrived; (ended early, error)."""
    seen = {text for text, _ in got}
    while not want <= seen:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, "timed out"
        try:
            ev = await client.next_event(min(idle, remaining))
        except TimeoutError:
            return False, f"no event for {idle:g} s"
        except StreamEnded:
            return True, "the server ended the stream"
        except SSEError as exc:
            return True, str(exc)
        if ev.event != "log":
            continue
        line = _log_line(ev.data)
        if line is not None:
            got.append((line, ev.received_ns))
            seen.add(line)
    return False, ""


async def _sse_burst(target: Target, root: Path, lines: int, subscribers: int, slow: int, backlog: int,
                     timeout: float, idle: float) -> SseBurst:  # fmt: skip
    info = synthetic_running_run(root, "sse-burst")
    url = target.endpoint(_stream_path(info.run_id))
    expected = [f"burst line {k} of {info.run_id}" for k in range(1, lines + 1)]
    clients = [SSEClient(url, api_key=target.api_key, headers_timeout=timeout) for _ in range(subscribers)]
    # slow subscribers read nothing more than the head until the fast ones are done: a tiny kernel
    # buffer fills at once, and the server has to keep their lines
    slow_subs = [SSEClient(url, api_key=target.api_key, headers_timeout=timeout, read_ahead=0,
                           receive_buffer=SLOW_RECEIVE_BUFFER) for _ in range(slow)]  # fmt: skip
    connecting: list[asyncio.Future[None]] = []
    slow_connecting: list[asyncio.Future[None]] = []
    try:
        slow_connecting = [asyncio.ensure_future(c.connect()) for c in slow_subs]
        connecting = [asyncio.ensure_future(c.connect()) for c in clients]
        # the real server withholds headers until its first event: the request being sent is enough
        done, _ = await asyncio.wait(slow_connecting + connecting, timeout=2.0)
        for fut in done:
            if fut.exception() is not None:
                raise SSEError(f"subscriber could not connect: {fut.exception()}")
        await asyncio.sleep(0.2)  # let the server register every subscriber before the burst
        gots: list[list[tuple[str, int]]] = [[] for _ in clients]
        lost_in_backlog = [""] * len(clients)
        if backlog:
            # fill the slow subscribers' socket buffers, so the burst must wait in the server for them
            filler = [f"backlog line {k} of {info.run_id}" for k in range(1, backlog + 1)]
            append_lines(root, info, filler)
            await _settle(connecting, timeout)
            early = await asyncio.gather(*(_collect(c, {filler[-1]}, g, time.monotonic() + timeout, idle)
                                           if c.connected else _failed(c)
                                           for c, g in zip(clients, gots, strict=True)))  # fmt: skip
            # a server may end a stream that falls behind (conductor-loop drops a subscriber at 128
            # queued events): such a subscriber gets no line of the burst, and the reason is kept
            lost_in_backlog = [f"stream lost during the {backlog}-line backlog after {plural(len(g), 'line')}: {error}"
                               if ended and not c.connected else ""
                               for c, g, (ended, error) in zip(clients, gots, early, strict=True)]  # fmt: skip
            gots = [[] for _ in clients]
        at = append_lines(root, info, expected)
        deadline = time.monotonic() + timeout
        await _settle(connecting, timeout)
        want = set(expected)
        outcomes = await asyncio.gather(*(_collect(c, want, g, deadline, idle) if c.connected else _failed(c, why)
                                          for c, g, why in zip(clients, gots, lost_in_backlog, strict=True)))  # fmt: skip
        hist = LatencyHistogram()
        fast: list[Delivery] = []
        for i, (got, (ended, error)) in enumerate(zip(gots, outcomes, strict=True)):
            d = judge_delivery(f"subscriber {i + 1}", expected, (text for text, _ in got))
            d.ended_early, d.error = ended, error
            own = LatencyHistogram()
            for text, received_ns in got:
                if text in want:
                    us = max(0.0, (received_ns - at) / 1000)
                    own.record_us(us)
                    hist.record_us(us)
            d.latency = own.summary()
            fast.append(d)
        slow_results: list[Delivery] = []
        await _settle(slow_connecting, timeout)
        for i, sub in enumerate(slow_subs):
            got_slow: list[tuple[str, int]] = []
            if sub.connected:  # drain what the server kept, until the burst's last line or the stream ends
                ended, _ = await _collect(sub, {expected[-1]}, got_slow, time.monotonic() + timeout, timeout)
            else:
                ended = True
            d = judge_delivery(f"slow subscriber {i + 1}", expected, (text for text, _ in got_slow))
            d.ended_early = ended and d.missing > 0
            slow_results.append(d)
        return SseBurst(lines=lines, run_id=info.run_id, fast=fast, slow=slow_results, latency=hist.summary(),
                        histogram=hist.encode(), connected=sum(1 for c in clients if c.connected),
                        backlog=backlog)  # fmt: skip
    finally:
        for fut in connecting + slow_connecting:
            fut.cancel()
        for c in clients + slow_subs:
            await c.close()
        finish_run(root, info)


async def _settle(connecting: list[asyncio.Future[None]], timeout: float) -> None:
    """Wait for connects still pending (withheld headers); a failure leaves its client unconnected."""
    pending = [f for f in connecting if not f.done()]
    if pending:
        await asyncio.wait(pending, timeout=timeout)
    for fut in connecting:
        if fut.done() and not fut.cancelled():
            fut.exception()  # retrieved: the client is judged as not connected


async def _failed(client: SSEClient, why: str = "") -> tuple[bool, str]:
    return True, why or f"not connected (HTTP {client.status or 'no answer'})"


def sse_burst(
    target: Target, root: str | os.PathLike[str], *, lines: int = 2000, subscribers: int = 5, slow: int = 0,
    backlog: int | None = None, timeout: float = 30.0, idle: float = 5.0,
) -> SseBurst:  # fmt: skip
    """Append ``lines`` lines at once to a running run's stdout while ``subscribers`` read its stream.

    ``slow`` extra subscribers connect with a tiny receive buffer and read nothing until the fast
    ones are done (then they drain what the server kept for them). So that they really hold the
    server back, ``backlog`` lines (default 20,000, about 5 MB, when ``slow`` > 0) are appended
    first: the fast subscribers read them all, while they fill the kernel buffers of the slow
    ones; the measured burst then has to wait in the server for the slow subscribers.

    Latency is from the moment of the burst's append to the arrival of each line at each fast
    subscriber. A fast subscriber stops waiting after ``idle`` s without an event (the real
    server drops lines silently) or at ``timeout``.
    """
    if lines < 1 or subscribers < 1 or slow < 0:
        raise ValueError("lines and subscribers must be >= 1, slow >= 0")
    if backlog is None:
        backlog = 20_000 if slow else 0
    return asyncio.run(
        _sse_burst(target, Path(root), lines, subscribers, slow, max(0, backlog), timeout, idle)
    )


# ------------------------------------------------------------------------------ resume across a restart


@dataclass
class SseResume:
    """Figures of a resume across a server restart."""

    expected: int
    delivery: Delivery
    last_event_id: str
    downtime_s: float
    reconnects: int
    replayed: int
    run_id: str

    def message(self) -> str:
        """One line."""
        d = self.delivery
        return (f"SSE resume across a restart: {d.received} of {plural(self.expected, 'line')} received, missed {d.missing}, "
                f"duplicated {d.duplicated}, out of order {d.out_of_order}; resumed with Last-Event-ID "
                f"{self.last_event_id!r} after {self.downtime_s:.1f} s down, {plural(self.replayed, 'line')} replayed")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        data = asdict(self)
        data["delivery"] = asdict(self.delivery)
        return data


async def _resume(target: Target, root: Path, kill: Callable[[], object], start: Callable[[], Target],
                  before: int, during: int, after: int, timeout: float) -> SseResume:  # fmt: skip
    info = synthetic_running_run(root, "sse-resume")
    path = _stream_path(info.run_id)
    expected = [f"resume line {k} of {info.run_id}" for k in range(1, before + during + after + 1)]
    got: list[tuple[str, int]] = []
    client = SSEClient(target.endpoint(path), api_key=target.api_key, headers_timeout=timeout)
    deadline = time.monotonic() + timeout
    try:
        connecting = asyncio.ensure_future(client.connect())
        await asyncio.wait([connecting], timeout=2.0)
        await asyncio.sleep(0.2)
        append_lines(root, info, expected[:before])
        await connecting
        ended, error = await _collect(client, set(expected[:before]), got, deadline, 5.0)
        if error:
            raise SSEError(f"before the restart: {error}")
        resumed_from = client.last_event_id
        down_at = time.monotonic()
        kill()
        try:  # the old stream must end; whatever it still delivered counts
            await _collect(client, set(expected), got, time.monotonic() + 5.0, 5.0)
        except SSEError:
            pass
        append_lines(root, info, expected[before : before + during])
        new = start()
        downtime = time.monotonic() - down_at
        client.url = new.endpoint(path)
        await client.reconnect()
        count_before = len(got)
        ended, error = await _collect(client, set(expected[: before + during]), got, deadline, 5.0)
        replayed = len(got) - count_before
        if not error:
            append_lines(root, info, expected[before + during :])
            ended, error = await _collect(client, set(expected), got, deadline, 5.0)
        d = judge_delivery("resumed subscriber", expected, (text for text, _ in got))
        d.ended_early, d.error = ended, error
        return SseResume(expected=len(expected), delivery=d, last_event_id=resumed_from, downtime_s=downtime,
                         reconnects=client.connects - 1, replayed=replayed, run_id=info.run_id)  # fmt: skip
    finally:
        await client.close()
        finish_run(root, info)


def sse_resume_across_restart(
    target: Target, root: str | os.PathLike[str], *, kill: Callable[[], object], start: Callable[[], Target],
    before: int = 100, during: int = 100, after: int = 100, timeout: float = 60.0,
) -> SseResume:  # fmt: skip
    """An SSE client follows a running run; the server is killed and started again on the same root.

    ``before`` lines are received live; ``kill()`` stops the server; ``during`` lines are appended
    while it is down; ``start()`` brings up a new server (returns its :class:`Target`); the client
    reconnects with ``Last-Event-ID`` (its last ``s=N;e=M``) and must get the ``during`` lines
    replayed, then ``after`` lines live: every line exactly once, in order.
    """
    return asyncio.run(_resume(target, Path(root), kill, start, before, during, after, timeout))
