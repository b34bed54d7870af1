"""Comparing a measured figure with its target, with a message that names figure, target and unit."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class TargetMissed(AssertionError):
    """A figure did not meet its target."""


@dataclass(frozen=True)
class Check:
    """The outcome of one comparison."""

    name: str
    value: float
    op: str
    target: float
    unit: str
    ok: bool

    @property
    def target_text(self) -> str:
        """The target as text, e.g. ``> 1000 msg/s``."""
        return f"{self.op} {fmt(self.target)} {self.unit}".strip()

    @property
    def message(self) -> str:
        """One line: ``<name>: <value> <unit> (target <op> <target> <unit>): PASS|FAIL``."""
        verdict = "PASS" if self.ok else "FAIL"
        return f"{self.name}: {fmt(self.value)} {self.unit} (target {self.target_text}): {verdict}".replace(
            "  ", " "
        )


def fmt(value: float) -> str:
    """Human figure: integers as such, otherwise 3 significant decimals."""
    if value != value:  # NaN
        return "nan"
    if abs(value - round(value)) < 1e-9 and abs(value) < 1e15:
        return str(int(round(value)))
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def compare(name: str, value: float, op: str, target: float, unit: str = "") -> Check:
    """Compare ``value <op> target``. Raises ``ValueError`` for an unknown operator."""
    op = op.strip()
    if op not in OPERATORS:
        raise ValueError(f"unknown operator {op!r}; use one of {' '.join(OPERATORS)}")
    return Check(name, float(value), op, float(target), unit, OPERATORS[op](float(value), float(target)))


def require(name: str, value: float, op: str, target: float, unit: str = "") -> Check:
    """Like :func:`compare` but raises :class:`TargetMissed` with the message when it fails."""
    check = compare(name, value, op, target, unit)
    if not check.ok:
        raise TargetMissed(check.message)
    return check
