"""Leak verdicts from the idle points of repeated, identical workload cycles (stdlib only).

Method. Run a warm-up cycle, record the idle level (``baseline``), then K identical cycles, each
followed by an idle window, and record one figure per idle point (RSS, USS, threads, fds,
connections...). A leak shows as a level that keeps rising from cycle to cycle. The verdict is
``"leak"`` when either

1. **trend**: the Theil-Sen slope (median of all pairwise slopes: robust to a few outliers, e.g.
   one garbage-collection spike) is positive and at least ``min_slope_per_cycle``, the fitted growth
   over the series (slope x (K - 1) cycles) exceeds the tolerance, AND the one-sided Mann-Kendall
   trend test rejects "no upward trend" at level ``alpha``; or
2. **no return**: a ``baseline`` was given and the level at the end (median of the last three
   points, so one spike does not decide) stays above ``baseline + tolerance``.

The tolerance is ``max(tolerance_abs, tolerance_rel x reference)``, the reference being the
baseline, or the first point when no baseline is given.

Why these tests. Idle-point series are short (K = 5..30), noisy and not normal (allocators grow
in steps), so a rank test is the defensible choice: Mann-Kendall only uses the signs of pairwise
differences and is the standard monotonic-trend test (Mann 1945, Kendall 1975). Its p-value is
exact for series without ties (the null distribution of S is the Mahonian distribution of
permutation inversions, computed by dynamic programming) and uses the normal approximation with
the tie-corrected variance and continuity correction when ties exist (typical for integer counts
such as threads). Requiring significance AND a growth above the tolerance keeps noisy-but-flat
series (significance fails) and tiny but monotonic drifts such as a few kB of caches (growth below
tolerance) from being called leaks. With ``alpha = 0.05`` a monotone series needs K >= 4 points
to be significant at all (the smallest exact p for K = 4 is 1/24); use K >= 6.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


def theil_sen(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Theil-Sen robust line fit.

    Returns:
        ``(slope, intercept)``: the median of the slopes of all pairs of points with distinct x,
        and the median of ``y - slope * x``.

    Raises:
        ValueError: different lengths, or fewer than two distinct x values.
    """
    if len(xs) != len(ys):
        raise ValueError(f"xs and ys differ in length ({len(xs)} != {len(ys)})")
    slopes = [
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    ]
    if not slopes:
        raise ValueError("need at least two points with distinct x")
    slope = statistics.median(slopes)
    intercept = statistics.median(y - slope * x for x, y in zip(xs, ys, strict=True))
    return slope, intercept


def _sign(v: float) -> int:
    return (v > 0) - (v < 0)


def _inversion_counts(n: int) -> list[int]:
    """Number of permutations of n items with k inversions, k = 0..n(n-1)/2 (Mahonian numbers)."""
    counts = [1]
    for m in range(2, n + 1):
        new = [0] * (len(counts) + m - 1)
        for k, c in enumerate(counts):
            if c:
                for j in range(m):
                    new[k + j] += c
        counts = new
    return counts


@dataclass(frozen=True)
class TrendTest:
    """Result of the one-sided Mann-Kendall test for an upward trend.

    Attributes:
        s: the statistic (concordant minus discordant pairs).
        z: normal score (continuity-corrected; 0 when ``var_s`` is 0).
        p_value: P(S >= s) under "no trend"; exact without ties, normal approximation with ties.
        exact: whether ``p_value`` is exact.
        n: number of points.
    """

    s: int
    z: float
    p_value: float
    exact: bool
    n: int


#: above this many points the exact distribution is not worth computing (normal is excellent)
_EXACT_MAX_N = 60


def mann_kendall(ys: Sequence[float]) -> TrendTest:
    """One-sided Mann-Kendall test of an upward monotonic trend in ``ys`` (in sampling order).

    Raises:
        ValueError: fewer than 3 points.
    """
    n = len(ys)
    if n < 3:
        raise ValueError(f"Mann-Kendall needs at least 3 points, got {n}")
    s = sum(_sign(ys[j] - ys[i]) for i in range(n) for j in range(i + 1, n))
    groups: dict[float, int] = {}
    for y in ys:
        groups[y] = groups.get(y, 0) + 1
    ties = [t for t in groups.values() if t > 1]
    var_s = (n * (n - 1) * (2 * n + 5) - sum(t * (t - 1) * (2 * t + 5) for t in ties)) / 18.0
    if var_s > 0:
        z = (s - _sign(s)) / math.sqrt(var_s)
    else:
        z = 0.0
    if not ties and n <= _EXACT_MAX_N:
        counts = _inversion_counts(n)
        total = math.factorial(n)
        pairs = n * (n - 1) // 2
        # S = pairs - 2 * inversions, so S >= s  <=>  inversions <= (pairs - s) / 2
        k_max = (pairs - s) // 2
        p = sum(counts[: k_max + 1]) / total
        return TrendTest(s=s, z=z, p_value=min(1.0, p), exact=True, n=n)
    if var_s <= 0:  # every value equal: no evidence of anything
        return TrendTest(s=s, z=0.0, p_value=1.0, exact=False, n=n)
    p = 0.5 * math.erfc(z / math.sqrt(2.0))
    return TrendTest(s=s, z=z, p_value=p, exact=False, n=n)


@dataclass(frozen=True)
class LeakVerdict:
    """The outcome of :func:`leak_verdict`.

    Attributes:
        verdict: ``"ok"`` or ``"leak"``.
        slope_per_cycle: Theil-Sen slope, in the samples' unit per cycle.
        intercept: Theil-Sen intercept (level at cycle index 0).
        total_growth: fitted growth over the series, ``slope * (K - 1)``.
        observed_growth: last level minus the reference level (baseline, or first point).
        tolerance: the tolerance applied, ``max(tolerance_abs, tolerance_rel * reference)``.
        baseline: the baseline given, if any.
        last_level: median of the last three points (or fewer).
        p_value: one-sided Mann-Kendall p-value (1.0 with fewer than 3 points).
        mk_s: Mann-Kendall statistic S.
        mk_z: its normal score.
        n: number of points K.
        reasons: which rules fired (empty when ok).
        message: one line with the figures and unit.
    """

    verdict: str
    slope_per_cycle: float
    intercept: float
    total_growth: float
    observed_growth: float
    tolerance: float
    baseline: float | None
    last_level: float
    p_value: float
    mk_s: int
    mk_z: float
    n: int
    reasons: list[str] = field(default_factory=list)
    message: str = ""

    @property
    def leaked(self) -> bool:
        """True when the verdict is ``"leak"``."""
        return self.verdict == "leak"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return asdict(self)


def _fmt(v: float, unit: str) -> str:
    text = f"{v:.4g}"
    return f"{text} {unit}" if unit else text


def leak_verdict(
    samples: Sequence[float],
    *,
    baseline: float | None = None,
    tolerance_abs: float = 0.0,
    tolerance_rel: float = 0.0,
    min_slope_per_cycle: float = 0.0,
    alpha: float = 0.05,
    xs: Sequence[float] | None = None,
    name: str = "level",
    unit: str = "",
) -> LeakVerdict:
    """Decide whether idle-point samples after K identical cycles show a leak (see module doc).

    Example::

        v = leak_verdict([101.2, 101.9, 102.8, 103.1, 104.4, 105.0], baseline=101.0,
                         tolerance_abs=2.0, name="RSS", unit="MiB")
        v.verdict  # "leak"; v.message: "leak: RSS +0.775 MiB/cycle (Theil-Sen); ..."

    Args:
        samples: one figure per idle point, in cycle order (K >= 2; >= 6 recommended).
        baseline: idle level before the first measured cycle (after a warm-up cycle).
        tolerance_abs: allowed growth, in the samples' unit.
        tolerance_rel: allowed growth as a fraction of the reference level.
        min_slope_per_cycle: slopes below this never count as a trend.
        alpha: significance level of the one-sided Mann-Kendall test.
        xs: cycle positions (default 0..K-1), e.g. elapsed minutes in a soak.
        name: what is measured, for the message ("RSS", "threads").
        unit: unit of the samples, for the message ("MiB", "").

    Raises:
        ValueError: fewer than two samples, or ``xs`` of another length.
    """
    ys = [float(v) for v in samples]
    k = len(ys)
    if k < 2:
        raise ValueError(f"need at least two idle-point samples, got {k}")
    positions = [float(x) for x in xs] if xs is not None else [float(i) for i in range(k)]
    slope, intercept = theil_sen(positions, ys)
    span = positions[-1] - positions[0]
    total_growth = slope * span
    reference = baseline if baseline is not None else ys[0]
    tolerance = max(tolerance_abs, tolerance_rel * abs(reference))
    last_level = statistics.median(ys[-3:])
    observed_growth = last_level - reference
    if k >= 3:
        mk = mann_kendall(ys)
    else:
        mk = TrendTest(s=_sign(ys[1] - ys[0]), z=0.0, p_value=1.0, exact=False, n=k)

    reasons: list[str] = []
    trend = slope > 0 and slope >= min_slope_per_cycle and total_growth > tolerance and mk.p_value < alpha
    if trend:
        reasons.append("trend")
    if baseline is not None and last_level - baseline > tolerance:
        reasons.append("no-return")

    verdict = "leak" if reasons else "ok"
    per = "cycle" if xs is None else "x"
    parts = [
        f"{verdict}: {name} {slope:+.4g}{' ' + unit if unit else ''}/{per} (Theil-Sen)",
        f"fitted growth {_fmt(total_growth, unit)} over {k} points"
        f" ({'>' if total_growth > tolerance else '<='} tolerance {_fmt(tolerance, unit)})",
        f"Mann-Kendall S={mk.s} p={mk.p_value:.3g}{'' if mk.exact else ' (normal approx.)'}"
        f" ({'<' if mk.p_value < alpha else '>='} alpha {alpha:g})",
    ]
    if baseline is not None:
        parts.append(
            f"last level {_fmt(last_level, unit)} vs baseline {_fmt(baseline, unit)}"
            f" ({observed_growth:+.4g}{' ' + unit if unit else ''},"
            f" {'above' if 'no-return' in reasons else 'within'} tolerance)"
        )
    else:
        parts.append(f"last level {_fmt(last_level, unit)} vs first {_fmt(ys[0], unit)}")
    if reasons:
        parts.append("reasons: " + ", ".join(reasons))
    return LeakVerdict(
        verdict=verdict,
        slope_per_cycle=slope,
        intercept=intercept,
        total_growth=total_growth,
        observed_growth=observed_growth,
        tolerance=tolerance,
        baseline=baseline,
        last_level=last_level,
        p_value=mk.p_value,
        mk_s=mk.s,
        mk_z=mk.z,
        n=k,
        reasons=reasons,
        message="; ".join(parts),
    )
