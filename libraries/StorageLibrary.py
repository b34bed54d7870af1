"""Run storage benchmarks: creation rate and latency, run-info read/write, torn reads."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from _perf_base import chart_percentiles, figure, progress, rate_series, require_root, require_target, seconds
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import storage_bench
from conductor_perf.target import EMBEDDED


@library(scope="SUITE", auto_keywords=False)
class StorageLibrary:
    """Measures conductor-loop's run storage on the SUT's disk, the real server's way.

    A run is a directory ``<root>/<project>/<task>/runs/<run_id>/`` with an fsynced, atomically
    renamed ``run-info.yaml``; updates lock the sidecar ``run-info.yaml.lock``. Against an external
    SUT these keywords write under its runs root (``CONDUCTOR_ROOT``; skipped with the reason without
    it); against the embedded conductor, in ``storage-<pid>/`` beside its root, on the same disk.

    Example:
    | `Seed Run History`    runs=1000
    | `Measure Run Creation Rate`    duration=5 s
    | `Get Run Creation Rate`    >    ${RUN_CREATION_MIN_PER_S}
    | `Get Run Creation Latency`    p95    <    ${RUN_CREATION_MAX_MS}
    """

    def __init__(self) -> None:
        self._creation: storage_bench.CreationResult | None = None
        self._costs: dict[str, dict[str, float]] = {}
        self._rw: storage_bench.ReadWriteResult | None = None
        self._history = 0

    def _scratch(self) -> bool:
        """Whether the benchmarks write beside the embedded conductor (nobody else reads those files)."""
        target = require_target()
        return target.kind == EMBEDDED and target.root is not None

    def _root(self) -> Path:
        """Where the file-level benchmarks write: beside the embedded conductor's root, or the SUT's root.

        Against the embedded conductor they use ``storage-<pid>/`` next to its runs root (the same
        file system): with the 1000 seeded runs inside its root, the later API suite's
        ``GET /api/v1/tasks`` listed 1,100 tasks (250 req/s) while the suite had created 100.
        Against an external SUT they need ``CONDUCTOR_ROOT`` and skip without it.
        """
        target = require_target()
        if self._scratch():
            scratch = Path(target.root).parent / f"storage-{os.getpid()}"
            scratch.mkdir(parents=True, exist_ok=True)
            return scratch
        return Path(require_root())

    @keyword
    def seed_run_history(self, runs: int = 1000) -> int:
        """Fill the runs root with ``runs`` completed runs so measurements see history; returns the count.

        Example:
        | `Seed Run History`    runs=1000
        """
        self._history += storage_bench.seed_history(self._root(), runs_count=runs)
        logger.info(f"runs root now holds at least {self._history} seeded runs")
        return self._history

    @keyword
    def measure_run_creation_rate(self, duration: timedelta = timedelta(seconds=5)) -> float:
        """Create runs one after another for ``duration``; returns runs/s (the seed's method).

        Example:
        | ${rate} =    `Measure Run Creation Rate`    duration=5 s
        """
        logger.console(f"\n    run creation: 1 writer x {seconds(duration):g} s")
        # created runs are removed only from an external SUT's root (its list endpoints read them);
        # beside the embedded conductor they stay: deleting ~15,000 inodes slowed every file
        # creation of the next minutes (ext4 without a journal; see conductor_perf.measure.fsprobe)
        self._creation = storage_bench.creation_rate(self._root(), duration=seconds(duration),
                                                     remove=not self._scratch(),
                                                     on_progress=progress("run creation", "runs/s"))  # fmt: skip
        self._creation.history = self._history
        logger.info(
            f"{self._creation.runs} runs in {seconds(duration):g} s; latency ms {self._creation.latency}"
        )
        return self._creation.rate

    @keyword
    def measure_run_creation_burst(self, runs: int = 100) -> float:
        """Create ``runs`` runs at once from as many threads; returns the p95 per-run latency in ms.

        Example:
        | ${p95} =    `Measure Run Creation Burst`    runs=100
        """
        self._creation = storage_bench.creation_burst(self._root(), count=runs, remove=not self._scratch())
        self._creation.history = self._history
        logger.info(
            f"burst of {runs} runs in {self._creation.duration_s:.3f} s; latency ms {self._creation.latency}"
        )
        return self._creation.latency["p95"]

    def _require_creation(self) -> storage_bench.CreationResult:
        if self._creation is None:
            raise AssertionError("no run creation measured yet: call 'Measure Run Creation Rate' first")
        return self._creation

    @keyword
    def get_run_creation_rate(self, op: str | None = None, expected: float | None = None) -> float:
        """Runs per second of the last creation measurement; asserts when given an operator and target.

        Example:
        | `Get Run Creation Rate`    >    100
        """
        c = self._require_creation()
        samples = [rate for _, rate in rate_series(c.timeline)]
        return figure("run creation rate", c.rate, "runs/s", op, expected, samples=samples,
                      details={"runs": c.runs, "duration_s": c.duration_s, "history_runs": c.history},
                      histogram=c.histogram, series={"runs": [[t, n] for t, n in c.timeline]})  # fmt: skip

    @keyword
    def get_run_creation_latency(self, percentile: str = "p95", op: str | None = None,
                                 expected: float | None = None) -> float:  # fmt: skip
        """A per-run creation latency percentile in ms (``p50``, ``p95``, ``p99``, ``max``, ``mean``).

        Example:
        | `Get Run Creation Latency`    p95    <    10
        """
        c = self._require_creation()
        chart_percentiles(f"run creation latency ({c.runs} runs)", c.latency, target_ms=expected)
        return figure(f"run creation latency {percentile}", c.latency[percentile], "ms", op, expected,
                      details={**c.latency, "runs": c.runs, "history_runs": c.history},
                      histogram=c.histogram)  # fmt: skip

    @keyword
    def get_run_creation_time_per_run(self, op: str | None = None, expected: float | None = None) -> float:
        """Wall time of the last creation measurement divided by its runs, in ms (amortized cost).

        Example:
        | `Get Run Creation Time Per Run`    <    10
        """
        c = self._require_creation()
        per_run = 1000.0 * c.duration_s / c.runs if c.runs else float("inf")
        return figure("run creation time per run", per_run, "ms", op, expected,
                      details={"runs": c.runs, "wall_s": c.duration_s, "latency_ms": c.latency,
                               "history_runs": c.history})  # fmt: skip

    @keyword
    def measure_run_info_costs(self, reads: int = 2000, writes: int = 300) -> None:
        """Measure run-info.yaml read latency and atomic (fsynced) write latency.

        Example:
        | `Measure Run Info Costs`
        | `Get Run Info Latency`    read    p95    <    1
        """
        path = storage_bench.run_info_path(self._root())
        self._costs["read"] = storage_bench.read_cost(path, iterations=reads)
        self._costs["write"] = storage_bench.write_cost(path, iterations=writes)
        logger.info(f"run-info latency ms: {self._costs}")

    @keyword
    def get_run_info_latency(self, operation: str = "read", percentile: str = "p95", op: str | None = None,
                             expected: float | None = None) -> float:  # fmt: skip
        """A latency percentile (ms) of run-info ``read`` or ``write`` from `Measure Run Info Costs`.

        Example:
        | `Get Run Info Latency`    write    p95    <    10
        """
        if operation not in self._costs:
            raise AssertionError(
                f"no run-info {operation} cost measured: call 'Measure Run Info Costs' first"
            )
        return figure(f"run-info {operation} latency {percentile}", self._costs[operation][percentile], "ms",
                      op, expected, details=self._costs[operation])  # fmt: skip

    @keyword
    def measure_concurrent_run_info_access(
        self, readers: int = 4, writers: int = 2, duration: timedelta = timedelta(seconds=3)
    ) -> int:
        """Readers read one run-info while writers update it under its lock; returns torn reads.

        Example:
        | ${torn} =    `Measure Concurrent Run Info Access`    readers=4    writers=2    duration=3 s
        """
        self._rw = storage_bench.concurrent_read_write(self._root(), readers=readers, writers=writers,
                                                       duration=seconds(duration))  # fmt: skip
        logger.info(f"{self._rw.reads} reads and {self._rw.writes} locked updates in {seconds(duration):g} s, "
                    f"{self._rw.torn_reads} torn")  # fmt: skip
        return self._rw.torn_reads

    @keyword
    def get_torn_run_info_reads(self, op: str | None = None, expected: float | None = None) -> int:
        """Torn or unparsable reads of the last concurrent access run; asserts when given a target.

        Example:
        | `Get Torn Run Info Reads`    ==    0
        """
        if self._rw is None:
            raise AssertionError(
                "no concurrent access measured: call 'Measure Concurrent Run Info Access' first"
            )
        figure("run-info reads", self._rw.reads, "reads", details=self._rw.to_dict())
        return int(
            figure(
                "run-info torn reads", self._rw.torn_reads, "reads", op, expected, details=self._rw.to_dict()
            )
        )
