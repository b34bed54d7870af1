"""The one target grammar: parse a target, check a figure against it, format it, and tell which way is better.

A target is a comparison text in the style of k6 thresholds, ``[figure] <op> <number> [unit]``::

    > 1000 msg/s        p95 < 50 ms        p(95)<50        rate > 500/s
    <= 5 min            ≥ 1,000 req/s      errors < 1 %    < 1000

- ``figure`` (optional) names what is compared (``p95``, ``p(95)``, ``rate``, ``errors``); it is
  kept as written and does not change the comparison.
- ``op`` is one of ``< <= > >= == !=`` (``≤ ≥ =< => =`` are read as ``<= >= <= >= ==``).
- ``number`` may carry ``,`` or ``_`` separators and an exponent (``2e3``).
- ``unit`` is free text; time (``ns us µs ms s min h``), bytes (``B KB MB GB KiB MiB GiB``) and
  rates (``msg/s``, ``req/min``, ``/s``, ``rps``, ``messages per second``) convert into each other,
  so ``< 5 min`` checks a figure in seconds. Units that do not convert make a check undecidable.

Every place that reads or writes a target uses this module: the keyword path
(:func:`compare`, whose :attr:`Check.target_text` is the ``target`` of a metrics.json record),
a record's derived verdict and direction, the report's headroom chart and target lines, and the
regression gate's direction (higher or lower is better).

Example::

    >>> check = compare("bus write throughput", 1234.5, ">", 1000, "msg/s")
    >>> check.message
    'bus write throughput: 1234.5 msg/s (target > 1000 msg/s): PASS'
    >>> parse_target("p95 < 50 ms").check(0.03, "s")
    True
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "OPERATORS",
    "Check",
    "Target",
    "TargetMissed",
    "compare",
    "finite",
    "fmt",
    "format_number",
    "format_target",
    "parse_target",
    "require",
    "unit_direction",
    "unit_factor",
]

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}
_OP_ALIASES = {"≤": "<=", "≥": ">=", "=<": "<=", "=>": ">=", "=": "=="}

_TARGET_RE = re.compile(
    r"^\s*(?P<label>[^<>=≤≥!]*?)\s*(?P<op><=|>=|=<|=>|==|!=|<|>|=|≤|≥)\s*"
    r"(?P<num>[-+]?(?:\d[\d_,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>.*?)\s*$"
)

Verdict = Literal["pass", "fail", "invalid"]


class TargetMissed(AssertionError):
    """A figure did not meet its target."""


# --------------------------------------------------------------------------------------------------
# numbers for humans


def fmt(value: float) -> str:
    """A figure in a verdict message: integers as such, else 1-2 decimals or 3 significant digits.

    ``fmt(1000.0)`` → ``1000``, ``fmt(12.3456)`` → ``12.35``, ``fmt(0.012345)`` → ``0.0123``.
    """
    if value != value:  # NaN
        return "nan"
    if abs(value - round(value)) < 1e-9 and abs(value) < 1e15:
        return str(int(round(value)))
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_number(v: float | None, unit: str = "") -> str:
    """A figure in a table: ``1,234 msg/s`` / ``12.3`` / ``0.0123``, with the unit; ``—`` for None."""
    if v is None:
        return "—"
    av = abs(v)
    if av >= 1000 or (v == int(v) and av < 1e15):  # counts stay integers: "50 tasks", not "50.00 tasks"
        s = f"{v:,.0f}"
    elif av >= 100:
        s = f"{v:.1f}"
    elif av >= 1:
        s = f"{v:.2f}"
    elif av == 0:
        s = "0"
    else:
        s = f"{v:.3g}"
    return f"{s} {unit}".strip()


def _target_number(value: float) -> str:
    """The number of a target text: as :func:`fmt` writes it when that reads back exactly, else
    with enough digits to read back (a target text must name the threshold that was checked)."""
    short = fmt(value)
    try:
        if float(short) == value:
            return short
    except ValueError:  # "nan"
        return short
    return repr(value)


# --------------------------------------------------------------------------------------------------
# units

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0,
               "h": 3600.0}  # fmt: skip
_BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_RATE_RE = re.compile(r"^(?P<noun>[^/]*)/(?P<per>[a-zµμ]+)$")

_HIGHER_UNITS = re.compile(r"(/s$|/sec$|/min$|per second|ops|hz$|rps$|%\s*headroom)", re.I)
_LOWER_UNITS = {"ns", "us", "µs", "ms", "s", "sec", "min", "h", "b", "kb", "mb", "gb", "kib", "mib", "gib",
                "bytes", "%", "threads", "goroutines", "fds", "errors", "ratio"}  # fmt: skip


def _norm_unit(u: str) -> str:
    u = u.strip().replace("/sec", "/s").replace(" per second", "/s")
    for long, short in (("messages", "msg"), ("message", "msg"), ("requests", "req"), ("request", "req")):
        u = u.replace(long, short)
    for long, short in (("seconds", "s"), ("second", "s"), ("minutes", "min"), ("minute", "min")):
        if u == long:
            u = short
    return u


def _rate(u: str) -> tuple[str, float] | None:
    """``(noun, seconds per unit of time)`` of a rate unit such as ``msg/s``, ``/min`` or ``rps``."""
    if u.lower() == "rps":
        return "req", 1.0
    m = _RATE_RE.match(u)
    if m and m["per"] in _TIME_UNITS:
        return m["noun"].strip(), _TIME_UNITS[m["per"]]
    return None


def unit_factor(frm: str, to: str) -> float | None:
    """Multiplier converting a value in unit ``frm`` to unit ``to``; None when they do not convert.

    ``unit_factor("min", "s")`` → 60; ``unit_factor("MB", "KiB")`` → 976.5625;
    ``unit_factor("msg/min", "msg/s")`` → 1/60; ``unit_factor("/s", "req/s")`` → 1 (a bare rate
    fits any noun); ``unit_factor("msg/s", "ms")`` → None. An empty unit fits any unit.
    """
    a, b = _norm_unit(frm), _norm_unit(to)
    if a == b or not a or not b:
        return 1.0
    if a in _TIME_UNITS and b in _TIME_UNITS:
        return _TIME_UNITS[a] / _TIME_UNITS[b]
    if a.lower() in _BYTE_UNITS and b.lower() in _BYTE_UNITS:
        return _BYTE_UNITS[a.lower()] / _BYTE_UNITS[b.lower()]
    if a.lower() == b.lower():
        return 1.0
    ra, rb = _rate(a), _rate(b)
    if ra is not None and rb is not None and (ra[0] == rb[0] or not ra[0] or not rb[0]):
        return rb[1] / ra[1]  # x per minute is x/60 per second
    return None


def unit_direction(unit: str) -> bool | None:
    """Whether a figure in ``unit`` is better higher (rates: True) or lower (time, bytes, %, counts
    of threads or errors: False); None when the unit does not tell."""
    u = _norm_unit(unit)
    if _HIGHER_UNITS.search(u):
        return True
    if u.lower() in _LOWER_UNITS:
        return False
    return None


# --------------------------------------------------------------------------------------------------
# targets


def _operator(op: str) -> str:
    canonical = _OP_ALIASES.get(op.strip(), op.strip())
    if canonical not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of {' '.join(OPERATORS)}")
    return canonical


def finite(v: Any) -> float | None:
    """``v`` as a finite float; ``None`` for ``None``, booleans, text that is no number, NaN and infinities."""
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Target:
    """A parsed target such as ``"p95 < 50 ms"``: ``label`` ``op`` ``value`` ``unit``.

    Example::

        >>> t = Target(">", 1000, "msg/s")
        >>> str(t), t.check(1200, "msg/s"), t.headroom(1500, "msg/s")
        ('> 1000 msg/s', True, 1.5)
    """

    op: str
    value: float
    unit: str = ""
    label: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", _operator(self.op))

    def __str__(self) -> str:
        return format_target(self.op, self.value, self.unit, label=self.label)

    @property
    def higher_is_better(self) -> bool | None:
        """True for ``>``/``>=`` targets, False for ``<``/``<=``, None for equality."""
        if self.op in (">", ">="):
            return True
        if self.op in ("<", "<="):
            return False
        return None

    def threshold_in(self, unit: str) -> float | None:
        """The target value converted to ``unit`` (time, bytes, rates); None when incompatible."""
        f = unit_factor(self.unit, unit)
        return None if f is None else self.value * f

    def check(self, value: float | None, unit: str = "") -> bool | None:
        """Whether ``value`` (in ``unit``) meets the target; None when it cannot be judged."""
        v, t = finite(value), self.threshold_in(unit)
        if v is None or t is None:
            return None
        return OPERATORS[self.op](v, t)

    def headroom(self, value: float | None, unit: str = "") -> float | None:
        """Figure relative to target, oriented so that > 1 means better than the target.

        ``> 1000 msg/s`` measured 1500 → 1.5; ``< 50 ms`` measured 25 → 2.0.
        """
        v, t = finite(value), self.threshold_in(unit)
        if v is None or t is None or self.higher_is_better is None:
            return None
        if self.higher_is_better:
            return v / t if t else None
        return t / v if v else None


def parse_target(text: str | Target | None) -> Target | None:
    """Parse ``"> 1000 msg/s"``, ``"<=50ms"``, ``"p95 < 50 ms"``, ``"p(95)<50"``, ``"< 1,000 req/s"``;
    None when the text is not a target (free text, missing operator or number)."""
    if text is None:
        return None
    if isinstance(text, Target):
        return text
    m = _TARGET_RE.match(str(text))
    if not m:
        return None
    num = float(m["num"].replace(",", "").replace("_", ""))
    return Target(op=m["op"], value=num, unit=m["unit"], label=m["label"].strip())


def format_target(op: str, value: float, unit: str = "", *, label: str = "") -> str:
    """Target text from a comparator and number: ``format_target(">", 1000, "msg/s")`` → ``"> 1000 msg/s"``.

    Raises ``ValueError`` for an unknown comparator.
    """
    parts = [label, _operator(op), _target_number(float(value)), unit]
    return " ".join(p for p in parts if p)


# --------------------------------------------------------------------------------------------------
# the keyword path: one figure against one target


@dataclass(frozen=True)
class Check:
    """The outcome of one comparison, as a keyword records and reports it.

    ``invalid_reason`` (e.g. the load generator was saturated) turns a miss into an invalid
    measurement: a saturated generator bounds the figure in one direction only, so a miss proves
    nothing about the SUT while a target met still holds.
    """

    name: str
    value: float
    op: str
    target: float
    unit: str
    ok: bool
    invalid_reason: str = ""

    @property
    def target_text(self) -> str:
        """The target as text, e.g. ``> 1000 msg/s`` (the ``target`` field of a metrics record)."""
        return format_target(self.op, self.target, self.unit)

    @property
    def verdict(self) -> Verdict:
        """``pass``, ``fail``, or ``invalid`` for a miss with an ``invalid_reason``."""
        if self.ok:
            return "pass"
        return "invalid" if self.invalid_reason else "fail"

    @property
    def message(self) -> str:
        """One line: ``<name>: <value> <unit> (target <op> <target> <unit>): PASS|FAIL``, prefixed with
        ``measurement invalid: <reason>;`` for an invalid measurement."""
        text = f"{self.name}: {fmt(self.value)} {self.unit} (target {self.target_text}): " \
               f"{'PASS' if self.ok else 'FAIL'}".replace("  ", " ")  # fmt: skip
        if self.verdict == "invalid":
            return f"measurement invalid: {self.invalid_reason}; {text}"
        return text


def headline(name: str, value: float, unit: str = "", check: Check | None = None) -> str:
    """A figure as a test message shows it: ``<name> <value> <unit>``, then ``(target ...)`` and, unless
    the target was met, the verdict.

    Example::

        >>> headline("bus write throughput", 54718.7, "msg/s", compare("x", 54718.7, ">", 1000, "msg/s"))
        'bus write throughput 54718.7 msg/s (target > 1000 msg/s)'
        >>> headline("agent run duration p95", 1.15, "s")
        'agent run duration p95 1.15 s'
    """
    text = f"{name} {fmt(value)} {unit}".strip()
    if check is not None:
        text += f" (target {check.target_text})"
        if check.verdict != "pass":
            text += f" {check.verdict.upper()}"
    return text


def compare(name: str, value: float, op: str, target: float, unit: str = "", *, invalid_reason: str = "") -> Check:
    """Compare ``value <op> target``. Raises ``ValueError`` for an unknown operator.

    Example::

        >>> compare("p95", 72.1, "<", 50, "ms").message
        'p95: 72.10 ms (target < 50 ms): FAIL'
    """
    canonical = _operator(op)
    ok = OPERATORS[canonical](float(value), float(target))
    return Check(name, float(value), canonical, float(target), unit, ok, invalid_reason)


def require(name: str, value: float, op: str, target: float, unit: str = "") -> Check:
    """Like :func:`compare` but raises :class:`TargetMissed` with the message when it fails."""
    check = compare(name, value, op, target, unit)
    if not check.ok:
        raise TargetMissed(check.message)
    return check
