"""The verdict of an A/B comparison: B against A, figure by figure, from the rounds of one interleaved run."""

from __future__ import annotations

import html
from typing import Any

from _perf_base import CHART_TAG, log_chart
from robot.api import logger
from robot.api.deco import keyword, library
from robot.libraries.BuiltIn import BuiltIn

from conductor_perf import comparison as cmp
from conductor_perf.charts import ratio_chart


def _label(f: dict[str, Any]) -> str:
    return str(f.get("label") or f["name"])


def _interval(f: dict[str, Any]) -> str:
    if f.get("ci_low") is None or f.get("ci_high") is None:
        return "no interval"
    return f"[{f['ci_low']:.3f}, {f['ci_high']:.3f}]"


def _ratio_text(f: dict[str, Any]) -> str:
    ratio = f.get("ratio")
    if ratio is not None:
        return f"B/A {ratio:.3f} {_interval(f)}"
    return f"no ratio: {f.get('note') or 'A is 0'}"


@library(scope="SUITE", auto_keywords=False)
class CompareLibrary:
    """Reads the ``compare.json`` that ``python -m conductor_perf.compare`` wrote and judges B against A.

    = The comparison =

    The runner measured the chosen suites on SUT A and SUT B alternately in ABBA order, each run on
    a fresh SUT, and computed per figure the ratio B/A with its 95 % interval (Hodges-Lehmann on
    one value per round and side, exact distribution-free interval; see ``docs/comparing-builds.md``). This library logs that table and the ratio chart and turns it into
    verdicts a test can assert: no figure of B slower (or worse) than A's, every exact target
    (nothing lost, duplicated or torn) met by B, every round completed.

    Example:
    | `Load Comparison`    results/latest-compare
    | `Every Round Should Have Completed`
    | `No Figure Should Be Slower In B`
    | `Exact Targets Should Hold In B`
    """

    def __init__(self) -> None:
        self._data: dict[str, Any] | None = None

    def _require(self) -> dict[str, Any]:
        if self._data is None:
            raise AssertionError("no comparison loaded: call 'Load Comparison' first")
        return self._data

    @keyword(tags=[CHART_TAG])
    def load_comparison(self, directory: str) -> str:
        """Load ``compare.json`` from a comparison folder; log the sides, rounds, ratio chart and table.

        Sets the suite metadata (A, B, mode, rounds). Returns the one-line result. Fails with one line
        when the folder holds no comparison.

        Example:
        | ${result} =    `Load Comparison`    results/latest-compare
        """
        try:
            data = cmp.load_comparison(directory)
        except ValueError as exc:
            raise AssertionError(str(exc)) from None
        self._data = data
        summary = data["summary"]
        for name, value in (("A", data["a"]["spec"]), ("B", data["b"]["spec"]), ("Mode", data["mode"]),
                            ("Profile", data["profile"]), ("Suites", " ".join(data["suites"])),
                            ("Rounds", " ".join(data["order"]))):  # fmt: skip
            BuiltIn().set_suite_metadata(name, value)
        rows = "".join(
            f"<tr><td>{html.escape(_label(f))}</td><td>{html.escape(f.get('unit') or '')}</td>"
            f"<td>{html.escape(_ratio_text(f) if f['kind'] in ('ratio', 'difference') else (f.get('target') or ''))}</td>"
            f"<td>{'' if f.get('detectable') is None else format(f['detectable'], '.1%')}</td>"
            f"<td><b>{html.escape(f['verdict'])}</b></td><td>{html.escape(f.get('note') or '')}</td></tr>"
            for f in data["figures"]
        )
        logger.info("<table><tr><th>figure</th><th>unit</th><th>B/A [95 % interval] or target</th><th>detectable"
                    f"</th><th>verdict</th><th>note</th></tr>{rows}</table>", html=True)  # fmt: skip
        log_chart(ratio_chart(cmp.ratio_rows(data), f"B / A per figure with 95 % intervals ({data['mode']})"))
        result = (f"{data['mode']}: {summary['compared']} figures compared, {summary['flagged']} flagged; "
                  f"{len(summary['failed_rounds'])} failed rounds")  # fmt: skip
        logger.info(result)
        return result

    @keyword
    def every_round_should_have_completed(self) -> int:
        """Fail naming every round that did not complete (its values were left out); returns the count completed.

        Example:
        | `Every Round Should Have Completed`
        """
        data = self._require()
        failed = [r for r in data["rounds"] if r["status"] != "ok"]
        done = len(data["rounds"]) - len(failed)
        if failed:
            raise AssertionError(f"{len(failed)} of {len(data['rounds'])} rounds failed and were left out: "
                                 + "; ".join(f"round {r['number']} {r['side']}: {r['reason']}" for r in failed))  # fmt: skip
        BuiltIn().set_test_message(f"{done} of {len(data['rounds'])} rounds completed, each on a fresh SUT, in "
                                   f"ABBA order {' '.join(data['order'])}")  # fmt: skip
        return done

    @keyword
    def no_figure_should_be_slower_in_b(self) -> int:
        """Fail when a figure of B is slower (or worse) than A's: its whole 95 % interval on the bad side of 1.0.

        Directions come from each figure's target or unit (lower latency, higher rate is better).
        In an A/A comparison every flagged figure is a false alarm; the message gives their rate.
        Returns the number of figures compared.

        Example:
        | `No Figure Should Be Slower In B`
        """
        data = self._require()
        s = data["summary"]
        adverse = [f for f in data["figures"] if f["verdict"] in cmp.ADVERSE]
        counts = s["counts"]
        found = ", ".join(f"{counts[v]} {v}" for v in (*cmp.FLAGGED, cmp.NO_CHANGE) if counts.get(v))
        detect = "" if s["median_detectable"] is None else f"; median smallest detectable change {s['median_detectable']:.1%}"
        aa = "" if s.get("false_alarm_rate") is None else f"; A/A false-alarm rate {s['false_alarm_rate']:.1%}"
        message = f"{s['compared']} figures compared: {found or 'none'}{detect}{aa}"
        if adverse:
            raise AssertionError(f"B is slower or worse in {len(adverse)} figures: "
                                 + "; ".join(f"{_label(f)}: {_ratio_text(f)} {f['verdict']}" for f in adverse)
                                 + f" ({message})")  # fmt: skip
        BuiltIn().set_test_message(message)
        return int(s["compared"])

    @keyword
    def exact_targets_should_hold_in_b(self) -> int:
        """Fail when B missed an exact target (``== 0`` lost, duplicated or torn; ``== 100`` tasks) in any round.

        These figures are judged absolutely, every value of every round, never by a ratio. Skips
        when the compared suites have no such figure. Returns how many were checked.

        Example:
        | `Exact Targets Should Hold In B`
        """
        data = self._require()
        exact = [f for f in data["figures"] if f["kind"] == "absolute"]
        if not exact:
            BuiltIn().skip("the compared suites record no figure with an exact target (== N)")
        missed = [f for f in exact if f["verdict"] in (cmp.MISSED_B, cmp.MISSED_BOTH)]
        if missed:
            raise AssertionError(f"B missed {len(missed)} exact targets: " + "; ".join(
                f"{_label(f)}: target {f['target']}, B measured {', '.join(str(v) for v in f['b'])}" for f in missed))  # fmt: skip
        by_a = [f for f in exact if f["verdict"] == cmp.MISSED_A]
        BuiltIn().set_test_message(f"{len(exact)} exact targets met by B in every round"
                                   + (f"; A missed {len(by_a)}" if by_a else ""))  # fmt: skip
        return len(exact)
