"""Where a run's time goes: measurement windows against everything around them, from output.xml.

A run's wall time is the measurement windows the targets ask for (``BUS_DURATION``,
``API_DURATION``...) plus everything else: starting the SUT, seeding history, spawning workers,
checking files afterwards, restarting a killed SUT, starting scalene, rendering charts. This
module reads Robot's ``output.xml`` (plain XML, no Robot import) and attributes every second to one
of these parts, so the part that is not measurement can be found and cut.

A *measuring keyword* is one that drives a workload (its name starts with ``Measure`` or is one
of :data:`MEASURING`). Its *window* is its ``duration``/``window`` argument (or first positional
duration), resolved from ``resources/targets.resource`` and the run's profile when given as a
variable; time inside the keyword beyond the window is spawn, warm-up and checking work.

Example::

    python -m conductor_perf.report_cli timing results/latest
    report = analyse("results/latest/output.xml", profile="quick")
    print(render(report))
"""

from __future__ import annotations

import json
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
TARGETS = REPO / "resources" / "targets.resource"
PROFILES = REPO / "resources" / "profiles"
MEASURING = ("Run Concurrent Agents", "Run Leak Cycles", "Profile Embedded Conductor", "Profile Cpu Hot Spots",
             "Count Goroutines At The Peak Of A Load")
"""Measuring keywords whose names do not start with ``Measure``."""
WINDOW_ARGS = ("duration", "window")
_DEFINITION = re.compile(r"^\$\{(\w+)\}\s{2,}(\S.*?)\s*$")
_ENV_DEFAULT = re.compile(r"^%\{\w+=(.*)\}$")
_VARIABLE = re.compile(r"^\$\{(\w+)\}$")
_DURATION = re.compile(
    r"^\s*(\d+(?:\.\d+)?)\s*(ms|millis|milliseconds?|s|secs?|seconds?|m|mins?|minutes?|h|hours?)?\s*$", re.I
)
_UNIT_S = {"ms": 0.001, "milli": 0.001, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


def duration_seconds(text: str) -> float | None:
    """Seconds of a Robot duration such as ``10 s``, ``0.5 s``, ``2 min`` or ``3``; ``None`` otherwise."""
    match = _DURATION.match(text)
    if not match:
        return None
    unit = (match.group(2) or "s").lower()
    for prefix, factor in sorted(_UNIT_S.items(), key=lambda kv: -len(kv[0])):
        if unit.startswith(prefix):
            return float(match.group(1)) * factor
    return None  # pragma: no cover - the pattern admits only the units above


def target_values(profile: str = "default", targets: Path = TARGETS, profiles: Path = PROFILES) -> dict[str, str]:
    """``NAME -> value`` of the targets resource, overlaid with the profile's file (environment defaults)."""
    values: dict[str, str] = {}
    try:
        lines = targets.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        match = _DEFINITION.match(line)
        if match:
            name, value = match.groups()
            env = _ENV_DEFAULT.match(value)
            values[name] = env.group(1) if env else value
    path = profiles / f"{profile}.yaml"
    if profile != "default" and path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            name, sep, value = line.partition(":")
            if sep and not line.lstrip().startswith("#"):
                values[name.strip()] = value.strip()
    return values


@dataclass
class Item:
    """One timed piece: a suite or test set-up/teardown, or a keyword of a test body."""

    suite: str
    test: str
    keyword: str
    kind: str  # "suite setup", "suite teardown", "test setup", "test teardown", "measuring", "other"
    elapsed_s: float
    window_s: float | None = None

    @property
    def outside_s(self) -> float:
        """Seconds of this item outside a measurement window."""
        if self.window_s is not None:
            return max(0.0, self.elapsed_s - self.window_s)
        return 0.0 if self.kind == "measuring" else self.elapsed_s  # a counted workload is all measurement

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"suite": self.suite, "test": self.test, "keyword": self.keyword, "kind": self.kind,
                "elapsed_s": round(self.elapsed_s, 3), "window_s": self.window_s,
                "outside_s": round(self.outside_s, 3)}  # fmt: skip


@dataclass
class TimingReport:
    """Every timed piece of a run and the totals per kind."""

    source: str
    total_s: float
    tests: int
    items: list[Item] = field(default_factory=list)
    gaps_s: float = 0.0
    """Time inside tests and suites not spent in any keyword (Robot's own bookkeeping, library imports)."""

    def by_kind(self) -> dict[str, float]:
        """Seconds per kind of item, plus ``between keywords`` for the gaps."""
        out: dict[str, float] = {}
        for item in self.items:
            out[item.kind] = out.get(item.kind, 0.0) + item.elapsed_s
        out["between keywords"] = self.gaps_s
        return out

    @property
    def windows_s(self) -> float:
        """Sum of the declared measurement windows."""
        return sum(min(i.window_s, i.elapsed_s) for i in self.items if i.window_s is not None)

    @property
    def measuring_unwindowed_s(self) -> float:
        """Time in measuring keywords that declare no window (counted workloads: agents, bursts)."""
        return sum(i.elapsed_s for i in self.items if i.kind == "measuring" and i.window_s is None)

    @property
    def outside_s(self) -> float:
        """Time outside declared windows and outside window-less measuring keywords."""
        return self.total_s - self.windows_s - self.measuring_unwindowed_s

    def top(self, n: int = 15) -> list[Item]:
        """The ``n`` items with the most time outside measurement windows."""
        return sorted((i for i in self.items if i.outside_s > 0), key=lambda i: i.outside_s, reverse=True)[:n]

    def per_suite(self) -> dict[str, float]:
        """Seconds per suite (set-ups, tests and teardowns)."""
        out: dict[str, float] = {}
        for item in self.items:
            out[item.suite] = out.get(item.suite, 0.0) + item.elapsed_s
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain dict for JSON."""
        return {"source": self.source, "total_s": round(self.total_s, 3), "tests": self.tests,
                "windows_s": round(self.windows_s, 3), "measuring_unwindowed_s": round(self.measuring_unwindowed_s, 3),
                "outside_s": round(self.outside_s, 3), "by_kind": {k: round(v, 3) for k, v in self.by_kind().items()},
                "items": [i.to_dict() for i in self.items]}  # fmt: skip


def _elapsed(node: ET.Element) -> float:
    status = node.find("status")
    if status is None:
        return 0.0
    if "elapsed" in status.attrib:
        return float(status.attrib["elapsed"])
    # schema 4 (Robot 6): starttime/endtime "20261205 10:51:17.176"
    try:
        fmt = "%Y%m%d %H:%M:%S.%f"
        start = datetime.strptime(status.attrib["starttime"], fmt)
        end = datetime.strptime(status.attrib["endtime"], fmt)
    except (KeyError, ValueError):
        return 0.0
    return (end - start).total_seconds()


def _is_measuring(name: str) -> bool:
    return name.startswith("Measure ") or name in MEASURING


def _window(node: ET.Element, values: dict[str, str]) -> float | None:
    """The keyword's measurement window in seconds from its arguments, when it declares one."""
    positional: list[str] = []
    for arg in node.findall("arg"):
        text = (arg.text or "").strip()
        name, sep, value = text.partition("=")
        if sep and name in WINDOW_ARGS:
            return _resolve(value, values)
        if not sep:
            positional.append(text)
    if positional:  # `Measure Idle Stream Cpu    ${IDLE_WINDOW}`: a first positional duration
        first = positional[0]
        var = _VARIABLE.match(first)
        if var and any(w in var.group(1) for w in ("DURATION", "WINDOW")):
            return _resolve(first, values)
    return None


def _resolve(value: str, values: dict[str, str]) -> float | None:
    var = _VARIABLE.match(value.strip())
    if var:
        value = values.get(var.group(1), "")
    return duration_seconds(value) if value else None


def _keywords(node: ET.Element) -> list[ET.Element]:
    """Direct keyword children (``kw``), looking through control structures (IF, FOR, TRY...)."""
    out: list[ET.Element] = []
    for child in node:
        if child.tag == "kw":
            out.append(child)
        elif child.tag in ("if", "branch", "for", "iter", "while", "try", "group"):
            out.extend(_keywords(child))
    return out


def _split_body(node: ET.Element, values: dict[str, str], suite: str, test: str) -> list[Item]:
    """Items of a test body: a measuring keyword is one item; a user keyword that holds measuring keywords
    (a template) is opened so each measurement gets its own window."""
    items: list[Item] = []
    for kw in _keywords(node):
        name = kw.attrib.get("name", "")
        kind = kw.attrib.get("type", "")
        if kind in ("SETUP", "TEARDOWN"):
            continue
        elapsed = _elapsed(kw)
        if _is_measuring(name):
            items.append(Item(suite, test, name, "measuring", elapsed, _window(kw, values)))
            continue
        if _contains_measuring(kw):
            sub = _split_body(kw, values, suite, test)
            rest = elapsed - sum(i.elapsed_s for i in sub)
            items.extend(sub)
            if rest > 0:
                items.append(Item(suite, test, f"{name} (around its keywords)", "other", rest))
        else:
            items.append(Item(suite, test, name, "other", elapsed))
    return items


def _contains_measuring(node: ET.Element) -> bool:
    return any(_is_measuring(k.attrib.get("name", "")) or _contains_measuring(k) for k in _keywords(node))


def _suite_name(names: list[str]) -> str:
    return ".".join(names[1:]) if len(names) > 1 else (names[0] if names else "")


def analyse(output_xml: str | os.PathLike[str], *, profile: str | None = None) -> TimingReport:
    """Attribute the run time of ``output_xml`` to set-ups, measurements and the rest.

    ``profile`` (default: read from ``metrics.json`` beside it, else ``default``) resolves the
    window variables. Raises ``ValueError`` for a file that is not Robot output.
    """
    path = Path(output_xml)
    if path.is_dir():
        path = path / "output.xml"
    if not path.is_file():
        raise ValueError(f"{path}: no Robot output there (give a run directory or its output.xml)")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not Robot output ({exc})") from None
    top = root.find("suite")
    if root.tag != "robot" or top is None:
        raise ValueError(f"{path}: not Robot output (no <robot><suite>)")
    if profile is None:
        profile = _profile_of(path.parent)
    values = target_values(profile)
    report = TimingReport(source=str(path), total_s=_elapsed(top), tests=0)

    def walk(suite: ET.Element, names: list[str]) -> None:
        names = [*names, suite.attrib.get("name", "")]
        sname = _suite_name(names)
        spent = 0.0
        for child in suite:
            if child.tag == "kw" and child.attrib.get("type") in ("SETUP", "TEARDOWN"):
                kind = "suite setup" if child.attrib["type"] == "SETUP" else "suite teardown"
                item = Item(sname, "", child.attrib.get("name", ""), kind, _elapsed(child))
                report.items.append(item)
                spent += item.elapsed_s
            elif child.tag == "test":
                spent += test(child, sname)
            elif child.tag == "suite":
                walk(child, names)
                spent += _elapsed(child)
        report.gaps_s += max(0.0, _elapsed(suite) - spent)

    def test(node: ET.Element, sname: str) -> float:
        report.tests += 1
        tname = node.attrib.get("name", "")
        total = _elapsed(node)
        spent = 0.0
        for kw in _keywords(node):
            t = kw.attrib.get("type", "")
            if t in ("SETUP", "TEARDOWN"):
                item = Item(sname, tname, kw.attrib.get("name", ""), f"test {t.lower()}", _elapsed(kw))
                report.items.append(item)
                spent += item.elapsed_s
        for item in _split_body(node, values, sname, tname):
            report.items.append(item)
            spent += item.elapsed_s
        report.gaps_s += max(0.0, total - spent)
        return total

    walk(top, [])
    return report


def _profile_of(run_dir: Path) -> str:
    try:
        data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "default"
    return str(data.get("profile") or "default") if isinstance(data, dict) else "default"


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:5.1f} %" if whole > 0 else "    - "


def render(report: TimingReport, *, top: int = 15) -> str:
    """The report as text: totals per kind, windows against the rest, the largest pieces outside windows."""
    total = report.total_s
    lines = [f"{report.source}: {total:.1f} s of Robot run, {report.tests} tests", "", "where the time goes:"]
    for kind, secs in sorted(report.by_kind().items(), key=lambda kv: -kv[1]):
        lines.append(f"  {kind:<22} {secs:8.1f} s  {_pct(secs, total)}")
    lines += [
        "",
        f"  measurement windows    {report.windows_s:8.1f} s  {_pct(report.windows_s, total)}  (declared duration/window)",
        f"  counted workloads      {report.measuring_unwindowed_s:8.1f} s  {_pct(report.measuring_unwindowed_s, total)}"
        "  (measuring keywords without a window: agents, bursts, N reads)",
        f"  outside measurement    {report.outside_s:8.1f} s  {_pct(report.outside_s, total)}",
        "",
        "per suite:",
    ]
    for suite, secs in report.per_suite().items():
        lines.append(f"  {suite or '(top)':<22} {secs:8.1f} s  {_pct(secs, total)}")
    lines += ["", f"largest pieces outside measurement windows (top {top}):"]
    for item in report.top(top):
        where = f"{item.suite}" + (f" / {item.test}" if item.test else "")
        window = f" (window {item.window_s:g} s of {item.elapsed_s:.1f} s)" if item.window_s is not None else ""
        lines.append(f"  {item.outside_s:7.1f} s  {item.kind:<14} {item.keyword}{window}  [{where[:90]}]")
    return "\n".join(lines)
