"""Regression gate that holds on shared, noisy machines.

A plain "X % slower" check fails randomly when two jobs share two cores. Like Go's benchstat, this
gate compares *repeated samples* of a metric with the Mann-Whitney U rank test and calls a change
a regression only when it is

1. statistically significant (``p < alpha``, default 0.05), **and**
2. larger than a minimum effect (default 5 % change of the median, or a :class:`Gate` such as
   ``"median:5%"`` / ``"mean:0.5"``), raised further to the A/A noise floor when one is given.

Anything else is ``"same"``. With one value per side nothing can be significant, so such metrics
are reported as ``same`` with the reason ``insufficient samples``. For alpha 0.05 a rank test
needs at least 4 samples per side (smallest possible two-sided p for 4+4 is 2/70 = 0.029); 5-10 per
side is a sensible default.

The A/A helper :func:`noise_floor` compares two runs of the *same* code on the same machine and
reports how far they differ by chance; use its ``suggested_min_effect`` as ``min_effect``.

Why both conditions: samples taken within one run are correlated (same CPU frequency, same
neighbours), so two runs of identical code often differ *significantly* by a few percent. On the
2-core development machine, three quiet A/A pairs (10 samples each of bus append, bus read and
loopback HTTP throughput) had medians 0.05-3.8 % apart, one pair at p < 0.001, and a spread within
a run (MAD) of at most 1.9 %. The library default ``min_effect`` of 5 % sits just above that drift.
Whole suite runs drift further: two default runs of identical code differed by 22.1 % in run
creation rate (the disk's state) and 8.5 % in ``GET /api/v1/status``, so the regression suite uses
25 % (``REGRESSION_MIN_EFFECT``) unless a measured A/A floor for the pair is given.
A competing CPU-bound process halved every figure: the gate cannot tell contention from a code
change, so measurements belong in exclusive phases (see :func:`comparability_warnings`).

Everything here is pure Python (``math``, ``statistics``, ``bisect``) and deterministic; the rank test
itself lives in :mod:`conductor_perf.stats`, shared with the A/B comparison.
"""

from __future__ import annotations

import bisect
import math
import re
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from conductor_perf.records import MetricRecord, RunResults
from conductor_perf.stats import MannWhitney, _clean, mann_whitney_u, min_attainable_p
from conductor_perf.verdict import format_number

__all__ = [
    "Comparison",
    "Effect",
    "Gate",
    "MannWhitney",
    "NoiseFloor",
    "compare",
    "compare_runs",
    "comparability_warnings",
    "effect_size",
    "format_comparisons",
    "format_p",
    "mann_whitney_u",
    "min_attainable_p",
    "noise_floor",
    "noise_floor_runs",
    "parse_gate",
    "regressions",
]

Verdict = Literal["regression", "improvement", "same"]


def format_p(p: float | None) -> str:
    """A p-value as ``=0.034`` or ``<0.001`` (empty for None)."""
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"={p:.3f}"


# --------------------------------------------------------------------------------------------------
# effect size


@dataclass(frozen=True)
class Effect:
    """How large a change is, from ``baseline`` to ``current``.

    Attributes:
        baseline_median / current_median: medians of the two samples.
        delta_pct: relative change of the medians in percent (None when the baseline median is 0).
        cliffs_delta: P(current > baseline) - P(current < baseline), in [-1, 1]; |d| < 0.147 is
            negligible, < 0.33 small, < 0.474 medium, else large (Romano et al.).
        hodges_lehmann: median of all pairwise differences current - baseline (a robust shift
            in the metric's unit); None for very large samples.
    """

    baseline_median: float | None
    current_median: float | None
    delta_pct: float | None
    cliffs_delta: float | None
    hodges_lehmann: float | None


def _rel_change(base: float | None, cur: float | None) -> float | None:
    if base is None or cur is None:
        return None
    if base == 0:
        return 0.0 if cur == 0 else None
    return (cur - base) / abs(base) * 100.0


def effect_size(baseline: Sequence[float], current: Sequence[float]) -> Effect:
    """Relative change of medians, Cliff's delta and the Hodges-Lehmann shift (see :class:`Effect`)."""
    b, c = _clean(baseline), _clean(current)
    if not b or not c:
        return Effect(
            statistics.median(b) if b else None, statistics.median(c) if c else None, None, None, None
        )
    mb, mc = statistics.median(b), statistics.median(c)
    sb = sorted(b)
    greater = less = 0
    for x in c:
        less_than_x = bisect.bisect_left(sb, x)
        greater_than_x = len(sb) - bisect.bisect_right(sb, x)
        greater += less_than_x  # pairs with current > baseline
        less += greater_than_x
    cliffs = (greater - less) / (len(b) * len(c))
    hl = statistics.median([x - y for x in c for y in b]) if len(b) * len(c) <= 200_000 else None
    return Effect(mb, mc, _rel_change(mb, mc), cliffs, hl)


# --------------------------------------------------------------------------------------------------
# gates


_GATE_RE = re.compile(
    r"^\s*(?:(?P<stat>[a-z]+)\s*:)?\s*(?P<num>[-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)\s*(?P<pct>%)?\s*$"
)
_STATS = ("median", "mean", "min", "max")


@dataclass(frozen=True)
class Gate:
    """How large a change must be to count, like pytest-benchmark's ``--benchmark-compare-fail``.

    ``Gate("median", 0.05, relative=True)`` is ``"median:5%"``: the medians must differ by at least
    5 %. ``Gate("mean", 0.5, relative=False)`` is ``"mean:0.5"``: the means must differ by at least
    0.5 in the metric's unit. The rank test's significance is still required on top.
    """

    stat: str = "median"
    threshold: float = 0.05
    relative: bool = True

    def __post_init__(self) -> None:
        if self.stat not in _STATS:
            raise ValueError(f"gate statistic must be one of {', '.join(_STATS)}, got {self.stat!r}")
        if not (self.threshold >= 0 and math.isfinite(self.threshold)):
            raise ValueError(f"gate threshold must be a non-negative number, got {self.threshold!r}")

    def __str__(self) -> str:
        if self.relative:
            return f"{self.stat}:{self.threshold * 100:g}%"
        return f"{self.stat}:{self.threshold:g}"

    def statistic(self, values: Sequence[float]) -> float | None:
        """The gate's statistic of ``values`` (None when empty)."""
        v = _clean(values)
        if not v:
            return None
        return {"median": statistics.median, "mean": statistics.fmean, "min": min, "max": max}[self.stat](v)

    def change(self, baseline: Sequence[float], current: Sequence[float]) -> float | None:
        """Signed change current - baseline: a fraction when relative, else in the metric's unit."""
        b, c = self.statistic(baseline), self.statistic(current)
        if b is None or c is None:
            return None
        if not self.relative:
            return c - b
        if b == 0:
            return 0.0 if c == 0 else math.copysign(math.inf, c)
        return (c - b) / abs(b)


def parse_gate(spec: str | Gate) -> Gate:
    """Parse ``"median:5%"``, ``"mean:0.5"`` (absolute, metric unit), ``"5%"`` (= median) or ``"min:3%"``."""
    if isinstance(spec, Gate):
        return spec
    m = _GATE_RE.match(str(spec).lower())
    if not m:
        raise ValueError(f"bad gate {spec!r}: use STAT:N% or STAT:N with STAT one of {', '.join(_STATS)}")
    num = float(m["num"])
    return Gate(m["stat"] or "median", num / 100 if m["pct"] else num, relative=bool(m["pct"]))


# --------------------------------------------------------------------------------------------------
# comparison


@dataclass
class Comparison:
    """Outcome of comparing one metric between a baseline and a current run.

    ``verdict`` is ``"regression"``, ``"improvement"`` or ``"same"``; ``reason`` says why a change
    was not judged (``"ok"`` when it was): ``"insufficient samples"``, ``"no baseline"``,
    ``"not in current run"``, ``"no value"``, ``"direction unknown"``.
    """

    verdict: Verdict
    p: float | None
    delta_pct: float | None
    message: str
    reason: str = "ok"
    key: tuple[str, str, str] | None = None
    unit: str = ""
    baseline_median: float | None = None
    current_median: float | None = None
    n_baseline: int = 0
    n_current: int = 0
    cliffs_delta: float | None = None
    threshold: str = ""
    higher_is_better: bool | None = None

    @property
    def label(self) -> str:
        """``suite / test / metric`` or ``"metric"`` when not from a run."""
        return " / ".join(self.key) if self.key else "metric"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        d["key"] = list(self.key) if self.key else None
        return d


def compare(
    baseline_samples: Sequence[float],
    current_samples: Sequence[float],
    *,
    higher_is_better: bool | None,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    gate: Gate | str | None = None,
    noise: float | None = None,
    unit: str = "",
    key: tuple[str, str, str] | None = None,
) -> Comparison:
    """Compare repeated measurements of one metric; see the module docstring for the rule.

    Args:
        baseline_samples: repeated measurements of the baseline.
        current_samples: repeated measurements now.
        higher_is_better: direction of the metric (throughput True, latency False). None: a
            significant change is reported as ``same`` with reason ``direction unknown``.
        alpha: significance level of the two-sided rank test.
        min_effect: minimum relative change of the medians (0.05 = 5 %); ignored when ``gate`` is given.
        gate: a :class:`Gate` or its text (``"mean:5%"``) replacing ``min_effect``.
        noise: A/A noise floor as a fraction; a relative threshold below it is raised to it.
        unit: the metric's unit, for the message.
        key: ``(suite, test, metric)`` carried into the result.
    """
    g = parse_gate(gate) if gate is not None else Gate("median", min_effect, relative=True)
    if noise is not None and g.relative and noise > g.threshold:
        g = Gate(g.stat, noise, relative=True)
    b, c = _clean(baseline_samples), _clean(current_samples)
    eff = effect_size(b, c)
    base = Comparison(
        verdict="same",
        p=None,
        delta_pct=eff.delta_pct,
        message="",
        key=key,
        unit=unit,
        baseline_median=eff.baseline_median,
        current_median=eff.current_median,
        n_baseline=len(b),
        n_current=len(c),
        cliffs_delta=eff.cliffs_delta,
        threshold=str(g),
        higher_is_better=higher_is_better,
    )
    figures = f"{format_number(eff.baseline_median, unit)} → {format_number(eff.current_median, unit)}" + (
        f" ({eff.delta_pct:+.1f}%)" if eff.delta_pct is not None else ""
    )
    if not b or not c:
        base.reason = "no value" if not c else "no baseline"
        base.message = f"same: {base.reason}"
        return base
    if min_attainable_p(len(b), len(c)) >= alpha:
        base.reason = "insufficient samples"
        base.message = f"same ({base.reason}, n={len(b)}+{len(c)}): {figures}"
        return base
    mw = mann_whitney_u(c, b)
    base.p = mw.p
    change = g.change(b, c)
    stats = f"p{format_p(mw.p)} n={len(b)}+{len(c)}"
    significant = mw.p < alpha
    big = change is not None and abs(change) >= g.threshold and change != 0
    if not (significant and big):
        why = "not significant" if not significant else f"below {g}"
        base.message = f"same (~, {stats}, {why}): {figures}"
        return base
    if higher_is_better is None:
        base.reason = "direction unknown"
        base.message = f"same (changed, direction unknown, {stats}): {figures}"
        return base
    worse = (change < 0) if higher_is_better else (change > 0)  # type: ignore[operator]
    base.verdict = "regression" if worse else "improvement"
    base.message = f"{base.verdict} ({stats}, beyond {g}): {figures}"
    return base


def _pooled(run: RunResults) -> dict[tuple[str, str, str], tuple[MetricRecord, list[float]]]:
    out: dict[tuple[str, str, str], tuple[MetricRecord, list[float]]] = {}
    for r in run.metrics:
        if r.verdict in ("skipped", "invalid") and r.value is None and not r.samples:
            vals: list[float] = []
        else:
            vals = r.sample_values()
        if r.key in out:
            out[r.key] = (r, out[r.key][1] + vals)  # duplicates (e.g. parts of a merge) pool their samples
        else:
            out[r.key] = (r, vals)
    return out


def compare_runs(
    baseline: RunResults,
    current: RunResults,
    *,
    alpha: float = 0.05,
    min_effect: float = 0.05,
    gate: Gate | str | None = None,
    noise: float | Mapping[tuple[str, str, str], float] | None = None,
) -> list[Comparison]:
    """Compare every metric of ``current`` with the same ``(suite, test, metric)`` in ``baseline``.

    Uses each record's ``samples`` (a record without samples counts as one sample, which can never
    be significant: ``same``, reason ``insufficient samples``). The direction comes from
    :meth:`MetricRecord.direction`. ``noise`` is one A/A floor for all metrics or a floor per key.
    Baseline metrics missing from the current run are listed last with reason ``not in current run``.
    """
    base = _pooled(baseline)
    cur = _pooled(current)
    out: list[Comparison] = []
    for key, (rec, vals) in cur.items():
        b = base.get(key)
        n = noise.get(key) if isinstance(noise, Mapping) else noise
        direction = rec.direction()
        if direction is None and b is not None:
            direction = b[0].direction()
        out.append(
            compare(
                b[1] if b else [],
                vals,
                higher_is_better=direction,
                alpha=alpha,
                min_effect=min_effect,
                gate=gate,
                noise=n,
                unit=rec.unit,
                key=key,
            )
        )
    for key, (rec, vals) in base.items():
        if key not in cur:
            eff = effect_size(vals, [])
            out.append(
                Comparison(
                    verdict="same",
                    p=None,
                    delta_pct=None,
                    message="same: not in current run",
                    reason="not in current run",
                    key=key,
                    unit=rec.unit,
                    baseline_median=eff.baseline_median,
                    n_baseline=len(vals),
                    higher_is_better=rec.direction(),
                )
            )
    return out


def regressions(comparisons: Iterable[Comparison]) -> list[Comparison]:
    """The comparisons whose verdict is ``regression``."""
    return [c for c in comparisons if c.verdict == "regression"]


def format_comparisons(comparisons: Sequence[Comparison]) -> str:
    """A plain-text table (benchstat-like) of comparisons, one line per metric."""
    header = ("metric", "baseline", "current", "change", "p", "n", "verdict")
    rows = [header]
    for c in comparisons:
        verdict = c.verdict if c.reason == "ok" else f"{c.verdict} ({c.reason})"
        rows.append(
            (
                c.label,
                format_number(c.baseline_median, c.unit),
                format_number(c.current_median, c.unit),
                f"{c.delta_pct:+.1f}%" if c.delta_pct is not None else "—",
                format_p(c.p).lstrip("=") if c.p is not None else "—",
                f"{c.n_baseline}+{c.n_current}",
                verdict,
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for j, r in enumerate(rows):
        cells = [r[i].ljust(widths[i]) if i in (0, 6) else r[i].rjust(widths[i]) for i in range(len(r))]
        lines.append("  ".join(cells).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# A/A noise floor


@dataclass(frozen=True)
class NoiseFloor:
    """How much two runs of the *same* code differ on this machine (an A/A comparison).

    Attributes:
        median_delta_pct: |relative difference of the medians| in percent.
        mad_pct_a / mad_pct_b: median absolute deviation of each run relative to its median, in
            percent (the typical distance of one measurement from its run's median).
        floor_pct: the largest of the three: changes below it are indistinguishable from noise.
        p: the rank test's p-value between the two runs (should usually be > alpha).
        suggested_min_effect: ``floor_pct`` rounded up to a whole percent, as a fraction, at least 0.01.
    """

    median_delta_pct: float
    mad_pct_a: float
    mad_pct_b: float
    floor_pct: float
    p: float
    n_a: int
    n_b: int
    suggested_min_effect: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def _rel_mad(xs: list[float]) -> float:
    med = statistics.median(xs)
    if med == 0:
        return 0.0
    mad = statistics.median([abs(x - med) for x in xs])
    return mad / abs(med) * 100.0


def noise_floor(samples_a: Sequence[float], samples_b: Sequence[float]) -> NoiseFloor:
    """A/A noise floor between two sets of samples measured under identical conditions."""
    a, b = _clean(samples_a), _clean(samples_b)
    if not a or not b:
        raise ValueError("noise floor needs samples on both sides")
    ma, mb = statistics.median(a), statistics.median(b)
    delta = abs(_rel_change(ma, mb) or 0.0)
    mad_a, mad_b = _rel_mad(a), _rel_mad(b)
    floor = max(delta, mad_a, mad_b)
    p = mann_whitney_u(a, b).p
    return NoiseFloor(
        median_delta_pct=delta,
        mad_pct_a=mad_a,
        mad_pct_b=mad_b,
        floor_pct=floor,
        p=p,
        n_a=len(a),
        n_b=len(b),
        suggested_min_effect=max(0.01, math.ceil(floor - 1e-9) / 100.0),
    )


def noise_floor_runs(
    run_a: RunResults, run_b: RunResults, *, min_samples: int = 2
) -> dict[tuple[str, str, str], NoiseFloor]:
    """:func:`noise_floor` for every metric with at least ``min_samples`` samples in both runs."""
    pa, pb = _pooled(run_a), _pooled(run_b)
    out = {}
    for key, (_, va) in pa.items():
        if key in pb and len(va) >= min_samples and len(pb[key][1]) >= min_samples:
            out[key] = noise_floor(va, pb[key][1])
    return out


# --------------------------------------------------------------------------------------------------
# are the two runs comparable at all?


def comparability_warnings(baseline: RunResults, current: RunResults) -> list[str]:
    """Reasons the two runs' figures may differ for other causes than the code (one sentence each).

    Checks the machine (host, CPU, cores, Python), tool versions, the SUT identity (kind, version,
    binary hash), profile and uncommitted changes. An empty list means comparable. It cannot see a
    CPU shared with another job during the run (the load average includes the run's own load): keep
    measurements in exclusive phases.
    """
    out: list[str] = []
    for key in ("hostname", "cpu_model", "logical_cores", "usable_cores", "python"):
        a, b = baseline.machine.get(key), current.machine.get(key)
        if a is not None and b is not None and a != b:
            out.append(f"machine {key} differs: {a} vs {b}")
    for name in sorted(set(baseline.tools) | set(current.tools)):
        a, b = baseline.tools.get(name), current.tools.get(name)
        if a != b and a is not None and b is not None:
            out.append(f"{name} version differs: {a} vs {b}")
    for key in ("kind", "version", "binary_sha256"):
        a, b = baseline.sut.get(key), current.sut.get(key)
        if a != b:
            out.append(f"SUT {key} differs: {a} vs {b}")
    if baseline.profile != current.profile:
        out.append(f"profile differs: {baseline.profile} vs {current.profile}")
    if current.commit.get("dirty"):
        out.append("current run has uncommitted changes")
    return out
