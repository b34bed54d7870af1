"""Reliability: integrity under contention, run-info atomicity, SSE delivery guarantees, faults."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    figure,
    progress,
    require_root,
    require_target,
    run_context,
    seconds,
)
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import faults
from conductor_perf.bench import reliability
from conductor_perf.formats import bus, runs
from conductor_perf.records import load_records
from conductor_perf.target import TargetError
from conductor_perf.wording import plural


@library(scope="SUITE", auto_keywords=False)
class ReliabilityLibrary:
    """Checks that nothing is lost, torn or delayed under contention and faults.

    = Integrity under contention =

    `Measure Bus Contention` appends from many writer processes to one task bus file with
    conductor-loop's protocol; `Measure Bus Contention Over HTTP` posts from several load
    processes through ``POST /api/v1/messages``. `Contended Bus Should Have Every Message Exactly
    Once` then records messages written, lost, duplicated and torn (all must be 0).

    = Run-info atomicity =

    `Measure Run Info Atomicity` reads one ``run-info.yaml`` without a lock while writers update
    it under the lock, until at least the asked number of reads; a read that does not parse or
    mixes two versions is torn.

    = SSE delivery =

    `Measure SSE Burst Delivery` appends a burst of lines at once to a running run's stdout while
    subscribers (and optionally deliberately slow ones) read its stream. `Measure SSE Resume
    Across Restart` kills and restarts the SUT (one the suite owns) under a subscriber, which must
    resume with ``Last-Event-ID`` and miss no line.

    = Faults =

    `Run Keyword And Fail Fast If Conductor Dies` runs any keyword while a watchdog watches the
    SUT: if it dies, the keyword fails within a fraction of a second with one line naming the
    cause, instead of running to its configured duration against a dead server.

    File-level keywords need the SUT's runs root (skipped with the reason without it).

    Example:
    | `Measure Bus Contention`    writers=16    duration=5 s
    | `Contended Bus Should Have Every Message Exactly Once`
    | `Measure SSE Burst Delivery`    lines=2000    subscribers=5
    | `Get SSE Burst Lines Lost`    ==    0
    """

    def __init__(self) -> None:
        self._contention: reliability.BusContention | None = None
        self._atomicity: reliability.RunInfoAtomicity | None = None
        self._burst: reliability.SseBurst | None = None
        self._resume: reliability.SseResume | None = None
        self._failed_at: float | None = None
        self._killed_at: float | None = None

    # ------------------------------------------------------------------ bus

    @keyword
    def measure_bus_contention(self, writers: int = 16, duration: timedelta = timedelta(seconds=5)) -> int:
        """``writers`` processes append to ONE task bus file for ``duration``; returns messages written.

        Each writer stops early after 5,000 messages, which keeps the file (and its check) small.

        Example:
        | `Measure Bus Contention`    writers=16    duration=5 s
        """
        path = bus.task_bus_path(
            require_root(), reliability.PROJECT, runs.canonical_task_id("bus-contention")
        )
        logger.console(
            f"\n    bus contention: {writers} writer processes x {seconds(duration):g} s -> one bus"
        )
        self._contention = reliability.bus_contention_file(path, writers=writers, duration=seconds(duration),
                                                           on_progress=progress("bus contention", "msg/s"))  # fmt: skip
        logger.info(self._contention.message())
        return self._contention.written

    @keyword
    def measure_bus_contention_over_http(self, writers: int = 16, processes: int = 4,
                                         duration: timedelta = timedelta(seconds=5)) -> int:  # fmt: skip
        """``writers`` clients in ``processes`` processes POST messages to one task bus; returns acknowledged.

        Checked through ``GET /api/v1/messages`` and, when the runs root is known, the bus file.

        Example:
        | `Measure Bus Contention Over HTTP`    writers=16    processes=4    duration=5 s
        """
        target = require_target()
        logger.console(f"\n    bus contention over HTTP: {plural(writers, 'writer')} in {plural(processes, 'process')} "
                       f"x {seconds(duration):g} s")  # fmt: skip
        self._contention = reliability.bus_contention_http(target, writers=writers, processes=processes,
                                                           duration=seconds(duration),
                                                           on_progress=progress("POST /api/v1/messages", "msg/s"))  # fmt: skip
        logger.info(self._contention.message())
        for note in self._contention.notes:
            logger.info(note)
        return self._contention.written

    @keyword
    def contended_bus_should_have_every_message_exactly_once(self) -> None:
        """Record messages written, lost, duplicated and torn of the last contention run; fail unless 0.

        Over HTTP, ``GET /api/v1/messages`` must also return as many messages as the file holds.

        Example:
        | `Contended Bus Should Have Every Message Exactly Once`
        """
        c = self._contention
        if c is None:
            raise AssertionError("no contention measured: call 'Measure Bus Contention' first")
        label = "bus contention" if c.driver == "file" else "bus contention over HTTP"
        details = c.to_dict()
        figure(f"{label} messages written", c.written, "messages", details=details)
        failures = []
        for name, value in (("lost", c.lost), ("duplicated", c.duplicated), ("torn", c.torn)):
            try:
                figure(f"{label} messages {name}", value, "messages", "==", 0, details=details)
            except AssertionError as exc:
                failures.append(str(exc))
        if c.api_count is not None:
            try:
                figure(f"{label} messages the API does not return", c.parsed - c.api_count, "messages", "==", 0,
                       details=details)  # fmt: skip
            except AssertionError as exc:
                failures.append(str(exc))
        if failures:
            raise AssertionError("; ".join(failures))

    # ------------------------------------------------------------------ run-info

    @keyword
    def measure_run_info_atomicity(self, readers: int = 4, writers: int = 2, reads: int = 100_000,
                                   max_duration: timedelta = timedelta(seconds=60)) -> int:  # fmt: skip
        """Readers read one run-info without a lock while writers update it, until ``reads`` reads.

        Returns the reads made (bounded by ``max_duration``). Example:
        | `Measure Run Info Atomicity`    readers=4    writers=2    reads=100000
        """
        logger.console(f"\n    run-info atomicity: {plural(readers, 'reader')}, {plural(writers, 'writer')}, >= {plural(reads, 'read')}")
        self._atomicity = reliability.run_info_atomicity(require_root(), readers=readers, writers=writers,
                                                         min_reads=reads, max_duration=seconds(max_duration))  # fmt: skip
        logger.info(self._atomicity.message())
        for sample in self._atomicity.samples:
            logger.info(f"bad read: {sample}")
        return self._atomicity.reads

    def _require_atomicity(self) -> reliability.RunInfoAtomicity:
        if self._atomicity is None:
            raise AssertionError("no run-info atomicity measured: call 'Measure Run Info Atomicity' first")
        return self._atomicity

    @keyword
    def get_run_info_reads(self, op: str | None = None, expected: float | None = None) -> int:
        """Reads made in the last atomicity run; asserts when given an operator and a target.

        Example:
        | `Get Run Info Reads`    >=    100000
        """
        a = self._require_atomicity()
        return int(figure("run-info reads under concurrent updates", a.reads, "reads", op, expected,
                          details=a.to_dict()))  # fmt: skip

    @keyword
    def get_torn_or_unparsable_run_info_reads(
        self, op: str | None = None, expected: float | None = None
    ) -> int:
        """Torn plus unparsable reads of the last atomicity run; asserts when given a target.

        Example:
        | `Get Torn Or Unparsable Run Info Reads`    ==    0
        """
        a = self._require_atomicity()
        return int(figure("run-info torn or unparsable reads", a.bad_reads, "reads", op, expected,
                          details=a.to_dict()))  # fmt: skip

    @keyword
    def get_lost_run_info_updates(self, op: str | None = None, expected: float | None = None) -> int:
        """Updates lost to a race (made but not in the final version) in the last atomicity run.

        Example:
        | `Get Lost Run Info Updates`    ==    0
        """
        a = self._require_atomicity()
        return int(
            figure("run-info lost updates", a.lost_updates, "updates", op, expected, details=a.to_dict())
        )

    # ------------------------------------------------------------------ SSE

    @keyword
    def measure_sse_burst_delivery(self, lines: int = 2000, subscribers: int = 5, slow_subscribers: int = 0,
                                   *, timeout: timedelta = timedelta(seconds=30)) -> int:  # fmt: skip
        """Append ``lines`` lines at once to a running run's stdout while ``subscribers`` read its stream.

        ``slow_subscribers`` more connect and read nothing until the others are done (a backlog
        fills their buffers first, so the server really has to hold lines for them). Returns the
        lines lost at the regular subscribers. Example:
        | `Measure SSE Burst Delivery`    lines=2000    subscribers=5    slow_subscribers=1
        """
        target = require_target()
        logger.console(f"\n    SSE burst: {plural(lines, 'line')} to {plural(subscribers, 'subscriber')}"
                       f"{f' + {slow_subscribers} slow' if slow_subscribers else ''}")  # fmt: skip
        self._burst = reliability.sse_burst(target, require_root(), lines=lines, subscribers=subscribers,
                                            slow=slow_subscribers, timeout=seconds(timeout))  # fmt: skip
        b = self._burst
        logger.info(b.message())
        for d in b.fast + b.slow:
            logger.info(f"{d.name}: received {d.received} of {d.expected}, missing {d.missing}, duplicated "
                        f"{d.duplicated}, out of order {d.out_of_order}{'; ' + d.error if d.error else ''}")  # fmt: skip
        for d in b.slow:
            figure(f"SSE {d.name} lines received", d.received, "lines",
                   details={"expected": d.expected, "disconnected": d.ended_early})  # fmt: skip
        return b.lost

    def _require_burst(self) -> reliability.SseBurst:
        if self._burst is None:
            raise AssertionError("no SSE burst measured: call 'Measure SSE Burst Delivery' first")
        return self._burst

    def _burst_label(self) -> str:
        b = self._require_burst()
        slow = f" with {len(b.slow)} slow subscriber{'s' if len(b.slow) > 1 else ''}" if b.slow else ""
        return f"SSE burst of {plural(b.lines, 'line')} to {plural(len(b.fast), 'subscriber')}{slow}"

    @keyword
    def get_sse_burst_lines_lost(self, op: str | None = None, expected: float | None = None) -> int:
        """Lines of the last burst missing at the regular subscribers (summed); asserts when given a target.

        Example:
        | `Get SSE Burst Lines Lost`    ==    0
        """
        b = self._require_burst()
        return int(figure(f"{self._burst_label()}: lines lost", b.lost, "lines", op, expected,
                          details=b.to_dict()))  # fmt: skip

    @keyword
    def get_sse_burst_lines_out_of_order(self, op: str | None = None, expected: float | None = None) -> int:
        """Lines of the last burst delivered out of order or twice (summed over regular subscribers).

        Example:
        | `Get SSE Burst Lines Out Of Order`    ==    0
        """
        b = self._require_burst()
        return int(figure(f"{self._burst_label()}: lines out of order or duplicated", b.out_of_order, "lines",
                          op, expected, details=b.to_dict()))  # fmt: skip

    @keyword(tags=[CHART_TAG])
    def get_sse_burst_delivery_latency(self, percentile: str = "p95", op: str | None = None,
                                       expected: float | None = None) -> float:  # fmt: skip
        """A percentile (ms) of the time from the burst's append to each line's arrival at the regular subscribers.

        Example:
        | `Get SSE Burst Delivery Latency`    p95    <    200
        """
        b = self._require_burst()
        value = b.latency.get(percentile)
        if value is None:
            raise AssertionError(f"{self._burst_label()}: no line was delivered to any regular subscriber, "
                                 f"so there is no latency")  # fmt: skip
        chart_percentiles(f"{self._burst_label()}: delivery latency", b.latency, expected)
        return figure(f"{self._burst_label()}: delivery latency {percentile}", value,
                      "ms", op, expected, details=b.to_dict(), histogram=b.histogram)  # fmt: skip

    @keyword
    def measure_sse_resume_across_restart(self, before: int = 100, during: int = 100, after: int = 100,
                                          *, timeout: timedelta = timedelta(seconds=60)) -> int:  # fmt: skip
        """Kill and restart the owned SUT under an SSE subscriber of a running run.

        ``before`` lines arrive live, ``during`` are appended while the server is down, ``after``
        once it is back; the subscriber reconnects with ``Last-Event-ID``. The runs root is kept,
        the port too when free. Returns the lines missed. Needs an SUT the suite owns (capability
        ``can_restart``). Example:
        | `Measure SSE Resume Across Restart`    before=100    during=100    after=100
        """
        root = require_root()
        conductor = BuiltIn().get_library_instance("ConductorLibrary")

        def kill() -> None:
            target = require_target()
            try:
                faults.kill_sut(target, on_kill=lambda at: run_context().note_fault("kill", at, target.pid))
            except TargetError as exc:
                raise AssertionError(str(exc)) from None

        def start():
            conductor.restart_conductor()
            return require_target()

        logger.console(
            f"\n    SSE resume: {plural(before, 'line')}, kill, {plural(during, 'line')} while down, restart, {plural(after, 'line')}"
        )
        self._resume = reliability.sse_resume_across_restart(require_target(), root, kill=kill, start=start,
                                                             before=before, during=during, after=after,
                                                             timeout=seconds(timeout))  # fmt: skip
        logger.info(self._resume.message())
        return self._resume.delivery.missing

    def _require_resume(self) -> reliability.SseResume:
        if self._resume is None:
            raise AssertionError("no resume measured: call 'Measure SSE Resume Across Restart' first")
        return self._resume

    @keyword
    def get_sse_lines_missed_after_restart(self, op: str | None = None, expected: float | None = None) -> int:
        """Lines the resumed subscriber never received; asserts when given an operator and a target.

        Example:
        | `Get SSE Lines Missed After Restart`    ==    0
        """
        r = self._require_resume()
        return int(figure("SSE lines missed across a conductor restart", r.delivery.missing, "lines", op, expected,
                          details=r.to_dict()))  # fmt: skip

    @keyword
    def get_sse_lines_repeated_after_restart(
        self, op: str | None = None, expected: float | None = None
    ) -> int:
        """Lines the resumed subscriber received twice or out of order; asserts when given a target.

        Example:
        | `Get SSE Lines Repeated After Restart`    ==    0
        """
        r = self._require_resume()
        d = r.delivery
        return int(figure("SSE lines repeated or out of order across a conductor restart",
                          d.duplicated + d.out_of_order, "lines", op, expected, details=r.to_dict()))  # fmt: skip

    # ------------------------------------------------------------------ faults

    @keyword
    def run_keyword_and_fail_fast_if_conductor_dies(self, name: str, *args: Any) -> Any:
        """Run keyword ``name`` with ``args``; if the SUT dies meanwhile, fail at once with one line.

        A watchdog checks the SUT every 0.1 s; when it died, load-generator processes are killed
        and the keyword is interrupted with ``conductor died: <why>; ...``. Example:
        | `Run Keyword And Fail Fast If Conductor Dies`    Measure Message Posting    writers=16    duration=30 s
        """
        target = require_target()
        self._failed_at = None
        started = time.time()
        with faults.fail_fast_if_sut_dies(target) as watch:
            try:
                return BuiltIn().run_keyword(name, *args)
            finally:
                if watch.reason is not None:
                    self._failed_at = time.time()
                    fault = run_context().last_fault
                    self._killed_at = fault.at if fault is not None and fault.kind == "kill" else None
                    figure("conductor died during a keyword", self._failed_at - started, "s",
                           details={"keyword": name, "reason": watch.reason})  # fmt: skip

    @keyword
    def get_time_from_kill_to_failure(self, op: str | None = None, expected: float | None = None) -> float:
        """Seconds from the last `Kill Conductor` to the failure of the guarded keyword.

        Example:
        | `Get Time From Kill To Failure`    <    5
        """
        if self._failed_at is None:
            raise AssertionError("the last guarded keyword did not fail because the conductor died")
        if self._killed_at is None:
            raise AssertionError("the conductor was not killed by 'Kill Conductor' in this run")
        return figure("time from conductor kill to keyword failure", self._failed_at - self._killed_at, "s", op,
                      expected)  # fmt: skip

    @keyword
    def metrics_measured_so_far_should_be_saved(self) -> None:
        """Fail unless every figure this process measured is already in the results' metric files.

        Example:
        | `Metrics Measured So Far Should Be Saved`
        """
        ctx = run_context()
        on_disk = {(r.get("time"), r.get("metric")) for r in load_records(ctx.results_dir)}
        missing = [r for r in ctx.records if (r.get("time"), r.get("metric")) not in on_disk]
        figure("metric records on disk", len(ctx.records) - len(missing), "records",
               details={"in_memory": len(ctx.records), "folder": str(ctx.metrics_dir)})  # fmt: skip
        if missing:
            names = ", ".join(str(r.get("metric")) for r in missing[:3])
            raise AssertionError(f"{len(missing)} measured figures are not in {ctx.metrics_dir}: {names}")

    @keyword
    def get_conductor_process_id(self) -> int:
        """The SUT's process id (0 when unknown, e.g. an external SUT on another host).

        Example:
        | ${pid} =    `Get Conductor Process Id`
        """
        return int(require_target().pid or 0)

    @keyword
    def conductor_should_be_a_fresh_process(self, old_pid: int) -> None:
        """Fail unless the SUT runs, as a process other than ``old_pid``.

        Example:
        | `Conductor Should Be A Fresh Process`    ${old_pid}
        """
        target = require_target()
        reason = faults.down_reason(target)
        if reason is not None:
            raise AssertionError(f"the conductor is not running: {reason}")
        if target.pid == old_pid:
            raise AssertionError(f"the conductor is still the old process (pid {old_pid})")
        logger.info(
            f"fresh conductor: pid {target.pid} (was {old_pid}) at {target.url}, runs root {target.root}"
        )
