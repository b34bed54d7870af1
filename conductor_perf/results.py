"""Run results as data: ``results/<run-id>/metrics.json``, run history and one-page summaries.

Schema (version 1)
==================

``metrics.json`` is one JSON object::

    {
      "schema_version": 1,
      "run_id": "20261127-183000-4242",          # new_run_id(): UTC time + pid, sorts by time
      "started": "2026-11-27T18:30:00+00:00",     # ISO 8601, UTC
      "finished": "2026-11-27T18:41:12+00:00",    # null while running
      "machine": {"cpu_model": str, "logical_cores": int, "physical_cores": int|null,
                  "usable_cores": int, "memory_bytes": int|null, "os": str,
                  "python": str, "python_implementation": str, "hostname": str},
      "commit": {"sha": str|null, "dirty": bool|null},   # of this repository; null without git
      "tools": {"robotframework": "7.5", "pabot": "5.2.2", "httpx": ..., "aiohttp": ...,
                "psutil": ..., "hdrhistogram": ..., "conductor-perf": ...},  # null = not installed
      "sut": {"kind": "embedded"|"external", "url": str|null, "version": str|null, "root": str|null},
      "profile": "default",
      "extra": {...},                              # free-form run notes (load average, pabot parts)
      "metrics": [MetricRecord, ...]
    }

Each metric record::

    {
      "suite": "Message Bus", "test": "Bus Throughput Meets Target",
      "metric": "throughput", "unit": "msg/s", "value": 1234.5,      # null when not measured
      "target": "> 1000 msg/s",                                      # null = informational
      "verdict": "pass" | "fail" | "skipped" | "invalid" | "info" (a figure without a target),
      "message": "human sentence, e.g. why skipped",
      "higher_is_better": true,            # optional; else inferred from target / unit
      "histogram": {"count": 10000, "min": .., "p50": .., "p90": .., "p95": .., "p99": ..,
                    "p99.9": .., "max": .., "mean": ..},     # optional, ms (LatencyHistogram.summary())
      "hdr": "HISTFAAA...",                # optional encoded HDR histogram (base64 text)
      "samples": [1190.2, 1234.5, ...],    # optional repeated measurements (regression gate)
      "series": {"msg/s": [[0, 1180.0], [1, 1250.5]]},   # optional chart data, x in seconds
      "extra": {"spans": [[label, start_s, end_s, status], ...], ...}   # optional, free-form
    }

The histogram summary is in milliseconds unless it has a ``"unit"`` key; the nested form
``{"percentiles": {"50": .., "99.9": ..}, "max": ..}`` is read as well (see
:func:`conductor_perf.charts.percentile_points`).

A target is a comparison text: ``"> 1000 msg/s"``, ``"<= 50 ms"``, ``"p95 < 50 ms"``; build one from
a number with :func:`format_target`. ``verdict`` may be left empty: it is then derived from the
value and target (no value → ``invalid``; no target → ``pass``, the figure is informational).

Parallel runs: each pabot process writes its own part file (:func:`part_path`) with the same
run id; :func:`merge` / :func:`merge_run_dir` concatenate the records into one ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import html
import importlib.metadata
import json
import math
import os
import platform
import re
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conductor_perf import charts

__all__ = [
    "HISTORY_FILE",
    "METRICS_FILE",
    "SCHEMA_VERSION",
    "VERDICTS",
    "MetricRecord",
    "ResultsError",
    "RunResults",
    "Target",
    "append_history",
    "format_number",
    "format_p",
    "format_target",
    "history_entry",
    "machine_info",
    "merge",
    "merge_run_dir",
    "new_run_id",
    "parse_target",
    "part_path",
    "read_history",
    "record_charts",
    "repo_commit",
    "resolve_baseline",
    "resolve_run",
    "summary_html",
    "summary_markdown",
    "tool_versions",
    "utc_now",
    "write_text_atomic",
]

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.jsonl"
PARTS_DIR = "parts"
VERDICTS = ("pass", "fail", "skipped", "invalid", "info")

#: distributions reported in ``tools``: key -> distribution name.
TOOL_DISTRIBUTIONS = {
    "robotframework": "robotframework",
    "pabot": "robotframework-pabot",
    "httpx": "httpx",
    "aiohttp": "aiohttp",
    "psutil": "psutil",
    "hdrhistogram": "hdrhistogram",
    "pyyaml": "PyYAML",
    "conductor-perf": "conductor-perf",
}


class ResultsError(ValueError):
    """A results file or run is missing or malformed; the message is one line for humans."""


def utc_now() -> str:
    """Current time as ISO 8601 UTC text with seconds, e.g. ``2026-11-27T18:30:00+00:00``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def _parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _json_clean(obj: Any) -> Any:
    """JSON-compatible deep copy: tuples to lists, keys to str, non-finite floats to None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): _json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars and similar
        return _json_clean(obj.item())
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


def _num(v: Any) -> float | None:
    if v is None or isinstance(v, bool):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


# --------------------------------------------------------------------------------------------------
# targets

_OPS = {"≤": "<=", "≥": ">=", "=<": "<=", "=>": ">=", "=": "=="}
_TARGET_RE = re.compile(
    r"^\s*(?P<label>[^<>=≤≥!]*?)\s*(?P<op><=|>=|=<|=>|==|!=|<|>|=|≤|≥)\s*"
    r"(?P<num>[-+]?(?:\d[\d_,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(?P<unit>.*?)\s*$"
)
_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0}
_BYTE_UNITS = {"b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 1024, "mib": 1024**2, "gib": 1024**3}


def _norm_unit(u: str) -> str:
    u = u.strip().replace("/sec", "/s").replace(" per second", "/s")
    for long, short in (("messages", "msg"), ("message", "msg"), ("requests", "req"), ("request", "req")):
        u = u.replace(long, short)
    for long, short in (("seconds", "s"), ("second", "s"), ("minutes", "min"), ("minute", "min")):
        if u == long:
            u = short
    return u


def _unit_factor(frm: str, to: str) -> float | None:
    """Multiplier converting a value in unit ``frm`` to unit ``to``; None when incompatible."""
    a, b = _norm_unit(frm), _norm_unit(to)
    if a == b or not a or not b:
        return 1.0
    if a in _TIME_UNITS and b in _TIME_UNITS:
        return _TIME_UNITS[a] / _TIME_UNITS[b]
    if a.lower() in _BYTE_UNITS and b.lower() in _BYTE_UNITS:
        return _BYTE_UNITS[a.lower()] / _BYTE_UNITS[b.lower()]
    if a.lower() == b.lower():
        return 1.0
    return None


@dataclass(frozen=True)
class Target:
    """A parsed target such as ``"p95 < 50 ms"``: ``label`` ``op`` ``value`` ``unit``."""

    op: str
    value: float
    unit: str = ""
    label: str = ""

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
        """The target value converted to ``unit`` (ms/s/min, bytes); None when incompatible."""
        f = _unit_factor(self.unit, unit)
        return None if f is None else self.value * f

    def check(self, value: float | None, unit: str = "") -> bool | None:
        """Whether ``value`` (in ``unit``) meets the target; None when it cannot be judged."""
        v, t = _num(value), self.threshold_in(unit)
        if v is None or t is None:
            return None
        return {
            "<": v < t,
            "<=": v <= t,
            ">": v > t,
            ">=": v >= t,
            "==": v == t,
            "!=": v != t,
        }[self.op]

    def headroom(self, value: float | None, unit: str = "") -> float | None:
        """Figure relative to target, oriented so that > 1 means better than the target.

        ``> 1000 msg/s`` measured 1500 → 1.5; ``< 50 ms`` measured 25 → 2.0.
        """
        v, t = _num(value), self.threshold_in(unit)
        if v is None or t is None or self.higher_is_better is None:
            return None
        if self.higher_is_better:
            return v / t if t else None
        return t / v if v else None


def parse_target(text: str | Target | None) -> Target | None:
    """Parse ``"> 1000 msg/s"``, ``"<=50ms"``, ``"p95 < 50 ms"``, ``"< 1,000 req/s"``; None if not a target."""
    if text is None:
        return None
    if isinstance(text, Target):
        return text
    m = _TARGET_RE.match(str(text))
    if not m:
        return None
    op = _OPS.get(m["op"], m["op"])
    num = float(m["num"].replace(",", "").replace("_", ""))
    return Target(op=op, value=num, unit=m["unit"], label=m["label"].strip())


def format_target(op: str, value: float, unit: str = "", *, label: str = "") -> str:
    """Target text from a comparator and number: ``format_target(">", 1000, "msg/s")`` → ``"> 1000 msg/s"``."""
    op = _OPS.get(op, op)
    if op not in ("<", "<=", ">", ">=", "==", "!="):
        raise ValueError(f"unknown comparator {op!r}; use <, <=, >, >=, == or !=")
    num = f"{value:g}" if abs(value) < 1e15 else repr(value)
    parts = [label, op, num, unit]
    return " ".join(p for p in parts if p)


_HIGHER_UNITS = re.compile(r"(/s$|/sec$|/min$|per second|ops|hz$|rps$|%\s*headroom)", re.I)
_LOWER_UNITS = {
    "ns",
    "us",
    "µs",
    "ms",
    "s",
    "sec",
    "min",
    "h",
    "b",
    "kb",
    "mb",
    "gb",
    "kib",
    "mib",
    "gib",
    "bytes",
    "%",
    "threads",
    "goroutines",
    "fds",
    "errors",
    "ratio",
}


def format_p(p: float | None) -> str:
    """A p-value as ``=0.034`` or ``<0.001`` (empty for None)."""
    if p is None:
        return ""
    return "<0.001" if p < 0.001 else f"={p:.3f}"


def format_number(v: float | None, unit: str = "") -> str:
    """A figure for humans: ``1,234`` / ``12.3`` / ``0.0123``, with the unit; ``—`` for None."""
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


# --------------------------------------------------------------------------------------------------
# records


@dataclass
class MetricRecord:
    """One measured figure of one test, with its target and verdict (see the module schema).

    Example::

        MetricRecord("Message Bus", "Bus Throughput Meets Target", "throughput", "msg/s", 1234.5,
                     target="> 1000 msg/s", samples=[1190.2, 1234.5, 1260.0])
    """

    suite: str
    test: str
    metric: str
    unit: str
    value: float | None
    target: str | None = None
    verdict: str = ""
    message: str = ""
    histogram: dict[str, Any] | None = None
    hdr: str | None = None
    samples: list[float] | None = None
    series: dict[str, list[list[float]]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    higher_is_better: bool | None = None

    def __post_init__(self) -> None:
        self.suite, self.test, self.metric, self.unit = (
            str(self.suite),
            str(self.test),
            str(self.metric),
            str(self.unit or ""),
        )
        self.value = _num(self.value)
        if isinstance(self.target, Target):
            self.target = str(self.target)
        elif self.target is not None and not isinstance(self.target, str):
            raise ValueError(f"target must be text like '> 1000 msg/s', got {self.target!r}")
        self.verdict = str(self.verdict or "").strip().lower()
        if not self.verdict:
            self.verdict = self._derived_verdict()
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {', '.join(VERDICTS)}, got {self.verdict!r}")
        self.message = str(self.message or "")
        if self.samples is not None:
            self.samples = [f for f in (_num(s) for s in self.samples) if f is not None]
        if self.series is not None:
            self.series = {
                str(name): [
                    [float(p[0]), float(p[1])]
                    for p in pts
                    if _num(p[0]) is not None and _num(p[1]) is not None
                ]
                for name, pts in self.series.items()
            }
        if self.histogram is not None:
            self.histogram = _json_clean(self.histogram)
        self.extra = _json_clean(self.extra or {})
        if self.hdr is not None and not isinstance(self.hdr, str):
            self.hdr = self.hdr.decode("ascii") if isinstance(self.hdr, bytes) else str(self.hdr)

    def _derived_verdict(self) -> str:
        if self.value is None:
            return "invalid"
        t = parse_target(self.target)
        if t is None:
            return "info"  # a context figure without a target neither passes nor fails
        ok = t.check(self.value, self.unit)
        return "invalid" if ok is None else ("pass" if ok else "fail")

    @property
    def key(self) -> tuple[str, str, str]:
        """``(suite, test, metric)``: how records are matched across runs."""
        return (self.suite, self.test, self.metric)

    @property
    def label(self) -> str:
        """``"suite / test / metric"`` for tables and messages."""
        return " / ".join(self.key)

    @property
    def parsed_target(self) -> Target | None:
        """The target as a :class:`Target`, or None."""
        return parse_target(self.target)

    def direction(self) -> bool | None:
        """Whether higher values are better: explicit field, else target comparator, else unit."""
        if self.higher_is_better is not None:
            return self.higher_is_better
        t = self.parsed_target
        if t is not None and t.higher_is_better is not None:
            return t.higher_is_better
        u = _norm_unit(self.unit)
        if _HIGHER_UNITS.search(u):
            return True
        if u.lower() in _LOWER_UNITS:
            return False
        return None

    def headroom(self) -> float | None:
        """Figure relative to target, > 1 better than the target (see :meth:`Target.headroom`)."""
        t = self.parsed_target
        return None if t is None else t.headroom(self.value, self.unit)

    def sample_values(self) -> list[float]:
        """The repeated measurements, or ``[value]`` when there are none (empty without a value)."""
        if self.samples:
            return list(self.samples)
        return [] if self.value is None else [self.value]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; optional fields left out when empty."""
        d: dict[str, Any] = {
            "suite": self.suite,
            "test": self.test,
            "metric": self.metric,
            "unit": self.unit,
            "value": self.value,
            "target": self.target,
            "verdict": self.verdict,
            "message": self.message,
        }
        for name in ("higher_is_better", "histogram", "hdr", "samples", "series"):
            v = getattr(self, name)
            if v is not None:
                d[name] = v
        if self.extra:
            d["extra"] = self.extra
        return _json_clean(d)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MetricRecord:
        """Inverse of :meth:`to_dict`; unknown keys are kept under ``extra["_unknown"]``."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing = [k for k in ("suite", "test", "metric") if k not in d]
        if missing:
            raise ValueError(f"metric record lacks {', '.join(missing)}")
        kwargs = {k: v for k, v in d.items() if k in names}
        unknown = {k: v for k, v in d.items() if k not in names}
        kwargs.setdefault("unit", "")
        kwargs.setdefault("value", None)
        rec = cls(**kwargs)
        if unknown:
            rec.extra.setdefault("_unknown", {}).update(_json_clean(unknown))
        return rec


# --------------------------------------------------------------------------------------------------
# machine, commit, tools


def new_run_id(now: float | None = None, pid: int | None = None) -> str:
    """A run id that sorts by start time: ``YYYYMMDD-HHMMSS-<pid>`` (UTC)."""
    t = time.gmtime(time.time() if now is None else now)
    return f"{time.strftime('%Y%m%d-%H%M%S', t)}-{os.getpid() if pid is None else pid}"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine() or "unknown"


def _memory_bytes() -> int | None:
    try:
        import psutil

        return int(psutil.virtual_memory().total)
    except Exception:  # noqa: BLE001 - psutil missing or unsupported platform
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, memory, OS, Python and hostname of this machine."""
    physical = None
    with contextlib.suppress(Exception):
        import psutil

        physical = psutil.cpu_count(logical=False)
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count() or 1
    return {
        "cpu_model": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": usable,
        "memory_bytes": _memory_bytes(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "python_implementation": platform.python_implementation(),
        "hostname": socket.gethostname(),
    }


def _repo_dir() -> Path:
    return Path(__file__).resolve().parent.parent


def repo_commit(path: str | os.PathLike[str] | None = None, *, timeout: float = 5.0) -> dict[str, Any]:
    """``{"sha": ..., "dirty": ...}`` of the git work tree at ``path`` (default: this repository).

    Both are None when git or the repository is unavailable; never raises.
    """
    cwd = str(path) if path is not None else str(_repo_dir())
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    return {"sha": sha or None, "dirty": bool(status.strip())}


def tool_versions(distributions: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Installed versions of the tools that shape the figures; None for a missing one."""
    out: dict[str, str | None] = {}
    for key, dist in (distributions or TOOL_DISTRIBUTIONS).items():
        try:
            out[key] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[key] = None
    return out


def _load_avg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


# --------------------------------------------------------------------------------------------------
# run results


def _empty_sut() -> dict[str, Any]:
    return {"kind": None, "url": None, "version": None, "root": None}


@dataclass
class RunResults:
    """All records of one run plus what is needed to compare runs (machine, commit, versions, SUT).

    Example::

        run = RunResults.new(profile="default", sut={"kind": "embedded", "url": url})
        run.add(MetricRecord("Bus", "Throughput", "throughput", "msg/s", 1234.5, target="> 1000 msg/s"))
        run.finish()
        run.write("results/" + run.run_id)
    """

    run_id: str
    started: str | None = None
    finished: str | None = None
    machine: dict[str, Any] = field(default_factory=dict)
    commit: dict[str, Any] = field(default_factory=lambda: {"sha": None, "dirty": None})
    tools: dict[str, Any] = field(default_factory=dict)
    sut: dict[str, Any] = field(default_factory=_empty_sut)
    profile: str | None = None
    metrics: list[MetricRecord] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def new(
        cls,
        run_id: str | None = None,
        *,
        profile: str | None = None,
        sut: Mapping[str, Any] | None = None,
        repo: str | os.PathLike[str] | None = None,
    ) -> RunResults:
        """A run started now, with machine info, commit and tool versions filled in."""
        s = _empty_sut()
        s.update(sut or {})
        return cls(
            run_id=run_id or new_run_id(),
            started=utc_now(),
            machine=machine_info(),
            commit=repo_commit(repo),
            tools=tool_versions(),
            sut=_json_clean(s),
            profile=profile,
            extra={"load_avg_start": _load_avg()},
        )

    def add(self, record: MetricRecord) -> MetricRecord:
        """Append a record (returned for chaining)."""
        if not isinstance(record, MetricRecord):
            raise TypeError(f"expected MetricRecord, got {type(record).__name__}")
        self.metrics.append(record)
        return record

    def finish(self) -> None:
        """Stamp the finish time (and the load average, a hint of how shared the machine was)."""
        self.finished = utc_now()
        self.extra["load_avg_end"] = _load_avg()

    # queries ---------------------------------------------------------------------------------
    def counts(self) -> dict[str, int]:
        """Number of records per verdict (all four verdicts present)."""
        c = dict.fromkeys(VERDICTS, 0)
        for r in self.metrics:
            c[r.verdict] = c.get(r.verdict, 0) + 1
        return c

    @property
    def passed(self) -> bool:
        """True when no record failed or is invalid (skipped ones do not fail a run)."""
        return all(r.verdict in ("pass", "skipped", "info") for r in self.metrics)

    def find(self, suite: str, test: str, metric: str) -> MetricRecord | None:
        """The last record with this key, or None."""
        for r in reversed(self.metrics):
            if r.key == (suite, test, metric):
                return r
        return None

    # (de)serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict in schema order."""
        return {
            "schema_version": self.schema_version,
            "run_id": self.run_id,
            "started": self.started,
            "finished": self.finished,
            "machine": _json_clean(self.machine),
            "commit": _json_clean(self.commit),
            "tools": _json_clean(self.tools),
            "sut": _json_clean(self.sut),
            "profile": self.profile,
            "extra": _json_clean(self.extra),
            "metrics": [r.to_dict() for r in self.metrics],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "results") -> RunResults:
        """Build from a parsed ``metrics.json`` (or history line); :class:`ResultsError` if malformed."""
        if not isinstance(d, Mapping):
            raise ResultsError(f"{source}: not a metrics file (top level is not an object)")
        if "run_id" not in d or "metrics" not in d:
            raise ResultsError(f"{source}: not a metrics file (no 'run_id' or 'metrics')")
        version = d.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise ResultsError(
                f"{source}: schema version {version!r} is newer than supported {SCHEMA_VERSION}"
            )
        if not isinstance(d["metrics"], list):
            raise ResultsError(f"{source}: 'metrics' is not a list")
        records = []
        for i, m in enumerate(d["metrics"]):
            try:
                if not isinstance(m, Mapping):
                    raise ValueError("not an object")
                records.append(MetricRecord.from_dict(m))
            except (TypeError, ValueError) as e:
                raise ResultsError(f"{source}: metric #{i + 1}: {e}") from None
        sut = _empty_sut()
        sut.update(d.get("sut") or {})
        return cls(
            run_id=str(d["run_id"]),
            started=d.get("started"),
            finished=d.get("finished"),
            machine=dict(d.get("machine") or {}),
            commit=dict(d.get("commit") or {"sha": None, "dirty": None}),
            tools=dict(d.get("tools") or {}),
            sut=sut,
            profile=d.get("profile"),
            metrics=records,
            extra=dict(d.get("extra") or {}),
            schema_version=SCHEMA_VERSION,
        )

    def to_json(self) -> str:
        """The ``metrics.json`` text."""
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False, allow_nan=False) + "\n"

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename). ``path`` is a file, or a directory for ``metrics.json``."""
        p = Path(path)
        if p.is_dir() or (not p.suffix and not p.exists()):
            p = p / METRICS_FILE
        write_text_atomic(p, self.to_json())
        return p

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RunResults:
        """Read a ``metrics.json`` (or the one in a run directory); :class:`ResultsError` if unusable."""
        p = Path(path)
        if p.is_dir():
            p = p / METRICS_FILE
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ResultsError(f"{p}: no such file") from None
        except OSError as e:
            raise ResultsError(f"{p}: cannot read ({e.strerror or e})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ResultsError(f"{p}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
        return cls.from_dict(data, source=str(p))


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temp file in the same directory, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


# --------------------------------------------------------------------------------------------------
# merging per-process files

_MERGED_FIELDS = ("machine", "commit", "tools", "sut", "profile")


def merge(files: Iterable[str | os.PathLike[str] | RunResults]) -> RunResults:
    """Merge the per-process results of one run (pabot) into one.

    Records are concatenated in the order given; ``started`` is the earliest start, ``finished``
    the latest finish (None if any part has not finished). Metadata (machine, commit, tools, SUT,
    profile) is kept when identical; a field that differs keeps the first non-empty value and is
    listed in ``extra["merge_conflicts"]``. ``extra`` dicts are united (first value wins) and
    ``extra["merged_parts"]`` counts the parts. Parts with different run ids raise :class:`ResultsError`.
    """
    parts = [f if isinstance(f, RunResults) else RunResults.load(f) for f in files]
    if not parts:
        raise ResultsError("nothing to merge: no result files")
    ids = sorted({p.run_id for p in parts})
    if len(ids) > 1:
        raise ResultsError(f"cannot merge different runs: {', '.join(ids)}")
    first = parts[0]
    out = RunResults(run_id=first.run_id)
    conflicts: set[str] = set()
    for name in _MERGED_FIELDS:
        values = [getattr(p, name) for p in parts]
        nonempty = [v for v in values if v not in (None, {}, "")]
        chosen = nonempty[0] if nonempty else values[0]
        if any(v != chosen for v in nonempty):
            conflicts.add(name)
        setattr(out, name, json.loads(json.dumps(chosen)))
    starts = [(t, p.started) for p in parts if (t := _parse_time(p.started))]
    out.started = min(starts)[1] if starts else None
    ends = [(_parse_time(p.finished), p.finished) for p in parts]
    out.finished = None if any(t is None for t, _ in ends) else max(ends)[1]
    extra: dict[str, Any] = {}
    for p in parts:
        for k, v in p.extra.items():
            if k in ("merged_parts", "merge_conflicts"):
                continue
            extra.setdefault(k, v)
    prior = sum(int(p.extra.get("merged_parts", 1)) for p in parts)
    extra["merged_parts"] = prior
    old_conflicts = {c for p in parts for c in p.extra.get("merge_conflicts", [])}
    if conflicts | old_conflicts:
        extra["merge_conflicts"] = sorted(conflicts | old_conflicts)
    out.extra = extra
    out.metrics = [MetricRecord.from_dict(r.to_dict()) for p in parts for r in p.metrics]
    return out


def part_path(run_dir: str | os.PathLike[str], worker: str | int | None = None) -> Path:
    """Where one process writes its part of a run: ``<run_dir>/parts/metrics-<worker or pid>.json``."""
    w = re.sub(r"[^A-Za-z0-9_.-]", "_", str(worker if worker is not None else os.getpid()))
    return Path(run_dir) / PARTS_DIR / f"metrics-{w}.json"


def merge_run_dir(run_dir: str | os.PathLike[str], *, write: bool = True) -> RunResults:
    """Merge ``<run_dir>/parts/*.json`` into ``<run_dir>/metrics.json`` (idempotent) and return it.

    Without part files the existing ``metrics.json`` is returned unchanged.
    """
    d = Path(run_dir)
    parts = sorted((d / PARTS_DIR).glob("*.json"))
    if not parts:
        return RunResults.load(d)
    merged = merge(parts)
    if write:
        merged.write(d / METRICS_FILE)
    return merged


# --------------------------------------------------------------------------------------------------
# history


def history_entry(run: RunResults) -> dict[str, Any]:
    """One history line: the run without bulky per-record data (HDR, series), plus verdict counts."""
    d = run.to_dict()
    for m in d["metrics"]:
        m.pop("hdr", None)
        m.pop("series", None)
    d["counts"] = run.counts()
    d["passed"] = run.passed
    return d


def append_history(history_path: str | os.PathLike[str], run: RunResults) -> Path:
    """Append one JSON line for ``run`` to ``history.jsonl`` (locked, single write; safe across processes).

    A torn last line left by a crashed writer is terminated first, so it cannot swallow this entry.
    """
    p = Path(history_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(history_entry(run), ensure_ascii=False, separators=(",", ":"), allow_nan=False) + "\n"
    data = line.encode("utf-8")
    with open(p, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            end = f.seek(0, os.SEEK_END)
            if end > 0:
                f.seek(end - 1)
                if f.read(1) != b"\n":  # a torn line from a crashed writer: do not glue onto it
                    data = b"\n" + data
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return p


def read_history(history_path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """History entries oldest first; a run appended twice keeps its last entry (at its last position).

    Malformed lines (a torn write) are skipped. A missing file raises :class:`ResultsError`.
    """
    p = Path(history_path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such file") from None
    except OSError as e:
        raise ResultsError(f"{p}: cannot read ({e.strerror or e})") from None
    by_id: dict[str, dict[str, Any]] = {}
    for line in lines:
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and "run_id" in entry:
            by_id.pop(str(entry["run_id"]), None)
            by_id[str(entry["run_id"])] = entry
    return list(by_id.values())


def resolve_run(
    spec: str | os.PathLike[str], *, results_dir: str | os.PathLike[str] = "results"
) -> RunResults:
    """Load a run given a metrics file, a run directory, a run id under ``results_dir`` or ``latest``."""
    p = Path(spec)
    if p.exists():
        return RunResults.load(p)
    candidate = Path(results_dir) / str(spec)
    if candidate.exists():
        return RunResults.load(candidate)
    raise ResultsError(f"{spec}: no such run (not a file, a directory, or a run id under {results_dir})")


def resolve_baseline(
    spec: str,
    *,
    results_dir: str | os.PathLike[str] = "results",
    history_path: str | os.PathLike[str] | None = None,
    exclude_run_id: str | None = None,
    profile: str | None = None,
) -> RunResults:
    """Find the baseline run.

    ``spec`` is a metrics file or run directory; ``latest`` (newest run in the history) or
    ``latest-passing`` (newest run without failed or invalid records); or a run id, looked up
    under ``results_dir`` and then in the history (whose lines carry the samples, so a baseline
    survives the deletion of its directory). ``exclude_run_id`` (the current run) is never chosen.
    With ``profile``, ``latest``/``latest-passing`` only consider runs of that profile (a quick
    run's shorter durations and smaller histories are no baseline for a default run).
    """
    hist = Path(history_path) if history_path is not None else Path(results_dir) / HISTORY_FILE
    if spec in ("latest", "latest-passing"):
        entries = [e for e in read_history(hist) if str(e.get("run_id")) != exclude_run_id]
        if profile:
            entries = [e for e in entries if (e.get("profile") or "default") == profile]
        if spec == "latest-passing":
            entries = [e for e in entries if e.get("passed")]
        if not entries:
            kind = "passing " if spec == "latest-passing" else ""
            raise ResultsError(f"{hist}: no {kind}run{f' of profile {profile}' if profile else ''} to use as baseline")
        entry = entries[-1]
        run_dir = Path(results_dir) / str(entry["run_id"])
        if (run_dir / METRICS_FILE).exists():
            return RunResults.load(run_dir)
        return RunResults.from_dict(entry, source=f"{hist} ({entry['run_id']})")
    p = Path(spec)
    if p.exists():
        return RunResults.load(p)
    run_dir = Path(results_dir) / spec
    if run_dir.exists():
        return RunResults.load(run_dir)
    if hist.exists():
        for entry in reversed(read_history(hist)):
            if str(entry.get("run_id")) == spec:
                return RunResults.from_dict(entry, source=f"{hist} ({spec})")
    raise ResultsError(f"baseline {spec!r} not found (no file, no run under {results_dir}, not in {hist})")


# --------------------------------------------------------------------------------------------------
# summaries


def _comparison_map(run: RunResults, baseline: RunResults | None, comparisons: Any) -> dict[tuple, Any]:
    if comparisons is None and baseline is not None:
        from conductor_perf.regression import compare_runs

        comparisons = compare_runs(baseline, run)
    out: dict[tuple, Any] = {}
    for c in comparisons or []:
        key = getattr(c, "key", None)
        if key is not None:
            out[tuple(key)] = c
    return out


def _md_cell(s: object) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ")


def _duration(run: RunResults) -> str:
    a, b = _parse_time(run.started), _parse_time(run.finished)
    if not a or not b:
        return ""
    secs = int((b - a).total_seconds())
    return f" ({secs // 60} min {secs % 60} s)" if secs >= 60 else f" ({secs} s)"


def _header_facts(
    run: RunResults, baseline: RunResults | None, comps: Mapping[tuple, Any]
) -> list[tuple[str, str]]:
    c = run.counts()
    verdict = "PASS" if run.passed else "FAIL"
    m = run.machine
    mem = m.get("memory_bytes")
    mem_s = f"{mem / 2**30:.1f} GiB" if isinstance(mem, (int, float)) else "?"
    sha = run.commit.get("sha")
    commit = "unknown (no git)" if not sha else f"{sha[:12]}{' (dirty)' if run.commit.get('dirty') else ''}"
    sut = run.sut
    facts = [
        (
            "Verdict",
            f"{verdict}: {c['pass']} pass, {c['fail']} fail, {c['skipped']} skipped, {c['invalid']} invalid",
        ),
        ("Run", f"{run.run_id}, {run.started or '?'} → {run.finished or 'unfinished'}{_duration(run)}"),
        ("Profile", str(run.profile or "—")),
        (
            "SUT",
            f"{sut.get('kind') or '?'} {sut.get('url') or ''} version {sut.get('version') or '?'}"
            f"{(' root ' + str(sut.get('root'))) if sut.get('root') else ''}",
        ),
        ("Commit", commit),
        (
            "Machine",
            f"{m.get('cpu_model', '?')}, {m.get('logical_cores', '?')} logical cores "
            f"({m.get('usable_cores', '?')} usable), {mem_s}, {m.get('os', '?')}, Python {m.get('python', '?')}, "
            f"host {m.get('hostname', '?')}",
        ),
        ("Tools", ", ".join(f"{k} {v}" for k, v in run.tools.items() if v) or "—"),
    ]
    la = run.extra.get("load_avg_start")
    if la:
        facts.append(("Load average at start", " ".join(str(x) for x in la)))
    if baseline is not None:
        verdicts = [getattr(x, "verdict", "") for x in comps.values()]
        bsha = (baseline.commit.get("sha") or "")[:12] or "no git"
        facts.append(
            (
                "Baseline",
                f"{baseline.run_id} (commit {bsha}): {verdicts.count('regression')} regression(s), "
                f"{verdicts.count('improvement')} improvement(s), {verdicts.count('same')} same",
            )
        )
        from conductor_perf.regression import comparability_warnings

        for w in comparability_warnings(baseline, run):
            facts.append(("Warning", w))
    return facts


def _row(r: MetricRecord, baseline: RunResults | None, comps: Mapping[tuple, Any]) -> dict[str, str]:
    b = baseline.find(*r.key) if baseline is not None else None
    comp = comps.get(r.key)
    change = "—"
    gate = "—"
    if comp is not None:
        d = getattr(comp, "delta_pct", None)
        change = f"{d:+.1f}%" if isinstance(d, (int, float)) and math.isfinite(d) else "—"
        p = getattr(comp, "p", None)
        gate = str(getattr(comp, "verdict", ""))
        reason = getattr(comp, "reason", "")
        if reason and reason != "ok":
            gate += f" ({reason})"
        elif isinstance(p, (int, float)):
            gate += f" (p{format_p(p)})"
    elif b is not None and b.value and r.value is not None:
        change = f"{(r.value - b.value) / abs(b.value) * 100:+.1f}%"
    figure = format_number(r.value, r.unit)
    if r.samples and len(r.samples) > 1:
        figure += f" (n={len(r.samples)})"
    return {
        "suite": r.suite,
        "test": r.test,
        "metric": r.metric,
        "figure": figure,
        "target": r.target or "—",
        "verdict": r.verdict,
        "baseline": format_number(b.value, b.unit) if b is not None else "—",
        "change": change,
        "gate": gate,
        "message": r.message,
    }


_COLUMNS = [
    ("suite", "Suite"),
    ("test", "Test"),
    ("metric", "Metric"),
    ("figure", "Figure"),
    ("target", "Target"),
    ("verdict", "Verdict"),
    ("baseline", "Baseline"),
    ("change", "Change"),
    ("gate", "Regression gate"),
]


def summary_markdown(run: RunResults, baseline: RunResults | None = None, comparisons: Any = None) -> str:
    """One-page Markdown summary: run facts, then every target with figure, verdict and change vs baseline.

    ``comparisons`` is the output of :func:`conductor_perf.regression.compare_runs`; when omitted and a
    baseline is given it is computed with the default gate.
    """
    comps = _comparison_map(run, baseline, comparisons)
    lines = [f"# Performance run {run.run_id}", ""]
    lines += [f"- **{k}:** {_md_cell(v)}" for k, v in _header_facts(run, baseline, comps)]
    lines += ["", "## Targets", ""]
    cols = _COLUMNS if baseline is not None or comps else _COLUMNS[:6]
    lines.append("| " + " | ".join(h for _, h in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for r in run.metrics:
        row = _row(r, baseline, comps)
        row["verdict"] = row["verdict"].upper() if row["verdict"] in ("fail", "invalid") else row["verdict"]
        lines.append("| " + " | ".join(_md_cell(row[k]) for k, _ in cols) + " |")
    if not run.metrics:
        lines.append("| " + " | ".join("—" for _ in cols) + " |")
    notes = [r for r in run.metrics if r.verdict not in ("pass", "info") and r.message]
    if notes:
        lines += ["", "## Not passing", ""]
        lines += [f"- **{r.verdict}** {_md_cell(r.label)}: {_md_cell(r.message)}" for r in notes]
    if baseline is not None or comps:
        lines += [
            "",
            "Regression gate: Mann-Whitney U rank test on the repeated samples plus a minimum effect size; "
            "a change is a regression only when it is both significant and larger than the noise.",
        ]
    return "\n".join(lines) + "\n"


def record_charts(record: MetricRecord) -> list[str]:
    """SVG charts suitable for one record: its series over time, its latency percentile curve,
    and its timeline spans (``extra["spans"]``). Empty list when it carries no chart data."""
    out: list[str] = []
    t = record.parsed_target
    threshold = t.threshold_in(record.unit) if t is not None else None
    name = f"{record.test}: {record.metric}"
    if record.series:
        out.append(
            charts.line_chart(
                record.series,
                f"{name} over time",
                str(record.extra.get("x_label", "time (s)")),
                str(
                    record.extra.get(
                        "y_label", f"{record.metric} ({record.unit})" if record.unit else record.metric
                    )
                ),
                target=threshold,
                target_label=f"target {record.target}" if threshold is not None else None,
            )
        )
    if record.histogram and charts.percentile_points(record.histogram):
        hunit = str(record.histogram.get("unit", "ms"))
        ht = t.threshold_in(hunit) if t is not None else None
        out.append(
            charts.percentile_curve(
                record.histogram,
                f"{name} by percentile",
                target_ms=ht,
                target_label=f"target {record.target}" if ht is not None else None,
                y_label=f"latency ({hunit})",
            )
        )
    spans = record.extra.get("spans")
    if isinstance(spans, list) and spans:
        tt = t.threshold_in("s") if t is not None else None
        out.append(
            charts.timeline(
                spans,
                f"{name}: timeline",
                "time (s)",
                target=tt,
                target_label=f"target {record.target}" if tt is not None else None,
            )
        )
    return out


def _headroom_chart(run: RunResults) -> str | None:
    bars: list[tuple[str, float]] = []
    statuses: dict[str, str] = {}
    for r in run.metrics:
        h = r.headroom()
        if h is not None and h > 0:
            label = f"{r.test}: {r.metric}"
            bars.append((label, h))
            statuses[label] = r.verdict
    if not bars:
        return None
    vals = [v for _, v in bars]
    log = max(vals) / min(vals) > 20
    return charts.bar_chart(
        bars,
        "Headroom per target (figure relative to target; > 1 passes)",
        "× target",
        target=1.0,
        target_label="target",
        statuses=statuses,
        log=log,
    )


_CSS = """
body{font-family:DejaVu Sans,Arial,Helvetica,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px}
dl{display:grid;grid-template-columns:max-content auto;gap:2px 14px;font-size:13px}
dt{font-weight:bold}dd{margin:0}
table{border-collapse:collapse;font-size:13px;width:100%}
th,td{border:1px solid #ddd;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.num{text-align:right;white-space:nowrap}
.v{font-weight:bold;padding:1px 6px;border-radius:3px;color:#fff}
.v-pass{background:#2e7d32}.v-fail{background:#c62828}.v-skipped{background:#757575}.v-invalid{background:#8e24aa}
.g-regression{color:#c62828;font-weight:bold}.g-improvement{color:#2e7d32;font-weight:bold}
.charts{display:flex;flex-wrap:wrap;gap:16px}.chart svg{max-width:100%;height:auto}
.msg{color:#555;font-size:12px}
"""


def summary_html(
    run: RunResults,
    baseline: RunResults | None = None,
    comparisons: Any = None,
    *,
    charts_per_record: bool = True,
) -> str:
    """One self-contained HTML page: the facts and table of :func:`summary_markdown`, a headroom
    chart of every target, and each record's charts (inline SVG, no external resources)."""
    comps = _comparison_map(run, baseline, comparisons)
    e = html.escape
    facts = "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in _header_facts(run, baseline, comps))
    cols = _COLUMNS if baseline is not None or comps else _COLUMNS[:6]
    head = "".join(f"<th>{e(h)}</th>" for _, h in cols)
    body = []
    for r in run.metrics:
        row = _row(r, baseline, comps)
        cells = []
        for k, _ in cols:
            v = row[k]
            if k == "verdict":
                cells.append(f'<td><span class="v v-{e(v)}">{e(v)}</span></td>')
            elif k == "gate":
                word = v.split(" ")[0]
                cells.append(f'<td class="g-{e(word)}">{e(v)}</td>')
            elif k in ("figure", "baseline", "change"):
                cells.append(f'<td class="num">{e(v)}</td>')
            elif k == "test" and r.message:
                cells.append(f'<td>{e(v)}<div class="msg">{e(r.message)}</div></td>')
            else:
                cells.append(f"<td>{e(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    svgs: list[tuple[str, str]] = []
    hr = _headroom_chart(run)
    if hr:
        svgs.append(("Headroom", hr))
    if charts_per_record:
        for r in run.metrics:
            svgs.extend((r.label, s) for s in record_charts(r))
    chart_html = "".join(charts.svg_img_html(s, inline=True, max_width="660px") for _, s in svgs)
    verdict = "PASS" if run.passed else "FAIL"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(verdict)} · performance run {e(run.run_id)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>Performance run {e(run.run_id)}: {e(verdict)}</h1>",
        f"<dl>{facts}</dl>",
        "<h2>Targets</h2>",
        f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>",
    ]
    if baseline is not None or comps:
        parts.append(
            '<p class="msg">Regression gate: Mann-Whitney U rank test on repeated samples plus a minimum '
            "effect size; a change is a regression only when significant and larger than the noise.</p>"
        )
    if chart_html:
        parts += ["<h2>Charts</h2>", f'<div class="charts">{chart_html}</div>']
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
