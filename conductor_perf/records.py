"""The record model of a run: :class:`MetricRecord`, :class:`RunResults`, ``metrics.json`` and its parts.

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
      "sut": {"kind": "embedded"|"binary"|"external", "url": str|null, "version": str|null, "root": str|null,
              "pid": int|null,
              "binary": str, "binary_sha256": str, "binary_version": str,   # kind "binary" only
              "capabilities": {"can_restart": bool, "pid": bool, "auth": bool, "profiler": str|null,
                               "goroutines": str|null}},
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

A target is a comparison text in the grammar of :mod:`conductor_perf.verdict` (``"> 1000 msg/s"``,
``"<= 50 ms"``, ``"p95 < 50 ms"``). ``verdict`` may be left empty: it is then derived from the value
and target (no value → ``invalid``; no target → ``info``, the figure is informational).

``sut`` is the identity of the system under test as :meth:`conductor_perf.target.Target.describe`
gives it (plus ``pid``, and ``binary_sha256`` for a binary the suite starts); see
:class:`conductor_perf.environment.SutIdentity`. Machine, commit and tools come from
:mod:`conductor_perf.environment`.

While a run measures, each process (pabot runs several) appends its records to its own file under
``metrics.d`` (:class:`MetricSink`); the report step reads them all (:func:`load_records`) into the
one ``metrics.json``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conductor_perf import environment
from conductor_perf.verdict import Target, finite, parse_target, unit_direction

__all__ = [
    "METRICS_FILE",
    "RECORDS_DIR",
    "SCHEMA_VERSION",
    "VERDICTS",
    "MetricRecord",
    "MetricSink",
    "ResultsError",
    "RunResults",
    "json_clean",
    "load_records",
    "new_run_id",
    "parse_time",
    "utc_now",
    "write_text_atomic",
]

SCHEMA_VERSION = 1
METRICS_FILE = "metrics.json"
RECORDS_DIR = "metrics.d"
"""Folder of a run directory with one JSON-lines file of metric records per process (:class:`MetricSink`)."""
VERDICTS = ("pass", "fail", "skipped", "invalid", "info")


class ResultsError(ValueError):
    """A results file or run is missing or malformed; the message is one line for humans."""


def utc_now() -> str:
    """Current time as ISO 8601 UTC text with seconds, e.g. ``2026-11-27T18:30:00+00:00``."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def json_clean(obj: Any) -> Any:
    """JSON-compatible deep copy: tuples to lists, keys to str, non-finite floats to None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    if isinstance(obj, Mapping):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars and similar
        return json_clean(obj.item())
    raise TypeError(f"not JSON-serialisable: {type(obj).__name__}")


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
        self.value = finite(self.value)
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
            self.samples = [f for f in (finite(s) for s in self.samples) if f is not None]
        if self.series is not None:
            self.series = {
                str(name): [
                    [float(p[0]), float(p[1])]
                    for p in pts
                    if finite(p[0]) is not None and finite(p[1]) is not None
                ]
                for name, pts in self.series.items()
            }
        if self.histogram is not None:
            self.histogram = json_clean(self.histogram)
        self.extra = json_clean(self.extra or {})
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
        return unit_direction(self.unit)

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
        return json_clean(d)

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
            rec.extra.setdefault("_unknown", {}).update(json_clean(unknown))
        return rec


# --------------------------------------------------------------------------------------------------
# run results


def new_run_id(now: float | None = None, pid: int | None = None) -> str:
    """A run id that sorts by start time: ``YYYYMMDD-HHMMSS-<pid>`` (UTC)."""
    t = time.gmtime(time.time() if now is None else now)
    return f"{time.strftime('%Y%m%d-%H%M%S', t)}-{os.getpid() if pid is None else pid}"


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
            machine=environment.machine_info(),
            commit=environment.repo_commit(repo),
            tools=environment.tool_versions(),
            sut=json_clean(s),
            profile=profile,
            extra={"load_avg_start": environment.load_avg()},
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
        self.extra["load_avg_end"] = environment.load_avg()

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

    @property
    def identity(self) -> environment.SutIdentity:
        """Which conductor this run measured (kind, version, binary hash), from :attr:`sut`."""
        return environment.SutIdentity.of(self.sut)

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
            "machine": json_clean(self.machine),
            "commit": json_clean(self.commit),
            "tools": json_clean(self.tools),
            "sut": json_clean(self.sut),
            "profile": self.profile,
            "extra": json_clean(self.extra),
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
# the records of a run in progress: one JSON-lines file per process under metrics.d


class MetricSink:
    """Where measured figures go while a run measures: kept in memory and appended to this process's
    JSON-lines file ``<directory>/<pid>.jsonl`` the moment they are measured, so a crash keeps what
    was collected and parallel processes (pabot) never interleave; :func:`load_records` reads them all.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.records: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """This process's file (one per process, so parallel writers never interleave)."""
        return self.directory / f"{os.getpid()}.jsonl"

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append one record (a dict with a ``time``) to memory and to the file; returns it."""
        rec = {"time": time.time(), **fields}
        with self._lock:
            self.records.append(rec)
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")
        return rec

    def last(self, metric: str) -> dict[str, Any] | None:
        """The latest record of a metric in this process."""
        for rec in reversed(self.records):
            if rec.get("metric") == metric:
                return rec
        return None


def load_records(results_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every metric record written under ``results_dir/metrics.d`` (all processes), in time order."""
    out: list[dict[str, Any]] = []
    directory = Path(results_dir) / RECORDS_DIR
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a torn last line after a crash
    out.sort(key=lambda r: r.get("time", 0))
    return out
