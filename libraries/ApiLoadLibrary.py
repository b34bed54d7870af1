"""REST API load: request rate, latency percentiles, error ratio, message posting over HTTP."""

from __future__ import annotations

from datetime import timedelta

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    chart_series,
    figure,
    note_agent_environment,
    progress,
    require_root,
    require_target,
    seconds,
)
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import agent_tasks, agents_bench, api_bench
from conductor_perf.measure import load
from conductor_perf.wording import plural

#: the project of the tasks `Create Task History` creates (nothing else uses it)
HISTORY_PROJECT = "perf-api-history"


@library(scope="SUITE", auto_keywords=False)
class ApiLoadLibrary:
    """Loads the SUT's REST API from a light asyncio HTTP/1.1 client and reads the figures.

    = Load models =

    `Measure Request Rate` is a closed loop: N connections, each sending its next request when
    the previous answer arrived; it finds how many requests per second the endpoint serves.
    `Measure Latency At Rate` is an open loop: requests are sent at a constant rate whatever the
    server does, and latency is measured from each request's *intended* send time (corrected for
    coordinated omission) as well as from its actual send time; both are logged.

    = Generator self-check =

    Client and server share this machine's cores. When the generator itself was the bottleneck
    (its CPU or scheduling lag over budget, or the offered rate not kept), a target it misses is
    reported as *measurement invalid: load generator saturated*, not as a miss of the SUT; a target
    met despite saturation still holds (the SUT did at least that well).

    Example:
    | `Create Task History`    tasks=100
    | `Measure Request Rate`    GET    /api/v1/tasks    connections=16    duration=10 s
    | `Get Request Rate`    >    500
    | `Measure Latency At Rate`    GET    /api/v1/tasks    rate=500    duration=10 s
    | `Get Request Latency`    p95    <    50
    """

    def __init__(self) -> None:
        self._result: load.LoadResult | None = None
        self._label = ""
        self._message_task = ""
        self._history = 0

    @keyword
    def create_task_history(self, tasks: int = 100, *, timeout: timedelta = timedelta(minutes=2)) -> int:
        """Submit ``tasks`` quick stub tasks, wait until their runs finished; the SUT must then list exactly ``tasks``.

        "With N tasks of history" means exactly N: ``GET /api/v1/tasks`` is counted before (it must
        list none) and after (it must list ``tasks``); otherwise this fails with the counts, since
        the list endpoints would be measured with another history than the test names. The tasks
        are created under the project ``perf-api-history``. Tasks that cannot finish (their agent
        never marks them done, runs that never start) fail it within about a minute with the
        reason, after they were stopped.

        Example:
        | `Create Task History`    tasks=100
        """
        target = require_target()
        before = api_bench.task_count(target)
        if before:
            raise AssertionError(
                f"task history: GET /api/v1/tasks already lists {before} tasks before this suite created any, so "
                f"the list endpoints would be measured with {before + tasks} tasks, not {tasks}: this suite needs a "
                "SUT whose runs root holds no tasks (an earlier suite or another user created them)"
            )
        subs = agents_bench.submit_tasks(target, tasks, project=HISTORY_PROJECT, slug="hist",
                                         config=agents_bench.stub_config(sleep_ms=0))  # fmt: skip
        try:
            done, pending = agents_bench.wait_for_runs(target, subs, timeout=seconds(timeout))
        except agent_tasks.AgentTaskError as exc:
            note_agent_environment(exc.report, has_root=target.root is not None)
            raise
        note_agent_environment(next((o.report for o in done if o.report), None), has_root=target.root is not None)
        accepted = sum(1 for s in subs if s.status == 201)
        if accepted < tasks or pending:
            raise AssertionError(
                f"task history: {accepted} of {plural(tasks, 'task')} accepted, {plural(len(pending), 'run')} unfinished"
            )
        listed = api_bench.task_count(target)
        self._history = listed
        figure("task history", listed, "tasks", "==", tasks, details={"created_by_this_suite": len(done),
               "listed_before": before, "project": HISTORY_PROJECT})  # fmt: skip
        return listed

    def _label_for(self, method: str, path: str) -> str:
        hist = f" with {plural(self._history, 'task')} of history" if self._history else ""
        return f"{method.upper()} {path}{hist}"

    @keyword
    def measure_request_rate(self, method: str = "GET", path: str = "/api/v1/health", *, connections: int = 16,
                             duration: timedelta = timedelta(seconds=10), processes: int = 1) -> float:  # fmt: skip
        """Closed-loop load on one endpoint; returns the achieved requests per second.

        Example:
        | ${rate} =    `Measure Request Rate`    GET    /api/v1/health    connections=16    duration=10 s
        """
        target = require_target()
        self._label = self._label_for(method, path)
        logger.console(
            f"\n    {self._label}: closed loop, {plural(connections, 'connection')} x {seconds(duration):g} s"
        )
        self._result = load.run_closed(target.url, api_bench.endpoint_request(target, method, path),
                                       workers=connections, duration=seconds(duration), processes=processes,
                                       on_progress=progress(self._label, "req/s"))  # fmt: skip
        logger.info(self._result.describe())
        return self._result.rate

    @keyword
    def measure_latency_at_rate(self, method: str = "GET", path: str = "/api/v1/health", *, rate: float = 500,
                                duration: timedelta = timedelta(seconds=10), connections: int = 32) -> float:  # fmt: skip
        """Open-loop load at a constant ``rate``; returns the corrected p95 latency in ms.

        Example:
        | ${p95} =    `Measure Latency At Rate`    GET    /api/v1/runs    rate=500    duration=10 s
        """
        target = require_target()
        self._label = self._label_for(method, path)
        logger.console(f"\n    {self._label}: open loop at {rate:g} req/s x {seconds(duration):g} s")
        self._result = load.run_open(target.url, api_bench.endpoint_request(target, method, path), rate=rate,
                                     duration=seconds(duration), connections=connections,
                                     on_progress=progress(self._label, "req/s"))  # fmt: skip
        logger.info(self._result.describe())
        return self._result.histogram.percentile_ms(95)

    @keyword
    def measure_message_posting(
        self, writers: int = 10, duration: timedelta = timedelta(seconds=10)
    ) -> float:
        """``writers`` clients POST /api/v1/messages to one task bus for ``duration``; returns msg/s.

        Example:
        | ${rate} =    `Measure Message Posting`    writers=10    duration=10 s
        """
        target = require_target()
        self._message_task = api_bench.new_message_task()
        self._label = f"POST /api/v1/messages by {plural(writers, 'writer')}"
        logger.console(f"\n    {self._label} x {seconds(duration):g} s")
        self._result = load.run_closed(target.url, api_bench.message_factory(target, self._message_task),
                                       workers=writers, duration=seconds(duration),
                                       on_progress=progress(self._label, "msg/s"))  # fmt: skip
        logger.info(self._result.describe())
        return self._result.rate

    def _require(self) -> load.LoadResult:
        if self._result is None:
            raise AssertionError(
                "no load measured yet: call 'Measure Request Rate' or 'Measure Latency At Rate'"
            )
        return self._result

    def _invalid(self) -> str:
        r = self._require()
        return f"load generator saturated ({r.saturation_reason})" if r.saturated else ""

    def _details(self) -> dict[str, object]:
        r = self._require()
        d = r.to_dict()
        d.pop("latency_hdr", None)
        d.pop("uncorrected_latency_hdr", None)
        d["history_tasks"] = self._history
        return d

    @keyword(tags=[CHART_TAG])
    def get_request_rate(self, op: str | None = None, expected: float | None = None) -> float:
        """Achieved requests per second of the last load run; asserts when given an operator and target.

        Example:
        | `Get Request Rate`    >    500
        """
        r = self._require()
        series = {"req/s": r.rate_timeline()}
        chart_series(f"{self._label}: requests per second", series, "time (s)", "requests per second",
                     target=expected, target_label="target")  # fmt: skip
        samples = [float(p.count) for p in r.timeline][1:-1]  # whole seconds only
        return figure(f"{self._label} rate", r.rate, "req/s", op, expected, details=self._details(), samples=samples,
                      histogram=r.histogram.encode(), series=series, invalid_reason=self._invalid())  # fmt: skip

    @keyword(tags=[CHART_TAG])
    def get_request_latency(self, percentile: str = "p95", op: str | None = None,
                            expected: float | None = None) -> float:  # fmt: skip
        """A latency percentile in ms of the last load run (corrected for coordinated omission in the open model).

        After `Measure Request Rate` (the closed loop) the figure is named "... at full load (N
        connections)": the latency when the SUT is the bottleneck, which follows its service time.

        Example:
        | `Get Request Latency`    p95    <    50
        """
        r = self._require()
        summary = r.histogram.summary()
        # the closed loop's latency is its own figure: at full load it moves with the SUT's service
        # time, while the open loop's at a modest target rate barely does (docs/comparing-builds.md)
        under = f" at full load ({plural(r.workers, 'connection')})" if r.model == "closed" else ""
        curves = {"from intended send time": summary}
        if r.uncorrected is not None:
            curves["from actual send time"] = r.uncorrected.summary()
            logger.info(f"uncorrected (actual send time) latency ms: {r.uncorrected.summary()}")
        chart_percentiles(
            f"{self._label}: latency by percentile", curves if r.uncorrected else summary, expected
        )
        return figure(f"{self._label} latency {percentile}{under}", summary[percentile], "ms", op, expected,
                      details=self._details(), histogram=r.histogram.encode(),
                      invalid_reason=self._invalid())  # fmt: skip

    @keyword
    def get_error_percentage(self, op: str | None = None, expected: float | None = None) -> float:
        """Failed requests (non-2xx or no answer) as a percentage of the last load run.

        Example:
        | `Get Error Percentage`    <    1
        """
        r = self._require()
        for sample in r.error_samples:
            logger.info(f"error sample: {sample}")
        return figure(f"{self._label} errors", r.error_percent, "%", op, expected,
                      details={"requests": r.requests, "errors": r.errors,
                               "status_counts": {str(k): v for k, v in r.status_counts.items()}})  # fmt: skip

    @keyword
    def posted_messages_should_all_be_in_the_bus(self) -> None:
        """Every acknowledged message of the last posting run is in the task bus once, none torn.

        Needs the runs root (skipped without it). Example:
        | `Posted Messages Should All Be In The Bus`
        """
        require_root()
        r = self._require()
        integrity = api_bench.posted_integrity(require_target(), self._message_task, r.ok)
        logger.info(integrity.message)
        for name, value in (("posted messages lost", integrity.lost), ("posted messages duplicated",
                            integrity.duplicated), ("posted messages torn", integrity.torn)):  # fmt: skip
            figure(name, value, "messages", "==", 0, details={"acknowledged": r.ok, "found": integrity.found})
