"""Command line for run results: compare with a baseline, write summaries, A/A noise, timing, prune.

Usage::

    python -m conductor_perf.report_cli compare results/20261127-183000-4242 --baseline latest-measured
    python -m conductor_perf.report_cli compare results/latest/metrics.json --baseline results/base \\
        --gate median:5% --alpha 0.05 --format markdown
    python -m conductor_perf.report_cli summary results/20261127-183000-4242 [--baseline RUN]
    python -m conductor_perf.report_cli noise results/run-a results/run-b
    python -m conductor_perf.report_cli timing results/latest [--top 20] [--format json]
    python -m conductor_perf.report_cli prune --keep 5 [--results-dir results]

A run is given as a ``metrics.json`` file, a run directory, or a run id under ``--results-dir``.
A baseline may also be ``latest-measured`` (the default), ``latest-passing`` or ``latest`` (from
``history.jsonl``: the newest run of the same profile and SUT identity, see
:mod:`conductor_perf.history`) or a run id that is only in the history. ``compare`` says which
baseline it used, or why there is none.

Exit status: 0 fine; 1 ``compare`` found a regression; 2 usage error or unusable input (one line on
stderr, no traceback).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from conductor_perf import history, housekeeping, records, regression, report, timing

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_ERROR = 2
PROG = "conductor_perf.report_cli"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _fraction(text: str) -> float:
    t = text.strip()
    try:
        return float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or percentage: {text!r}") from None


def _gate(text: str) -> regression.Gate:
    try:
        return regression.parse_gate(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _results_dir_for(spec: str, given: str | None) -> Path:
    if given:
        return Path(given)
    p = Path(spec)
    if p.is_file():
        return p.resolve().parent.parent
    if p.is_dir():
        return p.resolve().parent
    return Path("results")


def _load_current(spec: str, results_dir: Path) -> records.RunResults:
    return history.resolve_run(spec, results_dir=results_dir)


def _load_baseline(
    args: argparse.Namespace, current: records.RunResults, results_dir: Path
) -> records.RunResults:
    return history.resolve_baseline(
        args.baseline,
        results_dir=results_dir,
        history_path=args.history,
        exclude_run_id=current.run_id,
        profile=current.profile,
        sut=current.sut,
        figures=history.measured_figures(current),
    )


def cmd_compare(args: argparse.Namespace) -> int:
    """Print the comparison table; exit 1 when any metric regressed."""
    rdir = _results_dir_for(args.run, args.results_dir)
    current = _load_current(args.run, rdir)
    baseline = _load_baseline(args, current, rdir)
    comps = regression.compare_runs(
        baseline, current, alpha=args.alpha, min_effect=args.min_effect, gate=args.gate, noise=args.noise
    )
    bad = regression.regressions(comps)
    if args.format == "json":
        print(
            json.dumps(
                {
                    "baseline": baseline.run_id,
                    "current": current.run_id,
                    "baseline_note": history.baseline_note(baseline, args.baseline),
                    "sut": current.identity.to_dict(),
                    "regressions": len(bad),
                    "warnings": regression.comparability_warnings(baseline, current),
                    "comparisons": [c.to_dict() for c in comps],
                },
                indent=1,
            )
        )
    elif args.format == "markdown":
        print(report.summary_markdown(current, baseline, comps), end="")
    else:
        print(f"baseline {baseline.run_id}  vs  current {current.run_id}")
        print(f"baseline: {history.baseline_note(baseline, args.baseline)}")
        for w in regression.comparability_warnings(baseline, current):
            print(f"warning: {w}")
        print(regression.format_comparisons(comps))
        verdicts = [c.verdict for c in comps]
        print(
            f"{verdicts.count('regression')} regression(s), {verdicts.count('improvement')} improvement(s), "
            f"{verdicts.count('same')} same"
        )
    return EXIT_REGRESSION if bad else EXIT_OK


def cmd_summary(args: argparse.Namespace) -> int:
    """Write summary.md and summary.html into the run directory."""
    rdir = _results_dir_for(args.run, args.results_dir)
    run_path = Path(args.run)
    current = _load_current(args.run, rdir)
    baseline = _load_baseline(args, current, rdir) if args.baseline else None
    comps = (
        regression.compare_runs(
            baseline, current, alpha=args.alpha, min_effect=args.min_effect, gate=args.gate
        )
        if baseline is not None
        else None
    )
    out_dir = Path(args.output) if args.output else (run_path if run_path.is_dir() else rdir / current.run_id)
    md = out_dir / "summary.md"
    page = out_dir / "summary.html"
    records.write_text_atomic(md, report.summary_markdown(current, baseline, comps))
    records.write_text_atomic(page, report.summary_html(current, baseline, comps))
    print(md)
    print(page)
    return EXIT_OK


def cmd_noise(args: argparse.Namespace) -> int:
    """Print the A/A noise floor per metric between two runs of the same code."""
    rdir = Path(args.results_dir) if args.results_dir else Path("results")
    a = history.resolve_run(args.run_a, results_dir=rdir)
    b = history.resolve_run(args.run_b, results_dir=rdir)
    floors = regression.noise_floor_runs(a, b)
    if not floors:
        raise records.ResultsError("no metric with repeated samples (n >= 2) in both runs")
    rows = [("metric", "n", "Δmedian", "MAD a", "MAD b", "floor", "p")]
    for key, f in floors.items():
        rows.append(
            (
                " / ".join(key),
                f"{f.n_a}+{f.n_b}",
                f"{f.median_delta_pct:.2f}%",
                f"{f.mad_pct_a:.2f}%",
                f"{f.mad_pct_b:.2f}%",
                f"{f.floor_pct:.2f}%",
                regression.format_p(f.p).lstrip("="),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for j, r in enumerate(rows):
        print(
            "  ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(r)).rstrip()
        )
        if j == 0:
            print("  ".join("-" * w for w in widths))
    worst = max(f.floor_pct for f in floors.values())
    print(
        f"A/A noise floor: {worst:.2f}% (largest); suggested --min-effect {max(f.suggested_min_effect for f in floors.values()):.0%}"
    )
    return EXIT_OK


def cmd_timing(args: argparse.Namespace) -> int:
    """Where the run's time went: measurement windows against set-up, checks and restarts."""
    result = timing.analyse(args.run, profile=args.profile)
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(timing.render(result, top=args.top))
    return EXIT_OK


def cmd_prune(args: argparse.Namespace) -> int:
    """Remove all but the newest run directories; the history and ``latest`` stay valid."""
    root = Path(args.results_dir) if args.results_dir else Path("results")
    if not root.is_dir():
        raise ValueError(f"{root}: no results folder")
    print(housekeeping.prune_runs(root, args.keep).summary())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = _Parser(prog=PROG, description="Compare performance runs, write summaries, A/A noise, timing, prune.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def gate_options(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--alpha", type=float, default=0.05, help="significance level of the rank test (0.05)"
        )
        sp.add_argument(
            "--min-effect",
            type=_fraction,
            default=0.05,
            help="minimum relative change of the median (5%% or 0.05)",
        )
        sp.add_argument(
            "--gate", type=_gate, default=None, help="STAT:N%% or STAT:N, e.g. median:5%% or mean:0.5"
        )
        sp.add_argument("--results-dir", default=None, help="where run directories and history.jsonl live")
        sp.add_argument("--history", default=None, help="history file (default RESULTS_DIR/history.jsonl)")

    c = sub.add_parser("compare", help="compare a run with a baseline; exit 1 on regression")
    c.add_argument("run", help="metrics.json, run directory or run id")
    c.add_argument(
        "--baseline", default=history.DEFAULT_BASELINE,
        help="metrics.json, run dir, run id, latest-measured (default), latest-passing or latest",
    )
    c.add_argument(
        "--noise", type=_fraction, default=None, help="A/A noise floor (e.g. 3%%): raises the minimum effect"
    )
    c.add_argument("--format", choices=("text", "markdown", "json"), default="text")
    gate_options(c)
    c.set_defaults(func=cmd_compare)

    s = sub.add_parser("summary", help="write summary.md and summary.html for a run")
    s.add_argument("run", help="run directory, metrics.json or run id")
    s.add_argument(
        "--baseline", default=None, help="compare with this baseline (run, latest-measured, latest-passing, latest)"
    )
    s.add_argument("--output", default=None, help="directory for the summaries (default: the run directory)")
    gate_options(s)
    s.set_defaults(func=cmd_summary)

    n = sub.add_parser("noise", help="A/A noise floor between two runs of the same code")
    n.add_argument("run_a")
    n.add_argument("run_b")
    n.add_argument("--results-dir", default=None)
    n.set_defaults(func=cmd_noise)

    t = sub.add_parser("timing", help="where a run's time went: measurement windows against everything else")
    t.add_argument("run", help="run directory or its output.xml")
    t.add_argument("--profile", default=None, help="profile that resolves the window variables (default: the run's)")
    t.add_argument("--top", type=int, default=15, help="how many of the largest pieces outside windows to list")
    t.add_argument("--format", choices=("text", "json"), default="text")
    t.set_defaults(func=cmd_timing)

    pr = sub.add_parser("prune", help="remove all but the newest run directories (history.jsonl stays)")
    pr.add_argument("--keep", type=int, default=5, help="how many of the newest run directories to keep (5)")
    pr.add_argument("--results-dir", default=None, help="the results folder (default: results)")
    pr.set_defaults(func=cmd_prune)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (records.ResultsError, ValueError, OSError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        print(f"{PROG}: error: {msg}", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
