"""Process-wide state of one suite run: the SUT handle, the results folder and the metric sink.

Robot keyword libraries are separate objects; they share the SUT and the results folder through
this module. Metric records are appended as JSON lines to ``<results>/metrics.d/<pid>.jsonl`` the
moment they are measured, so a crash keeps what was collected; the report step merges them.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .target import Target, TargetError


@dataclass
class Session:
    """The current run: SUT, results folder and the metrics measured so far in this process."""

    target: Target | None = None
    results_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("CONDUCTOR_PERF_RESULTS", "results/adhoc"))
    )
    profile: str = "default"
    records: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def require_target(self) -> Target:
        """The SUT, or a one-line error telling how to start one."""
        if self.target is None:
            raise TargetError("no conductor: call 'Start Or Attach Conductor' in the suite setup first")
        return self.target

    @property
    def metrics_dir(self) -> Path:
        """Folder of the per-process JSON-lines metric files."""
        return self.results_dir / "metrics.d"

    def record(self, **fields: Any) -> dict[str, Any]:
        """Append one metric record (dict) to this process's JSON-lines file and keep it in memory."""
        rec = {"time": time.time(), **fields}
        with self._lock:
            self.records.append(rec)
            self.metrics_dir.mkdir(parents=True, exist_ok=True)
            with open(self.metrics_dir / f"{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, default=str) + "\n")
        return rec

    def last(self, metric: str) -> dict[str, Any] | None:
        """The latest record of a metric in this process."""
        for rec in reversed(self.records):
            if rec.get("metric") == metric:
                return rec
        return None


SESSION = Session()


def load_records(results_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every metric record written under ``results_dir/metrics.d`` (all processes), in time order."""
    out: list[dict[str, Any]] = []
    directory = Path(results_dir) / "metrics.d"
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
