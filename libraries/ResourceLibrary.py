"""Resources of the SUT while a workload runs: memory, CPU, threads, goroutines/tasks; leaks, idle CPU, hot spots."""

from __future__ import annotations

import html
import time
from datetime import timedelta
from pathlib import Path

from _perf_base import CHART_TAG, chart_series, figure, log_chart, require_target, run_context, seconds, skip
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import goroutine_bench, idle_bench, leak_bench, native_hotspots
from conductor_perf.bench import hotspots as hotspots_bench
from conductor_perf.charts import line_chart
from conductor_perf.measure import linuxperf
from conductor_perf.measure.goroutines import GoroutineDumpError
from conductor_perf.measure.monitor import MIB, ProcessTreeSampler, ResourceSeries
from conductor_perf.measure.profile import scalene_unavailable_reason
from conductor_perf.target import Target, http_json
from conductor_perf.verdict import fmt
from conductor_perf.wording import plural


def _require_pid() -> Target:
    """The SUT; skips the test naming the capability ``pid`` when its process is not visible here."""
    target = require_target()
    gap = target.capability_gap("pid")
    if gap is not None:
        skip(f"{gap}: cannot sample it")
    return target


def total_memory_mb(series: ResourceSeries) -> list[list[float]]:
    """(t, MB) of the server (PSS, else RSS) plus its children's RSS, per sample."""
    out = []
    for s in series.samples:
        server = s.pss_bytes if s.pss_bytes is not None else s.rss_bytes
        if server is None:
            continue
        out.append([round(s.t_s, 3), (server + (s.children_rss_bytes or 0)) / MIB])
    return out


@library(scope="SUITE", auto_keywords=False)
class ResourceLibrary:
    """Samples the SUT's process tree (server and its agents) with psutil while a test's workload runs.

    The server is found by its pid (an SUT the suite started) or by the process listening on the
    SUT's port (a server attached by URL on this machine); without it (capability ``pid``) the
    sampling tests are skipped with that reason. Each sample holds memory (PSS/USS/RSS),
    CPU of the server and of its children, OS threads, open files and TCP connections.

    = CPU figures =

    CPU is given as a percentage of the whole machine (100 % = every core busy), the server
    alone unless the keyword says otherwise.

    = Goroutines =

    The SUT's ``goroutines`` capability says where the count comes from: an owned Go binary prints
    every goroutine on SIGQUIT (``sigquit``; `Count Goroutines At The Peak Of A Load` then restarts
    nothing itself: the test's teardown does); the embedded conductor reports its asyncio tasks
    through its debug endpoint (``tasks``, the equivalent figure); anything else is skipped naming
    the capability (conductor-loop exposes no pprof endpoint or goroutine metric).

    = Leak verdicts =

    `Run Leak Cycles` runs a warm-up cycle and then K identical cycles of a small workload (stub
    agents, a burst of bus messages over HTTP, SSE clients that connect, read and disconnect, list
    reads), each followed by an idle window, and samples the server at each idle point: memory (USS,
    else PSS, else RSS), threads, open fds and TCP sockets. `Server Resources Should Not Leak` fails
    when, for any of them, the Theil-Sen slope over the idle points is significantly upward
    (one-sided Mann-Kendall) with a growth above the tolerance, or the level ends above the warm-up
    baseline plus the tolerance (``conductor_perf.measure.leak``).

    = Idle CPU =

    `Measure Idle Stream Cpu` keeps one SSE client on the log stream of a running run that writes
    nothing and samples the server's CPU; `Get Idle Server Cpu` compares its mean with a target.

    = Hot spots =

    `Profile Embedded Conductor` starts a separate embedded conductor under scalene (never the SUT
    of the other tests: the profiler's overhead would distort their figures), drives a short load,
    and writes ``hotspots.md`` and the full scalene JSON into the run's results folder.
    `Profile Cpu Hot Spots` chooses by the SUT's ``profiler`` capability: that, or Linux perf on a
    native binary's own process; an SUT without one is skipped naming the capability.

    Example:
    | `Start Resource Sampling`
    | `Run Concurrent Agents`    50
    | `Stop Resource Sampling`
    | `Get Peak Memory`    <    500
    """

    def __init__(self) -> None:
        self._sampler: ProcessTreeSampler | None = None
        self._series: ResourceSeries | None = None
        self._label = ""
        self._leak: leak_bench.LeakRun | None = None
        self._idle: idle_bench.IdleCpuResult | None = None
        self._hotspots: hotspots_bench.HotspotReport | native_hotspots.NativeHotspotReport | None = None
        self._goroutines: tuple[str, int, dict[str, object]] | None = None

    @keyword
    def start_resource_sampling(
        self, label: str = "workload", interval: timedelta = timedelta(seconds=0.5)
    ) -> None:
        """Start sampling the SUT's process tree every ``interval`` (skips when its pid is unknown).

        The first samples come 8 times as often (the step doubles every 8 samples up to
        ``interval``), so a workload of about a second still gets a dozen samples; CPU means are
        weighted by each sample's window.

        Example:
        | `Start Resource Sampling`    50 agents    interval=0.5 s
        """
        target = _require_pid()
        self._label = label
        # 8 times denser at first, so a workload of a second (50 agents of 1 s) still shows its shape
        self._sampler = ProcessTreeSampler(target.pid, interval=seconds(interval), start_interval=seconds(interval) / 8)
        self._sampler.start()

    @keyword(tags=[CHART_TAG])
    def stop_resource_sampling(self) -> None:
        """Stop sampling; logs the memory, CPU and thread timelines.

        Example:
        | `Stop Resource Sampling`
        """
        if self._sampler is None:
            raise AssertionError("resource sampling was not started: call 'Start Resource Sampling' first")
        sampler, self._sampler = self._sampler, None
        self._series = sampler.stop()
        s = self._series
        logger.info(f"{plural(len(s.samples), 'sample')} over {s.duration_s:.1f} s (memory basis {s.memory_basis}); "
                    f"peaks {s.peak()}")  # fmt: skip
        if s.process_exited:
            logger.warn(f"the SUT process exited {s.exited_at_s} s into sampling")
        chart_series(
            f"{self._label}: memory of server + agents", {"MB": total_memory_mb(s)}, "time (s)", "MB"
        )
        cols = s.columns()
        cpu = {"server": [[t, c] for t, c in zip(cols["t_s"], cols["cpu_machine_percent"], strict=True) if c is not None],
               "server + agents": [[t, c] for t, c in zip(cols["t_s"], cols["cpu_total_machine_percent"], strict=True)
                                   if c is not None]}  # fmt: skip
        chart_series(f"{self._label}: CPU (% of the machine)", cpu, "time (s)", "CPU %")
        chart_series(f"{self._label}: server threads", {"threads": [[t, n] for t, n in zip(cols["t_s"], cols["threads"],
                     strict=True) if n is not None]}, "time (s)", "threads")  # fmt: skip

    def _require(self) -> ResourceSeries:
        if self._series is None:
            raise AssertionError(
                "no resource samples: call 'Start Resource Sampling' and 'Stop Resource Sampling'"
            )
        if not self._series.samples:
            raise AssertionError(
                "resource sampling took no sample: the workload was shorter than one interval"
            )
        return self._series

    @keyword
    def get_peak_memory(self, op: str | None = None, expected: float | None = None) -> float:
        """Peak memory in MB of the server (PSS, else RSS) plus its child processes (RSS) during sampling.

        The children are the agents and, for the embedded conductor, its file helper process.

        Example:
        | `Get Peak Memory`    <    500
        """
        s = self._require()
        series = total_memory_mb(s)
        peak = max(v for _, v in series)
        at_start = series[0][1]  # what the server (and any agent) held before the workload
        logger.info(f"{fmt(at_start)} MB when sampling started (the server with the history earlier tests left), "
                    f"peak {fmt(peak)} MB: the workload added {fmt(peak - at_start)} MB")  # fmt: skip
        return figure(f"{self._label} peak memory", peak, "MB", op, expected,
                      details={"basis": s.memory_basis, "server_peak_rss_mb": (s.peak("rss_bytes") or 0) / MIB,
                               "children_peak_rss_mb": (s.peak("children_rss_bytes") or 0) / MIB,
                               "peak_children": s.peak("children"), "at_start_mb": at_start,
                               "added_by_workload_mb": peak - at_start},
                      series={"memory_mb": series})  # fmt: skip

    @keyword
    def get_server_cpu(
        self, statistic: str = "mean", op: str | None = None, expected: float | None = None
    ) -> float:
        """The server's CPU (``mean`` or ``peak``) as % of the machine during sampling.

        Example:
        | `Get Server Cpu`    mean    <    80
        """
        s = self._require()
        value = s.mean("cpu_machine_percent") if statistic == "mean" else s.peak("cpu_machine_percent")
        return figure(f"{self._label} server CPU {statistic}", value or 0.0, "%", op, expected,
                      details={"mean_pct": s.mean("cpu_machine_percent"), "peak_pct": s.peak("cpu_machine_percent"),
                               "with_agents_mean_pct": s.mean("cpu_total_machine_percent"), "samples": len(s.samples)})  # fmt: skip

    @keyword
    def get_peak_threads(self, op: str | None = None, expected: float | None = None) -> int:
        """Peak OS thread count of the server process during sampling.

        Example:
        | `Get Peak Threads`    <    1000
        """
        s = self._require()
        return int(figure(f"{self._label} peak threads", s.peak("threads") or 0, "threads", op, expected,
                          details={"peak_open_fds": s.peak("open_fds"), "peak_tcp": s.peak("tcp_connections")}))  # fmt: skip

    @keyword
    def count_goroutines_at_the_peak_of_a_load(
        self,
        *,
        agents: int = 50,
        sse_clients: int = 10,
        connections: int = 16,
        dump_after: timedelta = timedelta(seconds=3),
        timeout: timedelta = timedelta(seconds=60),
    ) -> int:
        """Run ``agents`` stub agents, ``sse_clients`` log-stream clients and an API load at once; count at the peak.

        At the peak (``dump_after`` into the API load, every agent running, every client
        connected) the SUT's goroutines are counted: for a Go SUT that offers the ``sigquit``
        capability from its all-goroutine stack dump on SIGQUIT, **which stops it** (restart it in
        the test's teardown); for the embedded conductor its asyncio tasks (its debug endpoint).
        Skips, naming the capability, for a SUT that offers neither. Returns the count;
        `Get Goroutines Or Tasks` asserts it.

        Example:
        | `Count Goroutines At The Peak Of A Load`    agents=50    sse_clients=10    connections=16
        | `Get Goroutines Or Tasks`    <    1000
        | [Teardown]    `Restart Conductor`    if_down=${True}
        """
        target = require_target()
        load = {"agents": agents, "sse_clients": sse_clients, "connections": connections,
                "dump_after_s": seconds(dump_after), "timeout": seconds(timeout)}  # fmt: skip
        goroutines = target.goroutines
        if goroutines == "tasks":
            status, body = http_json(target.endpoint("/api/v1/debug/runtime"), headers=target.auth_headers())
            if status != 200 or not isinstance(body, dict) or "asyncio_tasks" not in body:
                skip(f"the SUT exposes no task count (GET /api/v1/debug/runtime answered {status})")

            def read() -> dict[str, object]:
                _, now = http_json(target.endpoint("/api/v1/debug/runtime"), headers=target.auth_headers())
                return now if isinstance(now, dict) else {}

            logger.console(f"\n    asyncio tasks at the peak of {plural(agents, 'agent')}, {plural(sse_clients, 'SSE client')}, "
                           f"{plural(connections, 'connection')}")  # fmt: skip
            peak = goroutine_bench.at_peak_of_load(target, read, **load)
            if "asyncio_tasks" not in peak.reading:
                raise AssertionError(f"the debug endpoint gave no task count at the peak: {peak.reading}")
            self._goroutines = ("asyncio tasks", int(peak.reading["asyncio_tasks"]), peak.to_dict())
        elif goroutines == "sigquit":
            log_path = target.log_path  # a managed binary's stdout and stderr both go there
            if target.pid is None or log_path is None:
                skip(f"a goroutine dump needs the SUT's process and its stderr log: pid {target.pid}, log {log_path}")
            logger.console(f"\n    goroutines at the peak of {plural(agents, 'agent')}, {plural(sse_clients, 'SSE client')}, "
                           f"{plural(connections, 'connection')} (SIGQUIT stack dump: the SUT exits)")  # fmt: skip
            run_context().note_fault("sigquit", time.time(), target.pid)  # the suite stops it: no crash
            try:
                peak = goroutine_bench.goroutines_under_load(target, log_path, **load)
            except GoroutineDumpError as exc:
                raise AssertionError(f"goroutine dump: {exc}") from None
            logger.info(f"the SUT (pid {target.pid}) exited with status {peak.reading.exit_status} after its dump; "
                        f"goroutines by state {peak.reading.states}; by entry function {peak.reading.entry_functions}")  # fmt: skip
            self._goroutines = ("goroutines", peak.reading.count, peak.to_dict())
        else:
            skip("goroutine count not available: " + (target.capability_gap("goroutines") or (
                f"capability goroutines={goroutines} is not read by this library")))  # fmt: skip
            raise AssertionError("unreachable")  # skip raises
        for err in peak.errors:
            logger.warn(f"goroutine load: {err}")
        if peak.errors:
            raise AssertionError(f"the load did not reach its peak, the count proves nothing: {'; '.join(peak.errors)}")
        return self._goroutines[1]

    @keyword
    def get_goroutines_or_tasks(self, op: str | None = None, expected: float | None = None) -> int:
        """Goroutines (Go) or asyncio tasks (embedded conductor) at the peak of the last `Count Goroutines At The Peak Of A Load`.

        Example:
        | `Get Goroutines Or Tasks`    <    1000
        """
        if self._goroutines is None:
            raise AssertionError("nothing counted: call 'Count Goroutines At The Peak Of A Load' first")
        what, value, details = self._goroutines
        return int(figure(f"{what} at the peak of the load", value, what, op, expected, details=details))

    # -- leak verdicts -----------------------------------------------------------------------

    @keyword(tags=[CHART_TAG])
    def run_leak_cycles(
        self,
        cycles: int = 6,
        *,
        agents: int = 3,
        agent_work_ms: int = 200,
        messages: int = 200,
        sse_clients: int = 5,
        idle: timedelta = timedelta(seconds=2),
        duration: timedelta | None = None,
        memory_tolerance_mb: float = 10.0,
        memory_per_run_kb: float = 0.0,
        threads_tolerance: float = 2,
        goroutines_tolerance: float = 10,
        fds_tolerance: float = 4,
        tcp_tolerance: float = 2,
        timeout: timedelta = timedelta(seconds=60),
    ) -> int:
        """Run a warm-up cycle and ``cycles`` identical workload cycles, sampling the server when idle after each.

        Each cycle: ``agents`` stub agents working ``agent_work_ms``, a burst of ``messages`` bus
        messages over HTTP read live by ``sse_clients`` SSE clients that then disconnect, and a few
        list reads; then ``idle`` without any request before the idle point. The memory tolerance
        is ``memory_tolerance_mb`` plus ``memory_per_run_kb`` for every agent run created (history a
        server may keep in memory). A Go build the suite started is also judged on its live
        goroutines, and on its busy OS threads instead of all of them (its runtime's scheduler
        trace in the log; idle threads are parked by the runtime for reuse). With ``duration``
        (soak) cycles repeat until that much time has passed, at least ``cycles`` of them. Logs
        the idle-point series as charts and the verdict table; returns the measured cycles. Fails
        when the workload itself failed (a leak verdict over a broken workload proves nothing):
        the first cycle that fails ends the run, with its reason.
        Skips when the SUT's process is not visible here. The verdicts are asserted by
        `Server Resources Should Not Leak`.

        Example:
        | `Run Leak Cycles`    6    agents=3    messages=200    sse_clients=5    idle=2 s
        | `Run Leak Cycles`    6    duration=30 min    # soak
        """
        target = _require_pid()
        workload = leak_bench.Workload(agents=agents, agent_work_ms=agent_work_ms, messages=messages,
                                       sse_clients=sse_clients, timeout_s=seconds(timeout))  # fmt: skip
        tolerances = leak_bench.LeakTolerances(memory_mb=memory_tolerance_mb, memory_per_run_kb=memory_per_run_kb,
                                               threads=threads_tolerance, goroutines=goroutines_tolerance,
                                               open_fds=fds_tolerance, tcp_connections=tcp_tolerance)  # fmt: skip
        soak = seconds(duration) if duration is not None else None
        logger.console(f"\n    leak: warm-up + {plural(cycles, 'cycle')}" + (f", soak {soak:g} s" if soak else "")
                       + f" ({plural(workload.requests_per_cycle, 'request')}, {plural(agents, 'agent')}, {sse_clients} SSE clients each)")  # fmt: skip

        def on_cycle(c: leak_bench.CycleReport) -> None:
            mem = c.values.get("memory")
            logger.console(f"    leak: {'warm-up' if c.warmup else f'cycle {c.index}'} at {c.t_s:6.1f} s: "
                           f"memory {mem if mem is None else f'{mem:.2f}'} MB, threads {c.values.get('threads')}, "
                           + (f"goroutines {c.values['goroutines']}, " if c.values.get("goroutines") is not None else "")
                           + f"fds {c.values.get('open fds')}, sockets {c.values.get('tcp connections')}"
                           + (f", {len(c.errors)} workload errors" if c.errors else ""))  # fmt: skip

        try:
            run = leak_bench.run_leak_cycles(target, cycles, workload=workload, tolerances=tolerances,
                                             idle_s=seconds(idle), duration_s=soak, on_cycle=on_cycle)  # fmt: skip
        except GoroutineDumpError as exc:
            raise AssertionError(f"leak test: {exc}") from None
        self._leak = run
        _log_leak_charts(run)
        _log_table(leak_bench.verdict_table(run), ["resource", "unit", "baseline", "first", "last", "slope_per_cycle",
                   "fitted_growth", "observed_growth", "tolerance", "p_value", "verdict", "reasons"])  # fmt: skip
        for err in run.workload_errors[:10]:
            logger.warn(f"leak workload: {err}")
        try:
            figure("leak workload failures", len(run.workload_errors), "errors", "==", 0,
                   details={"errors": run.workload_errors[:20], "workload": run.to_dict()["workload"],
                            "cycles": len(run.cycles), "duration_s": run.duration_s,
                            "runs_created": run.runs_created})  # fmt: skip
        except AssertionError as exc:  # the reason first: the count alone says nothing
            raise AssertionError(f"{exc}; the leak test stopped at {run.workload_errors[0]}") from None
        return len(run.cycles)

    @keyword
    def server_resources_should_not_leak(self) -> None:
        """Fail when the last `Run Leak Cycles` found a leak in memory, threads, goroutines, open fds or TCP sockets.

        Records, per resource, the Theil-Sen slope per cycle with the Mann-Kendall p-value, the
        growth and the tolerance; the failure message names every leaking resource with its figures.

        Example:
        | `Run Leak Cycles`    6
        | `Server Resources Should Not Leak`
        """
        if self._leak is None:
            raise AssertionError("no leak cycles ran: call 'Run Leak Cycles' first")
        run = self._leak
        for name, unit in leak_bench.RESOURCES:
            v = run.verdicts.get(name)
            if v is None and name == "goroutines" and not run.series(name):
                continue  # not a Go build with a scheduler trace: nothing to judge, nothing missing
            if v is None:
                logger.warn(f"no leak verdict for {name}: fewer than two idle-point values could be read")
                continue
            figure(f"leak {name} slope", v.slope_per_cycle, f"{unit}/cycle",
                   details={**v.to_dict(), "memory_basis": run.memory_basis if name == "memory" else None,
                            **({"threads_basis": run.threads_basis} if name == "threads" else {})},
                   series={"idle_points": [[i + 1, y] for i, y in enumerate(run.series(name))]})  # fmt: skip
            logger.info(v.message)
        messages = [run.verdicts[n].message for n in run.leaking]
        try:
            figure("leaking resources", len(run.leaking), "resources", "==", 0,
                   details={"leaking": run.leaking, "messages": messages, "cycles": len(run.cycles)})  # fmt: skip
        except AssertionError as exc:
            raise AssertionError(f"{exc}; " + " | ".join(messages)) from None

    # -- idle CPU ----------------------------------------------------------------------------

    @keyword
    def measure_idle_stream_cpu(
        self, window: timedelta = timedelta(seconds=5), *, interval: timedelta = timedelta(seconds=0.5)
    ) -> float:
        """Sample the server's CPU for ``window`` while one SSE client follows a quiet running run.

        A stub agent that prints nothing sleeps far longer than the window; one client holds
        ``GET /api/v1/runs/{id}/stream`` open; afterwards the task is deleted and the run stopped.
        Returns the mean CPU in % of the machine (`Get Idle Server Cpu` charts it). Skips when the
        SUT's process is not visible here.

        Example:
        | `Measure Idle Stream Cpu`    5 s
        | `Get Idle Server Cpu`    <    5
        """
        target = _require_pid()
        window_s = seconds(window)
        logger.console(f"\n    idle CPU: one SSE client on a quiet run for {window_s:g} s")
        r = idle_bench.measure_idle_stream_cpu(target, window_s=window_s, interval_s=seconds(interval),
                                               timeout=max(30.0, window_s))  # fmt: skip
        self._idle = r
        logger.info(f"run {r.run_id}: stream HTTP {r.stream_status}, events before the window {r.events_before}, "
                    f"during it {r.events}; {plural(r.samples, 'sample')}; server CPU mean {r.cpu_mean_pct:.2f} % of the "
                    f"machine ({r.cpu_core_mean_pct:.1f} % of one core), peak {r.cpu_peak_pct:.2f} %; run "
                    f"{r.run_status_after} after the stop")  # fmt: skip
        for err in r.errors:
            logger.warn(f"idle CPU: {err}")
        return r.cpu_mean_pct

    @keyword(tags=[CHART_TAG])
    def get_idle_server_cpu(self, op: str | None = None, expected: float | None = None) -> float:
        """The server's mean CPU (% of the machine) over the last `Measure Idle Stream Cpu` window.

        Example:
        | `Get Idle Server Cpu`    <    5
        """
        if self._idle is None:
            raise AssertionError("no idle CPU measured: call 'Measure Idle Stream Cpu' first")
        r = self._idle
        if r.stream_status != 200:
            raise AssertionError(f"the run stream answered HTTP {r.stream_status}: nothing was streaming")
        chart_series(f"server CPU with one idle run stream ({r.window_s:g} s)", {"server": r.cpu_series()},
                     "time (s)", "CPU % of the machine", target=expected, target_label="target")  # fmt: skip
        return figure("idle stream server CPU mean", r.cpu_mean_pct, "%", op, expected,
                      details={k: v for k, v in r.to_dict().items() if k != "cpu_series"},
                      series={"cpu_pct": r.cpu_series()})  # fmt: skip

    # -- hot spots ---------------------------------------------------------------------------

    @keyword(tags=[CHART_TAG])
    def profile_cpu_hot_spots(
        self,
        duration: timedelta = timedelta(seconds=10),
        *,
        agents: int = 3,
        workers: int = 4,
        top: int = 10,
        hz: int = 499,
    ) -> str:
        """CPU hot spots with the profiler that fits the SUT, under ``duration`` of load; returns hotspots.md.

        The SUT's ``profiler`` capability chooses: ``scalene`` (the Python reference: a separate
        embedded conductor, see `Profile Embedded Conductor`) or ``perf`` (a native binary: Linux
        perf samples the SUT's own process at ``hz`` per second with call graphs while the same
        load runs). The perf table lists functions with their self and total share and source
        file:line; ``hotspots.perf.data`` and both perf reports go beside it. Skips, naming what is
        missing, when the SUT offers no profiler, perf is not installed, or the kernel forbids it.

        Example:
        | `Profile Cpu Hot Spots`    10 s    agents=3
        """
        target = require_target()
        profiler = target.profiler
        if profiler == "scalene":
            return self.profile_embedded_conductor(duration, agents=agents, workers=workers, top=top)
        if profiler != "perf":
            skip("CPU profile not available: " + (target.capability_gap("profiler") or (
                f"capability profiler={profiler} is not used by this library")))  # fmt: skip
        reason = linuxperf.perf_unavailable_reason()
        if reason:
            skip(f"CPU profile of the native SUT not available: {reason}")
        if target.capability_gap("pid") is not None:
            skip(f"{target.capability_gap('pid')}: cannot sample it")
        logger.console(f"\n    profile: perf on the SUT (pid {target.pid}) at {hz} Hz, {seconds(duration):g} s of load")
        try:
            report = native_hotspots.profile_native(target, run_context().results_dir, duration_s=seconds(duration),
                                                    hz=hz, workers=workers, agents=agents, top=top)  # fmt: skip
        except linuxperf.PerfError as exc:
            raise AssertionError(f"perf: {exc}") from None
        self._hotspots = report
        own = report.own_hotspots
        logger.info(f"profile written in {report.elapsed_s:.1f} s: {report.markdown_path} ({report.header.samples} "
                    f"samples, perf data {report.data_path}); load {report.load}")  # fmt: skip
        logger.info(_native_html(report.hotspots, top), html=True)
        top_own = sorted((h for h in report.hotspots if linuxperf.in_module(h, report.module)),
                         key=lambda h: h.total_percent, reverse=True)  # fmt: skip
        logger.info("The server's own functions by total share:" + _native_html(top_own, top), html=True)
        logger.info(f"{len(own)} functions of {report.module or 'the server'} with self samples; top by self: "
                    + ", ".join(f"{h.function} {h.self_percent:.1f} %" for h in own[:3]))  # fmt: skip
        for err in report.errors:
            logger.warn(f"profile load: {err}")
        return str(report.markdown_path)

    @keyword(tags=[CHART_TAG])
    def profile_embedded_conductor(
        self,
        duration: timedelta = timedelta(seconds=10),
        *,
        agents: int = 3,
        workers: int = 4,
        top: int = 10,
        cpu_only: bool = False,
    ) -> str:
        """Profile a separate embedded conductor under scalene for ``duration`` of load; returns hotspots.md.

        The load: API reads and message posts over ``workers`` connections, ``agents`` stub agents
        and one SSE client. Writes ``hotspots.md`` and ``hotspots.scalene.json`` into the run's
        results folder and logs the top ``top`` lines. Skips unless the SUT's ``profiler`` capability is
        ``scalene`` (the embedded conductor), and when scalene is not installed.

        Example:
        | `Profile Embedded Conductor`    10 s    agents=3
        """
        target = require_target()
        if target.profiler != "scalene":
            skip("CPU profile with scalene not available: " + (target.capability_gap("profiler") or (
                f"the SUT's profiler is {target.profiler}, not scalene (use 'Profile Cpu Hot Spots')")))  # fmt: skip
        reason = scalene_unavailable_reason()
        if reason:
            skip(reason)
        logger.console(
            f"\n    profile: a separate embedded conductor under scalene, {seconds(duration):g} s of load"
        )
        run_context().note_scratch(run_context().results_dir / hotspots_bench.PROFILE_SUT_DIR / "root")
        report = hotspots_bench.profile_reference(run_context().results_dir, duration_s=seconds(duration), agents=agents,
                                                  workers=workers, cpu_only=cpu_only, top=top)  # fmt: skip
        self._hotspots = report
        logger.info(f"profile written in {report.elapsed_s:.1f} s: {report.markdown_path} (scalene JSON "
                    f"{report.json_path}); load {report.load}")  # fmt: skip
        logger.info(hotspots_bench.hotspots_html(report.hotspots, top), html=True)
        for err in report.errors:
            logger.warn(f"profile load: {err}")
        return str(report.markdown_path)

    @keyword
    def hot_spot_profile_should_have_been_written(self) -> None:
        """Fail unless the last profile left its data (scalene JSON or perf data) and a non-empty hotspots.md.

        Example:
        | `Hot Spot Profile Should Have Been Written`
        """
        report = self._require_hotspots()
        data = report.data_path if isinstance(report, native_hotspots.NativeHotspotReport) else report.json_path
        for path in (data, report.markdown_path):
            if not Path(path).is_file() or Path(path).stat().st_size == 0:
                raise AssertionError(f"profile file missing or empty: {path}")

    @keyword
    def get_conductor_hot_spots(self, op: str | None = None, expected: float | None = None) -> int:
        """Number of hot spots in the server's own code in the last profile.

        scalene: source lines of conductor_perf's own code with CPU time. perf: functions of the
        binary's own Go module with self samples.

        Example:
        | `Get Conductor Hot Spots`    >=    1
        """
        report = self._require_hotspots()
        if isinstance(report, native_hotspots.NativeHotspotReport):
            top5 = [f"{h.location} {h.function} self {h.self_percent:.1f} % total {h.total_percent:.1f} %"
                    for h in report.own_hotspots[:5]]  # fmt: skip
            return int(figure("conductor hot spots found", len(report.own_hotspots), "functions", op, expected,
                              details={"profiler": "perf", "top": report.to_dict()["top"], "top5": top5,
                                       "module": report.module, "markdown": str(report.markdown_path)}))  # fmt: skip
        top5 = [f"{h.location} {h.function} {h.cpu_percent:.1f} %" for h in report.own_hotspots[:5]]
        return int(figure("conductor hot spots found", len(report.own_hotspots), "lines", op, expected,
                          details={"top": report.to_dict()["top"], "top5": top5,
                                   "markdown": str(report.markdown_path)}))  # fmt: skip

    def _require_hotspots(self) -> hotspots_bench.HotspotReport | native_hotspots.NativeHotspotReport:
        if self._hotspots is None:
            raise AssertionError("no profile taken: call 'Profile Cpu Hot Spots' first")
        return self._hotspots


def _native_html(spots: list[linuxperf.NativeHotspot], top: int) -> str:
    """An HTML table of perf hot spots (for log.html)."""
    head = "<tr><th>#</th><th>location</th><th>function</th><th>self %</th><th>total %</th><th>samples</th></tr>"
    rows = [f"<tr><td>{i}</td><td><code>{html.escape(h.location)}</code></td>"
            f"<td>{'[k] ' if h.kernel else ''}{html.escape(h.function)}</td><td>{h.self_percent:.1f}</td>"
            f"<td>{h.total_percent:.1f}</td><td>{'' if h.samples is None else h.samples}</td></tr>"
            for i, h in enumerate(spots[:top], start=1)]  # fmt: skip
    if not rows:
        rows.append('<tr><td colspan="6">(no samples)</td></tr>')
    return '<table border="1" style="border-collapse: collapse">' + head + "".join(rows) + "</table>"


def _log_leak_charts(run: leak_bench.LeakRun) -> None:
    """Idle-point series: memory with its baseline + tolerance line, and the counts."""
    mem = [[c.index, c.values["memory"]] for c in run.cycles if c.values.get("memory") is not None]
    base = run.baseline.values.get("memory")
    if mem:
        log_chart(line_chart({f"server memory ({run.memory_basis.upper()})": mem},
                             f"memory at the idle point after each cycle (warm-up baseline {fmt(base or 0)} MB)",
                             "cycle", "MB", target=None if base is None else base + run.tolerances.memory_mb,
                             target_label="baseline + tolerance", y_from_zero=False, markers=True))  # fmt: skip
    counts = {name: [[c.index, c.values[name]] for c in run.cycles if c.values.get(name) is not None]
              for name in ("threads", "goroutines", "open fds", "tcp connections")}  # fmt: skip
    if any(counts.values()):
        log_chart(line_chart({k: v for k, v in counts.items() if v}, "threads, goroutines, open fds and TCP sockets at each idle point", "cycle", "count",
                             markers=True))  # fmt: skip


def _log_table(rows: list[dict[str, object]], columns: list[str]) -> None:
    """An HTML table in log.html."""
    if not rows:
        return

    def cell(v: object) -> str:
        return (
            fmt(float(v))
            if isinstance(v, int | float) and not isinstance(v, bool)
            else str(v if v is not None else "")
        )

    head = "".join(f"<th>{c}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    logger.info(
        f'<table border="1" style="border-collapse: collapse"><tr>{head}</tr>{body}</table>', html=True
    )
