"""What creating a file system entry costs right now, next to a runs root.

Every figure that creates files (run creation, task submission) depends on the state of the file
system, not only on the code: on ext4 without a journal the kernel skips, one by one, every inode
freed in the last minutes when it allocates a new one, so a directory creation that costs ~10 us
on a quiet disk costs 50-100 us beside recently deleted files (measured on this 2-core machine). The
probe times ``count`` directory creations in a new folder and reports them, so a report can tell a
slower disk from slower code. The folders are left in place: deleting them would free inodes, the
very thing that slows the next measurement.

:func:`wait_until_quiet` uses the probe to wait, bounded, until such a disturbance has passed
before a second attempt measures again. It judges the disk against itself (the quietest probe it
knows), so a disk that is slow but steady counts as quiet at once.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROBE_PREFIX = ".fs-probe-"
FIGURE = "file system directory creation p50"
"""The name of the info figure a suite records with the probe's p50 (us)."""
QUIET_FACTOR = 2.0
"""A probe is quiet when its p50 is at most this many times the quietest p50 known, or at most
:data:`QUIET_SLACK_US` more (a quiet disk's p50 jitters by a few microseconds)."""
QUIET_SLACK_US = 10.0
QUIET_PROBES = 5
"""Probes in a row that must be quiet. After ~440 MB of small files were deleted on this 2-core
machine's ext4 without a journal, directory creation stayed at 16-30 us for 50 s, then rose and
fell in waves of 10-20 s (60-245 us at their tops, ~20 us between) for minutes: one quiet probe
says little."""


def directory_creation_cost(directory: str | os.PathLike[str], *, count: int = 64) -> dict[str, float]:
    """Time ``count`` ``mkdir`` calls in a new folder under ``directory``; microseconds.

    Returns ``count``, ``p50_us``, ``mean_us`` and ``max_us``. Raises ``OSError`` when the folder
    cannot be created.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    base = Path(directory) / f"{PROBE_PREFIX}{os.getpid()}-{time.time_ns()}"
    base.mkdir(parents=True)
    costs = []
    clock = time.perf_counter_ns
    for i in range(count):
        path = os.path.join(base, str(i))
        t0 = clock()
        os.mkdir(path)
        costs.append((clock() - t0) / 1000)
    return {"count": count, "p50_us": statistics.median(costs), "mean_us": statistics.fmean(costs),
            "max_us": max(costs)}  # fmt: skip


def recorded_probes(records: list[dict[str, Any]]) -> list[float]:
    """The p50 values (us) of the :data:`FIGURE` records among a run's metric records."""
    return [float(r["value"]) for r in records
            if r.get("metric") == FIGURE and isinstance(r.get("value"), (int, float)) and r["value"] > 0]  # fmt: skip


def busy_note(p50_us: float, earlier_us: list[float]) -> str:
    """A one-line warning when ``p50_us`` is over the quiet limit of the run's quietest earlier probe, else ``""``.

    Nothing is said for a run's first probe: a disk is judged against itself only.
    """
    earlier = [e for e in earlier_us if e > 0]
    if not earlier:
        return ""
    quietest = min(earlier)
    limit = quiet_limit(quietest)
    if p50_us <= limit:
        return ""
    return (f"the disk is busier than earlier in this run: directory creation p50 {p50_us:.0f} us, "
            f"{p50_us / quietest:.1f}x the quietest probe of the run ({quietest:.0f} us; quiet is within "
            f"{limit:.0f} us): this test's figures that create files measure the disk as much as the SUT")


@dataclass(frozen=True)
class QuietWait:
    """What :func:`wait_until_quiet` saw: each probe's p50 (us) and whether the disk became quiet."""

    quiet: bool
    waited_s: float
    limit_us: float
    probes_us: tuple[float, ...]
    quietest_us: float
    from_run: bool = False
    """Whether the quietest p50 came from the baseline given (the run's own probes)."""

    def summary(self) -> str:
        """One line for a console: how long, the last probes and the limit they were held to."""
        last = ", ".join(f"{p:.0f}" for p in self.probes_us[-QUIET_PROBES:])
        known = f"quietest {'this run' if self.from_run else 'probe'} {self.quietest_us:.0f} us"
        if self.quiet:
            return (f"disk quiet after {self.waited_s:.0f} s of probing: directory creation p50 {last} us, "
                    f"{QUIET_PROBES} probes in a row within {self.limit_us:.0f} us ({known})")
        return (f"disk still busy after {self.waited_s:.0f} s of probing: directory creation p50 {last} us, "
                f"quiet is within {self.limit_us:.0f} us ({known}); measuring anyway")


def quiet_limit(quietest_us: float, *, factor: float = QUIET_FACTOR, slack_us: float = QUIET_SLACK_US) -> float:
    """The highest p50 (us) that still counts as quiet, given the quietest one known."""
    return max(quietest_us * factor, quietest_us + slack_us)


def wait_until_quiet(
    directory: str | os.PathLike[str],
    *,
    timeout: float,
    baseline_us: float | None = None,
    interval: float = 2.0,
    probes_in_a_row: int = QUIET_PROBES,
    probe: Callable[[str | os.PathLike[str]], dict[str, float]] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> QuietWait:
    """Probe ``directory`` every ``interval`` s until ``probes_in_a_row`` probes in a row are quiet.

    Quiet means within :func:`quiet_limit` of the quietest p50 known: ``baseline_us`` (e.g. the
    run's own earlier probes) or the quietest probe of this wait. Gives up after ``timeout`` s
    and says so in the result (the caller measures anyway and reports it). Raises ``OSError`` when
    the directory cannot be probed and ``ValueError`` on a bad argument.
    """
    if timeout < 0 or interval <= 0 or probes_in_a_row < 1:
        raise ValueError("timeout must be >= 0, interval > 0 and probes_in_a_row >= 1")
    if probe is None:
        def probe(d: str | os.PathLike[str]) -> dict[str, float]:
            return directory_creation_cost(d, count=32)
    start = clock()
    seen: list[float] = []
    while True:
        seen.append(probe(directory)["p50_us"])
        quietest = min(seen) if baseline_us is None else min(baseline_us, *seen)
        limit = quiet_limit(quietest)
        recent = seen[-probes_in_a_row:]
        waited = clock() - start
        from_run = baseline_us is not None and baseline_us <= min(seen)
        if len(recent) == probes_in_a_row and max(recent) <= limit:
            return QuietWait(True, waited, limit, tuple(seen), quietest, from_run)
        if waited + interval > timeout:
            return QuietWait(False, waited, limit, tuple(seen), quietest, from_run)
        sleep(interval)
