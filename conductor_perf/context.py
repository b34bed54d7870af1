"""The run context: one object holding what the keywords of one suite run share.

Like Locust's ``Environment``, one :class:`RunContext` is created when a suite run starts (the
first ``Start Or Attach Conductor`` of a Robot process) and everything that measures, kills or
reports reads it from there: the results folder, the SUT handle, the profile, which attempt this
is (2 when the runner measures failed tests again), the last fault the suite caused and the
metric sink. Nothing of a run lives in module globals, so two contexts never see each other's
state (each pabot process has its own; tests build their own).

Metric records are appended as JSON lines to ``<results>/metrics.d/<pid>.jsonl`` the moment they
are measured (:class:`conductor_perf.records.MetricSink`), so a crash keeps what was collected; the
report step merges them (:func:`conductor_perf.records.load_records`).

Example::

    ctx = RunContext.from_environment(results_dir="results/adhoc", profile="quick")
    ctx.target = start_embedded(root=ctx.results_dir / "sut" / "root")
    ctx.record(suite="Api", test="Health", metric="health rate", unit="req/s", value=812.0)
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import housekeeping
from .records import RECORDS_DIR, MetricSink
from .target import Target, TargetError

ATTEMPT_ENV = "CONDUCTOR_PERF_ATTEMPT"
"""Environment variable the runner sets to 2 when it measures failed tests again."""
RESULTS_ENV = "CONDUCTOR_PERF_RESULTS"
"""Environment variable naming the results folder of a run (set by the runner)."""
DEFAULT_RESULTS = "results/adhoc"


@dataclass(frozen=True)
class Fault:
    """A fault the suite caused in the SUT: what (``kill``), when (``time.time()``), which process."""

    kind: str
    at: float
    pid: int | None = None


@dataclass
class RunContext:
    """The current run: results folder, SUT, profile, attempt, last fault, agent environment, metric sink."""

    results_dir: Path
    profile: str = "default"
    attempt: int = 1
    target: Target | None = None
    last_fault: Fault | None = None
    agent_env: dict[str, Any] | str | None = None
    """The SUT's agent environment as the stub's first report described it (set once, by the first agent run)."""
    metrics: MetricSink = field(init=False, repr=False)
    test_messages: dict[tuple[str, str], list[str]] = field(default_factory=dict, repr=False)
    """Per (suite, test): the headline figures shown as the test's message, in the order measured."""

    def __post_init__(self) -> None:
        self.results_dir = Path(self.results_dir)
        self.metrics = MetricSink(self.results_dir / RECORDS_DIR)

    @classmethod
    def from_environment(
        cls,
        *,
        results_dir: str | os.PathLike[str] | None = None,
        profile: str = "",
        attempt: int | None = None,
        environ: dict[str, str] | None = None,
    ) -> RunContext:
        """A context for this process: arguments first, then the runner's environment variables.

        The results folder is made absolute and created.
        """
        env = os.environ if environ is None else environ
        results = Path(results_dir or env.get(RESULTS_ENV) or DEFAULT_RESULTS).resolve()
        results.mkdir(parents=True, exist_ok=True)
        if attempt is None:
            try:
                attempt = int(env.get(ATTEMPT_ENV, "1") or 1)
            except ValueError:
                attempt = 1
        return cls(results_dir=results, profile=profile or "default", attempt=attempt)

    @property
    def metrics_dir(self) -> Path:
        """Folder of the per-process JSON-lines metric files."""
        return self.metrics.directory

    @property
    def records(self) -> list[dict[str, Any]]:
        """The records measured so far in this process."""
        return self.metrics.records

    def require_target(self) -> Target:
        """The SUT, or a one-line error telling how to start one."""
        if self.target is None:
            raise TargetError("no conductor: call 'Start Or Attach Conductor' in the suite setup first")
        return self.target

    def record(self, **fields: Any) -> dict[str, Any]:
        """Record a metric; ``profile`` and ``attempt`` default to this run's."""
        fields.setdefault("profile", self.profile)
        fields.setdefault("attempt", self.attempt)
        return self.metrics.record(**fields)

    def add_headline(self, suite: str, test: str, text: str) -> str:
        """Add a figure to a test's message; returns the whole message (figures joined by ``; ``)."""
        lines = self.test_messages.setdefault((suite, test), [])
        lines.append(text)
        return "; ".join(lines)

    def note_scratch(self, path: str | os.PathLike[str]) -> bool:
        """Mark ``path`` (a ``*`` pattern allowed) as scratch data removed when the run ends.

        Only paths inside the results folder are ever removed: for any other path (an external
        SUT's runs root) nothing is noted and ``False`` is returned.
        """
        try:
            housekeeping.note_scratch(self.results_dir, path)
        except ValueError:
            return False
        return True

    def note_fault(self, kind: str, at: float, pid: int | None = None) -> Fault:
        """Remember a fault the suite caused (e.g. a kill) for figures timed from it."""
        self.last_fault = Fault(kind, at, pid)
        return self.last_fault
