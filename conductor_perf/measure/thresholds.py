"""Readable load thresholds (``p95 < 50 ms``, ``rate > 500/s``, ``errors < 1 %``) and run verdicts.

One small parser turns a threshold string into a :class:`Threshold`; :meth:`Threshold.evaluate` checks
it against a summary dict (``LoadResult.summary()`` or ``LatencyHistogram.summary()``, latencies in
ms) and returns ``(ok, message)``, the message naming the figure, its value, the target and the unit.

Grammar: ``<figure> <operator> <number> [<unit>]``, spaces optional.

=====================================  ===========================================================
figure                                 units (value compared in the unit written)
=====================================  ===========================================================
``p50 p90 p95 p99 p99.9`` (also        ``us``/``µs``, ``ms``, ``s`` (required)
``p(95)``, ``median``), ``min``,
``max``, ``mean`` (``avg``)
``rate`` (``throughput``, ``rps``)     ``/s`` (``req/s``, ``msg/s``, ``rps``; default), ``/min``
``errors``, ``late``, ``dropped``      ``%`` of requests (of planned ones for late/dropped), or
                                       none for an absolute count
``count`` (``requests``)               none (or ``requests``/``req``)
=====================================  ===========================================================

Operators: ``<  <=  >  >=  ==  =  !=``.

:func:`verdict` combines the generator self-check with thresholds: ``invalid`` when the load
generator was saturated (the run measured the generator, whatever the figures say), else ``fail``
when a threshold is missed, else ``pass``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from conductor_perf.verdict import OPERATORS
from conductor_perf.verdict import fmt as _fmt

_OPS: dict[str, Callable[[float, float], bool]] = {
    **OPERATORS,
    "=": OPERATORS["=="],
}

_LATENCY_UNITS = {"us": 0.001, "µs": 0.001, "μs": 0.001, "ms": 1.0, "s": 1000.0}  # -> ms
_RATE_UNITS = {
    "/s": 1.0,
    "req/s": 1.0,
    "requests/s": 1.0,
    "msg/s": 1.0,
    "rps": 1.0,
    "/min": 1 / 60.0,
    "req/min": 1 / 60.0,
    "msg/min": 1 / 60.0,
}  # -> per second
_COUNT_UNITS = {"": 1.0, "requests": 1.0, "req": 1.0}

_PERCENTILES = ("p50", "p90", "p95", "p99", "p99.9")  # the ones LatencyHistogram.summary() reports
_FIGURE_ALIASES = {
    "median": "p50",
    "avg": "mean",
    "average": "mean",
    "throughput": "rate",
    "rps": "rate",
    "requests": "count",
    "error": "errors",
    "error_rate": "errors",
}

_PATTERN = re.compile(
    r"^\s*(?P<figure>[A-Za-z_][A-Za-z_]*(?:\(\s*[0-9.]+\s*\))?|p[0-9]+(?:\.[0-9]+)?)\s*"
    r"(?P<op><=|>=|==|!=|<|>|=)\s*"
    r"(?P<num>[+-]?(?:[0-9][0-9_]*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)\s*"
    r"(?P<unit>[^\s0-9].*?)?\s*$",
    re.IGNORECASE,
)


def _canonical_figure(raw: str) -> str:
    f = raw.strip().lower().replace(" ", "")
    m = re.fullmatch(r"p\(([0-9.]+)\)", f)
    if m:
        f = "p" + m.group(1)
    f = _FIGURE_ALIASES.get(f, f)
    m = re.fullmatch(r"p([0-9]+(?:\.[0-9]+)?)", f)
    if m:
        q = float(m.group(1))
        if not 0 <= q <= 100:
            raise ValueError(f"percentile out of range in threshold figure {raw!r}")
        f = "p" + (str(int(q)) if q == int(q) else m.group(1).rstrip("0"))
    return f


def _suffix(unit: str) -> str:
    return unit if unit.startswith("/") or not unit else f" {unit}"


@dataclass(frozen=True)
class Threshold:
    """A parsed threshold: ``figure op target unit``.

    Attributes:
        text: the string as written.
        figure: canonical figure name (``p95``, ``mean``, ``rate``, ``errors``, ``count`` ...).
        op: comparison operator as written (``=`` means ``==``).
        target: the number as written, in ``unit``.
        unit: the unit as written (normalised spelling: ``ms``, ``/s``, ``%`` or ``""``).
        key: the summary key the figure is read from.
        scale: summary value divided by ``scale`` gives the value in ``unit``.
    """

    text: str
    figure: str
    op: str
    target: float
    unit: str
    key: str
    scale: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        """Parse ``"p95 < 50 ms"``-style text.

        Raises:
            ValueError: with the reason, for bad syntax, an unknown figure or a unit that does not
            fit the figure.
        """
        if not isinstance(text, str):
            raise ValueError(f"threshold must be a string, got {type(text).__name__}")
        m = _PATTERN.match(text)
        if not m:
            raise ValueError(
                f"cannot parse threshold {text!r}: expected '<figure> <op> <number> [unit]', "
                f"e.g. 'p95 < 50 ms', 'rate > 500/s', 'errors < 1 %'"
            )
        figure = _canonical_figure(m.group("figure"))
        op = m.group("op")
        try:
            target = float(m.group("num").replace("_", ""))
        except ValueError:
            raise ValueError(f"bad number in threshold {text!r}") from None
        if not math.isfinite(target):
            raise ValueError(f"bad number in threshold {text!r}")
        unit = (m.group("unit") or "").strip()
        unit_l = unit.lower().replace(" ", "")

        if re.fullmatch(r"p[0-9.]+", figure) and figure not in _PERCENTILES:
            raise ValueError(
                f"threshold {text!r}: percentile {figure} is not reported; use one of "
                f"{', '.join(_PERCENTILES)}"
            )
        if figure in ("min", "max", "mean") or figure in _PERCENTILES:
            if unit_l not in _LATENCY_UNITS:
                raise ValueError(
                    f"threshold {text!r}: latency needs a unit us, ms or s, got {unit or 'none'!r}"
                )
            norm = "us" if unit_l in ("µs", "μs") else unit_l
            return cls(text, figure, op, target, norm, figure, _LATENCY_UNITS[unit_l])
        if figure == "rate":
            unit_l = unit_l or "/s"
            if unit_l not in _RATE_UNITS:
                raise ValueError(
                    f"threshold {text!r}: rate unit must be /s (req/s, msg/s, rps) or /min, got {unit!r}"
                )
            return cls(
                text, figure, op, target, unit_l if unit_l != "rps" else "/s", "rate", _RATE_UNITS[unit_l]
            )
        if figure in ("errors", "late", "dropped"):
            if unit_l == "%":
                key = "error_percent" if figure == "errors" else f"{figure}_percent"
                return cls(text, figure, op, target, "%", key, 1.0)
            if unit_l in _COUNT_UNITS:
                return cls(text, figure, op, target, "", figure, 1.0)
            raise ValueError(f"threshold {text!r}: {figure} takes '%' or no unit (a count), got {unit!r}")
        if figure == "count":
            if unit_l not in _COUNT_UNITS:
                raise ValueError(f"threshold {text!r}: count takes no unit, got {unit!r}")
            return cls(text, figure, op, target, "", "count", 1.0)
        raise ValueError(
            f"threshold {text!r}: unknown figure {m.group('figure')!r}; known: p50, p90, p95, p99, p99.9, "
            f"min, max, mean, rate, errors, late, dropped, count"
        )

    @property
    def target_text(self) -> str:
        """The target as text, e.g. ``< 50 ms``."""
        return f"{'==' if self.op == '=' else self.op} {_fmt(self.target)}{_suffix(self.unit)}"

    def value_in_unit(self, summary: Mapping[str, Any]) -> float | None:
        """The figure from ``summary`` converted to this threshold's unit (``None`` when absent)."""
        raw = summary.get(self.key)
        if raw is None and self.key == "error_percent":
            n, e = summary.get("count") or summary.get("requests"), summary.get("errors")
            raw = (100.0 * e / n) if n and e is not None else (0.0 if n and e is None else None)
        if raw is None:
            return None
        return float(raw) / self.scale

    def evaluate(self, summary: Mapping[str, Any] | Any) -> tuple[bool, str]:
        """Check the threshold against a summary dict (or an object with ``summary()``).

        Returns:
            ``(ok, message)``; message like ``p95 72.1 ms (target < 50 ms): FAIL``. A missing or
            empty figure (no samples) fails.
        """
        if not isinstance(summary, Mapping):
            summary = summary.summary()
        value = self.value_in_unit(summary)
        name = {"errors": "errors", "count": "requests"}.get(self.figure, self.figure)
        if value is None:
            return False, f"{name}: no samples (target {self.target_text}): FAIL"
        ok = _OPS[self.op](value, self.target)
        return (
            ok,
            f"{name} {_fmt(value)}{_suffix(self.unit)} (target {self.target_text}): {'PASS' if ok else 'FAIL'}",
        )

    def __str__(self) -> str:
        return f"{self.figure} {self.target_text}"


def parse_thresholds(items: str | Threshold | Iterable[str | Threshold]) -> list[Threshold]:
    """Parse one threshold, a ``;``/newline-separated string, or a list of strings/thresholds."""
    if isinstance(items, Threshold):
        return [items]
    if isinstance(items, str):
        items = [p for p in re.split(r"[;\n]", items) if p.strip()]
    return [t if isinstance(t, Threshold) else Threshold.parse(t) for t in items]


def evaluate_all(
    summary: Mapping[str, Any] | Any, thresholds: str | Threshold | Iterable[str | Threshold]
) -> list[tuple[bool, str]]:
    """Evaluate every threshold; returns one ``(ok, message)`` per threshold, in order."""
    return [t.evaluate(summary) for t in parse_thresholds(thresholds)]


Verdict = Literal["pass", "fail", "invalid"]


def verdict(result: Any, thresholds: str | Threshold | Iterable[str | Threshold] = ()) -> tuple[Verdict, str]:
    """Judge a load run: generator self-check first, then the thresholds.

    Args:
        result: a ``LoadResult`` (or anything with ``summary()``, ``saturated`` and
            ``saturation_reason``; or a summary dict, which has no self-check).
        thresholds: threshold strings or :class:`Threshold` objects.

    Returns:
        ``("invalid", "measurement invalid: load generator saturated (<figures>)...")`` when the
        generator was the bottleneck; else ``("fail", ...)`` listing the missed targets first;
        else ``("pass", ...)``. The message lists every threshold's figure and target.
    """
    parsed = parse_thresholds(thresholds)
    summary = result if isinstance(result, Mapping) else result.summary()
    checks = [t.evaluate(summary) for t in parsed]
    details = "; ".join(msg for _, msg in checks)
    if not isinstance(result, Mapping) and getattr(result, "saturated", False):
        reason = getattr(result, "saturation_reason", "") or "no reason recorded"
        text = f"measurement invalid: load generator saturated ({reason})"
        if details:
            text += f"; figures, not judged: {details}"
        return "invalid", text
    failed = [msg for ok, msg in checks if not ok]
    if failed:
        passed = [msg for ok, msg in checks if ok]
        return "fail", "target missed: " + "; ".join(failed + passed)
    return "pass", details or "no thresholds"
