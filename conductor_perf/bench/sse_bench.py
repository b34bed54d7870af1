"""SSE delivery benchmarks: run-stream log lines and message-stream messages to one or many clients.

Every measured event carries its own send time: a log line appended to a run's
``agent-stdout.txt``, or a message body posted to the bus, reads ``sse-perf <token> event <seq>
<unix ns>`` (the stub agent's fallback lines read ``line <seq> <unix ns>``). A client's latency for
that event is its receive time (``time.time_ns()`` when the bytes completing the event arrived)
minus the embedded send time; both clocks are this machine's wall clock.

**Every client is subscribed before the first measured event.** The real server sends no backlog
on run streams, withholds the response head until a stream's first event and gives a late
subscriber no initial status (docs/conductor-loop.md, SSE), so "connected" cannot be read from the HTTP
answer. Instead the writer sends *primer* events (``sse-perf <token> primer <k> <ns>``) every
``PRIMER_INTERVAL_S`` until every client received one, or was refused (HTTP 429 over the real
server's ``max_clients_per_run``, 10 by default), or failed. Only then are the measured events
sent, followed by an ``end`` marker after which each client closes its stream.

**Clients** are :class:`conductor_perf.measure.sse.SSEClient` objects on one asyncio loop per
client process (``processes`` worker processes of a :class:`~conductor_perf.measure.workers.WorkerPool`
share the clients; one by default). The writer runs in the calling process, so its pacing never
competes with the clients for the GIL. Each client process records its event-loop lag
(:class:`~conductor_perf.measure.workers.LagProbe`, 10 ms) and its CPU during delivery: when the
clients were the bottleneck (:data:`LAG_BUDGET_MS`, :data:`CPU_BUDGET_PERCENT`) the result says so
in :attr:`SSEResult.saturation_reason`. Latencies are recorded in HDR histograms per process and
merged exactly (:func:`~conductor_perf.measure.workers.merge_reports`).

**Checks** are pure functions: :func:`check_delivery` counts missing, duplicated, out-of-order and
unexpected events of one client against the expected order (write order for log lines, file order
from ``GET /api/v1/messages`` for messages); :func:`parse_stamp` reads an embedded stamp.

Every wait is bounded by ``timeout_s``; all connections are closed and the stub run is stopped
(``DELETE /api/v1/tasks/{task}``) before a measurement returns. Load goes to loopback only.

Example::

    result = measure_log_delivery(target, lines=50, clients=100, interval_s=0.02, timeout_s=60)
    print(result.refused, result.missing, result.summary()["p95"])
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from ..formats import runs
from ..measure.histogram import LatencyHistogram
from ..measure.rawhttp import HttpConnection, HttpProtocolError, Request
from ..measure.sse import SSEClient, SSEError, SSEStatusError
from ..measure.workers import (
    LAG_PROBE_INTERVAL_S,
    LagProbe,
    WorkerContext,
    WorkerPool,
    WorkerReport,
    cpu_reason,
    lag_reason,
    merge_reports,
)
from ..target import Target, is_loopback
from ..wording import plural
from . import agent_tasks

__all__ = [
    "CPU_BUDGET_PERCENT",
    "ClientRecord",
    "Delivery",
    "LAG_BUDGET_MS",
    "SSEResult",
    "Stamp",
    "check_delivery",
    "latency_us",
    "measure_log_delivery",
    "measure_message_delivery",
    "measure_messages_in_flight",
    "new_bus_task",
    "parse_stamp",
    "seed_bus_history",
    "split",
    "stamp",
]

ProgressFn = Callable[[str], None]
"""``on_progress(text)``: one line for the console."""

STAMP_PREFIX = "sse-perf"
PROJECT = "perf-sse"
PRIMER_INTERVAL_S = 0.2
"""Pause between primer events while waiting for every client to be subscribed."""
PROGRESS_EVERY_S = 2.0
LAG_PROBE_S = LAG_PROBE_INTERVAL_S
LAG_BUDGET_MS = 10.0
"""Client event-loop lag p99 above which the clients, not the server, may have set the latency."""
CPU_BUDGET_PERCENT = 90.0
"""CPU of one client process during delivery (percent of a core) above which it was saturated."""
STUB_WARMUP_LINES = 10
"""Fallback without a runs root: the stub's first lines act as primers, the rest are measured."""
STUB_START_DELAY_MS = 2000
"""Fallback: the stub waits this long before printing, so the clients can subscribe first."""
HISTORY_TYPE = "INFO"
EVENT_TYPE = "PROGRESS"

_STAMP = re.compile(r"sse-perf ([0-9a-z]+) (primer|event|end) (\d+) (\d+)")
_STUB_LINE = re.compile(r'"line":"line (\d+) (\d+)"')

Kind = Literal["primer", "event", "end"]


# --------------------------------------------------------------------------------------------
# stamps and checks (pure)
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Stamp:
    """What an event's text says about itself: kind, sequence number and send time (unix ns)."""

    kind: str
    seq: int
    sent_ns: int


def stamp(token: str, kind: Kind, seq: int, sent_ns: int) -> str:
    """The text of a stamped event, e.g. ``sse-perf a1b2c3 event 7 1732010000123456789``."""
    if not re.fullmatch(r"[0-9a-z]+", token):
        raise ValueError(f"token must be lowercase letters and digits, got {token!r}")
    return f"{STAMP_PREFIX} {token} {kind} {seq} {sent_ns}"


def parse_stamp(text: str, token: str | None, *, stub_warmup: int | None = None) -> Stamp | None:
    """The stamp in an event's data (or a line/body), ``None`` when it carries none of ``token``.

    With ``stub_warmup`` (the stub fallback) the stub's ``"line":"line <i> <ns>"`` lines are read
    instead: lines up to ``stub_warmup`` are primers, line ``i`` after them is event ``i - stub_warmup``.
    """
    if stub_warmup is not None:
        m = _STUB_LINE.search(text)
        if m is None:
            return None
        i, ns = int(m.group(1)), int(m.group(2))
        return Stamp("primer", i, ns) if i <= stub_warmup else Stamp("event", i - stub_warmup, ns)
    m = _STAMP.search(text)
    if m is None or (token is not None and m.group(1) != token):
        return None
    return Stamp(m.group(2), int(m.group(3)), int(m.group(4)))


def latency_us(sent_ns: int, received_ns: int) -> float:
    """Delivery latency in microseconds from the embedded send time to the receive time."""
    return (received_ns - sent_ns) / 1000.0


@dataclass(frozen=True, slots=True)
class Delivery:
    """One client's events compared with the expected sequence.

    ``missing``: expected events never received; ``duplicated``: extra copies of received events;
    ``out_of_order``: events that arrived after an event the expected order puts later;
    ``unexpected``: received events that were not expected at all.
    """

    expected: int
    received: int
    missing: int
    duplicated: int
    out_of_order: int
    unexpected: int

    @property
    def complete(self) -> bool:
        """Every expected event once, in order, nothing else."""
        return not (self.missing or self.duplicated or self.out_of_order or self.unexpected)


def check_delivery(expected: Sequence[int], received: Sequence[int]) -> Delivery:
    """Compare the sequence numbers one client received with the expected order."""
    position = {seq: i for i, seq in enumerate(expected)}
    seen: set[int] = set()
    duplicated = out_of_order = unexpected = 0
    furthest = -1
    for seq in received:
        pos = position.get(seq)
        if pos is None:
            unexpected += 1
            continue
        if seq in seen:
            duplicated += 1
            continue
        seen.add(seq)
        if pos < furthest:
            out_of_order += 1
        else:
            furthest = pos
    return Delivery(expected=len(expected), received=len(received), missing=len(position) - len(seen),
                    duplicated=duplicated, out_of_order=out_of_order, unexpected=unexpected)  # fmt: skip


def split(total: int, parts: int) -> list[int]:
    """``total`` clients over ``parts`` processes as evenly as possible (no empty part)."""
    parts = max(1, min(parts, total)) if total > 0 else 1
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# --------------------------------------------------------------------------------------------
# results
# --------------------------------------------------------------------------------------------
@dataclass
class ClientRecord:
    """What one client saw: HTTP status (0 = no answer), stamped events in arrival order."""

    status: int = 0
    error: str = ""
    ready: bool = False
    done: bool = False
    seqs: list[int] = field(default_factory=list)
    sent_ns: list[int] = field(default_factory=list)
    latency_us: list[float] = field(default_factory=list)
    other_events: int = 0


@dataclass
class SSEResult:
    """The outcome of one SSE measurement (all clients, all client processes)."""

    context: str
    stream: str
    path: str
    mode: str
    clients: int
    processes: int
    expected: list[int]
    records: list[ClientRecord]
    histogram: LatencyHistogram
    lag: LatencyHistogram
    client_cpu_percent: float
    ready_s: float
    send_s: float
    drain_s: float
    events_sent: int
    history: int = 0
    bus_lost: int = 0
    notes: list[str] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self.deliveries:
            self.deliveries = [check_delivery(self.expected, r.seqs) for r in self.records if r.status != 429]

    @property
    def kind(self) -> str:
        """``log`` for a run stream, ``message`` for a message stream."""
        return "log" if self.stream == "run" else "message"

    def metric(self, name: str) -> str:
        """A figure's name, ``sse <kind> <name>[, <context>]``, e.g. ``sse log delivery latency p95``."""
        base = f"sse {self.kind} {name}"
        return f"{base}, {self.context}" if self.context else base

    @property
    def label(self) -> str:
        """What was measured, e.g. ``sse message delivery, 100 clients on a 1000-message bus``."""
        return self.metric("delivery")

    # -- clients ----------------------------------------------------------------------------
    @property
    def accepted(self) -> int:
        """Clients whose stream opened (HTTP 200)."""
        return sum(1 for r in self.records if r.status == 200)

    @property
    def refused(self) -> int:
        """Clients answered HTTP 429 (the real server's per-run subscriber limit)."""
        return sum(1 for r in self.records if r.status == 429)

    @property
    def failed(self) -> int:
        """Clients that got another status or no answer at all."""
        return sum(1 for r in self.records if r.status not in (200, 429))

    def refusal_samples(self, limit: int = 3) -> list[str]:
        """Distinct response bodies / errors of refused and failed clients."""
        out: list[str] = []
        for r in self.records:
            if r.status != 200 and r.error:
                text = f"HTTP {r.status}: {r.error}" if r.status else r.error
                if text not in out:
                    out.append(text)
            if len(out) >= limit:
                break
        return out

    # -- delivery ---------------------------------------------------------------------------
    @property
    def missing(self) -> int:
        """Expected events not received, summed over the clients that were not refused."""
        return sum(d.missing for d in self.deliveries)

    @property
    def duplicated(self) -> int:
        """Extra copies received, summed over clients."""
        return sum(d.duplicated for d in self.deliveries)

    @property
    def out_of_order(self) -> int:
        """Events received after a later one, summed over clients."""
        return sum(d.out_of_order for d in self.deliveries)

    @property
    def unexpected(self) -> int:
        """Stamped events that were not expected (e.g. not in the bus file), summed over clients."""
        return sum(d.unexpected for d in self.deliveries)

    @property
    def complete_clients(self) -> int:
        """Clients that received every expected event once, in order."""
        return sum(1 for d in self.deliveries if d.complete)

    # -- latency ----------------------------------------------------------------------------
    def summary(self) -> dict[str, float | int | None]:
        """Delivery latency in ms over every event of every client (see ``LatencyHistogram.summary``)."""
        return self.histogram.summary()

    @property
    def saturation_reason(self) -> str:
        """Why the clients themselves may have set the latency ('' when they kept up)."""
        who = "busiest client process" if self.processes > 1 else "client process"
        reasons = [lag_reason(self.lag, LAG_BUDGET_MS, what="client event-loop lag"),
                   cpu_reason(self.client_cpu_percent, CPU_BUDGET_PERCENT, who=who, when=" during delivery")]  # fmt: skip
        return "; ".join(r for r in reasons if r)

    def latency_series(self) -> dict[str, list[list[float]]]:
        """Per-event latency over time (x: seconds since the first send, y: ms).

        One client: its latency per event. Several: the median and the slowest client per event.
        """
        per_seq: dict[int, list[float]] = {}
        sent: dict[int, int] = {}
        for r in self.records:
            for seq, ns, us in zip(r.seqs, r.sent_ns, r.latency_us, strict=False):
                per_seq.setdefault(seq, []).append(us / 1000.0)
                sent.setdefault(seq, ns)
        if not sent:
            return {}
        t0 = min(sent.values())
        order = sorted(per_seq, key=lambda s: sent[s])
        xs = {s: round((sent[s] - t0) / 1e9, 4) for s in order}
        if self.accepted <= 1:
            return {"latency": [[xs[s], round(per_seq[s][0], 3)] for s in order]}
        return {"median of clients": [[xs[s], round(statistics.median(per_seq[s]), 3)] for s in order],
                "slowest client": [[xs[s], round(max(per_seq[s]), 3)] for s in order]}  # fmt: skip

    def describe(self) -> str:
        """One paragraph for the log."""
        s = self.summary()

        def ms(v: object) -> str:
            return "n/a" if v is None else f"{float(v):.2f} ms"  # type: ignore[arg-type]

        text = (f"{self.label}: {plural(self.clients, 'client')} on {self.path} ({self.mode}, {self.processes} client "
                f"process(es)): {self.accepted} accepted, {self.refused} refused (429), {self.failed} failed; "
                f"{plural(self.events_sent, 'event')} sent in {self.send_s:.2f} s after {self.ready_s:.2f} s of set-up; "
                f"{plural(self.complete_clients, 'client')} got every event once in order (missing {self.missing}, "
                f"duplicated {self.duplicated}, out of order {self.out_of_order}, unexpected {self.unexpected}); "
                f"latency over {s['count']} deliveries p50 {ms(s['p50'])}, p95 {ms(s['p95'])}, max {ms(s['max'])}; "
                f"client loop lag p99 {self.lag.percentile_ms(99):.1f} ms, client CPU "
                f"{self.client_cpu_percent:.0f} %")  # fmt: skip
        if self.history:
            text += f"; bus history {plural(self.history, 'message')}"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text

    def details(self) -> dict[str, Any]:
        """JSON-friendly figures for the metrics file."""
        return {"clients": self.clients, "accepted": self.accepted, "refused_429": self.refused,
                "failed": self.failed, "processes": self.processes, "mode": self.mode, "path": self.path,
                "events_sent": self.events_sent, "expected": len(self.expected), "missing": self.missing,
                "duplicated": self.duplicated, "out_of_order": self.out_of_order, "unexpected": self.unexpected,
                "complete_clients": self.complete_clients, "latency_ms": self.summary(),
                "client_lag_p99_ms": self.lag.percentile_ms(99), "client_cpu_percent": self.client_cpu_percent,
                "ready_s": round(self.ready_s, 3), "send_s": round(self.send_s, 3),
                "drain_s": round(self.drain_s, 3), "history": self.history, "bus_lost": self.bus_lost,
                "saturation": self.saturation_reason}  # fmt: skip


# --------------------------------------------------------------------------------------------
# client processes
# --------------------------------------------------------------------------------------------
# per client process, counted in the worker pool: connected, ready, refused, failed, done
_CONNECTED, _READY, _REFUSED, _FAILED, _DONE = "connected", "ready", "refused", "failed", "done"
_COUNTERS = (_CONNECTED, _READY, _REFUSED, _FAILED, _DONE)


@dataclass
class _ChildSpec:
    url: str
    headers: dict[str, str]
    clients: int
    token: str
    timeout_s: float
    stub_warmup: int | None = None
    last_seq: int | None = None


async def _child(spec: _ChildSpec, ctx: WorkerContext) -> WorkerReport:
    deadline = time.monotonic() + spec.timeout_s
    records = [ClientRecord() for _ in range(spec.clients)]
    hist = LatencyHistogram()
    window = [0.0, 0.0, 0.0]  # cpu at first event, wall at first event, wall at last event
    cpu_end = [0.0]

    async def one(rec: ClientRecord) -> None:
        client = SSEClient(spec.url, headers=spec.headers, connect_timeout=5.0,
                           headers_timeout=max(1.0, deadline - time.monotonic()))  # fmt: skip
        try:
            try:
                await client.connect()
            except SSEStatusError as exc:
                rec.status, rec.error = exc.status, exc.body.strip()[:200]
                ctx.add(_REFUSED if exc.status == 429 else _FAILED)
                return
            except (SSEError, TimeoutError, OSError) as exc:
                rec.error = f"{type(exc).__name__}: {exc}"[:200]
                ctx.add(_FAILED)
                return
            rec.status = 200
            ctx.add(_CONNECTED)
            while True:
                ev = await client.next_event(max(0.0, deadline - time.monotonic()))
                st = parse_stamp(ev.data, spec.token, stub_warmup=spec.stub_warmup)
                if st is None:
                    rec.other_events += 1
                    continue
                if not rec.ready:
                    rec.ready = True
                    ctx.add(_READY)
                if st.kind == "event":
                    us = latency_us(st.sent_ns, ev.received_ns)
                    rec.seqs.append(st.seq)
                    rec.sent_ns.append(st.sent_ns)
                    rec.latency_us.append(us)
                    hist.record_us(us)
                    if not window[1]:
                        window[0], window[1] = time.process_time(), time.monotonic()
                    window[2] = time.monotonic()
                    cpu_end[0] = time.process_time()
                    if spec.last_seq is not None and st.seq >= spec.last_seq:
                        break
                elif st.kind == "end":
                    break
            rec.done = True
            ctx.add(_DONE)
        except (SSEError, TimeoutError, OSError) as exc:
            rec.error = f"{type(exc).__name__}: {exc}"[:200]
            ctx.add(_FAILED)
        except asyncio.CancelledError:
            rec.error = rec.error or "stopped before the end marker"
            raise
        finally:
            await client.close()

    tasks = [asyncio.ensure_future(one(r)) for r in records]
    probe = LagProbe(LAG_PROBE_S)
    try:
        await probe.run(lambda now: all(t.done() for t in tasks) or ctx.stop_requested() or now > deadline)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    active = window[2] - window[1]
    return WorkerReport(ctx.name, histograms={"latency": hist.encode(), "lag": probe.histogram.encode()},
                        records=records, cpu_s=max(0.0, cpu_end[0] - window[0]), wall_s=active)  # fmt: skip


def _client_worker(spec: _ChildSpec, ctx: WorkerContext) -> WorkerReport:
    """One client process: its share of the clients on one event loop, from the common start."""
    ctx.wait_start()
    return asyncio.run(_child(spec, ctx))


class _ClientPool:
    """``clients`` SSE clients of one URL in ``processes`` worker processes, with their counters."""

    def __init__(self, spec: _ChildSpec, processes: int) -> None:
        self.sizes = split(spec.clients, processes)
        shares = [_ChildSpec(**{**spec.__dict__, "clients": n}) for n in self.sizes]
        self.pool = WorkerPool(_client_worker, shares, name="sse-clients", counters=_COUNTERS)
        self.total = spec.clients

    def start(self) -> None:
        self.pool.start()

    def count(self, counter: str) -> int:
        return self.pool.total(counter)

    @property
    def settled(self) -> int:
        """Clients that are ready, refused or failed."""
        return self.count(_READY) + self.count(_REFUSED) + self.count(_FAILED)

    @property
    def finished(self) -> int:
        """Clients that are done, refused or failed."""
        return self.count(_DONE) + self.count(_REFUSED) + self.count(_FAILED)

    def status_text(self) -> str:
        return (f"{self.count(_CONNECTED)} connected, {self.count(_READY)} subscribed, {self.count(_REFUSED)} "
                f"refused (429), {self.count(_FAILED)} failed, {self.count(_DONE)} done of {self.total}")  # fmt: skip

    def check(self) -> None:
        """Raise at once if a client process died (its clients would never settle)."""
        self.pool.check()

    def collect(self, timeout: float) -> list[WorkerReport]:
        """Stop the clients, gather every process's report (bounded), stop the processes."""
        return self.pool.collect(timeout, stop=True)

    def close(self) -> None:
        self.pool.close()


# --------------------------------------------------------------------------------------------
# writers (sources of stamped events)
# --------------------------------------------------------------------------------------------
class _FileSource:
    """Appends stamped lines to a run's ``agent-stdout.txt`` (``O_APPEND``, fsync per line)."""

    mode = "file-level append to agent-stdout.txt"

    def __init__(self, path: str, token: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.token = token

    def _line(self, kind: Kind, seq: int) -> int:
        ns = time.time_ns()
        os.write(self.fd, (stamp(self.token, kind, seq, ns) + "\n").encode())
        os.fsync(self.fd)
        return ns

    async def primer(self, k: int) -> None:
        self._line("primer", k)

    async def send(self, seq: int) -> int | None:
        return self._line("event", seq)

    async def end(self, count: int) -> None:
        self._line("end", count)

    async def close(self) -> None:
        os.close(self.fd)


class _StubSource:
    """The stub agent prints the lines itself (no runs root): nothing to write here."""

    mode = "stub agent prints timestamped lines"

    async def primer(self, k: int) -> None:
        return None

    async def send(self, seq: int) -> int | None:
        return None

    async def end(self, count: int) -> None:
        return None

    async def close(self) -> None:
        return None


class _PostSource:
    """Posts stamped messages to a task bus through ``POST /api/v1/messages``."""

    mode = "POST /api/v1/messages"

    def __init__(self, target: Target, project: str, task: str, token: str, timeout: float) -> None:
        self.target, self.project, self.task, self.token, self.timeout = target, project, task, token, timeout
        self.headers = target.auth_headers() or None
        self.conn = HttpConnection(target.host, target.port)
        self.errors: list[str] = []

    async def post(self, conn: HttpConnection, kind: Kind, seq: int) -> int | None:
        ns = time.time_ns()
        body = {"project_id": self.project, "task_id": self.task, "type": EVENT_TYPE,
                "body": stamp(self.token, kind, seq, ns)}  # fmt: skip
        try:
            resp = await conn.request(Request.json("POST", "/api/v1/messages", body, self.headers),
                                      timeout=self.timeout)  # fmt: skip
        except (OSError, TimeoutError, HttpProtocolError) as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            return None
        if resp.status != 201:
            self.errors.append(f"HTTP {resp.status}: {resp.text.strip()[:200]}")
            return None
        return ns

    async def primer(self, k: int) -> None:
        await self.post(self.conn, "primer", k)

    async def send(self, seq: int) -> int | None:
        return await self.post(self.conn, "event", seq)

    async def end(self, count: int) -> None:
        await self.post(self.conn, "end", count)

    async def burst(self, count: int, writers: int) -> dict[int, int]:
        """Post ``count`` events as fast as ``writers`` connections allow; ``{seq: sent_ns}`` of the 201s."""
        conns = [HttpConnection(self.target.host, self.target.port) for _ in range(max(1, writers))]
        sent: dict[int, int] = {}
        next_seq = iter(range(1, count + 1))

        async def writer(conn: HttpConnection) -> None:
            for seq in next_seq:
                ns = await self.post(conn, "event", seq)
                if ns is not None:
                    sent[seq] = ns

        try:
            await asyncio.gather(*(c.connect() for c in conns))
            await asyncio.gather(*(writer(c) for c in conns))
        finally:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)
        return sent

    async def close(self) -> None:
        await self.conn.close()


# --------------------------------------------------------------------------------------------
# orchestration
# --------------------------------------------------------------------------------------------
def _say(on_progress: ProgressFn | None, text: str) -> None:
    if on_progress is not None:
        on_progress(text)


async def _wait_ready(
    pool: _ClientPool, source: Any, deadline: float, on_progress: ProgressFn | None
) -> None:
    """Send primers until every client is subscribed, refused or failed (or the deadline)."""
    k = 0
    start = last = time.monotonic()
    while pool.settled < pool.total and time.monotonic() < deadline:
        pool.check()
        k += 1
        await source.primer(k)
        await asyncio.sleep(PRIMER_INTERVAL_S)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            _say(on_progress, f"subscribing: {now - start:4.1f} s, {pool.status_text()}")


async def _wait_done(pool: _ClientPool, deadline: float, on_progress: ProgressFn | None) -> None:
    start = last = time.monotonic()
    while pool.finished < pool.total and time.monotonic() < deadline:
        pool.check()
        await asyncio.sleep(0.02)
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            _say(on_progress, f"draining: {now - start:4.1f} s, {pool.status_text()}")


async def _paced(
    source: Any, count: int, interval_s: float, on_progress: ProgressFn | None
) -> dict[int, int]:
    """Send ``count`` events, event ``i`` at ``start + (i-1) * interval_s``; ``{seq: sent_ns}``."""
    sent: dict[int, int] = {}
    start = last = time.monotonic()
    for seq in range(1, count + 1):
        delay = start + (seq - 1) * interval_s - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        ns = await source.send(seq)
        if ns is not None:
            sent[seq] = ns
        now = time.monotonic()
        if now - last >= PROGRESS_EVERY_S:
            last = now
            _say(on_progress, f"sending: {now - start:4.1f} s, {seq} of {plural(count, 'event')} sent")
    return sent


@dataclass
class _Run:
    sent: dict[int, int]
    children: list[WorkerReport]
    ready_s: float
    send_s: float
    drain_s: float


def _measure(spec: _ChildSpec, processes: int, source: Any, send: Callable[[], Any], *, timeout_s: float,
             on_progress: ProgressFn | None) -> _Run:  # fmt: skip
    """Start the clients, prime, send, end, drain; always stops the client processes."""
    pool = _ClientPool(spec, processes)
    pool.start()
    try:

        async def main() -> tuple[dict[int, int], float, float, float]:
            t0 = time.monotonic()
            try:
                await _wait_ready(pool, source, t0 + timeout_s, on_progress)
                t1 = time.monotonic()
                _say(on_progress, f"subscribed after {t1 - t0:.1f} s: {pool.status_text()}")
                sent: dict[int, int] = {}
                if pool.count(_READY):
                    sent = await send()
                t2 = time.monotonic()
                await source.end(len(sent))
                await _wait_done(pool, t2 + timeout_s, on_progress)
                t3 = time.monotonic()
                _say(on_progress, f"delivered after {t3 - t2:.1f} s: {pool.status_text()}")
                return sent, t1 - t0, t2 - t1, t3 - t2
            finally:
                await source.close()

        sent, ready_s, send_s, drain_s = asyncio.run(main())
        children = pool.collect(timeout=30.0)
    finally:
        pool.close()
    return _Run(sent, children, ready_s, send_s, drain_s)


def _result(run: _Run, *, context: str, stream: str, path: str, mode: str, clients: int, expected: list[int],
            history: int = 0, bus_lost: int = 0, notes: list[str] | None = None) -> SSEResult:  # fmt: skip
    merged = merge_reports(run.children)
    return SSEResult(context=context, stream=stream, path=path, mode=mode, clients=clients, processes=merged.workers,
                     expected=expected, records=merged.records, histogram=merged.histogram("latency"),
                     lag=merged.histogram("lag"), client_cpu_percent=max(merged.cpu_percents(min_wall_s=0.05), default=0.0), ready_s=run.ready_s, send_s=run.send_s,
                     drain_s=run.drain_s, events_sent=len(run.sent), history=history, bus_lost=bus_lost,
                     notes=list(notes or []))  # fmt: skip


def _check(target: Target, clients: int, processes: int) -> None:
    if not is_loopback(target.url):
        raise ValueError(f"SSE load is only sent to loopback addresses, not {target.url}")
    if clients < 1:
        raise ValueError(f"clients must be at least 1, got {clients}")
    if not 1 <= processes <= 16:
        raise ValueError(f"processes must be within 1..16, got {processes}")


def _http(target: Target, timeout: float = 10.0) -> httpx.Client:
    return httpx.Client(base_url=target.url, headers=target.auth_headers(), timeout=timeout)


def new_bus_task(slug: str = "sse") -> tuple[str, str]:
    """A fresh (project, canonical task id) for a message-stream measurement."""
    return PROJECT, runs.canonical_task_id(f"{slug}-{secrets.token_hex(3)}")


# --------------------------------------------------------------------------------------------
# run streams
# --------------------------------------------------------------------------------------------
def _wait_run_info(client: httpx.Client, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        try:
            resp = client.get(f"/api/v1/runs/{run_id}")
            if resp.status_code == 200:
                return
            last = f"HTTP {resp.status_code}"
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.02)
    raise TimeoutError(f"run {run_id} had no run-info within {timeout:g} s ({last})")


def measure_log_delivery(target: Target, *, lines: int = 50, clients: int = 1, interval_s: float = 0.02,
                         timeout_s: float = 60.0, processes: int = 1,
                         on_progress: ProgressFn | None = None) -> SSEResult:  # fmt: skip
    """Latency of ``log`` events on ``GET /api/v1/runs/{id}/stream`` for ``clients`` subscribers.

    Starts a long-lived stub run, waits until its run-info exists, subscribes the clients (primer
    lines until all are in), appends ``lines`` stamped lines ``interval_s`` apart to the run's
    ``agent-stdout.txt`` (fsynced), then an end line; finally stops the task. Without a runs root
    the stub prints ``line <i> <ns>`` lines itself (:data:`STUB_WARMUP_LINES` act as primers).
    """
    _check(target, clients, processes)
    token = secrets.token_hex(3)
    project, task = PROJECT, runs.canonical_task_id(f"sse-log-{token}")
    stub_mode = target.root is None
    keep_alive_ms = int((4 * timeout_s + lines * interval_s) * 1000) + 60_000
    config = {"STUB_SLEEP_MS": str(keep_alive_ms)}
    if stub_mode:
        config.update({"STUB_START_DELAY_MS": str(STUB_START_DELAY_MS),
                       "STUB_STDOUT_LINES": str(STUB_WARMUP_LINES + lines),
                       "STUB_LINE_DELAY_MS": str(max(1, int(interval_s * 1000)))})  # fmt: skip
    context = plural(clients, 'client') if clients > 1 else ""
    notes: list[str] = []
    with _http(target) as http:
        resp = http.post("/api/v1/tasks", json={"project_id": project, "task_id": task, "agent_type": "codex",
                                                "prompt": "conductor-perf SSE: stay alive while lines are appended",
                                                "config": config})  # fmt: skip
        if resp.status_code != 201:
            raise RuntimeError(
                f"POST /api/v1/tasks answered HTTP {resp.status_code}: {resp.text.strip()[:200]}"
            )
        run_id = str(resp.json()["run_id"])
        try:
            _wait_run_info(http, run_id, timeout_s)
            path = f"/api/v1/runs/{run_id}/stream"
            spec = _ChildSpec(url=target.endpoint(path), headers=target.auth_headers(), clients=clients, token=token,
                              timeout_s=3 * timeout_s + lines * interval_s,
                              stub_warmup=STUB_WARMUP_LINES if stub_mode else None,
                              last_seq=lines if stub_mode else None)  # fmt: skip
            if stub_mode:
                source: Any = _StubSource()
            else:
                stdout = runs.run_dir(target.require_root(), project, task, run_id) / runs.STDOUT
                source = _FileSource(str(stdout), token)
            _say(on_progress, f"{plural(clients, 'client')} on run {run_id} ({source.mode})")

            async def send() -> dict[int, int]:
                return await _paced(source, lines, interval_s, on_progress)

            run = _measure(spec, processes, source, send, timeout_s=timeout_s, on_progress=on_progress)
            if stub_mode:  # the stub's own stamps are the send times
                run.sent = {s: 0 for s in range(1, lines + 1)}
                notes.append(
                    f"no runs root: the stub printed the lines (first {STUB_WARMUP_LINES} as primers)"
                )
        finally:
            notes.extend(agent_tasks.stop_tasks(target, [(project, task)]))
    return _result(run, context=context, stream="run", path=path, mode=source.mode, clients=clients,
                   expected=sorted(run.sent), notes=notes)  # fmt: skip


# --------------------------------------------------------------------------------------------
# message streams
# --------------------------------------------------------------------------------------------
def seed_bus_history(target: Target, project: str, task: str, count: int, *, writers: int = 8,
                     timeout_s: float = 60.0) -> int:  # fmt: skip
    """Post ``count`` plain messages to a task bus (``writers`` connections); returns how many got 201."""
    if not is_loopback(target.url):
        raise ValueError(f"load is only sent to loopback addresses, not {target.url}")
    headers = target.auth_headers() or None
    indices = iter(range(count))
    ok = [0]
    errors: list[str] = []

    async def writer(conn: HttpConnection) -> None:
        for i in indices:
            body = {"project_id": project, "task_id": task, "type": HISTORY_TYPE,
                    "body": f"conductor-perf bus history message {i}"}  # fmt: skip
            try:
                resp = await conn.request(
                    Request.json("POST", "/api/v1/messages", body, headers), timeout=timeout_s
                )
            except (OSError, TimeoutError, HttpProtocolError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            if resp.status == 201:
                ok[0] += 1
            elif len(errors) < 5:
                errors.append(f"HTTP {resp.status}: {resp.text.strip()[:120]}")

    async def main() -> None:
        conns = [HttpConnection(target.host, target.port) for _ in range(max(1, writers))]
        try:
            await asyncio.wait_for(asyncio.gather(*(writer(c) for c in conns)), timeout_s)
        finally:
            await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)

    asyncio.run(main())
    if ok[0] < count:
        raise RuntimeError(f"bus history: {ok[0]} of {plural(count, 'message')} accepted; {errors[:3]}")
    return ok[0]


def _bus_events(target: Target, project: str, task: str, token: str) -> list[int]:
    """Sequence numbers of this measurement's events in bus file order (``GET /api/v1/messages``)."""
    with _http(target, timeout=30.0) as http:
        resp = http.get("/api/v1/messages", params={"project_id": project, "task_id": task})
    if resp.status_code != 200:
        raise RuntimeError(
            f"GET /api/v1/messages answered HTTP {resp.status_code}: {resp.text.strip()[:200]}"
        )
    out = []
    for m in resp.json().get("messages") or []:
        st = parse_stamp(str(m.get("body", "")), token)
        if st is not None and st.kind == "event":
            out.append(st.seq)
    return out


def _message_spec(target: Target, project: str, task: str, clients: int, token: str, timeout_s: float
                  ) -> tuple[str, _ChildSpec]:  # fmt: skip
    path = f"/api/v1/messages/stream?project_id={project}&task_id={task}"
    return path, _ChildSpec(url=target.endpoint(path), headers=target.auth_headers(), clients=clients, token=token,
                            timeout_s=timeout_s)  # fmt: skip


def measure_message_delivery(target: Target, project: str, task: str, *, messages: int = 50, clients: int = 100,
                             interval_s: float = 0.02, history: int = 0, timeout_s: float = 60.0,
                             processes: int = 1, on_progress: ProgressFn | None = None) -> SSEResult:  # fmt: skip
    """Latency of ``message`` events on ``GET /api/v1/messages/stream`` for ``clients`` subscribers.

    One writer posts ``messages`` stamped messages ``interval_s`` apart to the task bus after every
    client is subscribed; latency runs from just before each POST to each client's receipt.
    ``history`` is only reported (seed the bus first with :func:`seed_bus_history`).
    """
    _check(target, clients, processes)
    token = secrets.token_hex(3)
    path, spec = _message_spec(target, project, task, clients, token, 3 * timeout_s + messages * interval_s)
    source = _PostSource(target, project, task, token, timeout_s)
    context = plural(clients, 'client') + (f" on a {history}-message bus" if history else "")
    _say(on_progress, f"{plural(clients, 'client')} on {path}")

    async def send() -> dict[int, int]:
        return await _paced(source, messages, interval_s, on_progress)

    run = _measure(spec, processes, source, send, timeout_s=timeout_s, on_progress=on_progress)
    in_bus = _bus_events(target, project, task, token)
    notes = [f"POST errors: {source.errors[:3]}"] if source.errors else []
    return _result(run, context=context, stream="messages", path=path, mode=source.mode, clients=clients,
                   expected=in_bus, history=history, bus_lost=len(set(run.sent) - set(in_bus)), notes=notes)  # fmt: skip


def measure_messages_in_flight(target: Target, project: str, task: str, *, messages: int = 1000, clients: int = 10,
                               writers: int = 10, timeout_s: float = 60.0, processes: int = 1,
                               on_progress: ProgressFn | None = None) -> SSEResult:  # fmt: skip
    """``writers`` connections post ``messages`` stamped messages as fast as they can while ``clients`` listen.

    The expected order is the bus file order read back through ``GET /api/v1/messages`` afterwards;
    every client must receive exactly that sequence.
    """
    _check(target, clients, processes)
    token = secrets.token_hex(3)
    path, spec = _message_spec(target, project, task, clients, token, 3 * timeout_s)
    source = _PostSource(target, project, task, token, timeout_s)
    context = f"{plural(messages, 'message')} in flight to {plural(clients, 'client')}"
    _say(on_progress, f"{plural(clients, 'client')} on {path}, {plural(writers, 'writer')}")

    async def send() -> dict[int, int]:
        return await asyncio.wait_for(source.burst(messages, writers), timeout_s)

    run = _measure(spec, processes, source, send, timeout_s=timeout_s, on_progress=on_progress)
    in_bus = _bus_events(target, project, task, token)
    notes = [f"POST errors: {source.errors[:3]}"] if source.errors else []
    rate = len(run.sent) / run.send_s if run.send_s > 0 else 0.0
    notes.append(f"{len(run.sent)} of {plural(messages, 'post')} acknowledged at {rate:.0f} msg/s by {plural(writers, 'writer')}")
    return _result(run, context=context, stream="messages", path=path, mode=f"{source.mode} by {plural(writers, 'writer')}",
                   clients=clients, expected=in_bus, bus_lost=len(set(run.sent) - set(in_bus)),
                   notes=notes)  # fmt: skip
