"""Message bus benchmarks at file level, through the shared bus implementation.

* :func:`write_throughput`: N writers append for a fixed duration (the seed's
  ``TestMessageBusThroughput``: 10 writers, 10 s, target > 1000 msg/s). Writers are OS processes by
  default: conductor-loop's writers are separate agent processes, and Python threads would measure
  the GIL rather than the bus. ``mode="threads"`` mirrors the Go test's goroutines in one process.
  Either way they run in :class:`~conductor_perf.measure.workers.WorkerPool`: they start together
  at its barrier and write for the same window.
* :func:`check_integrity`: every message present exactly once, none torn, file parses.
* :func:`append_cost`: per-append latency of a single writer.
* :func:`read_all_cost`: time to read and parse a bus holding N messages.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..formats import bus
from ..measure.histogram import LatencyHistogram
from ..measure.workers import WorkerContext, WorkerPool, WorkerReport, merge_reports

ProgressFn = Callable[[float, int, float], None]
TICK_S = 0.25
"""The write timeline samples the message count this often."""
BODY_PREFIX = "perf test message"
_BODY = re.compile(rf"^{BODY_PREFIX} w(\d+) #(\d+)\n?$")


@dataclass
class Integrity:
    """What an integrity check of a bus file found."""

    expected: int
    found: int
    lost: int
    duplicated: int
    torn: int
    foreign: int = 0

    @property
    def ok(self) -> bool:
        """Nothing lost, duplicated or torn."""
        return self.lost == 0 and self.duplicated == 0 and self.torn == 0 and self.found == self.expected

    @property
    def message(self) -> str:
        """One line with every count."""
        return (
            f"bus integrity: expected {self.expected}, found {self.found}, lost {self.lost}, "
            f"duplicated {self.duplicated}, torn {self.torn}"
        )


@dataclass
class BusThroughput:
    """Result of a write-throughput run."""

    writers: int
    mode: str
    duration_s: float
    messages: int
    rate: float
    per_writer: list[int]
    latency: dict[str, float] = field(default_factory=dict)
    histogram: str = ""
    integrity: Integrity | None = None
    timeline: list[tuple[float, int]] = field(default_factory=list)
    cpu_s: float = 0.0
    """CPU the writers used over the window, summed."""

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        data = asdict(self)
        data["integrity_ok"] = self.integrity.ok if self.integrity else None
        return data


def body_for(writer: int, seq: int) -> str:
    """The body a benchmark writer uses for its ``seq``-th message (unique, checkable)."""
    return f"{BODY_PREFIX} w{writer} #{seq}"


@dataclass(frozen=True)
class _WriterShare:
    path: str
    writer: int
    duration_s: float
    project_id: str
    task_id: str
    fsync: bool
    max_messages: int


def _write(share: _WriterShare, ctx: WorkerContext) -> WorkerReport:
    """One writer: append until the common window ends (or ``max_messages``); its count and latencies."""
    hist = LatencyHistogram()
    run_id = f"writer-{share.writer}"
    started = ctx.wait_start()
    stop_at = started + share.duration_s
    cpu0 = time.thread_time()
    n = 0
    perf = time.perf_counter_ns
    while n < share.max_messages and time.time() < stop_at:
        msg = bus.Message(type="FACT", project_id=share.project_id, task_id=share.task_id, run_id=run_id,
                          body=body_for(share.writer, n))  # fmt: skip
        t0 = perf()
        bus.append(share.path, msg, fsync=share.fsync)
        hist.record_us((perf() - t0) / 1000)
        n += 1
        ctx.set("messages", n)
    return WorkerReport(ctx.name, counts={"messages": n}, histograms={"append": hist.encode()},
                        cpu_s=time.thread_time() - cpu0, wall_s=time.time() - started)  # fmt: skip


def write_throughput(
    path: str | os.PathLike[str],
    *,
    writers: int = 10,
    duration: float = 10.0,
    mode: str = "processes",
    project_id: str = "perf-bench",
    task_id: str = "task-bench",
    fsync: bool = False,
    max_messages_per_writer: int = 5_000_000,
    check: bool = True,
    on_progress: ProgressFn | None = None,
    progress_every: float = 2.0,
    first_writer: int = 0,
    start_gate: Callable[[], object] | None = None,
    gate_timeout: float = 0.0,
) -> BusThroughput:
    """Run ``writers`` concurrent appenders on one bus file for ``duration`` seconds.

    The rate is messages appended / duration (as the seed computes it). With ``check`` the file is
    verified afterwards (every message once, none torn). A writer that fails, dies or hangs fails
    the run with a :class:`~conductor_perf.measure.workers.WorkerError` naming it. Writers are
    numbered from ``first_writer`` (their bodies say ``w<number>``, so writers of other processes
    on the same bus stay apart); ``start_gate`` holds the ready writers back until it returns
    (at most ``gate_timeout`` seconds), e.g. until a swarm's start.
    """
    if writers < 1 or duration <= 0:
        raise ValueError("writers must be >= 1 and duration > 0")
    if mode not in ("processes", "threads"):
        raise ValueError(f"mode must be 'processes' or 'threads', got {mode!r}")
    path = os.fspath(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    shares = [_WriterShare(path, first_writer + w, duration, project_id, task_id, fsync, max_messages_per_writer)
              for w in range(writers)]  # fmt: skip
    timeline: list[tuple[float, int]] = []
    last_report = [0.0]
    with WorkerPool(_write, shares, name="bus-writer", counters=("messages",), mode=mode,  # type: ignore[arg-type]
                    gate_timeout=gate_timeout) as pool:  # fmt: skip
        pool.start(gate=start_gate)

        def tick(elapsed: float) -> None:
            if elapsed > duration + TICK_S / 2:
                return  # the window is over: the last sample was taken at its end
            total = pool.total("messages")
            timeline.append((round(elapsed, 3), total))
            if on_progress and elapsed - last_report[0] >= progress_every:
                on_progress(elapsed, total, total / elapsed)
                last_report[0] = elapsed

        reports = pool.collect(duration + 30, on_tick=tick, tick_s=TICK_S)
    merged = merge_reports(reports)
    if not timeline or timeline[-1][0] < duration - TICK_S / 2:
        timeline.append((round(duration, 3), merged.count("messages")))  # the window's end
    per_writer = [r.counts["messages"] for r in reports]
    hist = merged.histogram("append")
    total = merged.count("messages")
    result = BusThroughput(
        writers=writers,
        mode=mode,
        duration_s=duration,
        messages=total,
        rate=total / duration,
        per_writer=per_writer,
        latency=hist.summary(),
        histogram=hist.encode(),
        timeline=timeline,
        cpu_s=sum(r.cpu_s for r in reports),
    )
    if check:
        result.integrity = check_integrity(path, {first_writer + w: n for w, n in enumerate(per_writer)})
    return result


def count_bodies(bodies: Iterable[str]) -> tuple[Counter[tuple[int, int]], int, int]:
    """Count benchmark bodies ``perf test message w<W> #<N>``; returns (counts, garbled, foreign).

    A body that starts with the benchmark prefix but does not match the pattern exactly is
    garbled (torn); any other body is foreign (e.g. a message the system wrote itself).
    """
    seen: Counter[tuple[int, int]] = Counter()
    garbled = foreign = 0
    for body in bodies:
        match = _BODY.match(body)
        if match:
            seen[(int(match.group(1)), int(match.group(2)))] += 1
        elif body.startswith(BODY_PREFIX):
            garbled += 1
        else:
            foreign += 1
    return seen, garbled, foreign


def scan_counts(path: str | os.PathLike[str]) -> tuple[Counter[tuple[int, int]], int, int, int]:
    """Parse a bus file once with the real reader's rules; (benchmark counts, torn, foreign, parsed).

    A benchmark message is torn when its body is garbled or its ``run_id`` (when set) is not its
    writer's; ``---\nmsg_id:`` headers in the raw bytes that did not come back as messages count
    as torn too.
    """
    raw = Path(path).read_bytes() if Path(path).exists() else b""
    fast = _scan_uniform(raw)
    if fast is not None:
        return fast
    messages = bus.parse(raw)
    seen: Counter[tuple[int, int]] = Counter()
    foreign = torn = 0
    for m in messages:
        match = _BODY.match(m.body)
        if not match:
            if m.body.startswith(BODY_PREFIX):
                torn += 1
            else:
                foreign += 1
            continue
        key = (int(match.group(1)), int(match.group(2)))
        if m.run_id and m.run_id != f"writer-{key[0]}":
            torn += 1
            continue
        seen[key] += 1
    torn += max(0, raw.count(b"---\nmsg_id: ") - len(messages))
    return seen, torn, foreign, len(messages)


_UNIFORM = re.compile(
    rb"(\n?)---\nmsg_id: MSG-[0-9A-Za-z-]+\nts: (\d{4}-\d\d)-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z\n"
    rb"type: [A-Z]+\nproject_id: [a-z0-9-]+\ntask_id: [a-z0-9-]+\nrun_id: writer-(\d+)\n"
    rb"---\n" + BODY_PREFIX.encode() + rb" w(\d+) #(\d+)\n"
)


def _scan_uniform(raw: bytes) -> tuple[Counter[tuple[int, int]], int, int, int] | None:
    """:func:`scan_counts` of a file made only of benchmark messages as the writers serialize them, or ``None``.

    A bus of ten writers for ten seconds holds half a million messages; the real reader's rules take
    about 20 s for it, this byte-level pass about a second. It accepts a file only when every byte
    belongs to a message of exactly the benchmark's shape (plain header lines in the writers' order,
    a valid timestamp, the body ``perf test message w<W> #<N>``, one separator line between
    messages): for such a file the real reader yields exactly these messages. Anything else (a torn
    or foreign message, an unexpected header line) returns ``None`` and the caller parses the file
    with the real reader (:func:`conductor_perf.formats.bus.parse`).
    """
    seen: Counter[tuple[int, int]] = Counter()
    torn = pos = 0
    months: set[bytes] = set()
    for match in _UNIFORM.finditer(raw):
        if match.start() != pos or (match.group(1) == b"") != (pos == 0):
            return None
        pos = match.end()
        months.add(match.group(2))
        writer = int(match.group(4))
        if int(match.group(3)) != writer:
            torn += 1  # the reader's rule: a benchmark body under another writer's run_id is torn
            continue
        seen[(writer, int(match.group(5)))] += 1
    if pos != len(raw):
        return None
    for month in months:  # the reader skips a message whose timestamp does not parse
        try:
            bus.parse_rfc3339(month.decode() + "-01T00:00:00Z")
        except ValueError:
            return None
    parsed = sum(seen.values()) + torn
    return seen, torn + max(0, raw.count(b"---\nmsg_id: ") - parsed), 0, parsed


def scan(path: str | os.PathLike[str]) -> tuple[Counter[tuple[int, int]], int, int]:
    """:func:`scan_counts` without the parsed-message count: (benchmark counts, torn, foreign)."""
    return scan_counts(path)[:3]


def check_integrity(path: str | os.PathLike[str], expected_per_writer: dict[int, int]) -> Integrity:
    """Check that writer ``w`` left messages ``#0..#n-1`` exactly once each and none is torn."""
    seen, torn, foreign = scan(path)
    expected = sum(expected_per_writer.values())
    lost = sum(1 for w, n in expected_per_writer.items() for s in range(n) if (w, s) not in seen)
    duplicated = sum(c - 1 for c in seen.values() if c > 1)
    return Integrity(expected=expected, found=sum(seen.values()), lost=lost, duplicated=duplicated, torn=torn,
                     foreign=foreign)  # fmt: skip


def append_cost(path: str | os.PathLike[str], *, count: int = 2000, fsync: bool = False) -> dict[str, float]:
    """Per-append latency of one writer over ``count`` appends (histogram summary in ms)."""
    hist = LatencyHistogram()
    perf = time.perf_counter_ns
    for i in range(count):
        msg = bus.Message(type="FACT", project_id="perf-bench", task_id="task-bench", body=body_for(0, i))
        t0 = perf()
        bus.append(path, msg, fsync=fsync)
        hist.record_us((perf() - t0) / 1000)
    return hist.summary()


def fill(path: str | os.PathLike[str], count: int, *, writer: int = 0) -> None:
    """Append ``count`` benchmark messages to a bus (one writer)."""
    for i in range(count):
        bus.append(path, bus.Message(type="FACT", project_id="perf-bench", task_id="task-bench",
                                     run_id=f"writer-{writer}", body=body_for(writer, i)))  # fmt: skip


def read_all_cost(
    path: str | os.PathLike[str], *, iterations: int = 50, expect: int | None = None
) -> dict[str, float]:
    """Latency of reading and parsing the whole bus ``iterations`` times (summary in ms)."""
    hist = LatencyHistogram()
    perf = time.perf_counter_ns
    for _ in range(iterations):
        t0 = perf()
        msgs = bus.read(path)
        hist.record_us((perf() - t0) / 1000)
        if expect is not None and len(msgs) != expect:
            raise AssertionError(f"read {len(msgs)} messages, expected {expect}")
    return hist.summary()
