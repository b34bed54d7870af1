"""Statistics of repeated measurements: the rank test and the Hodges-Lehmann ratio with its interval.

Shared by the A/B comparison (:mod:`conductor_perf.comparison`) and the history gate
(:mod:`conductor_perf.regression`). Pure Python (``math``, ``statistics``), deterministic: no
random numbers, so the same samples always give the same verdict.

= The rank test =

:func:`mann_whitney_u` is the two-sided Mann-Whitney U test (exact without ties up to
``n * m = 2500``, else the normal approximation with tie correction); :func:`min_attainable_p` the
smallest p-value two sample sizes allow.

= The ratio B/A and its 95 % interval =

:func:`ratio_interval` estimates by what factor B differs from A with the **Hodges-Lehmann**
estimator and its distribution-free confidence interval (Moses; Bauer 1972): on the logarithms of
the values, the estimate is the median of all ``n * m`` pairwise differences ``log b - log a``, and
the interval runs from the k-th smallest to the k-th largest of them, with k taken from the exact
distribution of U (:func:`u_critical`). Back on the original scale these are the ratio B/A and its
interval. Why this and not a bootstrap:

- it is exact for any continuous distribution in which B is A scaled by a factor (a slower build
  stretches every figure by the same factor), with no assumption of normality; with 5 values per
  side a bootstrap interval is too narrow (5 values have only 126 distinct resamples) and random;
- it is robust: one round disturbed by a neighbour moves at most a few of the pairwise
  differences, not the median of them;
- it is the interval of the rank test the history gate already uses: it excludes 1.0 exactly when
  the exact two-sided test of the same level tells the two sides apart. Its achieved confidence
  is at least the one asked for (5 + 5 values: 96.8 %), so the false-alarm rate of an A/A
  comparison is at most 1 - confidence when the rounds are exchangeable.

With fewer values than a 95 % interval needs (4 + 4 is the least: 97.1 %; 3 + 3 cannot reach it)
the interval is unbounded and nothing can be told apart. When a value is zero or negative (an error
percentage that is 0 in most rounds) the same estimator works on the values themselves and the
ratio is taken against A's median.

**Smallest detectable change.** The interval moves with the data: were B's values all scaled by a
further factor f, every pairwise difference would move by ``log f`` and so would both ends. The run
could therefore have told apart any change larger than the distance from the estimate to the far
end of its interval: :attr:`RatioInterval.detectable` is that distance as a fraction
(``exp(max(est - low, high - est)) - 1``), i.e. the resolution this run had for this figure.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

__all__ = [
    "MannWhitney",
    "RatioInterval",
    "mann_whitney_u",
    "min_attainable_p",
    "ratio_interval",
    "u_critical",
]


def _clean(xs: Iterable[Any]) -> list[float]:
    out = []
    for x in xs:
        if x is None or isinstance(x, bool):
            continue
        try:
            f = float(x)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


# --------------------------------------------------------------------------------------------------
# Mann-Whitney U


class MannWhitney(NamedTuple):
    """Result of :func:`mann_whitney_u`; unpacks as ``(u, p)``."""

    u: float
    p: float
    method: str = "exact"


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values`` and the sizes of tie groups larger than one."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def _u_distribution(n: int, m: int) -> list[int]:
    """Counts of arrangements giving U = 0..n*m (coefficients of the Gaussian binomial [n+m, n]_q)."""
    size = n * m + 1
    c = [0] * size
    c[0] = 1
    # multiply by prod_{i=1..n} (1 - q^(m+i)), truncated at degree n*m
    for i in range(1, n + 1):
        k = m + i
        for j in range(size - 1, k - 1, -1):
            c[j] -= c[j - k]
    # divide by prod_{i=1..n} (1 - q^i): multiply by the series 1 / (1 - q^i)
    for i in range(1, n + 1):
        for j in range(i, size):
            c[j] += c[j - i]
    return c


_EXACT_LIMIT = 2500  # n*m up to which the exact distribution is used (no ties)


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> MannWhitney:
    """Two-sided Mann-Whitney U test of samples ``a`` and ``b``.

    Returns ``(U, p)`` where U is the statistic of ``a`` (the number of pairs with ``a > b``, ties
    counting one half) and p the two-sided p-value: exact when there are no ties and
    ``len(a) * len(b) <= 2500``, otherwise the normal approximation with tie and continuity
    correction. Empty input gives ``(nan, 1.0)``.

    >>> mann_whitney_u([1, 2, 3, 4, 5], [6, 7, 8, 9, 10]).p < 0.01
    True
    """
    xa, xb = _clean(a), _clean(b)
    n, m = len(xa), len(xb)
    if n == 0 or m == 0:
        return MannWhitney(math.nan, 1.0, "empty")
    ranks, ties = _ranks(xa + xb)
    r_a = sum(ranks[:n])
    u = r_a - n * (n + 1) / 2
    if not ties and n * m <= _EXACT_LIMIT:
        dist = _u_distribution(n, m)
        total = sum(dist)
        ui = int(round(u))
        cdf = sum(dist[: ui + 1]) / total
        sf = sum(dist[ui:]) / total
        return MannWhitney(u, min(1.0, 2 * min(cdf, sf)), "exact")
    big_n = n + m
    tie_term = sum(t**3 - t for t in ties) / (big_n * (big_n - 1))
    var = n * m / 12 * ((big_n + 1) - tie_term)
    if var <= 0:
        return MannWhitney(u, 1.0, "normal")
    z = max(0.0, abs(u - n * m / 2) - 0.5) / math.sqrt(var)
    return MannWhitney(u, min(1.0, math.erfc(z / math.sqrt(2))), "normal")


def min_attainable_p(n: int, m: int) -> float:
    """Smallest two-sided p-value the rank test can give for sample sizes ``n`` and ``m`` (no ties)."""
    if n <= 0 or m <= 0:
        return 1.0
    return min(1.0, 2 / math.comb(n + m, n))


# --------------------------------------------------------------------------------------------------
# Hodges-Lehmann shift and ratio


def u_critical(n: int, m: int, confidence: float = 0.95) -> tuple[int, float]:
    """``(k, achieved)``: the interval of the pairwise differences runs from the k-th smallest to the
    k-th largest; ``achieved`` is its confidence (at least ``confidence``). ``k == 0`` when the sample
    sizes cannot give that confidence (then the interval is unbounded).

    >>> u_critical(5, 5)
    (3, 0.9682539682539683)
    """
    if n <= 0 or m <= 0 or not 0 < confidence < 1:
        return 0, 0.0
    tail = (1 - confidence) / 2
    if n * m > _EXACT_LIMIT:
        z = statistics.NormalDist().inv_cdf(1 - tail)
        k = math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12))
        return max(0, k), confidence
    dist = _u_distribution(n, m)
    total = math.comb(n + m, n)
    cumulative = 0
    k = 0
    for count in dist:  # k values of U (0..k-1) fit in the lower tail
        if (cumulative + count) / total > tail:
            break
        cumulative += count
        k += 1
    return (k, 1 - 2 * cumulative / total) if k else (0, 0.0)


@dataclass(frozen=True)
class RatioInterval:
    """How B's values relate to A's: the ratio B/A with its interval (see the module documentation).

    Attributes:
        ratio, low, high: the Hodges-Lehmann ratio B/A and its interval; ``None`` when A's values
            are zero (a ratio to nothing), ``low``/``high`` also when too few values give no interval.
        detectable: the smallest change (a fraction, 0.05 = 5 %) this data could have told apart
            from no change; ``None`` without an interval or a ratio.
        confidence: the interval's achieved confidence (0 when there is none).
        scale: ``log`` (all values positive: the ratio is exact) or ``linear`` (a zero or negative
            value: the shift in the figure's unit, as a ratio to A's median).
        shift, shift_low, shift_high: the estimate and interval on that scale (log units or the
            figure's unit); their signs decide the direction even when there is no ratio.
    """

    ratio: float | None
    low: float | None
    high: float | None
    detectable: float | None
    confidence: float
    scale: Literal["log", "linear"]
    shift: float
    shift_low: float
    shift_high: float
    n_a: int
    n_b: int

    @property
    def change(self) -> int:
        """+1 when B is higher than A beyond the interval, -1 when lower, 0 when it cannot tell."""
        if self.shift_low > 0:
            return 1
        if self.shift_high < 0:
            return -1
        return 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (infinite interval ends as ``None``)."""
        return {
            k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in asdict(self).items()
        }


def _hodges_lehmann(a: Sequence[float], b: Sequence[float], k: int) -> tuple[float, float, float]:
    diffs = sorted(y - x for x in a for y in b)
    estimate = statistics.median(diffs)
    if k <= 0:
        return estimate, -math.inf, math.inf
    return estimate, diffs[k - 1], diffs[len(diffs) - k]


def ratio_interval(a: Iterable[Any], b: Iterable[Any], *, confidence: float = 0.95) -> RatioInterval:
    """The ratio B/A of two samples with its distribution-free interval (module documentation).

    Non-numeric and non-finite values are left out. Raises ``ValueError`` when a side is empty.

    >>> r = ratio_interval([100, 102, 98, 101, 99], [110, 112, 108, 111, 109])
    >>> round(r.ratio, 3), r.change
    (1.1, 1)
    """
    xa, xb = _clean(a), _clean(b)
    if not xa or not xb:
        raise ValueError(f"a ratio needs values on both sides (A has {len(xa)}, B has {len(xb)})")
    k, achieved = u_critical(len(xa), len(xb), confidence)
    if min(xa) > 0 and min(xb) > 0:
        est, lo, hi = _hodges_lehmann([math.log(x) for x in xa], [math.log(y) for y in xb], k)
        bounded = math.isfinite(lo) and math.isfinite(hi)
        return RatioInterval(
            ratio=math.exp(est),
            low=math.exp(lo) if bounded else None,
            high=math.exp(hi) if bounded else None,
            detectable=math.exp(max(est - lo, hi - est)) - 1 if bounded else None,
            confidence=achieved, scale="log", shift=est, shift_low=lo, shift_high=hi, n_a=len(xa), n_b=len(xb),
        )  # fmt: skip
    est, lo, hi = _hodges_lehmann(xa, xb, k)
    base = statistics.median(xa)
    bounded = math.isfinite(lo) and math.isfinite(hi)
    if base > 0:
        ratio, low, high = (
            1 + est / base,
            (1 + lo / base) if bounded else None,
            (1 + hi / base) if bounded else None,
        )
        detectable = max(est - lo, hi - est) / base if bounded else None
    else:
        ratio = low = high = detectable = None
    return RatioInterval(ratio=ratio, low=low, high=high, detectable=detectable, confidence=achieved,
                         scale="linear", shift=est, shift_low=lo, shift_high=hi, n_a=len(xa), n_b=len(xb))  # fmt: skip
