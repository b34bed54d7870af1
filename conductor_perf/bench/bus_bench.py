"""Message bus benchmarks at file level, through the shared bus implementation.

* :func:`write_throughput`: N writers append for a fixed duration (the seed's
  ``TestMessageBusThroughput``: 10 writers, 10 s, target > 1000 msg/s). Writers are OS processes by
  default: conductor-loop's writers are separate agent processes, and Python threads would measure
  the GIL rather than the bus. ``mode="threads"`` mirrors the Go test's goroutines in one process.
* :func:`check_integrity`: every message present exactly once, none torn, file parses.
* :func:`append_cost`: per-append latency of a single writer.
* :func:`read_all_cost`: time to read and parse a bus holding N messages.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..formats import bus
from ..measure.histogram import LatencyHistogram

ProgressFn = Callable[[float, int, float], None]
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

    def to_dict(self) -> dict[str, object]:
        """JSON-friendly form."""
        data = asdict(self)
        data["integrity_ok"] = self.integrity.ok if self.integrity else None
        return data


def body_for(writer: int, seq: int) -> str:
    """The body a benchmark writer uses for its ``seq``-th message (unique, checkable)."""
    return f"{BODY_PREFIX} w{writer} #{seq}"


def _write_loop(
    path: str,
    writer: int,
    start_at: float,
    stop_at: float,
    project_id: str,
    task_id: str,
    counter,
    fsync: bool,
    max_messages: int,
) -> tuple[int, str]:
    hist = LatencyHistogram()
    while time.time() < start_at:
        time.sleep(0.001)
    n = 0
    run_id = f"writer-{writer}"
    perf = time.perf_counter_ns
    while n < max_messages and time.time() < stop_at:
        msg = bus.Message(
            type="FACT", project_id=project_id, task_id=task_id, run_id=run_id, body=body_for(writer, n)
        )
        t0 = perf()
        bus.append(path, msg, fsync=fsync)
        hist.record_us((perf() - t0) / 1000)
        n += 1
        if n % 256 == 0:
            with counter.get_lock():
                counter.value += 256
    with counter.get_lock():
        counter.value += n % 256
    return n, hist.encode()


def _process_writer(args, queue) -> None:
    try:
        queue.put((args[1], *_write_loop(*args)))
    except BaseException as exc:  # report instead of hanging the parent
        queue.put((args[1], -1, f"{type(exc).__name__}: {exc}"))


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
) -> BusThroughput:
    """Run ``writers`` concurrent appenders on one bus file for ``duration`` seconds.

    The rate is messages appended / duration (as the seed computes it). With ``check`` the file is
    verified afterwards (every message once, none torn).
    """
    if writers < 1 or duration <= 0:
        raise ValueError("writers must be >= 1 and duration > 0")
    if mode not in ("processes", "threads"):
        raise ValueError(f"mode must be 'processes' or 'threads', got {mode!r}")
    path = os.fspath(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    ctx = mp.get_context("fork")
    counter = ctx.Value("q", 0)
    start_at = time.time() + (0.3 if mode == "processes" else 0.05)
    stop_at = start_at + duration
    results: dict[int, tuple[int, str]] = {}
    errors: list[str] = []
    args_for = [
        (path, w, start_at, stop_at, project_id, task_id, counter, fsync, max_messages_per_writer)
        for w in range(writers)
    ]
    timeline: list[tuple[float, int]] = []
    if mode == "processes":
        queue = ctx.Queue()
        procs = [ctx.Process(target=_process_writer, args=(a, queue), daemon=True) for a in args_for]
        for p in procs:
            p.start()
        _watch(counter, start_at, stop_at, on_progress, progress_every, timeline)
        deadline = stop_at + 30
        for _ in procs:
            w, n, payload = queue.get(timeout=max(1.0, deadline - time.time()))
            if n < 0:
                errors.append(f"writer {w}: {payload}")
            else:
                results[w] = (n, payload)
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
    else:

        def run(a):
            try:
                results[a[1]] = _write_loop(*a)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(f"writer {a[1]}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=run, args=(a,), daemon=True) for a in args_for]
        for t in threads:
            t.start()
        _watch(counter, start_at, stop_at, on_progress, progress_every, timeline)
        for t in threads:
            t.join(timeout=stop_at + 30 - time.time())
    if errors:
        raise RuntimeError("bus writers failed: " + "; ".join(errors[:3]))
    per_writer = [results[w][0] for w in range(writers)]
    hist = LatencyHistogram()
    for w in range(writers):
        hist.merge(LatencyHistogram.decode(results[w][1]))
    total = sum(per_writer)
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
    )
    if check:
        result.integrity = check_integrity(path, {w: n for w, n in enumerate(per_writer)})
    return result


def _watch(counter, start_at, stop_at, on_progress, every, timeline) -> None:
    last_report = start_at
    while True:
        now = time.time()
        if now >= stop_at:
            break
        time.sleep(min(0.25, max(0.0, stop_at - now)))
        now = time.time()
        if now >= start_at:
            timeline.append((round(now - start_at, 3), counter.value))
        if on_progress and now - last_report >= every and now > start_at:
            elapsed = now - start_at
            on_progress(elapsed, counter.value, counter.value / elapsed)
            last_report = now


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
