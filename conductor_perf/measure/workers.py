"""One worker pool for every benchmark that spreads its load over processes, and one merge of their results.

Where one Python process would measure the GIL instead of the system under test (bus writers,
HTTP load, SSE clients, run-info readers and writers), a benchmark hands a *worker function* and
one *share* of the work per worker to :class:`WorkerPool`. The pool owns the rest:

* **start** -- N workers (forked OS processes, or threads with ``mode="threads"``), each running
  ``fn(share, ctx)`` with its own :class:`WorkerContext`;
* **start barrier** -- a worker calls :meth:`WorkerContext.wait_start` when it is ready to load
  (connections opened, files created); no worker gets past it before every worker is there, and
  all of them get the same start time, so their windows line up. A worker that does not arrive
  within ``start_timeout`` fails the start, naming the worker;
* **counters** -- named per-worker counters in shared memory (lock-free: each worker writes only
  its own slots), read by the caller for progress and readiness; a shared stop flag;
* **result return** -- each worker's return value (normally a :class:`WorkerReport`) comes back
  through its own pipe;
* **bounded join** -- :meth:`WorkerPool.collect` waits at most ``timeout``; a worker that raised,
  died (a signal, an exit) or hung past the deadline fails the call with a :class:`WorkerError`
  that names it and says why;
* **cleanup** -- :meth:`WorkerPool.close` (also on any error, and on leaving a ``with`` block)
  stops, terminates and finally kills every worker process: none outlives the call. Workers are
  ``multiprocessing`` children, so :func:`conductor_perf.faults.fail_fast_if_sut_dies` can still
  kill them when the SUT dies.

**One merge, whatever carried the results.** A worker reports counts (added up), latency
histograms in HdrHistogram's compressed encoding (merged exactly, never averaged), maxima, error
samples, per-item records and its CPU and wall time (:class:`WorkerReport`). :func:`merge_reports`
is the only place that combines them, whether the reports came back through this pool's pipes or
from another carrier (e.g. Robot workers started by pabot, handing :meth:`WorkerReport.to_json`
text to a coordinator); a merge with fewer reports than ``expected`` is marked incomplete.

**Generator self-check.** :class:`LagProbe` measures how late a periodic timer fires in a worker's
event loop; :func:`cpu_reason` and :func:`lag_reason` phrase a saturated generator for the record.

Example::

    def writer(share: int, ctx: WorkerContext) -> WorkerReport:
        start = ctx.wait_start()
        n = 0
        while time.time() < start + 5:
            n += 1
            ctx.set("messages", n)
        return WorkerReport(ctx.name, counts={"messages": n})

    with WorkerPool(writer, [0, 1, 2], name="writers", counters=("messages",)) as pool:
        pool.start()
        merged = merge_reports(pool.collect(timeout=35))
    print(merged.counts["messages"], [r.counts["messages"] for r in merged.reports])
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import multiprocessing.connection as mp_connection
import queue as queue_mod
import signal
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .histogram import LatencyHistogram

__all__ = [
    "LAG_PROBE_INTERVAL_S",
    "LagProbe",
    "MergedReports",
    "WorkerContext",
    "WorkerError",
    "WorkerPool",
    "WorkerReport",
    "cpu_reason",
    "lag_reason",
    "merge_reports",
]

LAG_PROBE_INTERVAL_S = 0.010
"""The lag probe's timer period."""
DEFAULT_START_TIMEOUT_S = 30.0
"""How long the start barrier waits for every worker."""
FAILURE_GRACE_S = 5.0
"""After one worker failed, how long the others get to hand in their results (they are asked to stop)."""
CLOSE_GRACE_S = 5.0
"""How long :meth:`WorkerPool.close` lets workers end by themselves before it terminates them."""
MAX_SAMPLES = 5
"""Distinct error samples kept by a merge."""

WorkerFn = Callable[[Any, "WorkerContext"], Any]


class WorkerError(RuntimeError):
    """One or more workers failed: raised, died, hung, or never reached the start barrier.

    ``str()`` is one line naming every failed worker; ``failures`` maps worker name -> reason, and
    ``tracebacks`` worker name -> the worker's own traceback (also chained as ``__cause__``).
    """

    def __init__(self, pool: str, failures: dict[str, str], tracebacks: dict[str, str] | None = None) -> None:
        self.pool = pool
        self.failures = dict(failures)
        self.tracebacks = dict(tracebacks or {})
        super().__init__(f"{pool}: " + "; ".join(f"worker {name} {why}" for name, why in self.failures.items()))


class _RemoteTraceback(Exception):
    """A worker's traceback, chained to the :class:`WorkerError` so logs show where it failed."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


# --------------------------------------------------------------------------------------------
# what a worker hands back, and the one merge
# --------------------------------------------------------------------------------------------
@dataclass
class WorkerReport:
    """One worker's result, in a form any carrier can move (pickle here; JSON for other carriers).

    Attributes:
        worker: the worker's name.
        counts: totals, added up by the merge (``"requests"``, ``"status/200"``, ...).
        histograms: latency histograms (microseconds) in HdrHistogram's compressed encoding
            (:meth:`LatencyHistogram.encode`), merged exactly by name.
        maxima: values of which the merge keeps the largest (e.g. ``"duration_s"``).
        samples: error messages; the merge keeps the first :data:`MAX_SAMPLES` distinct ones.
        records: per-item data (e.g. one record per SSE client), concatenated in worker order;
            JSON transport needs JSON-friendly items.
        cpu_s, wall_s: CPU the worker's generator used over ``wall_s`` seconds of its measurement.
    """

    worker: str
    counts: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, str] = field(default_factory=dict)
    maxima: dict[str, float] = field(default_factory=dict)
    samples: list[str] = field(default_factory=list)
    records: list[Any] = field(default_factory=list)
    cpu_s: float = 0.0
    wall_s: float = 0.0

    @property
    def cpu_percent(self) -> float:
        """CPU over the measured wall time, percent of one core (0 when no wall time)."""
        return 100.0 * self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    def histogram(self, name: str) -> LatencyHistogram:
        """The named histogram decoded (empty when the worker recorded none)."""
        text = self.histograms.get(name)
        return LatencyHistogram.decode(text) if text else LatencyHistogram()

    def to_json(self) -> str:
        """The report as JSON text (histograms stay in their compressed encoding)."""
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkerReport:
        """Rebuild a report from :meth:`to_json` text (``ValueError`` when it is not one)."""
        data = json.loads(text)
        if not isinstance(data, dict) or not isinstance(data.get("worker"), str):
            raise ValueError("not a worker report: expected a JSON object with a 'worker' name")
        return cls(worker=data["worker"], counts={str(k): int(v) for k, v in (data.get("counts") or {}).items()},
                   histograms={str(k): str(v) for k, v in (data.get("histograms") or {}).items()},
                   maxima={str(k): float(v) for k, v in (data.get("maxima") or {}).items()},
                   samples=[str(s) for s in data.get("samples") or []], records=list(data.get("records") or []),
                   cpu_s=float(data.get("cpu_s", 0.0)), wall_s=float(data.get("wall_s", 0.0)))  # fmt: skip


@dataclass
class MergedReports:
    """Several workers' reports combined exactly (see :func:`merge_reports`)."""

    reports: list[WorkerReport]
    expected: int
    counts: dict[str, int]
    histograms: dict[str, LatencyHistogram]
    maxima: dict[str, float]
    samples: list[str]
    records: list[Any]

    @property
    def workers(self) -> int:
        """Reports merged."""
        return len(self.reports)

    @property
    def complete(self) -> bool:
        """Whether every expected worker reported (a figure from fewer is not the whole load)."""
        return len(self.reports) >= self.expected

    def count(self, name: str) -> int:
        """A summed count (0 when no worker reported it)."""
        return self.counts.get(name, 0)

    def counts_under(self, prefix: str) -> dict[str, int]:
        """Counts named ``<prefix>/<key>``, as ``{key: count}``."""
        head = prefix + "/"
        return {k[len(head):]: v for k, v in self.counts.items() if k.startswith(head)}  # fmt: skip

    def histogram(self, name: str) -> LatencyHistogram:
        """A merged histogram (empty when no worker reported it)."""
        return self.histograms.get(name) or LatencyHistogram()

    def cpu_percents(self, *, min_wall_s: float = 0.0) -> list[float]:
        """Each worker's CPU percent, for workers that measured more than ``min_wall_s``."""
        return [r.cpu_percent for r in self.reports if r.wall_s > min_wall_s]


def merge_reports(reports: Iterable[WorkerReport], *, expected: int | None = None,
                  max_samples: int = MAX_SAMPLES) -> MergedReports:  # fmt: skip
    """Combine worker reports: counts added, histograms merged exactly, maxima kept, records concatenated.

    Args:
        reports: the workers' reports, in worker order (records keep that order).
        expected: how many workers should have reported (default: as many as were given);
            :attr:`MergedReports.complete` is false when fewer did.
        max_samples: distinct error samples kept, first come first kept.
    """
    items = list(reports)
    counts: dict[str, int] = {}
    hists: dict[str, LatencyHistogram] = {}
    maxima: dict[str, float] = {}
    samples: list[str] = []
    records: list[Any] = []
    for r in items:
        for name, n in r.counts.items():
            counts[name] = counts.get(name, 0) + n
        for name, text in r.histograms.items():
            h = LatencyHistogram.decode(text)
            if name in hists:
                hists[name].merge(h)
            else:
                hists[name] = h  # keeps the worker's precision (e.g. 2 digits for timeline buckets)
        for name, v in r.maxima.items():
            maxima[name] = max(maxima[name], v) if name in maxima else v
        for s in r.samples:
            if len(samples) < max_samples and s not in samples:
                samples.append(s)
        records.extend(r.records)
    return MergedReports(reports=items, expected=len(items) if expected is None else expected, counts=counts,
                         histograms=hists, maxima=maxima, samples=samples, records=records)  # fmt: skip


# --------------------------------------------------------------------------------------------
# generator self-check
# --------------------------------------------------------------------------------------------
class LagProbe:
    """How late a periodic timer fires in the running event loop: the generator's scheduling lag.

    A loop busy with its own work (parsing, bookkeeping) runs timers late; a lag p99 of several
    milliseconds means the generator, not the server, may have set the latencies it measured.

    Args:
        interval_s: timer period (10 ms).
        histogram: where lags are recorded, microseconds (a new one by default).
    """

    def __init__(self, interval_s: float = LAG_PROBE_INTERVAL_S, histogram: LatencyHistogram | None = None) -> None:
        self.interval_s = interval_s
        self.histogram = LatencyHistogram() if histogram is None else histogram

    async def run(self, until: Callable[[float], object] | None = None, *, record: bool = True) -> None:
        """Probe until ``until(now)`` is true (or the task is cancelled); ``record=False`` only ticks."""
        now = time.monotonic
        interval = self.interval_s
        hist = self.histogram
        while True:
            target = now() + interval
            await asyncio.sleep(interval)
            t = now()
            if record:
                hist.record_us(max(0.0, t - target) * 1e6)
            if until is not None and until(t):
                return


def cpu_reason(cpu_percent: float, budget_percent: float, *, who: str, when: str = "") -> str:
    """``"<who> used N % of a CPU core[ when] (budget B %)"`` when over budget, else ``""``."""
    if cpu_percent <= budget_percent:
        return ""
    return f"{who} used {cpu_percent:.0f} % of a CPU core{when} (budget {budget_percent:.0f} %)"


def lag_reason(lag: LatencyHistogram, budget_ms: float, *, what: str = "scheduling lag") -> str:
    """``"<what> p99 X ms, max Y ms (budget B ms)"`` when the lag p99 is over budget, else ``""``."""
    if not lag.count or lag.percentile_ms(99) <= budget_ms:
        return ""
    return (f"{what} p99 {lag.percentile_ms(99):.1f} ms, max {lag.max_us / 1000:.1f} ms "
            f"(budget {budget_ms:g} ms)")  # fmt: skip


# --------------------------------------------------------------------------------------------
# the worker's side
# --------------------------------------------------------------------------------------------
class WorkerContext:
    """What a worker function gets besides its share: its name, the start barrier, counters, stop.

    Attributes:
        index: the worker's position, 0-based.
        name: the worker's name (``<pool name>-<index>`` unless the pool was given names).
        workers: how many workers the pool has.
        started_at: the common start time (``time.time()``) once :meth:`wait_start` returned.
    """

    def __init__(self, index: int, name: str, workers: int, counters: Sequence[str], slots: Any,
                 stop: Any, link: Any, start_timeout: float) -> None:  # fmt: skip
        self.index = index
        self.name = name
        self.workers = workers
        self.started_at = 0.0
        self._names = {c: i for i, c in enumerate(counters)}
        self._width = len(counters)
        self._base = index * len(counters)
        self._slots = slots
        self._stop = stop
        self._link = link
        self._start_timeout = start_timeout

    def wait_start(self) -> float:
        """Wait at the start barrier until every worker is ready; returns the common start time.

        Raises :class:`WorkerError` when the pool gives no start signal in time (another worker
        failed, or the pool was stopped).
        """
        self.started_at = self._link.arrive(self._start_timeout)
        return self.started_at

    def _slot(self, counter: str) -> int:
        try:
            return self._base + self._names[counter]
        except KeyError:
            raise KeyError(f"no counter {counter!r}; the pool has {sorted(self._names)}") from None

    def add(self, counter: str, n: int = 1) -> None:
        """Add ``n`` to this worker's counter."""
        i = self._slot(counter)
        self._slots[i] += n

    def set(self, counter: str, value: int) -> None:  # noqa: A003 - the counter's value
        """Set this worker's counter."""
        self._slots[self._slot(counter)] = value

    def total(self, counter: str) -> int:
        """The counter summed over every worker (a snapshot)."""
        k = self._names[counter]
        return int(sum(self._slots[i * self._width + k] for i in range(self.workers)))

    def stop_requested(self) -> bool:
        """Whether the pool, or any worker, asked the workers to stop."""
        return bool(self._stop.is_set())

    def request_stop(self) -> None:
        """Ask every worker to stop (e.g. a shared goal was reached)."""
        self._stop.set()


class _SharedFlag:
    """A stop flag in shared memory (no lock: one byte written once, read by polling)."""

    def __init__(self, ctx: Any) -> None:
        self._v = ctx.RawValue("b", 0)

    def set(self) -> None:  # noqa: A003
        self._v.value = 1

    def is_set(self) -> bool:
        return bool(self._v.value)


class _PipeLink:
    """A worker process's end of its pipe: ``ready`` up, ``go`` down, the result up."""

    def __init__(self, conn: Any, name: str) -> None:
        self.conn = conn
        self.name = name

    def arrive(self, timeout: float) -> float:
        self.conn.send(("ready", None))
        if not self.conn.poll(timeout):
            raise WorkerError("start barrier", {self.name: f"got no start signal within {timeout:g} s"})
        kind, payload = self.conn.recv()
        if kind != "go":
            raise WorkerError("start barrier", {self.name: f"was told to {kind}: {payload}"})
        return float(payload)


class _ThreadLink:
    """A worker thread's view of the barrier: ``ready`` into the pool's queue, then the ``go`` event."""

    def __init__(self, index: int, events: queue_mod.Queue, go: threading.Event, start: list[float],
                 name: str) -> None:  # fmt: skip
        self.index, self.events, self.go, self.start, self.name = index, events, go, start, name

    def arrive(self, timeout: float) -> float:
        self.events.put((self.index, "ready", None))
        if not self.go.wait(timeout) or not self.start:
            raise WorkerError("start barrier", {self.name: f"got no start signal within {timeout:g} s"})
        return self.start[0]


def _process_main(fn: WorkerFn, share: Any, wctx: WorkerContext, conn: Any, inherited: list[Any]) -> None:
    """Body of a worker process: close the other workers' pipe ends, run, send the outcome."""
    for other in inherited:
        with contextlib.suppress(OSError):
            other.close()
    try:
        outcome: tuple[str, Any] = ("result", fn(share, wctx))
    except BaseException:  # noqa: BLE001 - everything goes to the parent, which raises
        outcome = ("error", traceback.format_exc())
    try:
        conn.send(outcome)
    except Exception:  # noqa: BLE001 - e.g. an unpicklable result
        with contextlib.suppress(Exception):
            conn.send(("error", f"could not send the result:\n{traceback.format_exc()}"))


def _thread_main(fn: WorkerFn, share: Any, wctx: WorkerContext, index: int, events: queue_mod.Queue) -> None:
    try:
        events.put((index, "result", fn(share, wctx)))
    except BaseException:  # noqa: BLE001 - reported to the pool
        events.put((index, "error", traceback.format_exc()))


# --------------------------------------------------------------------------------------------
# the pool
# --------------------------------------------------------------------------------------------
def _why_dead(exitcode: int | None) -> str:
    if exitcode is None:
        return "closed its pipe"
    if exitcode < 0:
        try:
            return f"died: killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"died: killed by signal {-exitcode}"
    if exitcode == 0:
        return "exited without a result"
    return f"died: exited with code {exitcode}"


def _last_line(tb: str) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "failed"


class WorkerPool:
    """N workers with a per-worker share of the work; see the module docs.

    Args:
        fn: the worker function, ``fn(share, ctx) -> result``; it must call
            :meth:`WorkerContext.wait_start` once, before it starts loading. In processes it is
            inherited by ``fork`` (closures are fine); the result travels by pickle.
        shares: one share per worker (the number of workers).
        name: what the workers are, for names and errors (e.g. ``"load"``, ``"bus-writer"``).
        names: one name per worker (default ``<name>-<index>``).
        counters: names of the per-worker counters.
        mode: ``"processes"`` (forked OS processes) or ``"threads"`` (one process; the same
            interface, for loads that mirror goroutines; a hung thread cannot be killed).
        start_timeout: seconds the start barrier waits for every worker.
        gate_timeout: the longest a ``gate`` given to :meth:`start` may hold the ready workers
            (they give up waiting for the start signal after ``start_timeout`` plus this).
    """

    def __init__(self, fn: WorkerFn, shares: Sequence[Any], *, name: str, names: Sequence[str] | None = None,
                 counters: Sequence[str] = (), mode: Literal["processes", "threads"] = "processes",
                 start_timeout: float = DEFAULT_START_TIMEOUT_S, gate_timeout: float = 0.0) -> None:  # fmt: skip
        if not shares:
            raise ValueError("a worker pool needs at least one share")
        if mode not in ("processes", "threads"):
            raise ValueError(f"mode must be 'processes' or 'threads', got {mode!r}")
        if names is not None and len(names) != len(shares):
            raise ValueError(f"{len(names)} names for {len(shares)} workers")
        if start_timeout <= 0:
            raise ValueError(f"start_timeout must be positive, got {start_timeout}")
        self.fn = fn
        self.shares = list(shares)
        self.name = name
        self.names = list(names) if names is not None else [f"{name}-{i}" for i in range(len(shares))]
        self.counters = tuple(counters)
        self.mode = mode
        self.start_timeout = float(start_timeout)
        self.gate_timeout = max(0.0, float(gate_timeout))
        self.started_at = 0.0
        """The common start time (``time.time()``) given at the barrier."""
        self.started_mono = 0.0
        self._n = len(self.shares)
        self._started = False
        self._closed = False
        self._results: dict[int, Any] = {}
        self._failures: dict[int, str] = {}
        self._tracebacks: dict[int, str] = {}
        self._procs: list[Any] = []
        self._pids: list[int] = []
        self._conns: list[Any] = []
        self._threads: list[threading.Thread] = []
        if mode == "processes":
            self._ctx = multiprocessing.get_context("fork")
            self._slots: Any = self._ctx.RawArray("q", max(1, self._n * len(self.counters)))
            self._stop: Any = _SharedFlag(self._ctx)
        else:
            self._slots = [0] * max(1, self._n * len(self.counters))
            self._stop = threading.Event()
            self._events: queue_mod.Queue = queue_mod.Queue()
            self._go = threading.Event()
            self._start_box: list[float] = []

    # -- counters and stop ------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Number of workers."""
        return self._n

    def total(self, counter: str) -> int:
        """A counter summed over every worker (a snapshot)."""
        k = self.counters.index(counter)
        w = len(self.counters)
        return int(sum(self._slots[i * w + k] for i in range(self._n)))

    def request_stop(self) -> None:
        """Ask every worker to stop (they see :meth:`WorkerContext.stop_requested`)."""
        self._stop.set()

    @property
    def pids(self) -> list[int]:
        """The worker processes' ids (empty for threads or before :meth:`start`)."""
        return list(self._pids)

    # -- start ------------------------------------------------------------------------------
    def start(self, *, gate: Callable[[], object] | None = None) -> float:
        """Start the workers and hold them at the barrier until all are ready; returns the start time.

        Args:
            gate: called once every worker is ready, before they are released (e.g. to wait
                for a wider barrier, such as the other processes of a swarm); the start time is
                taken when it returns. Whatever it raises stops the workers and is raised.

        Raises :class:`WorkerError` (after stopping every worker) when a worker fails, dies or is
        not ready within ``start_timeout``.
        """
        if self._started:
            raise RuntimeError("a worker pool starts once")
        self._started = True
        try:
            if self.mode == "processes":
                self._spawn_processes()
            else:
                self._spawn_threads()
            ready: set[int] = set()
            deadline = time.monotonic() + self.start_timeout
            while len(ready) + len(self._failures) < self._n:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                for i, kind, payload in self._poll([i for i in range(self._n)
                                                    if i not in ready and i not in self._failures], left):  # fmt: skip
                    if kind == "ready":
                        ready.add(i)
                    elif kind == "result":
                        self._fail(i, "ended before it reached the start barrier")
                    else:
                        self._record(i, kind, payload)
            if self._failures:
                raise self._error()
            late = [i for i in range(self._n) if i not in ready]
            if late:
                for i in late:
                    self._failures[i] = f"did not reach the start barrier within {self.start_timeout:g} s"
                raise self._error()
            if gate is not None:
                gate()
            self.started_at = time.time()
            self.started_mono = time.monotonic()
            self._release()
        except BaseException:
            self.close()
            raise
        return self.started_at

    def _spawn_processes(self) -> None:
        pipes = [self._ctx.Pipe(duplex=True) for _ in range(self._n)]
        self._conns = [parent for parent, _ in pipes]
        every_end = [end for pair in pipes for end in pair]
        for i, (_, child) in enumerate(pipes):
            wctx = WorkerContext(i, self.names[i], self._n, self.counters, self._slots, self._stop,
                                 _PipeLink(child, self.names[i]), self.start_timeout + self.gate_timeout + 5.0)  # fmt: skip
            inherited = [end for end in every_end if end is not child]
            proc = self._ctx.Process(target=_process_main, args=(self.fn, self.shares[i], wctx, child, inherited),
                                     name=f"conductor-perf-{self.names[i]}", daemon=True)  # fmt: skip
            self._procs.append(proc)
            proc.start()
            self._pids.append(proc.pid)
        for _, child in pipes:
            child.close()  # the parent keeps only its ends: a dead worker's pipe reads as closed

    def _spawn_threads(self) -> None:
        for i in range(self._n):
            link = _ThreadLink(i, self._events, self._go, self._start_box, self.names[i])
            wctx = WorkerContext(i, self.names[i], self._n, self.counters, self._slots, self._stop, link,
                                 self.start_timeout + self.gate_timeout + 5.0)  # fmt: skip
            t = threading.Thread(target=_thread_main, args=(self.fn, self.shares[i], wctx, i, self._events),
                                 name=f"conductor-perf-{self.names[i]}", daemon=True)  # fmt: skip
            self._threads.append(t)
            t.start()

    def _release(self) -> None:
        if self.mode == "processes":
            for conn in self._conns:
                try:
                    conn.send(("go", self.started_at))
                except OSError:
                    pass  # it died right after arriving: collect() names it
        else:
            self._start_box.append(self.started_at)
            self._go.set()

    # -- events -----------------------------------------------------------------------------
    def _poll(self, pending: list[int], timeout: float) -> list[tuple[int, str, Any]]:
        """Wait up to ``timeout`` for messages or deaths of the ``pending`` workers."""
        if self.mode == "threads":
            try:
                first = self._events.get(timeout=max(0.0, timeout))
            except queue_mod.Empty:
                return []
            out = [first]
            with contextlib.suppress(queue_mod.Empty):
                while True:
                    out.append(self._events.get_nowait())
            return out
        watch: dict[Any, int] = {}
        for i in pending:
            watch[self._conns[i]] = i
            watch[self._procs[i].sentinel] = i
        if not watch:
            time.sleep(max(0.0, min(timeout, 0.05)))
            return []
        out: list[tuple[int, str, Any]] = []
        done: set[int] = set()
        for obj in mp_connection.wait(list(watch), max(0.0, timeout)):
            i = watch[obj]
            if i in done:
                continue
            done.add(i)
            conn = self._conns[i]
            try:
                if conn.poll(0):
                    kind, payload = conn.recv()
                    out.append((i, kind, payload))
                    continue
            except (EOFError, OSError):
                pass
            proc = self._procs[i]
            proc.join(timeout=1.0)
            if not proc.is_alive():
                out.append((i, "died", proc.exitcode))
        return out

    def _fail(self, i: int, why: str) -> None:
        self._failures.setdefault(i, why)

    def _record(self, i: int, kind: str, payload: Any) -> None:
        if kind == "result":
            self._results[i] = payload
        elif kind == "error":
            self._tracebacks[i] = str(payload)
            self._fail(i, f"failed: {_last_line(str(payload))}")
        elif kind == "died":
            self._fail(i, f"{self._pid_text(i)}{_why_dead(payload)} before it sent its result")

    def _pid_text(self, i: int) -> str:
        return f"(pid {self._pids[i]}) " if i < len(self._pids) else ""
    def _error(self) -> WorkerError:
        failures = {self.names[i]: why for i, why in sorted(self._failures.items())}
        tbs = {self.names[i]: tb for i, tb in self._tracebacks.items()}
        err = WorkerError(self.name, failures, tbs)
        if tbs:
            err.__cause__ = _RemoteTraceback("\n".join(f"--- worker {n} ---\n{tb}" for n, tb in tbs.items()))
        return err

    def check(self) -> None:
        """Raise :class:`WorkerError` now if a worker already failed or died (for callers that wait
        on counters instead of in :meth:`collect`); the workers are not stopped by this call."""
        if self.mode == "processes":
            for i, proc in enumerate(self._procs):
                if i in self._results or i in self._failures:
                    continue
                if proc.exitcode is not None:
                    for j, kind, payload in self._poll([i], 0.0):
                        self._record(j, kind, payload)
                    if i not in self._results and i not in self._failures:
                        self._record(i, "died", proc.exitcode)
        else:
            for j, kind, payload in self._poll([], 0.0):
                self._record(j, kind, payload)
        if self._failures:
            raise self._error()

    # -- results ----------------------------------------------------------------------------
    def collect(self, timeout: float, *, stop: bool = False, on_tick: Callable[[float], object] | None = None,
                tick_s: float = 1.0) -> list[Any]:  # fmt: skip
        """Every worker's result, in worker order, waiting at most ``timeout`` seconds; then :meth:`close`.

        Args:
            timeout: the deadline for the last result; a worker still busy then has hung.
            stop: ask the workers to stop first (workers that run until told).
            on_tick: called with the seconds since the start, every ``tick_s`` from the start,
                while results are awaited (progress, timelines).

        Raises:
            WorkerError: a worker raised, died, or gave no result in time (the others were
                stopped; every process is gone when it is raised).
        """
        if not self._started:
            raise RuntimeError("start() the pool before collect()")
        try:
            if stop:
                self.request_stop()
            deadline = time.monotonic() + timeout
            next_tick = self.started_mono + tick_s
            after_failure = False
            while True:
                pending = [i for i in range(self._n) if i not in self._results and i not in self._failures]
                if not pending:
                    break
                now = time.monotonic()
                if now >= deadline:
                    why = (f"did not stop within {FAILURE_GRACE_S:g} s after another worker failed" if after_failure
                           else f"hung: no result within {timeout:g} s")  # fmt: skip
                    for i in pending:
                        self._fail(i, self._pid_text(i) + why)
                    break
                until = min(deadline, next_tick) if on_tick is not None else deadline
                for i, kind, payload in self._poll(pending, max(0.0, until - now)):
                    self._record(i, kind, payload)
                if self._failures and not after_failure:
                    after_failure = True
                    self.request_stop()  # one failed: the rest stop and get a short grace
                    deadline = min(deadline, time.monotonic() + FAILURE_GRACE_S)
                if on_tick is not None and time.monotonic() >= next_tick:
                    on_tick(time.monotonic() - self.started_mono)
                    while next_tick <= time.monotonic():
                        next_tick += tick_s
        finally:
            self.close()
        if self._failures:
            raise self._error()
        return [self._results[i] for i in range(self._n)]

    def run(self, timeout: float, **kwargs: Any) -> list[Any]:
        """:meth:`start` then :meth:`collect` (``timeout`` counts from the start)."""
        self.start()
        return self.collect(timeout, **kwargs)

    # -- cleanup ----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every worker: ask, wait up to :data:`CLOSE_GRACE_S`, terminate, kill. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.request_stop()
        if self.mode == "threads":
            self._go.set()  # a thread still at the barrier gets no start time and gives up
            end = time.monotonic() + CLOSE_GRACE_S
            for i, t in enumerate(self._threads):
                if i not in self._failures:  # a hung thread cannot be stopped: it is not waited for
                    t.join(timeout=max(0.0, end - time.monotonic()))
            return
        for conn in self._conns:
            with contextlib.suppress(OSError):
                if not conn.closed:
                    conn.send(("stop", "the pool is closing"))
        for i, proc in enumerate(self._procs):
            if i in self._failures and proc.is_alive():
                proc.kill()  # hung, or late at the barrier: no grace
        end = time.monotonic() + CLOSE_GRACE_S
        for i, proc in enumerate(self._procs):
            if i not in self._failures:
                proc.join(timeout=max(0.0, end - time.monotonic()))
        for proc in self._procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self._procs:
            proc.join(timeout=2.0)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5.0)
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.close()
        for proc in self._procs:
            with contextlib.suppress(ValueError):
                proc.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
