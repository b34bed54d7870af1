"""Run report: metrics.json, summary and the seed's FACT lines in MESSAGE-BUS.md."""

from __future__ import annotations

import os
from pathlib import Path

from _perf_base import find_run_context, robot_var, run_context
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import facts
from conductor_perf.context import RunContext
from conductor_perf.history import DEFAULT_BASELINE, baseline_note, measured_figures, resolve_baseline
from conductor_perf.housekeeping import MB, remove_scratch, tree_size
from conductor_perf.records import ResultsError, load_records
from conductor_perf.regression import comparability_warnings, compare_runs, format_comparisons, regressions
from conductor_perf.report import current_run, finalize
from conductor_perf.wording import plural


def _context() -> RunContext:
    """The run's context; the suite run may have failed before it created one (a SUT that did not
    start), or the report suite runs alone: then the runner's results folder and profile."""
    return find_run_context() or RunContext.from_environment(
        results_dir=str(robot_var("${RESULTS_DIR}", "") or "") or None, profile=str(robot_var("${PROFILE}", ""))
    )


@library(scope="GLOBAL", auto_keywords=False)
class ReportLibrary:
    """Writes what a run measured as data and as FACT messages.

    Every figure a keyword measures is already saved, as it is measured, under
    ``<results>/metrics.d/``. `Write Run Report` merges those files into ``metrics.json`` and
    ``summary.md``, appends the run to ``results/history.jsonl`` and writes the FACT lines to
    ``MESSAGE-BUS.md`` (``MESSAGE_BUS`` variable to choose another file).

    When the suites run through ``python -m conductor_perf.run`` (``make perf``), the runner writes
    the report once after all processes ended, so this keyword does nothing there; under a plain
    ``robot`` run it writes the report at the end of the top-level suite.

    Example:
    | `Write Run Report`
    """

    @keyword
    def write_run_report(self, message_bus: str = "") -> str:
        """Merge the metrics of this run and write metrics.json, summary.md and the FACT lines.

        Returns the MESSAGE-BUS.md path ('' when the runner writes the report instead).

        Example:
        | `Write Run Report`    message_bus=results/MESSAGE-BUS.md
        """
        if os.environ.get("CONDUCTOR_PERF_FINALIZE") == "runner":
            logger.info("the runner (python -m conductor_perf.run) writes the report after all suites")
            return ""
        if robot_var("${PABOTEXECUTIONPOOLID}") is not None:
            logger.info("under pabot each process ends separately: write the report afterwards with "
                        "'python -m conductor_perf.report_cli' or run through 'make perf-pabot'")  # fmt: skip
            return ""
        ctx = _context()
        bus_path = message_bus or str(robot_var("${MESSAGE_BUS}", "") or "") or str(ctx.results_dir / "MESSAGE-BUS.md")
        summary = finalize(ctx.results_dir, profile=ctx.profile, message_bus=bus_path,
                           history=ctx.results_dir.parent / "history.jsonl")  # fmt: skip
        logger.info(summary)
        logger.console(f"\n{summary}")
        return bus_path

    @keyword
    def remove_scratch_data(self, *, keep: bool = False) -> str:
        """Delete the run's scratch data (the SUT's runs root, the benchmarks' files) and compress its logs.

        For a plain ``robot`` run, at the very end (nothing measures any more); under the runner
        (``make perf``) and under pabot the runner does it once every process has ended. With
        ``keep`` (``--variable KEEP_DATA:True``) nothing is deleted. Returns the one-line summary.

        Example:
        | `Remove Scratch Data`    keep=${KEEP_DATA}
        """
        if os.environ.get("CONDUCTOR_PERF_FINALIZE") == "runner" or robot_var("${PABOTEXECUTIONPOOLID}") is not None:
            logger.info("the runner removes the scratch data once every process has ended")
            return ""
        ctx = _context()
        if keep:
            text = f"run directory {tree_size(ctx.results_dir) / MB:.1f} MB, scratch data kept (KEEP_DATA)"
        else:
            text = remove_scratch(ctx.results_dir).summary()
        logger.info(text)
        logger.console(text)
        return text

    @keyword
    def link_run_summary(self) -> None:
        """Put a link to the one-page summary (summary.html, written at the end of the run) in the log.

        Example:
        | `Link Run Summary`
        """
        logger.info('<a href="summary.html">Run summary: every target, figure and verdict</a> '
                    '(written when the run ends; data in <a href="metrics.json">metrics.json</a>)', html=True)  # fmt: skip

    @keyword
    def run_should_not_regress_from_baseline(self, baseline: str = DEFAULT_BASELINE, *, min_effect: str = "5%",
                                             alpha: float = 0.05) -> int:  # fmt: skip
        """Compare this run's figures so far with a baseline run; fail on a significant regression.

        ``baseline`` is a run id under the results folder, a run folder or metrics.json, or one chosen
        from results/history.jsonl among the runs of the same profile and the same SUT (kind, version
        and binary hash; an embedded run never baselines a real server): ``latest-measured`` (the
        default: the newest that measured any of this run's figures, passing or not, since a real
        build misses some targets in every run), ``latest-passing`` or ``latest``.
        A change counts only when the rank test on the repeated samples (Mann-Whitney U) is
        significant at ``alpha`` AND larger than ``min_effect``; figures without samples cannot
        regress. Skips, saying what it looked for, when there is no such run. The test message
        names the baseline used. Returns the number of comparisons.

        Example:
        | `Run Should Not Regress From Baseline`    latest-measured    min_effect=25%
        """
        ctx = _context()
        current = current_run(ctx.results_dir, profile=ctx.profile)
        try:
            base = resolve_baseline(baseline, results_dir=ctx.results_dir.parent,
                                    history_path=ctx.results_dir.parent / "history.jsonl",
                                    exclude_run_id=current.run_id, profile=current.profile,
                                    sut=current.sut, figures=measured_figures(current))  # fmt: skip
        except ResultsError as exc:
            BuiltIn().skip(f"no baseline to compare with: {exc}")
        note = f"baseline {base.run_id}: {baseline_note(base, baseline)}"
        effect = float(min_effect.rstrip("%")) / (100 if min_effect.endswith("%") else 1)
        comparisons = compare_runs(base, current, alpha=alpha, min_effect=effect)
        warnings = "".join(f"\nwarning: {w}" for w in comparability_warnings(base, current))
        logger.info(f"{note}{warnings}\n{format_comparisons(comparisons)}")
        worse = regressions(comparisons)
        if worse:
            raise AssertionError(f"{len(worse)} regressions against {note}: "
                                 + "; ".join(c.message for c in worse[:5]))  # fmt: skip
        BuiltIn().set_test_message(f"{plural(len(comparisons), 'figure')} compared, no regression; {note}")
        return len(comparisons)

    @keyword
    def post_facts_to_conductor_bus(
        self, project_id: str = facts.FACT_PROJECT, task_id: str = facts.FACT_TASK
    ) -> int:
        """Also append the FACT lines to the SUT's own task bus (needs its runs root). Returns the count.

        Example:
        | `Post Facts To Conductor Bus`
        """
        ctx = run_context()
        target = ctx.require_target()
        root = target.require_root()
        path = Path(root) / project_id / task_id / "TASK-MESSAGE-BUS.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        records = [r for r in load_records(ctx.results_dir) if r.get("metric") != "sut"]
        return len(facts.write_facts(path, records, sut=f"{target.kind} conductor {target.version}"))
