"""Asyncio HTTP load generator: closed loop and open loop, with a self-check of the generator.

Two load models (the same ones wrk/wrk2 and k6 offer):

**Closed loop** (:func:`run_closed`): ``workers`` concurrent workers, each with its own keep-alive
connection, each sending its next request when the previous one finished. Latency is measured from
the send to the last response byte. The request rate is whatever the server allows.

**Open loop** (:func:`run_open`): requests arrive at a constant ``rate`` whatever the server does.
Request *n* has an intended send time ``start + n / rate``. It waits for a free connection from a
pool of ``connections``; latency is recorded twice: from the *intended* send time (corrected for
coordinated omission: time spent waiting because the server was slow counts, as it would for a
real client) and from the *actual* send time (service time only). A request sent more than
``late_ms`` after its intended time is counted as ``late``; a request whose time came while
``max_in_flight`` requests were already waiting or on the wire is not sent and counted as
``dropped``.

**Self-check.** Each run records the generator's own event-loop scheduling lag and the CPU its loop
thread used. When the generator, not the server, was the bottleneck (CPU or lag over budget, or in
the open model the schedule not kept), :attr:`LoadResult.saturated` is true and
:attr:`LoadResult.saturation_reason` gives the figures: such a run measures the generator, not the
server (a missed target is then an invalid measurement: :func:`conductor_perf.verdict.compare`).

**Processes.** ``processes=K`` splits workers (or the rate) over K OS processes to get past the GIL
(:class:`conductor_perf.measure.workers.WorkerPool`: they open their connections, meet at a start
barrier, then load); every run, one process or K, hands its figures in as a
:class:`~conductor_perf.measure.workers.WorkerReport` and :func:`~conductor_perf.measure.workers.merge_reports`
combines them: HDR histograms merged exactly (counts added), never averaged.

**Bounds.** Every run is bounded by ``duration`` and by ``max_requests`` and stops by itself; only
loopback targets are allowed (``ValueError`` otherwise).

Example::

    result = run_open("http://127.0.0.1:8080", Request("GET", "/api/v1/health"), rate=500, duration=10)
    print(result.summary()["p99"], result.uncorrected.summary()["p99"], result.saturated)
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import math
import os
import selectors
import sys
import time
import urllib.parse
import warnings
from collections import deque
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NamedTuple

from conductor_perf.measure.histogram import LatencyHistogram
from conductor_perf.measure.rawhttp import (
    IDEMPOTENT_METHODS,
    MAX_HEAD_BYTES,
    HttpConnection,
    HttpProtocolError,
    Request,
    Response,
    ResponseParser,
)
from conductor_perf.measure.workers import (
    LAG_PROBE_INTERVAL_S,
    LagProbe,
    WorkerContext,
    WorkerPool,
    WorkerReport,
    cpu_reason,
    lag_reason,
    merge_reports,
)

RequestSpec = Request | str | Callable[[int], Request] | None
"""What to send: a :class:`Request`, a path string (GET), a factory ``f(i) -> Request`` called with
a run-wide unique index ``i`` (0, 1, 2, ... across all processes), or ``None`` for GET of the URL's
own path."""

ProgressCallback = Callable[[float, int, float], None]
"""``on_progress(elapsed_s, requests_so_far, rate_so_far)``."""
StartGate = Callable[[], object]
"""``start_gate()``: returns when the load may start (see :func:`run_closed`)."""

DEFAULT_MAX_REQUESTS = 10_000_000
"""The request cap when ``max_requests`` is not given (every run is bounded in count)."""
MAX_DURATION_S = 24 * 3600.0
"""Longest allowed run."""
DEFAULT_CPU_BUDGET_PERCENT = 90.0
"""Generator loop-thread CPU (percent of one core) above which a run is flagged saturated."""
DEFAULT_LAG_BUDGET_MS = 10.0
"""Scheduling lag p99 above which a run is flagged saturated."""
SCHEDULE_KEPT_RATIO = 0.95
"""Open loop: the dispatcher must start at least this share of the planned requests."""
SCHEDULE_GRACE_S = 0.25
"""Open loop: requests due before the end are still started up to this long after it."""
TIMELINE_DIGITS = 2
"""Precision of the per-second timeline histograms (1 %)."""
MAX_ERROR_SAMPLES = 5
START_TIMEOUT_S = 30.0
"""Load processes must all have opened their connections (and met at the start barrier) within this."""


PARTIAL_SECOND_MIN = 0.5
"""A last, partial second of a timeline is charted (scaled) when the run covered at least this much of it."""


class TimelinePoint(NamedTuple):
    """One second of a run, by completion time: requests finished, their p50/p95, and errors.

    ``p50_ms``/``p95_ms`` are ``None`` for a second in which nothing finished. In the open model
    the latencies are the corrected ones (from the intended send time).
    """

    second: int
    count: int
    p50_ms: float | None
    p95_ms: float | None
    errors: int = 0


@dataclass
class LoadResult:
    """The outcome of one load run. ``summary()`` feeds thresholds; ``to_dict()`` feeds metrics JSON.

    Attributes:
        model: ``"closed"`` or ``"open"``.
        requests: requests finished (a response, or a failure such as a timeout or refused
            connection); ``ok + errors``. Dropped requests were never sent and are not included.
        errors: non-success statuses (default: not 2xx, see ``ok_status``) plus exceptions.
        status_counts: ``{status: count}``; exceptions: ``{exception class name: count}``;
        error_samples: up to 5 distinct error messages.
        duration_s: first send to last completion (the open model includes the drain).
        histogram: latency, µs. Closed model: send to last byte. Open model: *intended* send time
            to last byte (coordinated-omission corrected). Timed-out requests are recorded at the
            time they were given up.
        uncorrected: open model only: actual send to last byte.
        lag: generator scheduling lag, µs: open model, how late the dispatcher started each
            request; closed model, how late a 10 ms probe timer fired.
        timeline: one :class:`TimelinePoint` per second of completions.
        offered_rate, planned, dispatched: open model: configured rate, requests the schedule had
            within the duration (capped by ``max_requests``), requests the dispatcher handled.
        late, late_ms: open model: requests sent more than ``late_ms`` after their intended time.
        dropped: open model: requests not sent because ``max_in_flight`` was reached (or still
            waiting for a connection when the drain ended).
        cpu_percent: CPU of the busiest generator event-loop thread, percent of one core;
            cpu_percent_total: summed over processes.
        saturated, saturation_reason: the self-check verdict (see the module docs).
        stopped_by: ``"duration"`` or ``"max_requests"``.
        reports: each process's figures as a :class:`WorkerReport` (what :func:`combine_reports`
            merged; one per process), e.g. to hand them to another merge.
    """

    model: str
    url: str
    requests: int
    ok: int
    errors: int
    duration_s: float
    histogram: LatencyHistogram
    uncorrected: LatencyHistogram | None
    lag: LatencyHistogram
    status_counts: dict[int, int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    timeline: list[TimelinePoint] = field(default_factory=list)
    workers: int = 0
    connections: int = 0
    processes: int = 1
    offered_rate: float | None = None
    planned: int = 0
    dispatched: int = 0
    late: int = 0
    late_ms: float | None = None
    dropped: int = 0
    cpu_percent: float = 0.0
    cpu_percent_total: float = 0.0
    cpu_budget_percent: float = DEFAULT_CPU_BUDGET_PERCENT
    lag_budget_ms: float = DEFAULT_LAG_BUDGET_MS
    stopped_by: str = "duration"
    saturated: bool = False
    saturation_reason: str = ""
    reports: list[WorkerReport] = field(default_factory=list, repr=False)

    @property
    def rate(self) -> float:
        """Achieved rate: finished requests per second of run time."""
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0

    def rate_timeline(self) -> list[list[float]]:
        """``[second, requests per second]`` per second of the run, for a chart.

        The last second is usually cut short by the end of the run (``duration_s`` = 10.02 leaves
        0.02 s in second 10): its count is scaled to a whole second when the run covered at least
        half of it, and left out otherwise, so the chart does not end in a drop that never happened.
        """
        out: list[list[float]] = []
        for p in self.timeline:
            covered = min(1.0, self.duration_s - p.second)
            if covered >= PARTIAL_SECOND_MIN:
                out.append([p.second, p.count / covered])
        return out

    @property
    def error_percent(self) -> float:
        """Errors as a percentage of finished requests (0 when none finished)."""
        return 100.0 * self.errors / self.requests if self.requests else 0.0

    @property
    def lag_p99_ms(self) -> float:
        """Generator scheduling lag, 99th percentile, ms."""
        return self.lag.percentile_ms(99)

    @property
    def lag_max_ms(self) -> float:
        """Generator scheduling lag, maximum, ms."""
        return self.lag.max_us / 1000.0

    def summary(self) -> dict[str, Any]:
        """Figures for thresholds: latency summary (ms; corrected in the open model) plus counts.

        Keys: ``count`` (finished requests), ``requests``, ``errors``, ``error_percent``, ``rate``,
        ``min``, ``p50``, ``p90``, ``p95``, ``p99``, ``p99.9``, ``max``, ``mean``, ``late``, ``dropped``,
        ``late_percent``, ``dropped_percent``, ``planned``.
        """
        s: dict[str, Any] = dict(self.histogram.summary())
        s["count"] = self.requests
        s["requests"] = self.requests
        s["errors"] = self.errors
        s["error_percent"] = self.error_percent
        s["rate"] = self.rate
        s["late"] = self.late
        s["dropped"] = self.dropped
        s["planned"] = self.planned
        base = self.planned or self.requests
        s["late_percent"] = 100.0 * self.late / base if base else 0.0
        s["dropped_percent"] = 100.0 * self.dropped / base if base else 0.0
        return s

    def to_dict(self) -> dict[str, Any]:
        """Everything as JSON-friendly data, histograms included in encoded form."""
        d: dict[str, Any] = {
            "model": self.model,
            "url": self.url,
            "requests": self.requests,
            "ok": self.ok,
            "errors": self.errors,
            "error_percent": round(self.error_percent, 4),
            "status_counts": {str(k): v for k, v in sorted(self.status_counts.items())},
            "exceptions": dict(self.exceptions),
            "error_samples": list(self.error_samples),
            "duration_s": round(self.duration_s, 4),
            "rate": round(self.rate, 2),
            "offered_rate": self.offered_rate,
            "workers": self.workers,
            "connections": self.connections,
            "processes": self.processes,
            "latency_ms": self.histogram.summary(),
            "latency_hdr": self.histogram.encode(),
            "timeline": [p._asdict() for p in self.timeline],
            "generator": {
                "lag_p99_ms": self.lag_p99_ms,
                "lag_max_ms": self.lag_max_ms,
                "lag_budget_ms": self.lag_budget_ms,
                "cpu_percent": round(self.cpu_percent, 1),
                "cpu_percent_total": round(self.cpu_percent_total, 1),
                "cpu_budget_percent": self.cpu_budget_percent,
                "saturated": self.saturated,
                "saturation_reason": self.saturation_reason,
            },
            "stopped_by": self.stopped_by,
        }
        if self.model == "open":
            d["latency_basis"] = "intended send time (coordinated-omission corrected)"
            d["uncorrected_latency_ms"] = self.uncorrected.summary() if self.uncorrected else None
            d["uncorrected_latency_hdr"] = self.uncorrected.encode() if self.uncorrected else None
            d.update(
                planned=self.planned,
                dispatched=self.dispatched,
                late=self.late,
                late_ms=self.late_ms,
                dropped=self.dropped,
            )
        else:
            d["latency_basis"] = "actual send time"
        return d

    def describe(self) -> str:
        """One human line: rate, errors, latency percentiles and the generator self-check."""
        s = self.histogram.summary()

        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v:.2f}"

        text = (
            f"{self.model} loop: {self.requests} requests in {self.duration_s:.1f} s = {self.rate:.0f}/s"
            f"{f' (offered {self.offered_rate:g}/s)' if self.offered_rate else ''}, "
            f"errors {self.errors} ({self.error_percent:.2f} %), "
            f"p50 {ms(s['p50'])} p95 {ms(s['p95'])} p99 {ms(s['p99'])} max {ms(s['max'])} ms"
        )
        if self.uncorrected is not None:
            u = self.uncorrected.summary()
            text += f" (uncorrected p50 {ms(u['p50'])} p99 {ms(u['p99'])} ms; late {self.late}, dropped {self.dropped})"
        text += f"; generator CPU {self.cpu_percent:.0f} %, lag p99 {self.lag_p99_ms:.1f} ms"
        if self.saturated:
            text += f"; SATURATED: {self.saturation_reason}"
        return text


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def parse_loopback_url(url: str) -> tuple[str, int, str]:
    """Split an ``http://`` URL into ``(host, port, path)``; refuse any host that is not loopback.

    Raises:
        ValueError: not ``http``, no host, or a host outside 127.0.0.0/8, ``::1`` and ``localhost``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"load generator URL must be http://, got {url!r}")
    host = parts.hostname
    if not host:
        raise ValueError(f"load generator URL has no host: {url!r}")
    if host != "localhost":
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(
                f"load may only target loopback addresses (127.0.0.0/8, ::1, localhost); got host {host!r}"
            ) from None
        if not ip.is_loopback:
            raise ValueError(
                f"load may only target loopback addresses (127.0.0.0/8, ::1, localhost); got host {host!r}"
            )
    port = parts.port or 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return host, port, path


def _seconds(value: float | timedelta, name: str) -> float:
    s = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if not math.isfinite(s) or s <= 0:
        raise ValueError(f"{name} must be a positive duration, got {value!r}")
    return s


def _make_factory(
    request: RequestSpec, default_path: str
) -> tuple[Callable[[int], Request] | None, Request | None]:
    """Return (factory, static request): exactly one is not None."""
    if request is None:
        return None, Request("GET", default_path)
    if isinstance(request, str):
        if not request.startswith("/"):
            raise ValueError(f"request path must start with '/': {request!r}")
        return None, Request("GET", request)
    if isinstance(request, Request):
        return None, request
    if callable(request):
        return request, None
    raise TypeError(
        f"request must be a Request, a path, a callable(i) -> Request or None, not {type(request)}"
    )


def _split(total: int, parts: int) -> list[int]:
    base, rem = divmod(total, parts)
    return [base + (1 if k < rem else 0) for k in range(parts)]


# --------------------------------------------------------------------------------------------
# one process: the core loops
# --------------------------------------------------------------------------------------------
@dataclass
class _Spec:
    """Everything one process needs for its share of the run (fork-inherited, never pickled)."""

    model: str
    host: str
    port: int
    factory: Callable[[int], Request] | None
    static: Request | None
    duration_s: float
    max_requests: int
    timeout_s: float
    ok_status: frozenset[int] | None
    index_offset: int = 0
    index_stride: int = 1
    workers: int = 1  # closed: workers; open: connections
    rate: float = 0.0  # open: this process's share
    phase_s: float = 0.0  # open: offset of this process's schedule
    max_in_flight: int = 0
    late_s: float = 0.010


@dataclass
class _Partial:
    """One process's raw result while it runs; handed in as a :class:`WorkerReport` (:func:`_report`)."""

    requests: int = 0
    ok: int = 0
    errors: int = 0
    status_counts: dict[int, int] = field(default_factory=dict)
    exceptions: dict[str, int] = field(default_factory=dict)
    error_samples: list[str] = field(default_factory=list)
    histogram: LatencyHistogram = field(default_factory=LatencyHistogram)
    uncorrected: LatencyHistogram | None = None
    lag: LatencyHistogram = field(default_factory=LatencyHistogram)
    timeline: dict[int, list[Any]] = field(default_factory=dict)  # second -> [count, errors, hist]
    duration_s: float = 0.0
    planned: int = 0
    dispatched: int = 0
    late: int = 0
    dropped: int = 0
    cpu_s: float = 0.0
    wall_s: float = 0.0
    stopped_by: str = "duration"


def _report(p: _Partial, worker: str) -> WorkerReport:
    """One process's figures in the merge protocol: counts, encoded histograms, maxima, samples, CPU."""
    counts = {"requests": p.requests, "ok": p.ok, "errors": p.errors, "planned": p.planned,
              "dispatched": p.dispatched, "late": p.late, "dropped": p.dropped,
              "stopped_by_max_requests": int(p.stopped_by == "max_requests")}  # fmt: skip
    hists = {"latency": p.histogram.encode(), "lag": p.lag.encode()}
    if p.uncorrected is not None:
        hists["uncorrected"] = p.uncorrected.encode()
    for code, n in p.status_counts.items():
        counts[f"status/{code}"] = n
    for name, n in p.exceptions.items():
        counts[f"exception/{name}"] = n
    for sec, (cnt, errs, h) in p.timeline.items():
        counts[f"timeline/{sec}"] = cnt
        counts[f"timeline-errors/{sec}"] = errs
        hists[f"timeline/{sec}"] = h.encode()
    return WorkerReport(worker, counts=counts, histograms=hists, maxima={"duration_s": p.duration_s},
                        samples=list(p.error_samples), cpu_s=p.cpu_s, wall_s=p.wall_s)  # fmt: skip


class _Recorder:
    """Hot-path bookkeeping shared by both models."""

    def __init__(self, spec: _Spec, start: float):
        self.p = _Partial()
        self.start = start
        self.ok_status = spec.ok_status
        self.hist = self.p.histogram
        self.tl = self.p.timeline
        self._sec_from = self._sec_to = 0.0
        self._sec_bucket: list[Any] = []
        if spec.model == "open":
            self.p.uncorrected = LatencyHistogram()

    def _bucket(self, done: float) -> list[Any]:
        sec = int(done - self.start)
        b = self.tl.get(sec)
        if b is None:
            b = self.tl[sec] = [0, 0, LatencyHistogram(TIMELINE_DIGITS)]
        return b

    def response(self, resp: Response, latency_s: float, done: float, service_s: float | None = None) -> None:
        p = self.p
        p.requests += 1
        status = resp.status
        p.status_counts[status] = p.status_counts.get(status, 0) + 1
        ok = (200 <= status < 300) if self.ok_status is None else (status in self.ok_status)
        b = self._bucket(done)
        b[0] += 1
        if ok:
            p.ok += 1
        else:
            p.errors += 1
            b[1] += 1
            if len(p.error_samples) < MAX_ERROR_SAMPLES:
                msg = f"HTTP {status} {resp.reason}: {resp.text[:200]}".strip()
                if msg not in p.error_samples:
                    p.error_samples.append(msg)
        us = latency_s * 1e6
        self.hist.record_us(us)
        b[2].record_us(us)
        if service_s is not None:
            p.uncorrected.record_us(service_s * 1e6)  # type: ignore[union-attr]

    def success(self, status: int, latency_s: float, done: float) -> None:
        """An answer with an accepted status (the closed loop's fast path: no Response object)."""
        p = self.p
        p.requests += 1
        p.ok += 1
        sc = p.status_counts
        sc[status] = sc.get(status, 0) + 1
        if not self._sec_from <= done < self._sec_to:  # the current second's bucket, looked up once a second
            sec = int(done - self.start)
            self._sec_bucket = self._bucket(done)
            self._sec_from, self._sec_to = self.start + sec, self.start + sec + 1
        b = self._sec_bucket
        b[0] += 1
        us = latency_s * 1e6
        self.hist.record_us(us)
        b[2].record_us(us)

    def failure(
        self, exc: BaseException, latency_s: float | None, done: float, service_s: float | None = None
    ) -> None:
        p = self.p
        p.requests += 1
        p.errors += 1
        name = type(exc).__name__
        p.exceptions[name] = p.exceptions.get(name, 0) + 1
        b = self._bucket(done)
        b[0] += 1
        b[1] += 1
        if len(p.error_samples) < MAX_ERROR_SAMPLES:
            msg = f"{name}: {exc}"[:300]
            if msg not in p.error_samples:
                p.error_samples.append(msg)
        if latency_s is not None:  # timeouts: the client waited this long, so it counts
            self.hist.record_us(latency_s * 1e6)
            b[2].record_us(latency_s * 1e6)
            if service_s is not None:
                p.uncorrected.record_us(service_s * 1e6)  # type: ignore[union-attr]


class _Progress:
    """Reports the running request count: to the worker pool's counter and/or an in-process callback."""

    def __init__(self, worker: WorkerContext | None, callback: ProgressCallback | None, interval_s: float):
        self.worker, self.callback, self.interval = worker, callback, interval_s
        self.next_call = 0.0

    def tick(self, rec: _Recorder, now: float) -> None:
        if self.worker is not None:
            self.worker.set("requests", rec.p.requests)
        if self.callback is not None and now >= self.next_call:
            self.next_call = now + self.interval
            elapsed = now - rec.start
            if elapsed > 0.2:
                _safe_progress(self, elapsed, rec.p.requests)


def _safe_progress(holder: Any, elapsed: float, count: int) -> None:
    try:
        holder.callback(elapsed, count, count / elapsed if elapsed > 0 else 0.0)
    except Exception as exc:  # a broken progress printer must not break the measurement
        warnings.warn(
            f"on_progress callback failed, progress disabled: {exc!r}", RuntimeWarning, stacklevel=2
        )
        holder.callback = None


async def _preconnect(conns: list[HttpConnection], timeout_s: float) -> None:
    async def one(c: HttpConnection) -> None:
        try:
            await asyncio.wait_for(c.connect(), timeout_s)
        except (OSError, TimeoutError):
            pass  # the first request will retry and report the error

    # connect in bounded batches so a large pool does not flood the accept queue
    for i in range(0, len(conns), 64):
        await asyncio.gather(*(one(c) for c in conns[i : i + 64]))


SELECT_FD_LIMIT = 1000
"""Below this descriptor number a process runs its loop on ``select()``, whose timeouts have microsecond
resolution; ``epoll`` rounds every timer up to the next millisecond, which would add about 0.5 ms of
the generator's own lateness to each open-loop request's corrected latency."""


def _highest_fd() -> int:
    """The highest file descriptor number open in this process (a guess where /proc is absent)."""
    try:
        return max((int(n) for n in os.listdir("/proc/self/fd")), default=0)
    except (OSError, ValueError):
        return 256


def _event_loop_for(spec: _Spec) -> asyncio.AbstractEventLoop:
    """An event loop with precise timers for the open model (select), uvloop for the closed model.

    ``select()`` only takes descriptor numbers below 1024, so it is used only when this process's
    descriptors plus the run's connections stay well below that. The closed model needs no timer
    precision but as little overhead per request as possible: uvloop (libuv) when it is installed
    (:data:`FAST_LOOP`), which drove ~25 % more requests per CPU second than asyncio's own loop in
    the closed loop here; its timers have millisecond resolution, so the open model never uses it.
    """
    if spec.model == "closed" and FAST_LOOP is not None:
        return FAST_LOOP()
    if (
        spec.model == "open"
        and hasattr(selectors, "SelectSelector")
        and _highest_fd() + spec.workers + 64 < SELECT_FD_LIMIT
    ):
        return asyncio.SelectorEventLoop(selectors.SelectSelector())
    return asyncio.new_event_loop()


try:
    import uvloop as _uvloop

    FAST_LOOP: Callable[[], asyncio.AbstractEventLoop] | None = _uvloop.new_event_loop
    """The closed model's event loop factory (uvloop's), or ``None`` without uvloop."""
except ImportError:  # pragma: no cover - uvloop is in requirements.txt; without it asyncio's loop serves
    FAST_LOOP = None

_PR_SET_TIMERSLACK, _PR_GET_TIMERSLACK = 29, 30


@contextlib.contextmanager
def _fine_timer_slack() -> Any:
    """Linux: 1 us timer slack for this thread while the run lasts (the default 50 us adds lag)."""
    libc = None
    old = -1
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL(None, use_errno=True)
            old = libc.prctl(_PR_GET_TIMERSLACK, 0, 0, 0, 0)
            if old > 0:
                libc.prctl(_PR_SET_TIMERSLACK, 1000, 0, 0, 0)
    try:
        yield
    finally:
        if libc is not None and old > 0:
            with contextlib.suppress(Exception):
                libc.prctl(_PR_SET_TIMERSLACK, old, 0, 0, 0)


async def _run_core(
    spec: _Spec, progress: _Progress, start_gate: Callable[[], Any] | None = None
) -> _Partial:
    """Run this process's share of the load inside the current event loop."""
    with _fine_timer_slack():
        return await _run_core_inner(spec, progress, start_gate)


async def _run_core_inner(spec: _Spec, progress: _Progress, start_gate: Callable[[], Any] | None) -> _Partial:
    loop = asyncio.get_running_loop()
    n_conns = spec.workers
    lean: _LeanRun | None = None
    conns: list[HttpConnection] = []
    if spec.model == "closed":
        lean = _LeanRun(spec, loop)
        await lean.preconnect()
    else:
        conns = [HttpConnection(spec.host, spec.port, connect_timeout=min(spec.timeout_s, 5.0))
                 for _ in range(n_conns)]  # fmt: skip
        await _preconnect(conns, min(spec.timeout_s, 5.0))
    if start_gate is not None:
        await loop.run_in_executor(None, start_gate)
    now = time.monotonic
    cpu0 = time.thread_time()
    start = now()
    rec = _Recorder(spec, start)
    try:
        if lean is not None:
            core = lean.run(rec, start)
        else:
            core = _open(spec, conns, rec, start, now)
        # progress ticks, and (closed model) the event-loop lag probe; the open model's lag is
        # the dispatcher's own lateness
        probe = LagProbe(LAG_PROBE_INTERVAL_S, rec.p.lag)
        ticker = asyncio.ensure_future(probe.run(lambda t: progress.tick(rec, t), record=spec.model == "closed"))
        try:
            await core
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
    finally:
        for c in conns:
            await c.close()
        if lean is not None:
            lean.close()
    end = now()
    p = rec.p
    p.cpu_s = time.thread_time() - cpu0
    p.wall_s = end - start
    if p.duration_s <= 0:
        p.duration_s = end - start
    progress.tick(rec, end)
    return p


_CONTENT_LENGTH = b"\r\ncontent-length:"
_CONNECTION = b"\r\nconnection:"


class _LeanConn(asyncio.Protocol):
    """One closed-loop connection, driven from its own callbacks (no task, future or timer per request).

    The closed loop is the throughput generator, so its per-request path is as short as the
    protocol allows: the request bytes are written in the callback that completed the previous
    answer; an answer with a ``Content-Length`` is framed from the lower-cased head without
    building a header dict (anything else -- chunked, no length, ``HEAD``, ``1xx``, ``204``,
    ``304`` -- goes through :class:`~conductor_perf.measure.rawhttp.ResponseParser`); timeouts are
    found by one periodic sweep of the run instead of a timer per request.
    """

    def __init__(self, run: _LeanRun) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.parser: ResponseParser | None = None
        self.busy = False
        self.received = False
        self.reused = False
        self.retried = False
        self.data = b""
        self.head = False
        self.method = ""
        self.t0 = 0.0  # when the request was started (before a connect)
        self.sent_at = 0.0
        self.deadline = 0.0
        self.connecting = False

    # -- asyncio callbacks ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.reused = False

    def data_received(self, data: bytes) -> None:
        done = _mono()
        if not self.busy:
            self._drop()  # unsolicited bytes: the connection cannot be trusted
            return
        self.received = True
        if self.parser is not None:
            self._feed_parser(data, done)
            return
        buf = self.buf + data if self.buf else data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > MAX_HEAD_BYTES:
                self._fail_protocol(HttpProtocolError(f"response head larger than {MAX_HEAD_BYTES} bytes"), done)
            else:
                self.buf = buf
            return
        head = buf[:end].lower()
        status_ok = buf.startswith(b"HTTP/1.") and buf[8:9] == b" " and buf[12:13] in (b" ", b"\r")
        cl = head.find(_CONTENT_LENGTH) if status_ok and not self.head else -1
        if cl < 0 or b"\r\ntransfer-encoding:" in head or buf[9:10] in (b"1",) or buf[9:12] in (b"204", b"304"):
            self.buf = b""
            self.parser = ResponseParser(expect_body=not self.head)
            self._feed_parser(buf, done)
            return
        eol = head.find(b"\r\n", cl + 2)
        try:
            length = int(head[cl + 17 : eol if eol >= 0 else end])
            status = int(buf[9:12])
        except ValueError:
            self.buf = b""
            self.parser = ResponseParser(expect_body=not self.head)
            self._feed_parser(buf, done)
            return
        total = end + 4 + length
        if len(buf) < total:
            self.buf = buf
            return
        self.buf = b""
        conn = head.find(_CONNECTION)
        if buf[7:8] == b"0":
            keep_alive = conn >= 0 and b"keep-alive" in head[conn : head.find(b"\r\n", conn + 2) % (end + 1)]
        else:
            keep_alive = conn < 0 or b"close" not in head[conn : head.find(b"\r\n", conn + 2) % (end + 1)]
        if len(buf) > total:
            keep_alive = False  # bytes after the answer: do not reuse the connection
        self.run.answered(self, status, buf, end, total, keep_alive, done)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.busy:
            return
        done = _mono()
        if self.parser is None and self.buf:
            self.parser = ResponseParser(expect_body=not self.head)
            try:
                self.parser.feed(self.buf)
            except Exception as err:  # noqa: BLE001 - a protocol error is this request's failure
                self.buf = b""
                self.run.failed(self, err, done)
                return
        self.buf = b""
        if self.parser is not None:
            try:
                resp = self.parser.feed_eof()
            except Exception as err:  # noqa: BLE001 - closed mid-answer
                if exc is not None:
                    err.__cause__ = exc
                self.run.lost(self, err, done)
                return
            self.parser = None
            self.run.answered_response(self, resp, done)  # type: ignore[arg-type]
            return
        from conductor_perf.measure.rawhttp import ConnectionClosedError

        self.run.lost(self, ConnectionClosedError("server closed the connection before a response"), done)

    # -- helpers ----------------------------------------------------------------------------
    def _feed_parser(self, data: bytes, done: float) -> None:
        parser = self.parser
        assert parser is not None
        try:
            resp = parser.feed(data)
        except Exception as exc:  # noqa: BLE001 - protocol error
            self._fail_protocol(exc, done)
            return
        if resp is not None:
            self.parser = None
            if parser.rest:
                resp.keep_alive = False
            self.run.answered_response(self, resp, done)

    def _fail_protocol(self, exc: BaseException, done: float) -> None:
        self.buf = b""
        self.parser = None
        self.run.failed(self, exc, done)

    def send(self, data: bytes, head: bool, method: str) -> None:
        self.data, self.head, self.method = data, head, method
        self.busy, self.received = True, False
        self.sent_at = _mono()
        self.deadline = self.sent_at + self.run.timeout
        self.transport.write(data)  # type: ignore[union-attr]

    def _drop(self) -> None:
        t, self.transport = self.transport, None
        self.buf = b""
        self.parser = None
        if t is not None:
            t.abort()


_mono = time.monotonic


class _LeanRun:
    """The closed loop of one process over :class:`_LeanConn` connections (see there)."""

    def __init__(self, spec: _Spec, loop: asyncio.AbstractEventLoop) -> None:
        self.spec = spec
        self.loop = loop
        self.timeout = spec.timeout_s
        self.connect_timeout = min(spec.timeout_s, 5.0)
        self.conns = [_LeanConn(self) for _ in range(spec.workers)]
        self.host_header = f"[{spec.host}]:{spec.port}" if ":" in spec.host else f"{spec.host}:{spec.port}"
        static = spec.static
        self.static = static.encode(self.host_header) if static is not None else b""
        self.static_head = static is not None and static.method.upper() == "HEAD"
        self.static_method = static.method.upper() if static is not None else ""
        self.n = 0
        self.idle = 0
        self.rec: _Recorder | None = None
        self.end = 0.0
        self.last = 0.0
        self.done: asyncio.Future[None] | None = None
        self.sweeper: asyncio.TimerHandle | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        #: the run has ended (or was cancelled): no connection starts another request or reconnects
        self.over = False

    async def _connect(self, conn: _LeanConn, timeout: float) -> None:
        # asyncio.timeout, not wait_for: wait_for runs the connect as a task of its own, and one
        # refused just as the caller is cancelled would be logged as "exception never retrieved"
        conn.connecting = True
        try:
            async with asyncio.timeout(timeout):
                await self.loop.create_connection(lambda: conn, self.spec.host, self.spec.port)
        finally:
            conn.connecting = False

    async def preconnect(self) -> None:
        """Open every connection before the run starts (in batches of 64); failures are retried in the run."""

        async def one(c: _LeanConn) -> None:
            with contextlib.suppress(OSError, TimeoutError):
                await self._connect(c, self.connect_timeout)

        for i in range(0, len(self.conns), 64):
            await asyncio.gather(*(one(c) for c in self.conns[i : i + 64]))

    async def run(self, rec: _Recorder, start: float) -> None:
        """Load until the duration or the request cap; every connection ends idle."""
        self.rec = rec
        self.end = start + self.spec.duration_s
        self.last = start
        self.done = self.loop.create_future()
        period = min(0.1, max(0.005, self.timeout / 5))
        self.sweeper = self.loop.call_later(period, self._sweep, period)
        for conn in self.conns:
            self.next(conn)
        try:
            await self.done
        finally:
            self.over = True  # a connection waiting to retry (a refused reconnect) stays idle
            if self.sweeper is not None:
                self.sweeper.cancel()
            pending = list(self.tasks)
            for t in pending:
                t.cancel()
            if pending:  # let the cancelled reconnects end (a run cancelled by its caller included)
                await asyncio.wait(pending, timeout=1.0)
        rec.p.duration_s = self.last - start

    def close(self) -> None:
        """Close every connection."""
        for conn in self.conns:
            t, conn.transport = conn.transport, None
            if t is not None:
                t.close()

    # -- the loop ---------------------------------------------------------------------------
    def next(self, conn: _LeanConn) -> None:
        """Start this connection's next request, or let it rest when the run is over."""
        if self.over:
            return
        spec = self.spec
        if self.n >= spec.max_requests:
            self.rec.p.stopped_by = "max_requests"  # type: ignore[union-attr]
            self._rest(conn)
            return
        now = _mono()
        if now >= self.end:
            self._rest(conn)
            return
        n = self.n
        self.n = n + 1
        if spec.factory is None:
            data, head, method = self.static, self.static_head, self.static_method
        else:
            try:
                req = spec.factory(spec.index_offset + n * spec.index_stride)
                data = req.encode(self.host_header)
            except Exception as exc:  # noqa: BLE001 - a broken request is this request's failure
                self.rec.failure(exc, None, now)  # type: ignore[union-attr]
                self.loop.call_soon(self.next, conn)
                return
            method = req.method.upper()
            head = method == "HEAD"
        conn.t0 = now
        conn.retried = False
        if conn.transport is None or conn.transport.is_closing():
            self._spawn(self._reconnect_send(conn, data, head, method))
        else:
            conn.send(data, head, method)

    def _rest(self, conn: _LeanConn) -> None:
        self.idle += 1
        if self.idle >= len(self.conns) and self.done is not None and not self.done.done():
            self.done.set_result(None)

    def _spawn(self, coro: Any) -> None:
        task = self.loop.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _reconnect_send(self, conn: _LeanConn, data: bytes, head: bool, method: str) -> None:
        try:
            left = conn.t0 + self.timeout - _mono()
            if left <= 0:
                raise TimeoutError(f"request timed out after {self.timeout} s (connecting)")
            try:
                await self._connect(conn, min(left, self.connect_timeout))
            except TimeoutError:
                raise TimeoutError(f"request timed out after {self.timeout} s (connecting)") from None
        except asyncio.CancelledError:
            raise
        except TimeoutError as exc:
            t1 = _mono()
            self.rec.failure(exc, t1 - conn.t0, t1)  # type: ignore[union-attr]
            self.last = t1
            self.next(conn)
            return
        except Exception as exc:  # noqa: BLE001 - refused, reset: this request's failure
            t1 = _mono()
            self.rec.failure(exc, None, t1)  # type: ignore[union-attr]
            self.last = t1
            self.loop.call_later(0.005, self.next, conn)  # do not spin on a refused connection
            return
        conn.send(data, head, method)

    def answered(self, conn: _LeanConn, status: int, buf: bytes, end: int, total: int, keep_alive: bool,
                 done: float) -> None:  # fmt: skip
        """A framed answer (fast path): record it, then the next request."""
        conn.busy = False
        conn.reused = True
        rec = self.rec
        ok_status = rec.ok_status  # type: ignore[union-attr]
        if (200 <= status < 300) if ok_status is None else (status in ok_status):
            rec.success(status, done - conn.sent_at, done)  # type: ignore[union-attr]
        else:
            line = buf[: buf.find(b"\r\n")].decode("latin-1")
            reason = line.split(" ", 2)[2] if line.count(" ") >= 2 else ""
            resp = Response(status, reason, {}, bytes(buf[end + 4 : total]), keep_alive, conn.sent_at, done)
            rec.response(resp, done - conn.sent_at, done)  # type: ignore[union-attr]
        self.last = done
        if not keep_alive:
            conn._drop()
        self.next(conn)

    def answered_response(self, conn: _LeanConn, resp: Response, done: float) -> None:
        """An answer framed by the full parser."""
        conn.busy = False
        conn.reused = True
        resp.sent_at, resp.done_at = conn.sent_at, done
        self.rec.response(resp, done - conn.sent_at, done)  # type: ignore[union-attr]
        self.last = done
        if not resp.keep_alive:
            conn._drop()
        self.next(conn)

    def failed(self, conn: _LeanConn, exc: BaseException, done: float) -> None:
        """A protocol error: the connection is dropped, the request failed."""
        conn.busy = False
        conn._drop()
        self.rec.failure(exc, None, done)  # type: ignore[union-attr]
        self.last = done
        self.loop.call_later(0.005, self.next, conn)

    def lost(self, conn: _LeanConn, exc: BaseException, done: float) -> None:
        """The connection closed before the answer was complete; a stale keep-alive is retried once."""
        conn.busy = False
        conn.buf = b""
        conn.parser = None
        if conn.reused and not conn.received and not conn.retried and conn.method in IDEMPOTENT_METHODS:
            conn.retried = True
            self._spawn(self._retry(conn))
            return
        self.rec.failure(exc, None, done)  # type: ignore[union-attr]
        self.last = done
        self.loop.call_later(0.005, self.next, conn)

    async def _retry(self, conn: _LeanConn) -> None:
        data, head, method = conn.data, conn.head, conn.method
        retried = conn.retried
        try:
            await self._connect(conn, self.connect_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001
            t1 = _mono()
            self.rec.failure(exc, None, t1)  # type: ignore[union-attr]
            self.last = t1
            self.loop.call_later(0.005, self.next, conn)
            return
        conn.send(data, head, method)
        conn.retried = retried

    def _sweep(self, period: float) -> None:
        """Abort every request past its deadline (one timer for the whole run)."""
        now = _mono()
        for conn in self.conns:
            if conn.busy and conn.deadline <= now:
                conn.busy = False
                conn._drop()
                self.rec.failure(TimeoutError(f"request timed out after {self.timeout} s"), now - conn.t0, now)  # type: ignore[union-attr]
                self.last = now
                self.next(conn)
        if self.done is not None and not self.done.done():
            self.sweeper = self.loop.call_later(period, self._sweep, period)


class _Pool:
    """Idle connections handed to waiting requests in arrival order."""

    def __init__(self, conns: list[HttpConnection]):
        self.idle = list(conns)
        self.waiters: deque[asyncio.Future[HttpConnection]] = deque()

    async def acquire(self) -> HttpConnection:
        if self.idle:
            return self.idle.pop()
        fut: asyncio.Future[HttpConnection] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(fut.result())
            raise

    def release(self, conn: HttpConnection) -> None:
        while self.waiters:
            w = self.waiters.popleft()
            if not w.done():
                w.set_result(conn)
                return
        self.idle.append(conn)


async def _open(
    spec: _Spec, conns: list[HttpConnection], rec: _Recorder, start: float, now: Callable[[], float]
) -> None:
    loop = asyncio.get_running_loop()
    p = rec.p
    end = start + spec.duration_s
    interval = 1.0 / spec.rate
    first = start + spec.phase_s
    planned = (
        0 if spec.phase_s >= spec.duration_s else math.ceil((spec.duration_s - spec.phase_s) * spec.rate)
    )
    planned = min(planned, spec.max_requests)
    if planned < math.ceil((spec.duration_s - spec.phase_s) * spec.rate):
        p.stopped_by = "max_requests"
    p.planned = planned
    # a dispatcher still this far behind at the end has failed its schedule; the rest is not sent
    lag_budget_end = end + max(SCHEDULE_GRACE_S, 5 * interval)
    pool = _Pool(conns)
    timeout = spec.timeout_s
    late_s = spec.late_s
    factory, static = spec.factory, spec.static
    offset, stride = spec.index_offset, spec.index_stride
    host_header = conns[0].host_header if conns else ""
    static_data = static.encode(host_header) if static is not None else b""
    static_head = static is not None and static.method.upper() == "HEAD"
    lag = p.lag
    tasks: set[asyncio.Task[None]] = set()
    state = {"in_flight": 0, "last": start}
    unsent: list[int] = [0]

    async def one(n: int, intended: float) -> None:
        sent_flag = False
        try:
            conn = await pool.acquire()
            try:
                sent = now()
                sent_flag = True
                if sent - intended > late_s:
                    p.late += 1
                try:
                    if factory is not None:
                        resp = await conn.request(factory(offset + n * stride), timeout=timeout)
                    else:
                        resp = await conn.request(static_data, timeout=timeout, head=static_head)
                except TimeoutError as exc:
                    t1 = now()
                    rec.failure(exc, t1 - intended, t1, t1 - sent)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    t1 = now()
                    rec.failure(exc, None, t1)
                else:
                    t1 = resp.done_at  # the last byte, read in the protocol callback
                    rec.response(resp, t1 - intended, t1, t1 - resp.sent_at)
                state["last"] = t1
            finally:
                pool.release(conn)
        except asyncio.CancelledError:
            if sent_flag:
                t1 = now()
                rec.failure(
                    TimeoutError("request still in flight when the run's drain time ended"), t1 - intended, t1
                )
            else:
                unsent[0] += 1
        finally:
            state["in_flight"] -= 1

    n = 0
    max_in_flight = spec.max_in_flight
    while n < planned:
        intended = first + n * interval
        t = now()
        if intended > t:
            await asyncio.sleep(intended - t)
            t = now()
        if t >= lag_budget_end:
            break
        # start every request that is due (catching up after a late wake-up)
        while n < planned:
            intended = first + n * interval
            if intended > t:
                break
            lag.record_us((t - intended) * 1e6)
            if state["in_flight"] >= max_in_flight:
                p.dropped += 1
            else:
                state["in_flight"] += 1
                task = loop.create_task(one(n, intended))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            n += 1
    p.dispatched = n
    # drain: let requests in flight (and queued for a connection) finish, within the timeout
    if tasks:
        _, pending = await asyncio.wait(set(tasks), timeout=max(0.0, end + timeout - now()))
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)
    p.dropped += unsent[0]
    p.duration_s = max(state["last"], min(now(), end)) - start


# --------------------------------------------------------------------------------------------
# orchestration: one process or several
# --------------------------------------------------------------------------------------------
def _load_worker(spec: _Spec, ctx: WorkerContext) -> WorkerReport:
    """One load process: open its connections, meet the others at the start barrier, load, report."""
    progress = _Progress(ctx, None, 1.0)
    with asyncio.Runner(loop_factory=lambda: _event_loop_for(spec)) as runner:
        partial = runner.run(_run_core(spec, progress, ctx.wait_start))
    return _report(partial, ctx.name)


def _run_processes(
    specs: list[_Spec], on_progress: ProgressCallback | None, progress_interval: float, deadline_s: float,
    start_gate: StartGate | None = None, gate_timeout: float = 0.0,
) -> list[WorkerReport]:
    holder = _Progress(None, on_progress, progress_interval)
    with WorkerPool(_load_worker, specs, name="load", counters=("requests",), start_timeout=START_TIMEOUT_S,
                    gate_timeout=gate_timeout) as pool:  # fmt: skip
        pool.start(gate=start_gate)

        def tick(elapsed: float) -> None:
            if holder.callback is not None:
                _safe_progress(holder, elapsed, pool.total("requests"))

        return pool.collect(deadline_s, on_tick=tick, tick_s=progress_interval)


def combine_reports(
    model: str,
    url: str,
    reports: list[WorkerReport],
    *,
    workers: int,
    connections: int,
    offered_rate: float | None = None,
    late_ms: float | None = None,
    cpu_budget: float = DEFAULT_CPU_BUDGET_PERCENT,
    lag_budget: float = DEFAULT_LAG_BUDGET_MS,
) -> LoadResult:
    """One :class:`LoadResult` from the :class:`WorkerReport` of every process that shared a load.

    The reports may come from this module's own processes or from any other carrier (e.g. load
    generators in several Robot processes, each handing in ``result.reports[0].to_json()``);
    they are merged by :func:`~conductor_perf.measure.workers.merge_reports` (histograms exactly).
    """
    merged = merge_reports(reports)
    status = {int(code): n for code, n in merged.counts_under("status").items()}
    timeline_counts = {int(sec): n for sec, n in merged.counts_under("timeline").items()}
    timeline_errors = merged.counts_under("timeline-errors")
    points: list[TimelinePoint] = []
    if timeline_counts:
        for sec in range(0, max(timeline_counts) + 1):
            if sec in timeline_counts:
                h = merged.histogram(f"timeline/{sec}")
                q = h.percentiles_ms([50.0, 95.0]) if h.count else None
                points.append(TimelinePoint(sec, timeline_counts[sec], q[50.0] if q else None,
                                            q[95.0] if q else None, timeline_errors.get(str(sec), 0)))  # fmt: skip
            else:
                points.append(TimelinePoint(sec, 0, None, None, 0))
    cpu = merged.cpu_percents()
    result = LoadResult(
        model=model,
        url=url,
        requests=merged.count("requests"),
        ok=merged.count("ok"),
        errors=merged.count("errors"),
        duration_s=merged.maxima.get("duration_s", 0.0),
        histogram=merged.histogram("latency"),
        uncorrected=merged.histogram("uncorrected") if model == "open" else None,
        lag=merged.histogram("lag"),
        status_counts=status,
        exceptions=merged.counts_under("exception"),
        error_samples=merged.samples,
        timeline=points,
        workers=workers,
        connections=connections,
        processes=merged.workers,
        offered_rate=offered_rate,
        planned=merged.count("planned"),
        dispatched=merged.count("dispatched"),
        late=merged.count("late"),
        late_ms=late_ms,
        dropped=merged.count("dropped"),
        cpu_percent=max(cpu, default=0.0),
        cpu_percent_total=sum(cpu),
        cpu_budget_percent=cpu_budget,
        lag_budget_ms=lag_budget,
        stopped_by="max_requests" if merged.count("stopped_by_max_requests") else "duration",
        reports=list(reports),
    )
    _self_check(result)
    return result


def _self_check(r: LoadResult) -> None:
    """Set ``saturated``/``saturation_reason`` when the generator was the bottleneck."""
    who = "busiest load process" if r.processes > 1 else "load generator"
    reasons = [cpu_reason(r.cpu_percent, r.cpu_budget_percent, who=who), lag_reason(r.lag, r.lag_budget_ms)]
    if r.model == "open" and r.planned and r.dispatched < SCHEDULE_KEPT_RATIO * r.planned:
        offered = r.offered_rate or 0.0
        reasons.append(
            f"offered rate not reached: the schedule started {r.dispatched} of {r.planned} planned "
            f"requests ({offered * r.dispatched / r.planned:.0f}/s of {offered:g}/s)"
        )
    reasons = [x for x in reasons if x]
    r.saturated = bool(reasons)
    r.saturation_reason = "; ".join(reasons)


@dataclass
class _Common:
    url: str
    host: str
    port: int
    factory: Callable[[int], Request] | None
    static: Request | None
    duration_s: float
    max_requests: int
    timeout_s: float
    ok_status: frozenset[int] | None
    processes: int


def _common(
    url: str,
    request: RequestSpec,
    duration: float | timedelta,
    max_requests: int | None,
    timeout: float | timedelta,
    ok_status: Collection[int] | None,
    processes: int,
) -> _Common:
    host, port, path = parse_loopback_url(url)
    factory, static = _make_factory(request, path)
    duration_s = _seconds(duration, "duration")
    if duration_s > MAX_DURATION_S:
        raise ValueError(f"duration must be at most {MAX_DURATION_S:.0f} s, got {duration_s}")
    cap = DEFAULT_MAX_REQUESTS if max_requests is None else int(max_requests)
    if cap < 1:
        raise ValueError(f"max_requests must be at least 1, got {max_requests}")
    if not 1 <= processes <= 64:
        raise ValueError(f"processes must be within 1..64, got {processes}")
    return _Common(
        url,
        host,
        port,
        factory,
        static,
        duration_s,
        cap,
        _seconds(timeout, "timeout"),
        frozenset(ok_status) if ok_status is not None else None,
        processes,
    )


def _run(
    specs: list[_Spec], on_progress: ProgressCallback | None, progress_interval: float,
    start_gate: StartGate | None = None, gate_timeout: float = 0.0,
) -> list[WorkerReport]:
    if len(specs) == 1:
        progress = _Progress(None, on_progress, progress_interval)
        return [_report(_run_sync(_run_core(specs[0], progress, start_gate), specs[0]), "load")]
    deadline = specs[0].duration_s + specs[0].timeout_s + 60.0
    return _run_processes(specs, on_progress, progress_interval, deadline, start_gate, gate_timeout)


def _run_sync(coro: Any, spec: _Spec) -> Any:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        with asyncio.Runner(loop_factory=lambda: _event_loop_for(spec)) as runner:
            return runner.run(coro)
    coro.close()
    raise RuntimeError(
        "run_closed/run_open cannot run inside an event loop: await closed_loop/open_loop instead"
    )


def _check_progress_interval(s: float) -> float:
    s = float(s)
    if not 0.1 <= s <= 3600:
        raise ValueError(f"progress_interval must be within 0.1..3600 s, got {s}")
    return s


def _closed_specs(c: _Common, workers: int) -> list[_Spec]:
    if not 1 <= workers <= 10_000:
        raise ValueError(f"workers must be within 1..10000, got {workers}")
    if workers < c.processes:
        raise ValueError(f"workers ({workers}) must be at least processes ({c.processes})")
    ws = _split(workers, c.processes)
    caps = _split(c.max_requests, c.processes)
    return [
        _Spec(
            "closed",
            c.host,
            c.port,
            c.factory,
            c.static,
            c.duration_s,
            max(1, caps[k]),
            c.timeout_s,
            c.ok_status,
            index_offset=k,
            index_stride=c.processes,
            workers=ws[k],
        )
        for k in range(c.processes)
    ]


def _open_specs(
    c: _Common, rate: float, connections: int, max_in_flight: int | None, late_ms: float
) -> list[_Spec]:
    rate = float(rate)
    if not math.isfinite(rate) or not 0 < rate <= 1_000_000:
        raise ValueError(f"rate must be within 0..1000000 requests/s, got {rate}")
    if not 1 <= connections <= 10_000:
        raise ValueError(f"connections must be within 1..10000, got {connections}")
    if connections < c.processes:
        raise ValueError(f"connections ({connections}) must be at least processes ({c.processes})")
    if late_ms < 0:
        raise ValueError(f"late_ms must be >= 0, got {late_ms}")
    k_all = c.processes
    cs = _split(connections, k_all)
    caps = _split(c.max_requests, k_all)
    total_in_flight = max_in_flight if max_in_flight is not None else connections + math.ceil(2.0 * rate)
    if total_in_flight < 1:
        raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
    fl = _split(max(total_in_flight, k_all), k_all)
    return [
        _Spec(
            "open",
            c.host,
            c.port,
            c.factory,
            c.static,
            c.duration_s,
            max(1, caps[k]),
            c.timeout_s,
            c.ok_status,
            index_offset=k,
            index_stride=k_all,
            workers=cs[k],
            rate=rate / k_all,
            phase_s=k / rate,
            max_in_flight=fl[k],
            late_s=late_ms / 1000.0,
        )
        for k in range(k_all)
    ]


def run_closed(
    url: str,
    request: RequestSpec = None,
    *,
    workers: int = 10,
    duration: float | timedelta = 10.0,
    max_requests: int | None = None,
    timeout: float | timedelta = 10.0,
    processes: int = 1,
    ok_status: Collection[int] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 2.0,
    cpu_budget_percent: float = DEFAULT_CPU_BUDGET_PERCENT,
    lag_budget_ms: float = DEFAULT_LAG_BUDGET_MS,
    start_gate: StartGate | None = None,
    gate_timeout: float = 0.0,
) -> LoadResult:
    """Closed-loop load: ``workers`` connections, each sending its next request when the last finished.

    Args:
        url: ``http://host:port[/path]`` on loopback; the path is used when ``request`` is ``None``.
        request: what to send (see :data:`RequestSpec`); a factory gets a run-wide unique index.
        workers: concurrent workers (one keep-alive connection each), split over ``processes``.
        duration: how long to send (seconds or ``timedelta``).
        max_requests: cap on requests sent (default :data:`DEFAULT_MAX_REQUESTS`).
        timeout: per-request timeout; a timed-out request is an error recorded at its elapsed time.
        processes: OS processes to spread the workers over (histograms merged exactly).
        ok_status: status codes that count as success (default: any 2xx).
        on_progress: called about every ``progress_interval`` s with ``(elapsed_s, requests, rate)``.
        cpu_budget_percent, lag_budget_ms: self-check budgets (see :class:`LoadResult`).
        start_gate: called (in a thread) once every connection is open, before the first request;
            the run's clock starts when it returns (e.g. a swarm's start barrier). What it
            raises ends the run. ``gate_timeout``: the longest it may take (several processes).

    Returns:
        A :class:`LoadResult`; latency is from each request's send to its last response byte.
    """
    c = _common(url, request, duration, max_requests, timeout, ok_status, processes)
    specs = _closed_specs(c, int(workers))
    reports = _run(specs, on_progress, _check_progress_interval(progress_interval), start_gate, gate_timeout)
    return combine_reports(
        "closed",
        url,
        reports,
        workers=int(workers),
        connections=int(workers),
        offered_rate=None,
        late_ms=None,
        cpu_budget=cpu_budget_percent,
        lag_budget=lag_budget_ms,
    )


def run_open(
    url: str,
    request: RequestSpec = None,
    *,
    rate: float,
    duration: float | timedelta = 10.0,
    connections: int = 32,
    max_in_flight: int | None = None,
    late_ms: float = 10.0,
    max_requests: int | None = None,
    timeout: float | timedelta = 10.0,
    processes: int = 1,
    ok_status: Collection[int] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 2.0,
    cpu_budget_percent: float = DEFAULT_CPU_BUDGET_PERCENT,
    lag_budget_ms: float = DEFAULT_LAG_BUDGET_MS,
    start_gate: StartGate | None = None,
    gate_timeout: float = 0.0,
) -> LoadResult:
    """Open-loop load: a constant arrival ``rate``, latency from the intended and the actual send time.

    Args:
        url: ``http://host:port[/path]`` on loopback; the path is used when ``request`` is ``None``.
        request: what to send (see :data:`RequestSpec`); a factory gets a run-wide unique index.
        rate: requests per second offered (split evenly over ``processes``, schedules interleaved).
        duration: how long the schedule runs (seconds or ``timedelta``); requests still in flight
            then get up to ``timeout`` to finish.
        connections: keep-alive connections in the pool (a request waits for a free one; that wait
            is part of its corrected latency).
        max_in_flight: requests waiting or on the wire beyond which a due request is dropped
            (default: ``connections`` + 2 s worth of ``rate``).
        late_ms: a request sent more than this after its intended time counts as late.
        max_requests: cap on requests planned (default :data:`DEFAULT_MAX_REQUESTS`).
        timeout: per-request timeout (from the actual send).
        processes: OS processes to spread the rate over (histograms merged exactly).
        ok_status: status codes that count as success (default: any 2xx).
        on_progress: called about every ``progress_interval`` s with ``(elapsed_s, requests, rate)``.
        cpu_budget_percent, lag_budget_ms: self-check budgets (see :class:`LoadResult`).
        start_gate, gate_timeout: as for :func:`run_closed`.

    Returns:
        A :class:`LoadResult` whose ``histogram`` is corrected (from the intended send time) and
        whose ``uncorrected`` is from the actual send time.
    """
    c = _common(url, request, duration, max_requests, timeout, ok_status, processes)
    specs = _open_specs(c, rate, int(connections), max_in_flight, float(late_ms))
    reports = _run(specs, on_progress, _check_progress_interval(progress_interval), start_gate, gate_timeout)
    return combine_reports(
        "open",
        url,
        reports,
        workers=0,
        connections=int(connections),
        offered_rate=float(rate),
        late_ms=float(late_ms),
        cpu_budget=cpu_budget_percent,
        lag_budget=lag_budget_ms,
    )


async def closed_loop(
    url: str,
    request: RequestSpec = None,
    *,
    workers: int = 10,
    duration: float | timedelta = 10.0,
    max_requests: int | None = None,
    timeout: float | timedelta = 10.0,
    ok_status: Collection[int] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 2.0,
    cpu_budget_percent: float = DEFAULT_CPU_BUDGET_PERCENT,
    lag_budget_ms: float = DEFAULT_LAG_BUDGET_MS,
) -> LoadResult:
    """:func:`run_closed` in the running event loop (one process), for async callers."""
    c = _common(url, request, duration, max_requests, timeout, ok_status, 1)
    spec = _closed_specs(c, int(workers))[0]
    partial = await _run_core(
        spec, _Progress(None, on_progress, _check_progress_interval(progress_interval))
    )
    return combine_reports(
        "closed",
        url,
        [_report(partial, "load")],
        workers=int(workers),
        connections=int(workers),
        offered_rate=None,
        late_ms=None,
        cpu_budget=cpu_budget_percent,
        lag_budget=lag_budget_ms,
    )


async def open_loop(
    url: str,
    request: RequestSpec = None,
    *,
    rate: float,
    duration: float | timedelta = 10.0,
    connections: int = 32,
    max_in_flight: int | None = None,
    late_ms: float = 10.0,
    max_requests: int | None = None,
    timeout: float | timedelta = 10.0,
    ok_status: Collection[int] | None = None,
    on_progress: ProgressCallback | None = None,
    progress_interval: float = 2.0,
    cpu_budget_percent: float = DEFAULT_CPU_BUDGET_PERCENT,
    lag_budget_ms: float = DEFAULT_LAG_BUDGET_MS,
) -> LoadResult:
    """:func:`run_open` in the running event loop (one process), for async callers."""
    c = _common(url, request, duration, max_requests, timeout, ok_status, 1)
    spec = _open_specs(c, rate, int(connections), max_in_flight, float(late_ms))[0]
    partial = await _run_core(
        spec, _Progress(None, on_progress, _check_progress_interval(progress_interval))
    )
    return combine_reports(
        "open",
        url,
        [_report(partial, "load")],
        workers=0,
        connections=int(connections),
        offered_rate=float(rate),
        late_ms=float(late_ms),
        cpu_budget=cpu_budget_percent,
        lag_budget=lag_budget_ms,
    )


__all__ = [
    "DEFAULT_CPU_BUDGET_PERCENT",
    "DEFAULT_LAG_BUDGET_MS",
    "DEFAULT_MAX_REQUESTS",
    "LoadResult",
    "Request",
    "RequestSpec",
    "TimelinePoint",
    "closed_loop",
    "combine_reports",
    "open_loop",
    "parse_loopback_url",
    "run_closed",
    "run_open",
]
