"""Shared plumbing of the keyword libraries (not a library itself).

Keeps the adapters thin: figures are recorded to the run's metrics and compared with their
target through one path, so every keyword logs and fails the same way.

The run context (:class:`conductor_perf.context.RunContext`: results folder, SUT, profile,
attempt, last fault, metric sink) is created by ``ConductorLibrary`` when the suite run starts;
every library reaches it through :func:`run_context`, the one accessor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from robot.api import ContinuableFailure, logger
from robot.libraries.BuiltIn import BuiltIn, RobotNotRunningError

from conductor_perf import charts
from conductor_perf.charts import line_chart, percentile_curve, svg_img_html
from conductor_perf.context import RunContext
from conductor_perf.formats.agentenv import StubReport
from conductor_perf.target import Target, TargetError
from conductor_perf.verdict import compare, fmt, headline

Number = float | int
CONTEXT_HOLDER = "ConductorLibrary"
"""The library (global scope: one instance per Robot process) that creates and holds the run context."""
NO_CONTEXT = "no conductor: call 'Start Or Attach Conductor' in the suite setup first"
CHART_TAG = "chart"
"""Keyword tag of every keyword that logs a chart; the runner opens them in log.html (``--expandkeywords``)."""

# one log line per HTTP request would bury the figures in log.html
logging.getLogger("httpx").setLevel(logging.WARNING)
logging.getLogger("httpcore").setLevel(logging.WARNING)


def seconds(value: timedelta | float | int | str) -> float:
    """A duration in seconds from a timedelta (Robot converts ``10 s``) or a number."""
    if isinstance(value, timedelta):
        return value.total_seconds()
    return float(value)


def robot_var(name: str, default: Any = None) -> Any:
    """A Robot variable's value, or ``default`` outside a Robot run."""
    try:
        return BuiltIn().get_variable_value(name, default)
    except RobotNotRunningError:
        return default


def find_run_context() -> RunContext | None:
    """The run context of this Robot process, or ``None`` before the suite run started (or outside Robot)."""
    try:
        holder = BuiltIn().get_library_instance(CONTEXT_HOLDER)
    except (RobotNotRunningError, RuntimeError):  # not running, or the suite did not import the holder
        return None
    return getattr(holder, "context", None)


def run_context() -> RunContext:
    """The run context of this Robot process; fails with one line before the suite run started."""
    ctx = find_run_context()
    if ctx is None:
        raise AssertionError(NO_CONTEXT)
    return ctx


def context() -> tuple[str, str]:
    """(suite name, test name as written) of the running test: the key its figures are recorded under.

    The suite name leaves out the top-level suite, whose name depends on how robot was started
    (``Suites.Bus`` from ``robot suites``, ``Bus & Api.Bus`` from two files, ``Bus`` alone), and the
    test name is the one written in the suite (``Over ${BUS_MIN_MSG_PER_S} Messages``), which a
    ``--variable`` override does not change, so a figure keeps the same key in every run and runs
    can be compared. :func:`test_title` is the name as run.
    """
    suite = str(robot_var("${SUITE NAME}", ""))
    return suite.split(".", 1)[1] if "." in suite else suite, _test_as_written()


def test_title() -> str:
    """The running test's name as Robot shows it (variables replaced), ``""`` outside a test."""
    return str(robot_var("${TEST NAME}", ""))


def _test_as_written() -> str:
    title = test_title()
    try:
        holder = BuiltIn().get_library_instance(CONTEXT_HOLDER)
    except (RobotNotRunningError, RuntimeError):
        return title
    names = getattr(holder, "test_as_written", None)
    return names[0] if names and names[1] == title else title


def progress(label: str, unit: str) -> Callable[[float, int, float], None]:
    """A progress callback that prints ``label: 4.0 s, 12345 done, 3086 unit`` to the console."""

    def report(elapsed: float, done: int, rate: float) -> None:
        logger.console(f"    {label}: {elapsed:5.1f} s elapsed, {done} done, {fmt(rate)} {unit}")

    return report


def skip(reason: str) -> None:
    """Skip the running test with a reason (never a pass); the skip is recorded in the metrics."""
    suite, test = context()
    ctx = find_run_context()
    if ctx is not None:
        ctx.record(suite=suite, test=test, metric="skipped", unit="", value=None, verdict="skipped",
                   message=reason)  # fmt: skip
    BuiltIn().skip(reason)


def require_target() -> Target:
    """The SUT, or fail with the one-line reason."""
    try:
        return run_context().require_target()
    except TargetError as exc:
        raise AssertionError(str(exc)) from None


def require_root():
    """The SUT's runs root; SKIP the test (with the reason) when an external SUT has none."""
    target = require_target()
    try:
        return target.require_root()
    except TargetError as exc:
        skip(str(exc))
        raise  # unreachable: skip raises


def figure(
    metric: str,
    value: Number,
    unit: str,
    op: str | None = None,
    expected: Number | None = None,
    *,
    details: dict[str, Any] | None = None,
    histogram: str | None = None,
    samples: list[float] | None = None,
    series: dict[str, Any] | None = None,
    invalid_reason: str = "",
    headline_figure: bool = True,
) -> float:
    """Record a figure; when ``op`` and ``expected`` are given, compare and fail with the message.

    Every figure is logged with its unit, and with its target and verdict when there is one. With
    ``invalid_reason`` (e.g. the load generator was saturated) a missed target is reported as an
    invalid measurement rather than a miss of the SUT. A figure measured in a test is added to the
    test's message (report.html, the log's test row, xunit) unless ``headline_figure=False`` (a
    figure that describes the conditions, such as the disk's state).

    A missed target is a continuable failure: the test fails with every missed target's message
    once it has run its remaining keywords, so one miss never hides the test's other figures.
    """
    ctx = run_context()
    suite, test = context()
    rec: dict[str, Any] = {"suite": suite, "test": test, "metric": metric, "unit": unit, "value": float(value)}
    title = test_title()
    if title and title != test:
        rec["title"] = title  # the name as run, with the overridden figure in it
    if details:
        rec["extra"] = details
    if histogram:
        rec["hdr"] = histogram
    if samples:
        rec["samples"] = samples
    if series:
        rec["series"] = series
    if op is None or expected is None:
        rec["verdict"] = "info"
        rec["message"] = f"{metric}: {fmt(value)} {unit}"
        ctx.record(**rec)
        logger.info(rec["message"])
        if headline_figure:
            _show_in_test_message(ctx, suite, test, headline(metric, float(value), unit))
        return float(value)
    check = compare(metric, float(value), op, float(expected), unit, invalid_reason=invalid_reason)
    rec.update(target=check.target_text, verdict=check.verdict, message=check.message)
    ctx.record(**rec)
    logger.info(check.message)
    if headline_figure:
        _show_in_test_message(ctx, suite, test, headline(metric, float(value), unit, check))
    if not check.ok:
        # a missed target fails the test but lets it go on to its other figures: a build that misses
        # its rate target still gets its latency and error figures measured, recorded and compared
        raise ContinuableFailure(check.message)
    return float(value)


AGENT_ENV_METADATA = "SUT agent environment"


def note_agent_environment(report: StubReport | None, *, has_root: bool = True) -> None:
    """Show the agent environment the SUT gives its agents, as the stub's first report saw it.

    Sets the top-level suite metadata ``SUT agent environment`` (e.g. ``TASK_FOLDER, RUN_FOLDER,
    MESSAGE_BUS, RUNS_DIR, CONDUCTOR_URL (the names before the JRUN_ prefix, ...)``) and adds it to
    the SUT's entry of metrics.json (``sut.agent_env``), once per run context: the first agent run
    that reports decides. Any library that runs agents calls it with the report of its first run
    (``RunOutcome.report``, ``AgentsResult.report``, ``AgentTaskError.report``).
    """
    ctx = find_run_context()
    if ctx is None or ctx.agent_env is not None or (report is None and has_root):
        return  # a run without a report (an agent other than the stub) leaves the question open
    if report is None:
        text = "not seen: the stub reports it in agent-stderr.txt under the runs root (CONDUCTOR_ROOT not given)"
        ctx.agent_env = text
    else:
        text, ctx.agent_env = report.describe(), report.to_dict()
    ctx.record(metric="sut", suite="", test="", unit="", value=0, verdict="info", extra={"agent_env": ctx.agent_env})
    try:
        BuiltIn().set_suite_metadata(AGENT_ENV_METADATA, text, top=True)
    except RobotNotRunningError:
        pass
    logger.info(f"{AGENT_ENV_METADATA}: {text}")


def _show_in_test_message(ctx: RunContext, suite: str, test: str, text: str) -> None:
    """Append a figure to the running test's message (nothing outside a test, e.g. in a suite setup)."""
    if not test:
        return
    message = ctx.add_headline(suite, test, text)
    if robot_var("${TEST STATUS}") == "FAIL":  # a teardown: the failure message stays the test's message
        return
    try:
        BuiltIn().set_test_message(message)
    except (RobotNotRunningError, RuntimeError):  # suite setup/teardown: no test to carry it
        pass


def log_chart(svg: str) -> None:
    """Embed an SVG chart in log.html."""
    logger.info(svg_img_html(svg), html=True)


def chart_series(title: str, series: dict[str, Any], x_label: str, y_label: str,
                 target: float | None = None, target_label: str | None = None) -> None:  # fmt: skip
    """Log a line chart of ``{name: [(x, y), ...]}`` with an optional target line."""
    if any(series.values()):
        log_chart(line_chart(series, title, x_label, y_label, target=target, target_label=target_label))


def chart_percentiles(title: str, summary: dict[str, Any], target_ms: float | None = None) -> None:
    """Log a latency-by-percentile curve of a histogram summary (ms)."""
    if summary and summary.get("count"):
        log_chart(percentile_curve(summary, title, target_ms=target_ms))


rate_series = charts.rate_series
"""Per-interval rates of a cumulative series, without a cut-off last interval (``conductor_perf.charts``)."""


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return (result, seconds)."""
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start
