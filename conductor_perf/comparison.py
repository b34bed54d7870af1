"""The result of an A/B comparison: per figure the ratio B/A, its interval and a verdict.

:mod:`conductor_perf.compare` runs the chosen suites on two SUTs, A and B, alternately in ABBA
order (round 1: A then B, round 2: B then A, ...), each run on a fresh SUT, and keeps each run's
``metrics.json`` in ``rounds/NN-A/`` and ``rounds/NN-B/``. This module turns those rounds into the
comparison: :func:`compare_rounds` -> :class:`Comparison`, written as ``compare.json``,
``compare.md``, ``compare.svg`` (the ratio chart) and ``summary.html``.

= Figures =

A figure is one ``(suite, test, metric)`` of the rounds (a metric recorded twice in one test is
numbered: ``... errors (2)``); each completed round gives it one value per side.

- **ratio** figures have a better direction (the target's comparator, else the unit: lower latency,
  higher rate; :meth:`conductor_perf.records.MetricRecord.direction`). Their ratio B/A, 95 %
  interval and smallest detectable change come from :func:`conductor_perf.stats.ratio_interval`
  (Hodges-Lehmann on log values, exact distribution-free interval). Verdict: ``no detectable
  change`` while the interval holds 1.0, else ``faster``/``slower`` for times and rates and
  ``better``/``worse`` for other units (%, bytes, counts), by the figure's direction.
- **difference** figures are ratio figures whose A values are 0 (an error percentage): no ratio
  exists, so the same estimator judges the difference B - A in the figure's unit.
- **constant** figures had one and the same value in every round of both sides (0 % errors): there
  is nothing to compare; they are listed, and not counted among the figures compared.
- **absolute** figures have an exact target (``== 0 messages`` lost, duplicated or torn, ``== 100
  tasks`` of history): every value of every round is checked against it, never a ratio. Verdict:
  ``met by both``, ``missed by A``, ``missed by B`` or ``missed by both``.
- a figure without a direction, or measured on one side only, is listed as ``not compared`` with
  the reason.

= Failed rounds =

A round fails when its robot run could not run or was stopped, when its SUT did not start or died
during it (a ``conductor exited unexpectedly`` record), or when its SUT was not the one the other
rounds of its side had. A failed round is listed with its reason and its values are left out of
every figure, never averaged in. A figure that a round did not record (its test failed at an
earlier step, say a missed latency target before the error count) has fewer values; every figure
says how many values of A and B it rests on.

= A/A =

When A and B are the same SUT, every flagged figure is a false alarm: the summary gives the
false-alarm rate (flagged figures / figures compared by ratio or difference).
"""

from __future__ import annotations

import html
import json
import math
import os
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from . import charts
from .records import MetricRecord, RunResults, json_clean, write_text_atomic
from .stats import RatioInterval, ratio_interval, u_critical
from .verdict import format_number, unit_factor

__all__ = [
    "ABSOLUTE",
    "COMPARE_JSON",
    "Comparison",
    "FigureComparison",
    "Round",
    "abba_order",
    "compare_rounds",
    "figure_key_label",
    "round_figures",
]

COMPARE_JSON = "compare.json"
SCHEMA_VERSION = 1
FASTER, SLOWER, BETTER, WORSE = "faster", "slower", "better", "worse"
NO_CHANGE = "no detectable change"
MET, MISSED_A, MISSED_B, MISSED_BOTH = "met by both", "missed by A", "missed by B", "missed by both"
NOT_COMPARED = "not compared"
ABSOLUTE = (MET, MISSED_A, MISSED_B, MISSED_BOTH)
ADVERSE = (SLOWER, WORSE)
FLAGGED = (FASTER, SLOWER, BETTER, WORSE)
METHOD = ("Hodges-Lehmann ratio B/A with its exact distribution-free interval (Mann-Whitney U), on the "
          "logarithms of one value per round and side; a verdict only when the interval excludes 1.0")  # fmt: skip

FigureKey = tuple[str, str, str, int]


def abba_order(rounds: int) -> list[tuple[int, str]]:
    """``(round, side)`` in execution order: A B, B A, A B, ... (every two rounds are one ABBA block).

    >>> abba_order(3)
    [(1, 'A'), (1, 'B'), (2, 'B'), (2, 'A'), (3, 'A'), (3, 'B')]
    """
    out: list[tuple[int, str]] = []
    for n in range(1, rounds + 1):
        out += [(n, "A"), (n, "B")] if n % 2 else [(n, "B"), (n, "A")]
    return out


@dataclass
class Round:
    """One run of one side: where its results are, whether it completed, and why not."""

    number: int
    side: str
    position: int
    directory: str
    status: str = "ok"
    reason: str = ""
    exit_code: int | None = None
    started: str | None = None
    finished: str | None = None
    duration_s: float | None = None
    load_avg: list[float] | None = None
    run: RunResults | None = field(default=None, repr=False, compare=False)

    @property
    def name(self) -> str:
        """``round 3 B``."""
        return f"round {self.number} {self.side}"

    @property
    def ok(self) -> bool:
        """Whether the round completed (its values count)."""
        return self.status == "ok"

    def fail(self, reason: str) -> None:
        """Mark the round failed (the first reason stays)."""
        if self.ok:
            self.status, self.reason = "failed", reason

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (without the loaded run)."""
        d = asdict(self)
        d.pop("run", None)
        return json_clean(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Round:
        """Inverse of :meth:`to_dict`."""
        names = {"number", "side", "position", "directory", "status", "reason", "exit_code", "started", "finished",
                 "duration_s", "load_avg"}  # fmt: skip
        return cls(**{k: v for k, v in d.items() if k in names})


def figure_key_label(key: FigureKey) -> str:
    """The figure's name: its metric, numbered when the test records it more than once."""
    return key[2] if key[3] == 1 else f"{key[2]} ({key[3]})"


def round_figures(run: RunResults) -> dict[FigureKey, MetricRecord]:
    """The measured figures of one round by ``(suite, test, metric, occurrence)`` (skips and
    figures without a value left out)."""
    out: dict[FigureKey, MetricRecord] = {}
    seen: dict[tuple[str, str, str], int] = {}
    for rec in run.metrics:
        if rec.verdict == "skipped" or rec.value is None or rec.metric in ("sut", "skipped"):
            continue
        n = seen[rec.key] = seen.get(rec.key, 0) + 1
        out[(*rec.key, n)] = rec
    return out


def _shift_text(interval: RatioInterval, unit: str) -> str:
    ends = ("" if not math.isfinite(interval.shift_low) or not math.isfinite(interval.shift_high)
            else f" [{interval.shift_low:+.3g}, {interval.shift_high:+.3g}]")  # fmt: skip
    return f"{interval.shift:+.3g}{ends} {unit}".rstrip()


def _speed_unit(unit: str) -> bool:
    """A time or a rate: its change reads as faster or slower."""
    return bool(unit.strip()) and (unit_factor(unit, "s") is not None or unit_factor(unit, "/s") is not None)


@dataclass
class FigureComparison:
    """One figure of an A/B comparison (see the module documentation for kinds and verdicts)."""

    name: str
    suite: str
    test: str
    unit: str
    kind: str
    a: list[float]
    b: list[float]
    verdict: str
    target: str | None = None
    higher_is_better: bool | None = None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    detectable: float | None = None
    confidence: float | None = None
    note: str = ""
    label: str = ""
    interval: RatioInterval | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.label = self.label or self.name

    @property
    def flagged(self) -> bool:
        """A ratio figure whose interval excludes 1.0 (either way)."""
        return self.verdict in FLAGGED

    def to_dict(self) -> dict[str, Any]:
        """``compare.json``'s figure entry."""
        d = asdict(self)
        d.pop("interval", None)
        if self.interval is not None:
            d["interval"] = self.interval.to_dict()
        d["a_median"] = statistics.median(self.a) if self.a else None
        d["b_median"] = statistics.median(self.b) if self.b else None
        return json_clean(d)


def _absolute(rec: MetricRecord, a: list[float], b: list[float]) -> str:
    t = rec.parsed_target
    assert t is not None
    miss_a = any(t.check(v, rec.unit) is False for v in a)
    miss_b = any(t.check(v, rec.unit) is False for v in b)
    return {(False, False): MET, (True, False): MISSED_A, (False, True): MISSED_B}.get((miss_a, miss_b), MISSED_BOTH)


def compare_figure(key: FigureKey, rec: MetricRecord, a: list[float], b: list[float], *,
                   confidence: float = 0.95) -> FigureComparison:  # fmt: skip
    """Compare one figure's values of A and B (see the module documentation)."""
    out = FigureComparison(name=figure_key_label(key), suite=key[0], test=key[1], unit=rec.unit, kind="ratio",
                           a=list(a), b=list(b), verdict=NOT_COMPARED, target=rec.target,
                           higher_is_better=rec.direction())  # fmt: skip
    target = rec.parsed_target
    if not a or not b:
        out.kind, out.note = NOT_COMPARED, f"measured on {'B' if b else 'A'} only"
        return out
    if target is not None and target.op == "==":
        out.kind, out.verdict = "absolute", _absolute(rec, a, b)
        out.note = f"every round checked against {target}"
        return out
    direction = out.higher_is_better
    if direction is not None and len(set(a) | set(b)) == 1:
        out.kind, out.verdict = "constant", NO_CHANGE
        out.note = f"{format_number(a[0], rec.unit)} in every round of A and B"
        return out
    interval = ratio_interval(a, b, confidence=confidence)
    out.interval = interval
    out.ratio, out.ci_low, out.ci_high = interval.ratio, interval.low, interval.high
    out.detectable, out.confidence = interval.detectable, interval.confidence
    notes = []
    if interval.low is None and interval.ratio is not None:
        notes.append(f"too few rounds for a {confidence:.0%} interval ({len(a)} + {len(b)})")
    if interval.ratio is None:
        out.kind = "difference"
        notes.append(f"A's median is 0: no ratio; B - A = {_shift_text(interval, rec.unit)}")
    elif interval.scale == "linear":
        notes.append("a value is 0: the interval is of the difference, as a ratio to A's median")
    if direction is None:
        out.kind = NOT_COMPARED
        notes.insert(0, "no better direction (neither its target nor its unit tells)")
        out.note = "; ".join(notes)
        return out
    change = interval.change
    if change == 0:
        out.verdict = NO_CHANGE
    else:
        good = (change > 0) == direction
        speed = _speed_unit(rec.unit)
        out.verdict = (FASTER if good else SLOWER) if speed else (BETTER if good else WORSE)
    out.note = "; ".join(notes)
    return out


@dataclass
class Comparison:
    """A whole A/B comparison: the two SUTs, the rounds, every figure and the summary."""

    compare_id: str
    a: dict[str, Any]
    b: dict[str, Any]
    profile: str
    suites: list[str]
    rounds: list[Round]
    figures: list[FigureComparison]
    confidence: float = 0.95
    created: str | None = None
    robot_args: list[str] = field(default_factory=list)
    machine: dict[str, Any] = field(default_factory=dict)

    @property
    def mode(self) -> str:
        """``A/A`` when both sides are the same SUT spelling, else ``A/B``."""
        return "A/A" if self.a.get("spec") == self.b.get("spec") else "A/B"

    @property
    def failed_rounds(self) -> list[Round]:
        """Rounds whose values were left out."""
        return [r for r in self.rounds if not r.ok]

    def summary(self) -> dict[str, Any]:
        """Counts per verdict, the false-alarm rate (A/A), resolution and the smallest change detected."""
        ratio = [f for f in self.figures if f.kind == "ratio"]
        compared = [f for f in self.figures if f.kind in ("ratio", "difference")]
        counts = {v: sum(f.verdict == v for f in compared) for v in (*FLAGGED, NO_CHANGE)}
        counts.update({v: sum(f.verdict == v for f in self.figures) for v in (*ABSOLUTE, NOT_COMPARED)})
        counts["constant"] = sum(f.kind == "constant" for f in self.figures)
        flagged = [f for f in compared if f.flagged]
        detectable = sorted(f.detectable for f in ratio if f.detectable is not None)
        changes = [(abs(f.ratio - 1), f) for f in flagged if f.ratio is not None]
        smallest = min(changes, key=lambda c: c[0])[1] if changes else None
        n_a = sum(r.ok for r in self.rounds if r.side == "A")
        n_b = sum(r.ok for r in self.rounds if r.side == "B")
        k, achieved = u_critical(n_a, n_b, self.confidence)
        out: dict[str, Any] = {
            "mode": self.mode,
            "rounds_planned": len({r.number for r in self.rounds}),
            "rounds_completed": {"A": n_a, "B": n_b},
            "failed_rounds": [f"{r.name}: {r.reason}" for r in self.failed_rounds],
            "figures": len(self.figures),
            "compared": len(compared),
            "ratio_figures": len(ratio),
            "flagged": len(flagged),
            "flagged_fraction": len(flagged) / len(compared) if compared else None,
            "adverse": [f.label for f in self.figures if f.verdict in ADVERSE],
            "absolute_missed_by_b": [f.label for f in self.figures if f.verdict in (MISSED_B, MISSED_BOTH)],
            "counts": counts,
            "median_detectable": statistics.median(detectable) if detectable else None,
            "smallest_detected": (
                {"figure": smallest.label, "ratio": smallest.ratio, "change": smallest.ratio - 1}
                if smallest is not None and smallest.ratio is not None
                else None
            ),
            "interval_confidence": achieved if k else None,
        }
        if self.mode == "A/A":
            out["false_alarm_rate"] = out["flagged_fraction"]
        return out

    @property
    def passed(self) -> bool:
        """Every round completed, no figure of B slower or worse, no exact target missed by B."""
        s = self.summary()
        return not self.failed_rounds and not s["adverse"] and not s["absolute_missed_by_b"]

    # -- output ---------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The ``compare.json`` document."""
        return json_clean({
            "schema_version": SCHEMA_VERSION,
            "compare_id": self.compare_id,
            "created": self.created,
            "mode": self.mode,
            "a": self.a,
            "b": self.b,
            "profile": self.profile,
            "suites": self.suites,
            "robot_args": self.robot_args,
            "confidence": self.confidence,
            "method": METHOD,
            "order": [f"{r.number}{r.side}" for r in sorted(self.rounds, key=lambda r: r.position)],
            "machine": self.machine,
            "summary": self.summary(),
            "rounds": [r.to_dict() for r in self.rounds],
            "figures": [f.to_dict() for f in self.figures],
        })  # fmt: skip

    def result_line(self) -> str:
        """One sentence: what the comparison found."""
        s = self.summary()
        c = s["counts"]
        if not s["compared"] and not any(c[v] for v in ABSOLUTE):
            found = "no figure could be compared"
        else:
            parts = [f"{c[v]} {v}" for v in (SLOWER, WORSE, FASTER, BETTER) if c[v]]
            found = (f"of {s['compared']} figures compared, "
                     + (", ".join(parts) if parts else "none changed detectably")
                     + (f", {c[NO_CHANGE]} no detectable change" if parts else ""))  # fmt: skip
            absolute = sum(c[v] for v in ABSOLUTE)
            if absolute:
                missed = [f"{c[v]} {v}" for v in (MISSED_B, MISSED_A, MISSED_BOTH) if c[v]]
                found += f"; {absolute} exact targets: " + (", ".join(missed) if missed else "all met by both")
        rounds = (f"{len(self.failed_rounds)} failed round(s) left out" if self.failed_rounds
                  else "every round completed")  # fmt: skip
        head = f"{self.mode}: B ({self.b.get('spec')}) against A ({self.a.get('spec')}): {found}; {rounds}"
        if self.mode == "A/A" and s["false_alarm_rate"] is not None:
            head += f"; false-alarm rate {s['flagged']}/{s['compared']} = {s['false_alarm_rate']:.1%}"
        return head

    def _resolution_line(self) -> str:
        s = self.summary()
        parts = []
        if s["median_detectable"] is not None:
            parts.append(f"median smallest detectable change {s['median_detectable']:.1%}")
        sd = s["smallest_detected"]
        if sd:
            parts.append(f"smallest change detected {sd['change']:+.1%} ({sd['figure']})")
        if s["interval_confidence"]:
            parts.append(f"intervals of {s['interval_confidence']:.1%} confidence "
                         f"({s['rounds_completed']['A']} + {s['rounds_completed']['B']} rounds)")  # fmt: skip
        else:
            parts.append(f"too few completed rounds ({s['rounds_completed']['A']} + {s['rounds_completed']['B']}) "
                         f"for a {self.confidence:.0%} interval")  # fmt: skip
        return "; ".join(parts)

    def facts(self) -> list[tuple[str, str]]:
        """``(name, text)`` lines of the report header."""
        order = " ".join(f"{r.side}" for r in sorted(self.rounds, key=lambda r: r.position))
        rows = [("Result", self.result_line()), ("Resolution", self._resolution_line()),
                ("A", _side_text(self.a)), ("B", _side_text(self.b)),
                ("Rounds", f"{len({r.number for r in self.rounds})} rounds in ABBA order ({order}), each on a fresh SUT"),
                ("Profile", self.profile), ("Suites", ", ".join(self.suites) or "—")]  # fmt: skip
        if self.robot_args:
            rows.append(("Robot arguments", " ".join(self.robot_args)))
        rows.append(("Method", METHOD))
        loads = [r.load_avg[0] for r in self.rounds if r.load_avg]
        if loads:
            rows.append(("Machine load", f"1-min load average {min(loads):.1f}-{max(loads):.1f} at the rounds' ends"
                         + (f" on {self.machine.get('logical_cores')} logical cores" if self.machine else "")))  # fmt: skip
        for r in self.failed_rounds:
            rows.append(("Failed round", f"{r.name}: {r.reason}"))
        return rows

    def chart(self) -> str:
        """The ratio chart: one row per ratio figure with its interval around 1.0."""
        rows = [{"label": f.label, "ratio": f.ratio, "low": f.ci_low, "high": f.ci_high, "verdict": f.verdict}
                for f in self.figures if f.kind == "ratio"]  # fmt: skip
        return charts.ratio_chart(rows, f"B / A per figure with {self.confidence:.0%} intervals ({self.mode})")

    def markdown(self) -> str:
        """``compare.md``."""
        lines = [f"# Comparison {self.compare_id}: {'PASS' if self.passed else 'FAIL'}", ""]
        lines += [f"- **{k}:** {_md(v)}" for k, v in self.facts()]
        ratio = [f for f in self.figures if f.kind in ("ratio", "difference")]
        if ratio:
            lines += ["", "## Figures (ratio B/A)", "",
                      "| Suite | Figure | Unit | A median | B median | B/A | 95 % interval | detectable | verdict | n | note |",
                      "|---|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
            for f in ratio:
                lines.append("| " + " | ".join(_md(x) for x in (
                    f.suite, f.label, f.unit, format_number(_median(f.a), f.unit), format_number(_median(f.b), f.unit),
                    _ratio(f.ratio), _interval(f), _pct(f.detectable), _verdict_md(f.verdict),
                    f"{len(f.a)}+{len(f.b)}", f.note)) + " |")  # fmt: skip
        absolute = [f for f in self.figures if f.kind == "absolute"]
        if absolute:
            lines += ["", "## Exact targets (every round checked, no ratio)", "",
                      "| Suite | Figure | Target | A values | B values | verdict |", "|---|---|---|---|---|---|"]  # fmt: skip
            for f in absolute:
                lines.append("| " + " | ".join(_md(x) for x in (
                    f.suite, f.label, f.target or "", _values(f.a, f.unit), _values(f.b, f.unit),
                    _verdict_md(f.verdict))) + " |")  # fmt: skip
        other = [f for f in self.figures if f.kind in (NOT_COMPARED, "constant")]
        if other:
            lines += ["", "## Not compared", ""]
            lines += [f"- {_md(f.suite)} / {_md(f.label)}: {_md(f.note)}" for f in other]
        lines += ["", "## Rounds", "", "| Round | Side | Order | Status | Duration | Load | Folder | Reason |",
                  "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in sorted(self.rounds, key=lambda r: r.position):
            lines.append("| " + " | ".join(_md(x) for x in (
                r.number, r.side, r.position, r.status if r.ok else f"**{r.status}**",
                f"{r.duration_s:.0f} s" if r.duration_s is not None else "—",
                f"{r.load_avg[0]:.2f}" if r.load_avg else "—", r.directory, r.reason or "")) + " |")  # fmt: skip
        lines += ["", "Chart: compare.svg. Data: compare.json. The Robot log (log.html) holds every round as a suite."]
        return "\n".join(lines) + "\n"

    def html(self) -> str:
        """``summary.html``: the facts, the ratio chart and the tables of :meth:`markdown`."""
        e = html.escape
        facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in self.facts())
        rows = []
        for f in self.figures:
            if f.kind not in ("ratio", "difference"):
                continue
            rows.append("<tr>" + "".join(f"<td{' class=num' if i >= 3 else ''}>{e(str(x))}</td>" for i, x in enumerate((
                f.suite, f.label, f.unit, format_number(_median(f.a), f.unit), format_number(_median(f.b), f.unit),
                _ratio(f.ratio), _interval(f), _pct(f.detectable)))) + f'<td class="c-{e(f.verdict.split()[0])}">'
                f"{e(f.verdict)}</td><td>{len(f.a)}+{len(f.b)}</td><td class=msg>{e(f.note)}</td></tr>")  # fmt: skip
        absolute = "".join(
            f"<tr><td>{e(f.suite)}</td><td>{e(f.label)}</td><td>{e(f.target or '')}</td>"
            f"<td>{e(_values(f.a, f.unit))}</td><td>{e(_values(f.b, f.unit))}</td>"
            f'<td class="c-{"met" if f.verdict == MET else "missed"}">{e(f.verdict)}</td></tr>'
            for f in self.figures if f.kind == "absolute")  # fmt: skip
        rounds = "".join(
            f"<tr><td>{r.number}</td><td>{e(r.side)}</td><td>{r.position}</td>"
            f'<td class="{"" if r.ok else "c-slower"}">{e(r.status)}</td>'
            f"<td>{'' if r.duration_s is None else f'{r.duration_s:.0f} s'}</td><td>{e(r.directory)}</td>"
            f"<td>{e(r.reason)}</td></tr>" for r in sorted(self.rounds, key=lambda r: r.position))  # fmt: skip
        parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
                 f"<title>{'PASS' if self.passed else 'FAIL'} · comparison {e(self.compare_id)}</title>",
                 f"<style>{_CSS}</style></head><body>",
                 f"<h1>Comparison {e(self.compare_id)}: {'PASS' if self.passed else 'FAIL'}</h1>",
                 f"<dl>{facts}</dl>", charts.svg_img_html(self.chart(), inline=True, max_width="900px"),
                 "<h2>Figures (ratio B/A)</h2>",
                 "<table><thead><tr><th>Suite</th><th>Figure</th><th>Unit</th><th>A median</th><th>B median</th>"
                 "<th>B/A</th><th>95 % interval</th><th>detectable</th><th>verdict</th><th>n</th><th>note</th>"
                 f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"]  # fmt: skip
        if absolute:
            parts += ["<h2>Exact targets (every round checked, no ratio)</h2>",
                      "<table><thead><tr><th>Suite</th><th>Figure</th><th>Target</th><th>A</th><th>B</th>"
                      f"<th>verdict</th></tr></thead><tbody>{absolute}</tbody></table>"]  # fmt: skip
        parts += ["<h2>Rounds</h2>", "<table><thead><tr><th>Round</th><th>Side</th><th>Order</th><th>Status</th>"
                  f"<th>Duration</th><th>Folder</th><th>Reason</th></tr></thead><tbody>{rounds}</tbody></table>",
                  '<p class="msg">Data: <a href="compare.json">compare.json</a>; every round in '
                  '<a href="log.html">log.html</a>.</p>', "</body></html>"]  # fmt: skip
        return "\n".join(parts) + "\n"

    def write(self, directory: str | os.PathLike[str]) -> Path:
        """Write compare.json, compare.md, compare.svg and summary.html into ``directory``; returns compare.json."""
        d = Path(directory)
        write_text_atomic(d / COMPARE_JSON, json.dumps(self.to_dict(), indent=1, ensure_ascii=False) + "\n")
        write_text_atomic(d / "compare.md", self.markdown())
        write_text_atomic(d / "compare.svg", self.chart())
        write_text_atomic(d / "summary.html", self.html())
        return d / COMPARE_JSON


_CSS = """
body{font-family:DejaVu Sans,Arial,Helvetica,sans-serif;margin:24px;color:#222;max-width:1300px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}dt{font-weight:bold}dd{margin:0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}th{background:#f3f3f3}
td.num{text-align:right;white-space:nowrap}.msg{color:#555;font-size:12px}
.c-slower,.c-worse,.c-missed{color:#c62828;font-weight:bold}.c-faster,.c-better{color:#2e7d32;font-weight:bold}
"""


def _md(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _median(xs: Sequence[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _ratio(v: float | None) -> str:
    return "—" if v is None else f"{v:.3f}"


def _interval(f: FigureComparison) -> str:
    if f.ci_low is None or f.ci_high is None:
        return "—"
    return f"{f.ci_low:.3f} – {f.ci_high:.3f}"


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v:.1%}"


def _values(xs: Sequence[float], unit: str) -> str:
    return ", ".join(format_number(x) for x in xs) + (f" {unit}" if unit and xs else "")


def _verdict_md(v: str) -> str:
    return f"**{v}**" if v in FLAGGED or v in (MISSED_A, MISSED_B, MISSED_BOTH) else v


def _side_text(side: Mapping[str, Any]) -> str:
    sut = side.get("sut") or {}
    ident = f"{sut.get('kind') or '?'} conductor {sut.get('version') or '?'}"
    if sut.get("binary_sha256"):
        ident += f", sha256 {str(sut['binary_sha256'])[:12]}"
    return f"{side.get('spec')} ({ident})"


# --------------------------------------------------------------------------------------------------
# rounds -> comparison


def _majority(items: Iterable[Any]) -> list[Any]:
    """The items (hashable) found in more than half of the given collections."""
    groups = [list(dict.fromkeys(g)) for g in items]
    counts: dict[Any, int] = {}
    for g in groups:
        for k in g:
            counts[k] = counts.get(k, 0) + 1
    return [k for k, c in counts.items() if c * 2 > len(groups)]


def compare_rounds(
    rounds: Sequence[Round],
    *,
    compare_id: str,
    a: Mapping[str, Any],
    b: Mapping[str, Any],
    profile: str,
    suites: Sequence[str],
    confidence: float = 0.95,
    robot_args: Sequence[str] = (),
    created: str | None = None,
    machine: Mapping[str, Any] | None = None,
) -> Comparison:
    """Compare the completed rounds of A and B, figure by figure.

    ``rounds`` carry their loaded ``run`` (a round without one must already be failed). A completed
    round whose profile differs from ``profile``, or that lacks figures most rounds of its side
    measured, is marked failed here with the reason; failed rounds contribute no values. ``a`` and
    ``b`` describe the sides (``spec`` as given, ``sut`` identity) and go into compare.json as they are.
    """
    for r in rounds:
        if r.ok and r.run is None:
            r.fail("no results were written")
        elif r.ok and r.run is not None and (r.run.profile or "default") != profile:
            r.fail(f"it ran the {r.run.profile or 'default'} profile, not {profile}")
    for side in ("A", "B"):
        done = [r for r in rounds if r.side == side and r.ok and r.run is not None]
        usual = _majority([r.run.identity] for r in done)  # type: ignore[union-attr]
        for r in done:
            if usual and r.run.identity != usual[0]:  # type: ignore[union-attr]
                r.fail(f"its SUT was {r.run.identity}, not {usual[0]} like most {side} rounds")  # type: ignore[union-attr]
    per_round = {id(r): round_figures(r.run) for r in rounds if r.ok and r.run is not None}
    first: dict[FigureKey, MetricRecord] = {}  # in the order of A's rounds, then B's
    values: dict[FigureKey, dict[str, list[float]]] = {}
    invalid: dict[FigureKey, int] = {}
    for r in sorted(rounds, key=lambda r: (r.side, r.position)):
        if not r.ok:
            continue
        for key, rec in per_round[id(r)].items():
            if key not in first:
                first[key], values[key], invalid[key] = rec, {"A": [], "B": []}, 0
            values[key][r.side].append(float(rec.value))  # type: ignore[arg-type]
            invalid[key] += rec.verdict == "invalid"
    names: dict[str, int] = {}
    for key in first:
        names[figure_key_label(key)] = names.get(figure_key_label(key), 0) + 1
    figures = []
    for key, rec in first.items():
        f = compare_figure(key, rec, values[key]["A"], values[key]["B"], confidence=confidence)
        if names[f.name] > 1 and f.test:  # the same metric in several tests: say which
            f.label = f"{f.test}: {f.name}"
        if invalid[key]:
            f.note = "; ".join(x for x in (f.note, f"{invalid[key]} of {len(f.a) + len(f.b)} values were measured "
                               "with the load generator saturated (a difference can hide behind it)") if x)  # fmt: skip
        figures.append(f)
    return Comparison(compare_id=compare_id, a=dict(a), b=dict(b), profile=profile, suites=list(suites),
                      rounds=list(rounds), figures=figures, confidence=confidence, created=created,
                      robot_args=list(robot_args), machine=dict(machine or {}))  # fmt: skip


def load_comparison(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a ``compare.json`` (or the one in a comparison folder); ``ValueError`` with one line if unusable."""
    p = Path(path)
    if p.is_dir():
        p = p / COMPARE_JSON
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{p}: no such file (run python -m conductor_perf.compare first)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{p}: not a readable comparison ({exc})") from None
    if not isinstance(data, dict) or "figures" not in data or "rounds" not in data:
        raise ValueError(f"{p}: not a comparison (no figures or rounds)")
    return data


def ratio_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The ratio chart's rows of a loaded compare.json."""
    rows = []
    for f in data.get("figures", []):
        if f.get("kind") == "ratio":
            rows.append({"label": f.get("label") or f["name"], "ratio": f.get("ratio"), "low": f.get("ci_low"), "high": f.get("ci_high"),
                         "verdict": f.get("verdict")})  # fmt: skip
    return rows

