"""Message bus benchmarks: write throughput, append cost, read-all cost and integrity."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    chart_series,
    figure,
    progress,
    require_root,
    seconds,
)
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import bus_bench
from conductor_perf.charts import rate_series
from conductor_perf.formats import bus, runs
from conductor_perf.wording import plural


@library(scope="SUITE", auto_keywords=False)
class MessageBusLibrary:
    """Measures conductor-loop's file message bus through the shared bus implementation.

    File-level keywords append to ``<root>/<project>/<task>/TASK-MESSAGE-BUS.md`` under the SUT's
    runs root with the real server's protocol (``O_APPEND`` + exclusive ``flock``), so they need the
    root: against an external SUT without ``CONDUCTOR_ROOT`` they skip with the reason.

    = Measure, then get =

    `Measure Bus Write Throughput` runs the workload and keeps the result; getters such as
    `Get Bus Write Throughput` return a figure and, given an operator and a target, assert it:
    | `Measure Bus Write Throughput`    writers=10    duration=10 s
    | `Get Bus Write Throughput`    >    ${BUS_MIN_MSG_PER_S}
    | `Bus Should Have Every Message Exactly Once`
    """

    def __init__(self) -> None:
        self._throughput: bus_bench.BusThroughput | None = None
        self._append: dict[str, float] | None = None
        self._read: dict[str, float] | None = None

    def _bus_path(self, name: str):
        root = require_root()
        path = bus.task_bus_path(root, "perf-bus", runs.canonical_task_id(name))
        path.parent.mkdir(parents=True, exist_ok=True)  # the API creates the task folder before posting
        return path

    @keyword
    def measure_bus_write_throughput(
        self,
        writers: int = 10,
        duration: timedelta = timedelta(seconds=10),
        *,
        mode: Literal["processes", "threads"] = "processes",
        fsync: bool = False,
    ) -> float:
        """Append from ``writers`` concurrent writers to one task bus for ``duration``; returns msg/s.

        Writers are processes by default (agents are processes); ``mode=threads`` runs them as
        threads of one process. The file is checked for integrity afterwards.

        Example:
        | ${rate} =    `Measure Bus Write Throughput`    writers=10    duration=10 s
        """
        path = self._bus_path("bus-throughput")
        logger.console(f"\n    bus write: {writers} {mode} x {seconds(duration):g} s -> {path.name}")
        result = bus_bench.write_throughput(
            path, writers=writers, duration=seconds(duration), mode=mode, fsync=fsync,
            on_progress=progress("bus write", "msg/s"),
        )  # fmt: skip
        self._throughput = result
        logger.info(f"{plural(result.messages, 'message')} by {plural(writers, 'writer')} in {result.duration_s:g} s; per writer "
                    f"{result.per_writer}; append latency ms {result.latency}")  # fmt: skip
        if result.integrity:
            logger.info(result.integrity.message)
        return result.rate

    def _require_throughput(self) -> bus_bench.BusThroughput:
        if self._throughput is None:
            raise AssertionError("no bus throughput measured yet: call 'Measure Bus Write Throughput' first")
        return self._throughput

    @keyword(tags=[CHART_TAG])
    def get_bus_write_throughput(self, op: str | None = None, expected: float | None = None) -> float:
        """The last measured write throughput in msg/s; asserts it when ``op`` and ``expected`` are given.

        Example:
        | `Get Bus Write Throughput`    >    1000
        """
        r = self._require_throughput()
        series = {"msg/s": rate_series(r.timeline)}
        chart_series(f"bus write throughput, {r.writers} {r.mode}", series,
                     "time (s)", "messages per second", target=expected, target_label="target")  # fmt: skip
        chart_percentiles("bus append latency (every append of the run)", r.latency)
        samples = [rate for _, rate in rate_series(r.timeline)][1:-1]  # whole intervals only
        return figure("bus write throughput", r.rate, "msg/s", op, expected, samples=samples,
                      details={"writers": r.writers, "mode": r.mode, "duration_s": r.duration_s,
                               "messages": r.messages, "append_latency_ms": r.latency},
                      histogram=r.histogram, series=series)  # fmt: skip

    @keyword
    def bus_should_have_every_message_exactly_once(self) -> None:
        """Fail unless the last throughput run left every message exactly once and none torn.

        Example:
        | `Bus Should Have Every Message Exactly Once`
        """
        integrity = self._require_throughput().integrity
        if integrity is None:
            raise AssertionError("the last throughput run was not checked")
        for name, value in (("bus messages lost", integrity.lost), ("bus messages duplicated", integrity.duplicated),
                            ("bus messages torn", integrity.torn)):  # fmt: skip
            figure(
                name,
                value,
                "messages",
                "==",
                0,
                details={"expected": integrity.expected, "found": integrity.found},
            )

    @keyword
    def measure_bus_append_cost(self, count: int = 2000, *, fsync: bool = False) -> float:
        """Append ``count`` messages from one writer; returns the p95 append latency in ms.

        Example:
        | ${p95} =    `Measure Bus Append Cost`    count=2000
        """
        self._append = bus_bench.append_cost(self._bus_path("bus-append"), count=count, fsync=fsync)
        logger.info(f"append latency ms over {count} appends: {self._append}")
        return self._append["p95"]

    @keyword
    def get_bus_append_latency(self, percentile: str = "p95", op: str | None = None,
                               expected: float | None = None) -> float:  # fmt: skip
        """A percentile (``p50``/``p95``/``p99``/``max``/``mean``) of the last append-cost run, in ms.

        Example:
        | `Get Bus Append Latency`    p95    <    1
        """
        if self._append is None:
            raise AssertionError("no append cost measured yet: call 'Measure Bus Append Cost' first")
        return figure(f"bus append latency {percentile}", self._append[percentile], "ms", op, expected,
                      details=self._append)  # fmt: skip

    @keyword
    def measure_bus_read_all_cost(self, messages: int = 1000, iterations: int = 50) -> float:
        """Fill a bus with ``messages`` and read it whole ``iterations`` times; returns p95 in ms.

        Example:
        | ${p95} =    `Measure Bus Read All Cost`    messages=1000
        """
        path = self._bus_path("bus-read-all")
        bus_bench.fill(path, messages)
        self._read = bus_bench.read_all_cost(path, iterations=iterations, expect=messages)
        self._read["messages"] = messages
        logger.info(f"read-all latency ms of a {messages}-message bus: {self._read}")
        return self._read["p95"]

    @keyword
    def get_bus_read_all_latency(self, percentile: str = "p95", op: str | None = None,
                                 expected: float | None = None) -> float:  # fmt: skip
        """A percentile of the last read-all run, in ms; asserts when given an operator and target.

        Example:
        | `Get Bus Read All Latency`    p95    <    50
        """
        if self._read is None:
            raise AssertionError("no read-all cost measured yet: call 'Measure Bus Read All Cost' first")
        return figure(f"bus read-all latency {percentile}", self._read[percentile], "ms", op, expected,
                      details=self._read)  # fmt: skip
