"""Run storage benchmarks: creation rate and latency, run-info read/write, torn reads."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    figure,
    progress,
    require_root,
    require_target,
    robot_var,
    run_context,
    seconds,
    skip,
)
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf import target as sut
from conductor_perf.bench import server_creation, storage_bench
from conductor_perf.charts import rate_series
from conductor_perf.wording import plural

#: write the file-level benchmarks into the SUT's runs root itself (variable or environment)
IN_ROOT_SETTING = "CONDUCTOR_STORAGE_IN_ROOT"
FILE_LEVEL = "file-level run creation"
THROUGH_SERVER = "run creation through the server"


def _truthy(value: object) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "y", "on")


def cannot_start_instance(target: sut.Target) -> str | None:
    """Why no second instance of the SUT can be started here (``None`` when one can: capability ``auth``)."""
    gap = target.capability_gap("auth")
    if gap is None:
        return None
    return f"run creation through the server needs an instance started with {server_creation.DISABLE_FLAG}: {gap}"


def start_launch_disabled(target: sut.Target, root: Path, log_dir: Path) -> sut.Target:
    """A second instance of the SUT (same program, arguments and config) on ``root`` with task launch disabled."""
    return target.start_another(root=root, log_dir=log_dir, extra_args=[server_creation.DISABLE_FLAG])


@library(scope="SUITE", auto_keywords=False)
class StorageLibrary:
    """Measures conductor-loop's run storage on the SUT's disk, the real server's way, and through the server.

    = File level =

    A run is a directory ``<root>/<project>/<task>/runs/<run_id>/`` with an fsynced, atomically
    renamed ``run-info.yaml``; updates lock the sidecar ``run-info.yaml.lock``. The file-level
    keywords write them with this suite's own implementation of that format, so their figures
    (named ``file-level run creation ...``) are this suite's writer on the SUT's disk, on every
    SUT. They write in ``storage-<pid>/`` **beside** the SUT's runs root, on the same file system,
    never into the root, so no later suite lists their runs. ``CONDUCTOR_STORAGE_IN_ROOT=1``
    (variable or environment) writes into the root itself instead; runs created there are removed
    after each measurement. An external SUT needs ``CONDUCTOR_ROOT`` to know its disk; without it
    they skip with that reason.

    = Through the server =

    `Measure Run Creation Through The Server` times the server's own run creation: task
    submissions, one after another, to a second instance started with ``--disable-task-start``
    on its own runs root (beside the SUT's, holding the same history), each timed until its run
    directory exists. Such an instance writes no ``run-info.yaml`` (the real server writes it when
    it launches the agent; see ``conductor_perf.bench.server_creation``). The figures are named
    ``run creation through the server ...``.

    Example:
    | `Seed Run History`    runs=1000
    | `Measure Run Creation Rate`    duration=5 s
    | `Get Run Creation Rate`    >    ${RUN_CREATION_MIN_PER_S}
    | `Get Run Creation Latency`    p95    <    ${RUN_CREATION_MAX_MS}
    | `Measure Run Creation Through The Server`    duration=5 s    history=1000
    | `Get Run Creation Rate`    >    ${RUN_CREATION_MIN_PER_S}
    """

    def __init__(self) -> None:
        self._creation: storage_bench.CreationResult | None = None
        self._costs: dict[str, dict[str, float]] = {}
        self._rw: storage_bench.ReadWriteResult | None = None
        self._history = 0
        self._kind = FILE_LEVEL

    def _scratch(self) -> bool:
        """Whether the benchmarks write beside the SUT's root (the default) rather than into it."""
        return not _truthy(robot_var("${" + IN_ROOT_SETTING + "}", None) or os.environ.get(IN_ROOT_SETTING))

    def _root(self) -> Path:
        """Where the file-level benchmarks write: ``storage-<pid>/`` beside the SUT's runs root, or the root.

        Beside the root, on the same file system, by default: with the 1000 seeded runs inside the
        root, the later API suite's ``GET /api/v1/tasks`` listed 1,100 tasks (250 req/s) while the
        suite had created 100. Skips when the SUT's root is not known or its folder is not usable.
        """
        root = Path(require_root())
        if not self._scratch():
            return root
        try:
            scratch = server_creation.sibling_dir(root, f"storage-{os.getpid()}")
            run_context().note_scratch(scratch)
            return scratch
        except OSError as exc:
            skip(f"file-level storage benchmarks write beside the SUT's runs root, and cannot: {exc}; set "
                 f"{IN_ROOT_SETTING}=1 to write into the root itself")  # fmt: skip
            raise  # unreachable: skip raises

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
        logger.console(f"\n    file-level run creation: 1 writer x {seconds(duration):g} s")
        # created runs are removed only from the SUT's root (its list endpoints read them); beside
        # it they stay: deleting ~15,000 inodes slowed every file creation of the next minutes
        # (ext4 without a journal; see conductor_perf.measure.fsprobe)
        self._kind = FILE_LEVEL
        self._creation = storage_bench.creation_rate(self._root(), duration=seconds(duration),
                                                     remove=not self._scratch(),
                                                     on_progress=progress("run creation", "runs/s"))  # fmt: skip
        self._creation.history = self._history
        logger.info(
            f"{plural(self._creation.runs, 'run')} in {seconds(duration):g} s; latency ms {self._creation.latency}"
        )
        return self._creation.rate

    @keyword
    def measure_run_creation_burst(self, runs: int = 100) -> float:
        """Create ``runs`` runs at once from as many threads; returns the p95 per-run latency in ms.

        Example:
        | ${p95} =    `Measure Run Creation Burst`    runs=100
        """
        self._kind = FILE_LEVEL
        self._creation = storage_bench.creation_burst(self._root(), count=runs, remove=not self._scratch())
        self._creation.history = self._history
        logger.info(
            f"burst of {plural(runs, 'run')} in {self._creation.duration_s:.3f} s; latency ms {self._creation.latency}"
        )
        return self._creation.latency["p95"]

    @keyword
    def measure_run_creation_through_the_server(
        self, duration: timedelta = timedelta(seconds=5), *, history: int = 0,
        timeout: timedelta = timedelta(seconds=10),
    ) -> float:  # fmt: skip
        """Submit tasks one after another for ``duration`` to an instance with task launch disabled; returns runs/s.

        The instance (same kind as the SUT) gets its own runs root beside the SUT's, first filled
        with ``history`` completed runs (so its figures see the same history as the file-level
        ones), and is stopped afterwards. Each submission is timed until its run directory exists;
        a submission that fails ends the measurement. Skips when the SUT is not started by this
        suite (an external server) and when its runs root is not known.

        Example:
        | `Measure Run Creation Through The Server`    duration=5 s    history=1000
        | `Get Run Creation Rate`    >    100
        """
        target = require_target()
        reason = cannot_start_instance(target)
        if reason:
            skip(reason)
        try:
            base = server_creation.sibling_dir(require_root(), f"launch-disabled-{os.getpid()}-{time.time_ns() % 10**6}")
        except OSError as exc:
            skip(f"the launch-disabled instance's root goes beside the SUT's runs root, and cannot: {exc}")
            raise  # unreachable: skip raises
        root = base / "root"
        run_context().note_scratch(root)
        if history:
            storage_bench.seed_history(root, runs_count=history)
        try:
            instance = start_launch_disabled(target, root, base)
        except sut.TargetError as exc:
            raise AssertionError(f"could not start an instance with {server_creation.DISABLE_FLAG}: {exc}") from None
        try:
            logger.console(f"\n    run creation through the server: {server_creation.DISABLE_FLAG} instance, "
                           f"1 client x {seconds(duration):g} s")  # fmt: skip
            result = server_creation.creation_through_server(
                instance, duration=seconds(duration), timeout=seconds(timeout),
                on_progress=progress("run creation through the server", "runs/s"))  # fmt: skip
        except OSError as exc:
            raise AssertionError(f"run creation through the server: the instance at {instance.url} failed: {exc}") from None
        finally:
            instance.stop()
        result.history = history
        self._kind, self._creation = THROUGH_SERVER, result
        logger.info(f"{plural(result.runs, 'run')} in {result.duration_s:.1f} s through {instance.url} (root {root}, log in "
                    f"{base}); statuses {result.statuses}; run-info.yaml written for {result.run_info_written}; "
                    f"latency ms {result.latency}")  # fmt: skip
        for err in result.errors:
            logger.warn(f"run creation through the server: {err}")
        if result.errors or not result.runs:
            raise AssertionError(f"run creation through the server: {plural(result.runs, 'run')} created, "
                                 f"{'; '.join(result.errors) or 'none answered'}")  # fmt: skip
        return result.rate

    def _details(self) -> dict[str, object]:
        c = self._require_creation()
        out: dict[str, object] = {"runs": c.runs, "history_runs": c.history, "measured": self._kind}
        if isinstance(c, server_creation.ServerCreationResult):
            out.update(statuses=c.statuses, run_info_written=c.run_info_written, timed_until="run directory exists")
        return out

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
        return figure(f"{self._kind} rate", c.rate, "runs/s", op, expected, samples=samples,
                      details={**self._details(), "duration_s": c.duration_s},
                      histogram=c.histogram, series={"runs/s": rate_series(c.timeline)})  # fmt: skip

    @keyword(tags=[CHART_TAG])
    def get_run_creation_latency(self, percentile: str = "p95", op: str | None = None,
                                 expected: float | None = None) -> float:  # fmt: skip
        """A per-run creation latency percentile in ms (``p50``, ``p95``, ``p99``, ``max``, ``mean``).

        Example:
        | `Get Run Creation Latency`    p95    <    10
        """
        c = self._require_creation()
        chart_percentiles(f"{self._kind} latency ({plural(c.runs, 'run')})", c.latency, target_ms=expected)
        return figure(f"{self._kind} latency {percentile}", c.latency[percentile], "ms", op, expected,
                      details={**c.latency, **self._details()},
                      histogram=c.histogram)  # fmt: skip

    @keyword
    def get_run_creation_time_per_run(self, op: str | None = None, expected: float | None = None) -> float:
        """Wall time of the last creation measurement divided by its runs, in ms (amortized cost).

        Example:
        | `Get Run Creation Time Per Run`    <    10
        """
        c = self._require_creation()
        per_run = 1000.0 * c.duration_s / c.runs if c.runs else float("inf")
        return figure(f"{self._kind} time per run", per_run, "ms", op, expected,
                      details={**self._details(), "wall_s": c.duration_s, "latency_ms": c.latency})  # fmt: skip

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
        logger.info(f"{plural(self._rw.reads, 'read')} and {self._rw.writes} locked updates in {seconds(duration):g} s, "
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
