"""Concurrent agents end to end: tasks through the REST API, stub agents, completion and timing."""

from __future__ import annotations

from datetime import timedelta

from _perf_base import (
    CHART_TAG,
    chart_percentiles,
    figure,
    log_chart,
    note_agent_environment,
    progress,
    require_target,
    seconds,
)
from robot.api import logger
from robot.api.deco import keyword, library

from conductor_perf.bench import agent_tasks, agents_bench
from conductor_perf.charts import timeline
from conductor_perf.wording import plural


@library(scope="SUITE", auto_keywords=False)
class AgentLibrary:
    """Starts N stub agents at once through ``POST /api/v1/tasks`` and waits until every run finished.

    Each task runs the stub ``codex`` agent, whose work time is set per task through the request's
    ``config`` map. Completion is read from ``run-info.yaml`` when the runs root is known, else from
    ``GET /api/v1/runs/{id}``. Wall time counts from the first request to the last run's end.

    = Tasks that cannot finish =

    A run counts once its task is done too: a task whose agent ended without creating ``DONE``
    (the server would restart it again and again, e.g. a build whose agent environment the stub
    does not know, or a stub told never to finish with ``STUB_SKIP_DONE=1``), or runs that never
    start, fail `Run Concurrent Agents` within about a minute with the reason; the tasks are stopped
    through ``DELETE /api/v1/tasks/{id}`` first, so the tests after it meet a quiet server. The
    first run's report on its environment goes to the suite metadata ``SUT agent environment``.

    = Degradation =

    "Without degradation" compares the median per-run duration of N concurrent agents with that of
    a single agent measured in the same suite: `Get Agent Slowdown` is their ratio.

    Example:
    | `Run Concurrent Agents`    1    work_ms=1000
    | `Run Concurrent Agents`    50    work_ms=1000
    | `Every Agent Run Should Have Completed`
    | `Get Agents Wall Time`    <    5 min
    | `Get Agent Slowdown`    <    1.5
    """

    def __init__(self) -> None:
        self._results: dict[int, agents_bench.AgentsResult] = {}
        self._last: agents_bench.AgentsResult | None = None

    @keyword(tags=[CHART_TAG])
    def run_concurrent_agents(self, count: int = 50, *, work_ms: int = 1000,
                              timeout: timedelta = timedelta(minutes=5)) -> float:  # fmt: skip
        """Start ``count`` tasks at once, each running the stub agent for ``work_ms``; returns wall seconds.

        Fails when the keyword itself cannot run or the tasks cannot finish (see the library's
        introduction); the figures are asserted by the getters.

        Example:
        | ${wall} =    `Run Concurrent Agents`    50    work_ms=1000    timeout=5 min
        """
        target = require_target()
        logger.console(f"\n    agents: starting {count} stub agents ({work_ms} ms of work each)")
        try:
            result = agents_bench.run_agents(target, count, sleep_ms=work_ms, timeout=seconds(timeout),
                                             on_progress=progress(plural(count, 'agent'), "runs/s"))  # fmt: skip
        except agent_tasks.AgentTaskError as exc:
            note_agent_environment(exc.report, has_root=target.root is not None)
            raise
        note_agent_environment(result.report, has_root=target.root is not None)
        self._results[count] = result
        self._last = result
        logger.info(f"{plural(count, 'agent')}: {result.completed} completed, {result.failed} failed, {result.unfinished} "
                    f"unfinished in {result.wall_s:.2f} s; HTTP statuses {result.statuses}; per-run median "
                    f"{result.median_run_s:.3f} s, p95 {result.run_percentile_s(95):.3f} s; POST latency ms "
                    f"{result.submit_latency}")  # fmt: skip
        if result.timeline:
            spans = [(f"run {i + 1}", start, end) for i, (start, end) in enumerate(result.timeline)]
            log_chart(timeline(spans, title=f"{plural(count, 'agent')}: each run from start to end",
                               x_label="seconds since the first request (s)"))  # fmt: skip
        for err in result.errors:
            logger.warn(f"task submission failed: {err}")
        return result.wall_s

    def _require(self) -> agents_bench.AgentsResult:
        if self._last is None:
            raise AssertionError("no agents run yet: call 'Run Concurrent Agents' first")
        return self._last

    @keyword
    def every_agent_run_should_have_completed(self) -> None:
        """Fail unless every task of the last run got 201 and its run ended ``completed``.

        Example:
        | `Every Agent Run Should Have Completed`
        """
        r = self._require()
        details = {"agents": r.agents, "statuses": r.statuses, "failed": r.failed, "unfinished": r.unfinished}
        figure("agent tasks accepted", r.accepted, "tasks", "==", r.agents, details=details)
        figure("agent runs completed", r.completed, "runs", "==", r.agents, details=details)

    @keyword
    def get_agents_wall_time(self, op: str | None = None, expected: timedelta | None = None) -> float:
        """Seconds from the first request to the last run's end of the last agents run.

        Example:
        | `Get Agents Wall Time`    <    5 min
        """
        r = self._require()
        return figure("agents wall time", r.wall_s, "s", op, seconds(expected) if expected is not None else None,
                      details={"agents": r.agents, "completed": r.completed, "median_run_s": r.median_run_s,
                               "p95_run_s": r.run_percentile_s(95), "submit_latency_ms": r.submit_latency},
                      histogram=r.submit_histogram,
                      series={"running": _running_series(r.timeline)})  # fmt: skip

    @keyword
    def get_agent_run_duration(self, percentile: str = "p50", op: str | None = None,
                               expected: float | None = None) -> float:  # fmt: skip
        """A per-run duration percentile (``p50``/``p95``) of the last agents run, in seconds.

        Example:
        | `Get Agent Run Duration`    p95    <    2
        """
        r = self._require()
        value = r.median_run_s if percentile == "p50" else r.run_percentile_s(float(percentile.lstrip("p")))
        return figure(
            f"agent run duration {percentile}", value, "s", op, expected, details={"agents": r.agents}
        )

    @keyword(tags=[CHART_TAG])
    def get_task_submission_latency(self, percentile: str = "p95", op: str | None = None,
                                    expected: float | None = None) -> float:  # fmt: skip
        """A latency percentile (ms) of the last burst of ``POST /api/v1/tasks`` requests.

        Example:
        | `Get Task Submission Latency`    p95    <    50
        """
        r = self._require()
        chart_percentiles(
            f"POST /api/v1/tasks latency, burst of {r.submitted}", r.submit_latency, target_ms=expected
        )
        return figure(f"task submission latency {percentile}", r.submit_latency[percentile], "ms", op, expected,
                      details={"requests": r.submitted, "statuses": r.statuses, **r.submit_latency},
                      histogram=r.submit_histogram)  # fmt: skip

    @keyword
    def get_agent_slowdown(self, op: str | None = None, expected: float | None = None) -> float:
        """Median per-run duration of the largest agents run divided by that of a single agent.

        Needs `Run Concurrent Agents` with 1 and with N in the same suite.

        Example:
        | `Get Agent Slowdown`    <    1.5
        """
        if 1 not in self._results or len(self._results) < 2:
            raise AssertionError("slowdown needs a run with 1 agent and one with N agents in this suite")
        single, many = self._results[1], self._results[max(self._results)]
        ratio = many.median_run_s / single.median_run_s
        return figure("agent slowdown", ratio, "x", op, expected,
                      details={"agents": many.agents, "median_run_s": many.median_run_s,
                               "single_run_s": single.median_run_s})  # fmt: skip


def _running_series(spans: list[list[float]]) -> list[list[float]]:
    """Number of runs in progress over time, from (start, end) spans."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
    out, n = [], 0
    for t, d in events:
        n += d
        out.append([round(t, 4), n])
    return out
